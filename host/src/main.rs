//! The `rewind` binary: parse arguments, run, map errors to exit codes.

mod cli;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    // wasi-http logs refused connections itself; rewind reports them as the
    // hook's error, with context, so its own log would only repeat them.
    let default_filter = "warn,wasmtime_wasi_http=off";
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REWIND_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .without_time()
        .init();
    let code = match cli::run(cli) {
        Ok(code) => code.code(),
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            failure.code.code()
        }
    };
    std::process::exit(code);
}
