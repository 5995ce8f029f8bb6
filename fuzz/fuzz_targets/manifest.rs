//! Run manifests read from a store: any bytes give a manifest or an error;
//! a manifest that parses survives a round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::store::RunManifest;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(manifest) = serde_json::from_slice::<RunManifest>(bytes) {
        let again = serde_json::to_vec(&manifest).expect("a parsed manifest serializes");
        let back: RunManifest = serde_json::from_slice(&again).expect("and parses again");
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&manifest).unwrap()
        );
    }
});
