//! Outgoing HTTP through `wasi:http`, to origins the operator granted.
//!
//! The host refuses a request to an origin that is not granted before any
//! connection is made; that refusal comes back as [`HookError::Denied`] naming
//! the grant to add.
//!
//! ```no_run
//! # use rewind_sdk::{http, HookError};
//! # fn f() -> Result<(), HookError> {
//! let resp = http::Request::get("http://127.0.0.1:8080/health")
//!     .timeout(std::time::Duration::from_secs(2))
//!     .send()?;
//! assert_eq!(resp.status, 200);
//! # Ok(()) }
//! ```

use std::time::Duration;

use crate::HookError;

/// An outgoing HTTP request, built step by step and sent with [`Request::send`].
// Outside wasm32 (the SDK's own tests, docs) `send` only refuses, so the
// fields and `split_url` are read by the wasm32 implementation alone.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Duration,
}

/// A response read in full.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Header names (lower case) and values, in the order received.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Request {
    /// A request with `method` (any case) to the absolute `url`; 10 s timeout.
    pub fn new(method: &str, url: &str) -> Self {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }

    /// A `GET` request.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// JSON body with `content-type: application/json`.
    pub fn json<T: serde::Serialize>(self, value: &T) -> Result<Self, HookError> {
        Ok(self
            .header("content-type", "application/json")
            .body(serde_json::to_vec(value)?))
    }

    /// Connect, first-byte and between-bytes timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Send the request and read the whole response.
    pub fn send(&self) -> Result<Response, HookError> {
        #[cfg(target_arch = "wasm32")]
        {
            wasi_impl::send(self)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Err(HookError::unsupported(
                "HTTP is only available inside the rewind sandbox (wasm32-wasip2)",
            ))
        }
    }
}

/// Split `scheme://authority/path?query`.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn split_url(url: &str) -> Result<(&str, &str, &str), HookError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| HookError::invalid_input(format!("`{url}` is not an absolute URL")))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(HookError::invalid_input(format!("`{url}` has no host")));
    }
    Ok((scheme, authority, path))
}

#[cfg(target_arch = "wasm32")]
mod wasi_impl {
    use super::*;
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
    };
    use wasip2::io::streams::StreamError;

    pub(super) fn send(req: &Request) -> Result<Response, HookError> {
        let (scheme, authority, path) = split_url(&req.url)?;
        let entries: Vec<(String, Vec<u8>)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        let headers = Fields::from_list(&entries)
            .map_err(|e| HookError::invalid_input(format!("bad header: {e:?}")))?;
        let outgoing = OutgoingRequest::new(headers);
        let method = match req.method.as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_string()),
        };
        let scheme = match scheme {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => Scheme::Other(other.to_string()),
        };
        let bad =
            |what: &str| HookError::invalid_input(format!("{what} of `{}` rejected", req.url));
        outgoing.set_method(&method).map_err(|_| bad("method"))?;
        outgoing
            .set_scheme(Some(&scheme))
            .map_err(|_| bad("scheme"))?;
        outgoing
            .set_authority(Some(authority))
            .map_err(|_| bad("authority"))?;
        outgoing
            .set_path_with_query(Some(path))
            .map_err(|_| bad("path"))?;

        let body = outgoing.body().map_err(|_| bad("body"))?;
        {
            let stream = body.write().map_err(|_| bad("body stream"))?;
            // wasi:io allows at most 4096 bytes per blocking write.
            for chunk in req.body.chunks(4096) {
                stream.blocking_write_and_flush(chunk).map_err(|e| {
                    HookError::failed(format!("sending body to {}: {e:?}", req.url))
                })?;
            }
        }

        let options = RequestOptions::new();
        let nanos = req.timeout.as_nanos() as u64;
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));

        let future = outgoing_handler::handle(outgoing, Some(options))
            .map_err(|code| map_code(&req.url, code))?;
        OutgoingBody::finish(body, None).map_err(|code| map_code(&req.url, code))?;
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(resp))) => resp,
            Some(Ok(Err(code))) => return Err(map_code(&req.url, code)),
            _ => return Err(HookError::failed(format!("no response from {}", req.url))),
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response.consume().map_err(|_| bad("response body"))?;
        let stream = incoming.stream().map_err(|_| bad("response body"))?;
        let mut body = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(bytes) => body.extend_from_slice(&bytes),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(HookError::failed(format!(
                        "reading response from {}: {}",
                        req.url,
                        e.to_debug_string()
                    )));
                }
            }
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn map_code(url: &str, code: ErrorCode) -> HookError {
        match code {
            // The host refused the origin; it kept the refusal, typed.
            ErrorCode::HttpRequestDenied => crate::error::take_denial()
                .map(HookError::Denied)
                .unwrap_or_else(|| HookError::failed(format!("HTTP request to {url} was denied"))),
            ErrorCode::InternalError(Some(text)) => {
                HookError::failed(format!("HTTP request to {url} failed: {text}"))
            }
            ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout => {
                HookError::Timeout(format!("HTTP request to {url} timed out"))
            }
            other => HookError::failed(format!("HTTP request to {url} failed: {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/health?x=1").unwrap(),
            ("http", "127.0.0.1:8080", "/health?x=1")
        );
        assert_eq!(
            split_url("https://example.com").unwrap(),
            ("https", "example.com", "/")
        );
        assert!(split_url("example.com/x").is_err());
    }
}
