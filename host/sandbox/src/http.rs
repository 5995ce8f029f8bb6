//! The gate on outgoing HTTP: `wasi:http` requests reach the network only
//! when their origin (scheme, host, port) is granted.

use std::sync::Arc;

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::refusals::Refusals;
use rewind_grants::Grants;

pub(super) struct HttpGate {
    grants: Arc<Grants>,
    refusals: Refusals,
}

impl HttpGate {
    pub fn new(grants: Arc<Grants>, refusals: Refusals) -> Self {
        HttpGate { grants, refusals }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        // Userinfo in the authority (`user@host`) is not part of the origin
        // the gate checks, but the connection would be made to the whole
        // authority (a name lookup of `user@host` leaks `user`).
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            let denial = rewind_grants::Denial::new(
                rewind_grants::Kind::Never,
                format!(
                    "{scheme}://{}",
                    uri.authority().map(|a| a.as_str()).unwrap_or_default()
                ),
                "credentials in a URL's authority are never sent; use an Authorization header",
            );
            self.refusals.refuse(&denial);
            return Box::new(async move { Err(Error::HttpRequestDenied) });
        }
        if let Err(denial) = self.grants.check_http(&scheme, &host, port) {
            // The guest sees `HTTP-request-denied` and takes the typed
            // refusal through `sandbox.take-denial`.
            self.refusals.refuse(&denial);
            return Box::new(async move { Err(Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
            ))
        })
    }
}
