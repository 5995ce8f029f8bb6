//! Host-side bindings of the `rewind:hooks` WIT package.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../../wit",
    // Host imports are synchronous (they bound their own waiting: commands
    // by their timeout, store I/O by the disk); exports are called with
    // `call_async` so that a deadline can end a guest blocked in a WASI
    // host call (a sleep, a poll, a slow HTTP origin).
    imports: { default: trappable },
    exports: { default: async },
    with: {
        "rewind:hooks/artifacts.writer": crate::artifacts::WriterHandle,
        "rewind:hooks/artifacts.reader": crate::artifacts::ReaderHandle,
    },
});

/// `wit/types.wit` as this host was built with it.
pub const TYPES_WIT: &str = include_str!("../../../wit/types.wit");

/// The cases of `enum <name>` in [`TYPES_WIT`], in order, as written
/// (`%` escapes removed). What both sides name from the WIT (an event
/// kind, a param kind) is pinned to these by tests.
pub fn wit_enum_cases(name: &str) -> Vec<String> {
    let Some(body) = TYPES_WIT.split(&format!("enum {name} {{")).nth(1) else {
        return Vec::new();
    };
    let body = &body[..body.find('}').unwrap_or(body.len())];
    body.lines()
        .map(|line| line.split("//").next().unwrap_or("").trim())
        .flat_map(|line| line.split(','))
        .map(|case| case.trim().trim_start_matches('%'))
        .filter(|case| !case.is_empty())
        .map(str::to_string)
        .collect()
}
