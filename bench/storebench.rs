//! The store alone, without a plugin or the sandbox around it: for
//! profiles (`valgrind --tool=callgrind` counts instructions repeatably on
//! a shared machine, where wall time is noisy) and to compare the store
//! of one commit with another's (bench/README.md).
//!
//!   storebench ingest FILE STORE     store FILE as one artifact; prints its record
//!   storebench verify STORE RECORD   re-hash it (what `artifacts verify` does per artifact)
//!   storebench read STORE RECORD     stream its content to stdout, verified
//!
//! RECORD is the JSON `ingest` printed.

use std::io::{self, Write};
use std::os::fd::AsFd;

use rewind_store::{BlobInfo, Store};

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let record = |json: &str| -> io::Result<BlobInfo> {
        serde_json::from_str(json).map_err(io::Error::other)
    };
    match args.get(1).map(String::as_str) {
        Some("ingest") if args.len() == 4 => {
            let store = Store::open(args[3].as_ref())?;
            let mut file = std::fs::File::open(&args[2])?;
            let mut blob = store.create_blob()?;
            // As the sandbox copies a command's output: in the pipe's
            // 64 KiB pieces.
            let mut buf = vec![0; 64 << 10];
            loop {
                let n = io::Read::read(&mut file, &mut buf)?;
                if n == 0 {
                    break;
                }
                blob.write_all(&buf[..n])?;
            }
            println!("{}", serde_json::to_string(&blob.finish()?)?);
        }
        Some("verify") if args.len() == 4 => {
            Store::open(args[2].as_ref())?.verify_blob(&record(&args[3])?)?;
        }
        Some("read") if args.len() == 4 => {
            let store = Store::open(args[2].as_ref())?;
            let mut reader = store.open_blob(&record(&args[3])?)?;
            // Unbuffered, in 256 KiB writes, as the sandbox feeds a
            // command's stdin (io::stdout() is line-buffered).
            let mut out = std::fs::File::from(io::stdout().as_fd().try_clone_to_owned()?);
            let mut buf = vec![0; 256 << 10];
            loop {
                let n = io::Read::read(&mut reader, &mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
            }
        }
        _ => {
            eprintln!(
                "usage: storebench ingest FILE STORE | verify STORE RECORD | read STORE RECORD"
            );
            std::process::exit(2);
        }
    }
    Ok(())
}
