//! Hostile plugins against the `fs` import: modes, owners, setuid bits, check-then-use races, hints that leak.
//! Each case asserts the refusal, that the host survived and that the next
//! hook call works, and that the message names the grant.

#[allow(unused_imports)]
use crate::common::{Call, load, only_check, scratch};
