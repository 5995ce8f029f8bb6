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
