use rewind_sdk::*;
struct P;
impl Plugin for P {
    fn info() -> PluginInfo {
        PluginInfo { name: "x".into(), version: "1".into(), summary: "s".into(), capabilities: Capabilities::default(), params: vec![] }
    }
}
impl Backup for P {
    fn backup(_ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> { Ok(vec![artifacts::write_bytes("a","text/plain",b"hi")?]) }
}
rewind_sdk::export_plugin!(P: backup);
