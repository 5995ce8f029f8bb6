//! Signed requests to S3 and CloudFront over the SDK's `wasi:http`: SigV4
//! by `aws-sigv4`, retries with backoff for throttling and 5xx, and AWS
//! error codes turned into hook errors that say what to fix.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rewind_sdk::http::{Request, Response};
use rewind_sdk::{HookError, log};

/// RFC 3986 unreserved characters stay; everything else is escaped (what
/// SigV4's canonical form expects).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// The same, keeping `/` (object keys in a path).
const PATH: &AsciiSet = &COMPONENT.remove(b'/');

/// Escape a query value or other URL component.
pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// Escape an object key for a URL path.
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, PATH).to_string()
}

/// Which service a request goes to: S3's signing rules differ.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Service {
    S3,
    CloudFront,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::S3 => "s3",
            Service::CloudFront => "cloudfront",
        }
    }
}

/// The names of the variables the credentials came from, for messages.
#[derive(Clone, Debug)]
pub struct CredentialVars {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

/// A signer and sender with the instance's credentials and settings.
pub struct Client {
    identity: Identity,
    pub vars: CredentialVars,
    region: String,
    timeout: Duration,
    max_retries: u32,
}

/// An error answer from AWS (or a look-alike).
#[derive(Debug, Clone)]
pub struct AwsError {
    pub status: u16,
    /// The `<Code>` of the error body; empty when there is none (HEAD).
    pub code: String,
    pub message: String,
}

/// What went wrong with a request: an answer, or the hook error already
/// made (refused by the sandbox, timed out, throttled past the retries).
pub enum Failure {
    Aws(AwsError),
    Hook(HookError),
}

impl From<HookError> for Failure {
    fn from(err: HookError) -> Self {
        Failure::Hook(err)
    }
}

/// A request before signing.
pub struct Call<'a> {
    pub service: Service,
    pub method: &'a str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl<'a> Call<'a> {
    pub fn new(service: Service, method: &'a str, url: String) -> Self {
        Call {
            service,
            method,
            url,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
}

/// Error codes that mean "slow down and try again".
fn throttled(status: u16, code: &str) -> bool {
    matches!(
        code,
        "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "RequestThrottled"
            | "ServiceUnavailable"
            | "InternalError"
            | "RequestTimeout"
    ) || matches!(status, 429 | 500 | 502 | 503 | 504)
}

impl Client {
    pub fn new(
        vars: CredentialVars,
        region: &str,
        timeout: Duration,
        max_retries: u32,
    ) -> Result<Client, HookError> {
        let access_key = rewind_sdk::secret_from_env(&vars.access_key_id)?;
        let secret_key = rewind_sdk::secret_from_env(&vars.secret_access_key)?;
        // Optional: a variable that is not set (or not granted) means
        // long-term keys.
        let token = std::env::var(&vars.session_token)
            .ok()
            .filter(|t| !t.is_empty());
        let identity = Credentials::new(access_key, secret_key, token, None, "rewind-env").into();
        Ok(Client {
            identity,
            vars,
            region: region.to_string(),
            timeout,
            max_retries,
        })
    }

    fn signed(&self, call: &Call<'_>) -> Result<Request, HookError> {
        let mut settings = SigningSettings::default();
        let region = match call.service {
            Service::S3 => {
                // S3 signs the path as sent (no double escaping, no
                // normalisation) and wants the payload hash in a header.
                settings.percent_encoding_mode = PercentEncodingMode::Single;
                settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
                settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
                self.region.as_str()
            }
            // CloudFront is global and signs in us-east-1.
            Service::CloudFront => "us-east-1",
        };
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(region)
            .name(call.service.name())
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| HookError::failed(format!("signing {}: {e}", call.url)))?
            .into();
        let signable = SignableRequest::new(
            call.method,
            call.url.as_str(),
            call.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(&call.body),
        )
        .map_err(|e| HookError::invalid_input(format!("cannot sign {}: {e}", call.url)))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| HookError::failed(format!("signing {}: {e}", call.url)))?
            .into_parts();
        let mut request = Request::new(call.method, &call.url).timeout(self.timeout);
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        if call.method != "GET" && call.method != "HEAD" {
            request = request
                .header("content-length", &call.body.len().to_string())
                .body(call.body.clone());
        }
        Ok(request)
    }

    /// Send `call`, signed afresh on each attempt; throttling, 5xx and
    /// transport failures are retried with exponential backoff, at most
    /// `max_retries` times. A 2xx (or 3xx) answer is `Ok`; any other
    /// answer is `Failure::Aws` with its code.
    pub fn send(&self, call: &Call<'_>) -> Result<Response, Failure> {
        let mut attempt = 0u32;
        loop {
            let request = self.signed(call)?;
            let outcome = request.send();
            let retry_reason = match outcome {
                Ok(response) if response.status < 400 => return Ok(response),
                Ok(response) => {
                    let error = parse_error(&response);
                    if !throttled(error.status, &error.code) {
                        return Err(Failure::Aws(error));
                    }
                    if attempt >= self.max_retries {
                        return Err(Failure::Hook(HookError::failed(format!(
                            "{} {} was still refused with HTTP {} {} after {} attempts \
                             (throttled or unavailable); try again later, or raise params.max_retries",
                            call.method,
                            call.url,
                            error.status,
                            error.code,
                            attempt + 1
                        ))));
                    }
                    format!("HTTP {} {}", error.status, error.code)
                }
                // The sandbox's refusal and bad input are final.
                Err(err @ (HookError::Denied(_) | HookError::InvalidInput(_))) => {
                    return Err(Failure::Hook(err));
                }
                Err(err) => {
                    if attempt >= self.max_retries {
                        return Err(Failure::Hook(err));
                    }
                    err.message()
                }
            };
            let delay = Duration::from_millis((200u64 << attempt.min(5)).min(5000));
            log::warn(format!(
                "{} {}: {retry_reason}; retrying in {} ms",
                call.method,
                call.url,
                delay.as_millis()
            ));
            std::thread::sleep(delay);
            attempt += 1;
        }
    }
}

/// The code and message of an S3 (`<Error>`) or CloudFront
/// (`<ErrorResponse><Error>`) error body.
pub fn parse_error(response: &Response) -> AwsError {
    let text = response.text();
    let (mut code, mut message) = (String::new(), String::new());
    if let Ok(doc) = roxmltree::Document::parse(&text) {
        let find = |name: &str| {
            doc.descendants()
                .find(|n| n.tag_name().name() == name)
                .and_then(|n| n.text())
                .map(|t| t.trim().to_string())
        };
        code = find("Code").unwrap_or_default();
        message = find("Message").unwrap_or_default();
    }
    AwsError {
        status: response.status,
        code,
        message,
    }
}

/// A header of a response (names are lower case).
pub fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The text of the first child element of `node` called `name`.
pub fn child_text(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    node.children()
        .find(|n| n.is_element() && n.tag_name().name() == name)
        .map(|n| n.text().unwrap_or("").to_string())
}

/// Parse an XML answer.
pub fn parse_xml<'a>(text: &'a str, what: &str) -> Result<roxmltree::Document<'a>, HookError> {
    roxmltree::Document::parse(text)
        .map_err(|e| HookError::failed(format!("{what}: the answer is not XML ({e})")))
}

impl Client {
    /// A hook error for an AWS error answer: what to check, by code.
    /// `action` names the operation and its IAM permission, `target` what
    /// it was done to.
    pub fn explain(&self, action: &str, target: &str, failure: Failure) -> HookError {
        let err = match failure {
            Failure::Hook(err) => return err,
            Failure::Aws(err) => err,
        };
        let vars = &self.vars;
        let detail = if err.message.is_empty() {
            String::new()
        } else {
            format!(": {}", err.message)
        };
        match err.code.as_str() {
            "SignatureDoesNotMatch" => HookError::invalid_input(format!(
                "{action} on {target}: SignatureDoesNotMatch — AWS rejected the request signature: \
                 the secret key does not belong to the access key; check {} (and {})",
                vars.secret_access_key, vars.access_key_id
            )),
            "InvalidAccessKeyId" | "InvalidClientTokenId" | "UnrecognizedClientException" => {
                HookError::invalid_input(format!(
                    "{action} on {target}: {} — the access key id is unknown; check {} and {}",
                    err.code, vars.access_key_id, vars.secret_access_key
                ))
            }
            "ExpiredToken" | "InvalidToken" | "TokenRefreshRequired" => {
                HookError::invalid_input(format!(
                    "{action} on {target}: {} — the session token is expired or invalid; \
                     refresh {} (with {} and {}) or unset it for long-term keys",
                    err.code, vars.session_token, vars.access_key_id, vars.secret_access_key
                ))
            }
            "RequestTimeTooSkewed" => HookError::failed(format!(
                "{action} on {target}: RequestTimeTooSkewed — this host's clock is off; sync it (NTP)"
            )),
            "AccessDenied" | "AccessDeniedException" | "AllAccessDisabled" => {
                HookError::failed(format!(
                    "{action} on {target}: AccessDenied{detail} — the key in {} lacks this \
                     permission; allow it in the key's IAM policy",
                    vars.access_key_id
                ))
            }
            "NoSuchBucket" => HookError::invalid_input(format!(
                "{action} on {target}: NoSuchBucket — the bucket does not exist; check \
                 params.bucket, params.region and params.s3_endpoint"
            )),
            "NoSuchDistribution" => HookError::invalid_input(format!(
                "{action} on {target}: NoSuchDistribution — check params.distribution_id \
                 (`aws cloudfront list-distributions` lists the ids)"
            )),
            "" => match err.status {
                // HEAD answers carry no body.
                403 => HookError::failed(format!(
                    "{action} on {target}: HTTP 403 — AccessDenied, or a signature AWS \
                     rejected; check the permission and {} / {}",
                    vars.access_key_id, vars.secret_access_key
                )),
                404 if target.starts_with("distribution") => HookError::invalid_input(format!(
                    "{action} on {target}: HTTP 404 — NoSuchDistribution? check params.distribution_id"
                )),
                status => HookError::failed(format!("{action} on {target}: HTTP {status}")),
            },
            code => HookError::failed(format!(
                "{action} on {target}: HTTP {} {code}{detail}",
                err.status
            )),
        }
    }
}
