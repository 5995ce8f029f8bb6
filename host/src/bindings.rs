//! Host-side bindings of the `rewind:hooks` WIT package.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
    imports: { default: trappable },
    with: {
        "rewind:hooks/artifacts.writer": crate::sandbox::artifacts::WriterHandle,
        "rewind:hooks/artifacts.reader": crate::sandbox::artifacts::ReaderHandle,
    },
});
