//! rewind.toml: any text parses to a config or to an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(err) = rewind::config::Config::parse(std::path::Path::new("/fuzz/rewind.toml"), text) {
        // Rendering the error (with its file:line:column) must not panic either.
        let _ = err.to_string();
    }
});
