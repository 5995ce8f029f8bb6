//! Attacks on the `fs` import: modes, owners, setuid bits, check-then-use races, hints that leak.

use crate::Params;

/// Run the attack named by `params.attack`, or `None` if this module does
/// not know it. `Ok` carries what leaked (a breach), `Err` the refusal.
pub(crate) fn attempt(params: &Params) -> Option<Result<String, String>> {
    let _ = params;
    None
}
