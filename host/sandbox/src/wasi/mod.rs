//! The guest's WASI imports, with a policy layer in front of the filesystem
//! and of name lookups.
//!
//! Every WASI p2 interface is linked exactly as
//! `wasmtime_wasi::p2::add_to_linker_async` links it, except three:
//!
//! * `wasi:filesystem/types` and `wasi:filesystem/preopens` go through
//!   [`filesystem::GuardedFs`], whose view wraps wasmtime's own
//!   (`WasiFilesystemCtxView`) together with the call's grants, the guest
//!   path of every live descriptor and the call state that records
//!   refusals. Each operation is checked, then handed to wasmtime's
//!   implementation unchanged.
//! * `wasi:sockets/ip-name-lookup` goes through
//!   [`name_lookup::GuardedLookup`]: only names a tcp grant names are ever
//!   resolved, so a lookup cannot carry data out through DNS.
//!
//! Nothing of wasmtime is forked: a wasmtime upgrade that adds an operation
//! to `wasi:filesystem/types` fails to compile here until the new operation
//! has a policy.

pub(crate) mod filesystem;
pub(crate) mod name_lookup;

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView as _};

use super::HookState;

pub(crate) use filesystem::FsPolicy;

/// `wasi:io` works on the resource table alone.
struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

/// Add every WASI p2 interface to `linker`, as
/// `wasmtime_wasi::p2::add_to_linker_async` does, with the filesystem and
/// name lookups behind the call's policy.
pub(crate) fn add_to_linker(linker: &mut Linker<HookState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem as fs, io, random, sockets};
    type T = HookState;
    let l = linker;

    // add_async_io_to_linker
    io::error::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;
    io::poll::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;
    io::streams::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;

    // add_nonblocking_to_linker
    let options = wasmtime_wasi::p2::bindings::LinkOptions::default();
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    fs::preopens::add_to_linker::<T, filesystem::GuardedFs>(l, filesystem::view)?;
    random::random::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    sockets::tcp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::instance_network::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::network::add_to_linker::<T, WasiSockets>(l, &(&options).into(), T::sockets)?;
    sockets::ip_name_lookup::add_to_linker::<T, name_lookup::GuardedLookup>(l, name_lookup::view)?;

    // add_to_linker_with_options_async
    fs::types::add_to_linker::<T, filesystem::GuardedFs>(l, filesystem::view)?;
    sockets::tcp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::udp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::udp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    Ok(())
}
