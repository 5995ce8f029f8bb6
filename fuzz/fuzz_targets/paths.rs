//! The path normaliser and the most-specific-grant rule: normalising is
//! idempotent and leaves no `.` or `..`; a path and its normal form get the
//! same access; the text cleaner never panics and lets no control character
//! through.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use rewind::grants::{Grants, PathGrant, normalize};
use rewind::sandbox::bounded;

fuzz_target!(|input: (&str, u16)| {
    let (text, max) = input;
    let path = Path::new(text);
    let once = normalize(path);
    assert_eq!(normalize(&once), once);
    assert!(
        once.components()
            .all(|c| !matches!(c, Component::CurDir | Component::ParentDir)),
        "{once:?}"
    );
    if path.is_absolute() {
        assert!(once.is_absolute());
        let grants = Grants {
            paths: vec![
                PathGrant::parse("/srv/app").unwrap(),
                PathGrant::parse("ro:/srv/app/protected").unwrap(),
            ],
            ..Grants::default()
        };
        assert_eq!(grants.access(path), grants.access(&once));
        if once.starts_with("/srv/app/protected") {
            assert!(grants.check_path(path, true).is_err());
        }
    }
    let cleaned = bounded::line(text, max as usize);
    assert!(!cleaned.chars().any(char::is_control), "{cleaned:?}");
});
