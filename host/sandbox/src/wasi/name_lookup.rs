//! `wasi:sockets/ip-name-lookup` behind the tcp grants.
//!
//! Resolving a name sends it to the host's resolver, and from there to
//! whatever DNS server is authoritative for it: `<secret>.attacker.example`
//! carries data out even when no connection is ever allowed. So only the
//! host names that `grants.tcp` names are resolved; an IP literal needs no
//! query and goes on to the connect check; everything else is refused here,
//! before any query leaves the host.

use std::net::IpAddr;

use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::SocketError;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{
    Host, HostResolveAddressStream, ResolveAddressStream,
};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddress, Network};
use wasmtime_wasi::sockets::WasiSocketsCtxView;

use crate::{CallState, HookState};

/// `HasData` for the guarded name lookup.
pub(crate) struct GuardedLookup;

impl HasData for GuardedLookup {
    type Data<'a> = LookupView<'a>;
}

/// wasmtime's sockets view and the call whose grants decide.
pub(crate) struct LookupView<'a> {
    inner: WasiSocketsCtxView<'a>,
    call: &'a CallState,
}

pub(crate) fn view(state: &mut HookState) -> LookupView<'_> {
    LookupView {
        inner: wasmtime_wasi::sockets::WasiSocketsCtxView {
            ctx: state.wasi.sockets(),
            table: &mut state.table,
        },
        call: &state.call,
    }
}

/// Whether `name` is an IP address written out (no query needed). The
/// bracketed IPv6 form is what URLs use.
fn is_ip_literal(name: &str) -> bool {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    bare.parse::<IpAddr>().is_ok()
}

impl network::Host for LookupView<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.inner, error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.inner, err)
    }
}

impl network::HostNetwork for LookupView<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.inner, this)
    }
}

impl Host for LookupView<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ResolveAddressStream>, SocketError> {
        if !is_ip_literal(&name)
            && let Err(denial) = self.call.grants.check_lookup(&name)
        {
            self.call.refuse(&denial);
            return Err(ErrorCode::AccessDenied.into());
        }
        self.inner.resolve_addresses(network, name)
    }
}

impl HostResolveAddressStream for LookupView<'_> {
    fn resolve_next_address(
        &mut self,
        resource: Resource<ResolveAddressStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        self.inner.resolve_next_address(resource)
    }

    fn subscribe(
        &mut self,
        resource: Resource<ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.inner.subscribe(resource)
    }

    fn drop(&mut self, resource: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        HostResolveAddressStream::drop(&mut self.inner, resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_need_no_lookup() {
        assert!(is_ip_literal("127.0.0.1"));
        assert!(is_ip_literal("::1"));
        assert!(is_ip_literal("[::1]"));
        assert!(!is_ip_literal("localhost"));
        assert!(!is_ip_literal("127.0.0.1.attacker.example"));
    }
}
