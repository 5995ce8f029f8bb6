//! Run manifests read from a store: any bytes give a manifest or an error
//! (an unknown `format` is refused before the rest is read); a manifest
//! that parses survives a round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::store::{RunManifest, parse_manifest};

fuzz_target!(|bytes: &[u8]| {
    let path = std::path::Path::new("/fuzz/runs/x.json");
    if let Ok(manifest) = parse_manifest(path, bytes) {
        let again = serde_json::to_vec(&manifest).expect("a parsed manifest serializes");
        let back: RunManifest = parse_manifest(path, &again).expect("and parses again");
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&manifest).unwrap()
        );
    }
});
