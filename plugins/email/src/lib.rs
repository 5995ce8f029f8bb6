//! rewind plugin `email`: mails each event to the on-call engineer, with a
//! subject and body they can act on.
//!
//! Two transports. `smtp` speaks SMTP itself over a TCP connection to a
//! granted `host:port` (`grants.tcp`), plain or upgraded with STARTTLS
//! (rustls, certificates checked against the Mozilla roots or a given CA),
//! with optional AUTH PLAIN once encrypted. `command` pipes the message to
//! a granted sendmail-style program: `sendmail -t -i`, `msmtp -t`, or
//! `curl --ssl-reqd smtp://…`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rewind_sdk::{
    Capabilities, Command, Context, Event, EventKind, HookError, Notify, Plugin, PluginInfo,
};
use serde::{Deserialize, Serialize};

rewind_sdk::params! {
    struct Params {
        /// Sender, "rewind <rewind@example.com>"
        from: String,
        /// Recipients, a list
        to: Vec<String>,
        /// smtp (plain, grants.tcp) or command
        transport: Transport = Transport::Smtp,
        /// smtp: the relay
        host: String = "127.0.0.1",
        /// smtp: its port
        port: u16 = 25,
        /// smtp: the EHLO name
        helo: String = "rewind.localhost",
        /// smtp: upgrade with STARTTLS first
        // Before sending anything.
        starttls: bool = false,
        /// smtp: PEM CA certificates to trust instead of the Mozilla roots
        // For a private relay; its directory must be granted.
        ca_file: Option<String>,
        /// smtp: the name the relay's certificate must carry (absent: host)
        tls_name: Option<String>,
        /// smtp: AUTH PLAIN user (needs starttls)
        username: Option<String>,
        /// smtp: granted env var holding the password
        password_env: Option<String>,
        /// command: argv reading the message on stdin (sendmail -t -i, curl …)
        command: Option<Vec<String>>,
        /// Subject prefix
        subject_prefix: String = "[rewind]",
        /// Network or command timeout
        timeout_ms: u64 = 10_000,
    }
}

#[derive(Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Transport {
    Smtp,
    Command,
}

impl rewind_sdk::ParamType for Transport {
    const KIND: rewind_sdk::ParamKind = rewind_sdk::ParamKind::String;
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An RFC 5322 date from an RFC 3339 UTC timestamp
/// ("2026-11-23T17:16:22.5Z" → "Mon, 23 Nov 2026 17:16:22 +0000").
fn mail_date(timestamp: &str) -> Option<String> {
    let year: i64 = timestamp.get(0..4)?.parse().ok()?;
    let month: u32 = timestamp.get(5..7)?.parse().ok()?;
    let day: u32 = timestamp.get(8..10)?.parse().ok()?;
    let time = timestamp.get(11..19)?;
    let days = days_from_civil(year, month, day);
    debug_assert_eq!(civil_from_days(days), (year, month, day));
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    Some(format!(
        "{}, {day:02} {} {year} {time} +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS.get(month as usize - 1)?
    ))
}

/// What the reader should do next, by outcome.
fn advice(event: &Event) -> String {
    let step = event.field("failed_step").unwrap_or("see the run");
    match event.kind {
        EventKind::RollbackSuccess => format!(
            "The previous state is live again{}. Find out why before deploying again:\n  \
             rewind history {}      what ran, step by step\n  rewind status              health and the newest backup",
            event
                .field("source_run")
                .map(|r| format!(" (restored from backup {r})"))
                .unwrap_or_default(),
            event.run_id
        ),
        EventKind::RollbackFailed => format!(
            "MANUAL ACTION NEEDED: the rollback did not complete (failing step: {step}). The \
             application may be in a mixed state.\n  rewind status              what is interrupted, and health\n  \
             rewind history {}      the error of the failing step\n  \
             then fix the cause and run `rewind rollback --resume`, or roll back by hand.",
            event.run_id
        ),
        EventKind::Error => format!(
            "Something failed (step: {step}) and nothing was rolled back automatically.\n  \
             rewind history {}      the error\n  rewind rollback --dry-run  what a rollback would do",
            event.run_id
        ),
        _ => format!("Details: rewind history {}", event.run_id),
    }
}

fn subject(prefix: &str, event: &Event) -> String {
    // Header lines must not carry line breaks.
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    format!(
        "{prefix} {}: {} - {} ({})",
        event.kind_name(),
        clean(&event.title),
        clean(&event.project),
        clean(&event.environment)
    )
}

fn message(params: &Params, event: &Event) -> String {
    let mut body = format!(
        "{}: {}\n\nProject:     {} ({})\nRun:         {}\nTime:        {}\n",
        event.kind_name(),
        event.title,
        event.project,
        event.environment,
        event.run_id,
        event.timestamp
    );
    if !event.message.is_empty() {
        body.push_str(&format!("\n{}\n", event.message));
    }
    if !event.fields.is_empty() {
        body.push_str("\nDetails:\n");
        for (key, value) in &event.fields {
            body.push_str(&format!("  {key}: {value}\n"));
        }
    }
    body.push_str(&format!("\n{}\n", advice(event)));

    let mut headers = vec![
        format!("From: {}", params.from),
        format!("To: {}", params.to.join(", ")),
        format!("Subject: {}", subject(&params.subject_prefix, event)),
        format!(
            "Message-ID: <{}.{}@rewind>",
            event.run_id,
            event.kind_name().to_ascii_lowercase()
        ),
        "MIME-Version: 1.0".into(),
        "Content-Type: text/plain; charset=utf-8".into(),
        "Content-Transfer-Encoding: 8bit".into(),
        format!("X-Rewind-Event: {}", event.kind_name()),
        format!("X-Rewind-Run: {}", event.run_id),
    ];
    if let Some(date) = mail_date(&event.timestamp) {
        headers.push(format!("Date: {date}"));
    }
    let text = format!("{}\n\n{body}", headers.join("\n"));
    // SMTP wants CRLF line ends.
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// A plain or TLS stream.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// One SMTP session. (One stream, read through its own buffer: wasip2
/// cannot `try_clone` a socket.)
struct Smtp {
    stream: Box<dyn Stream>,
    pending: Vec<u8>,
    server: String,
}

impl Smtp {
    fn connect(params: &Params) -> Result<Smtp, HookError> {
        let server = format!("{}:{}", params.host, params.port);
        let stream = TcpStream::connect(&server).map_err(|err| {
            let hint = if err.kind() == std::io::ErrorKind::PermissionDenied {
                format!(" (the sandbox refused it: add grants.tcp = [\"{server}\"])")
            } else {
                String::new()
            };
            HookError::failed(format!("cannot connect to {server}: {err}{hint}"))
        })?;
        let timeout = Some(Duration::from_millis(params.timeout_ms));
        let _ = stream.set_read_timeout(timeout);
        let _ = stream.set_write_timeout(timeout);
        let mut smtp = Smtp {
            stream: Box::new(stream),
            pending: Vec::new(),
            server,
        };
        smtp.expect(220, "greeting")?;
        Ok(smtp)
    }

    /// EHLO, then STARTTLS and EHLO again over TLS, as configured.
    fn hello(mut self, params: &Params) -> Result<Smtp, HookError> {
        let features = self.send(&format!("EHLO {}", params.helo), 250)?;
        if !params.starttls {
            return Ok(self);
        }
        if !features.to_ascii_uppercase().contains("STARTTLS") {
            return Err(HookError::failed(format!(
                "{} does not offer STARTTLS (it said: {})",
                self.server,
                features.trim().replace("\r\n", " ")
            )));
        }
        self.send("STARTTLS", 220)?;
        if !self.pending.is_empty() {
            return Err(HookError::failed(format!(
                "{} sent data before the TLS handshake",
                self.server
            )));
        }
        let name = params
            .tls_name
            .clone()
            .unwrap_or_else(|| params.host.clone());
        let name = rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|err| HookError::invalid_input(format!("tls name `{name}`: {err}")))?;
        let tls = rustls::ClientConnection::new(tls_config(params)?, name)
            .map_err(|err| HookError::failed(format!("TLS setup: {err}")))?;
        let Smtp { stream, server, .. } = self;
        let mut upgraded = Smtp {
            stream: Box::new(rustls::StreamOwned::new(tls, stream)),
            pending: Vec::new(),
            server,
        };
        upgraded.send(&format!("EHLO {}", params.helo), 250)?;
        Ok(upgraded)
    }

    /// AUTH PLAIN, only over TLS: a password never crosses in the clear.
    fn authenticate(&mut self, params: &Params) -> Result<(), HookError> {
        let Some(user) = &params.username else {
            return Ok(());
        };
        if !params.starttls {
            return Err(HookError::invalid_input(
                "params.username needs starttls = true: rewind does not send passwords in the clear",
            ));
        }
        let Some(var) = &params.password_env else {
            return Err(HookError::invalid_input(
                "params.username needs params.password_env naming a granted variable",
            ));
        };
        let password = rewind_sdk::secret_from_env(var)?;
        let token = base64(format!("\0{user}\0{password}").as_bytes());
        self.send(&format!("AUTH PLAIN {token}"), 235).map(|_| ())
    }

    /// One reply line, without its line end; empty at end of stream.
    fn read_line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            let mut chunk = [0u8; 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned());
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }

    /// Read one (possibly multi-line) reply; require `code`.
    fn expect(&mut self, code: u16, after: &str) -> Result<String, HookError> {
        let mut text = String::new();
        loop {
            let line = self.read_line().map_err(|err| {
                HookError::failed(format!("{}: {err} (after {after})", self.server))
            })?;
            if line.is_empty() {
                return Err(HookError::failed(format!(
                    "{} closed the connection (after {after})",
                    self.server
                )));
            }
            text.push_str(&line);
            // "250-more" continues, "250 last" ends.
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        let got: u16 = text.get(0..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        if got != code {
            return Err(HookError::failed(format!(
                "{} answered `{}` to {after} (expected {code})",
                self.server,
                text.trim()
            )));
        }
        Ok(text)
    }

    fn send(&mut self, line: &str, code: u16) -> Result<String, HookError> {
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|err| HookError::failed(format!("{}: {err}", self.server)))?;
        let verb = line.split(':').next().unwrap_or(line).to_string();
        self.expect(code, &verb)
    }

    fn deliver(self, params: &Params, message: &str) -> Result<(), HookError> {
        let mut this = self.hello(params)?;
        this.authenticate(params)?;
        this.transfer(params, message)
    }

    fn transfer(mut self, params: &Params, message: &str) -> Result<(), HookError> {
        self.send(&format!("MAIL FROM:<{}>", address(&params.from)), 250)?;
        for to in &params.to {
            self.send(&format!("RCPT TO:<{}>", address(to)), 250)?;
        }
        self.send("DATA", 354)?;
        // Dot-stuffing: a line starting with "." gets another.
        let mut data = String::with_capacity(message.len() + 16);
        for line in message.split("\r\n") {
            if line.starts_with('.') {
                data.push('.');
            }
            data.push_str(line);
            data.push_str("\r\n");
        }
        data.push_str(".\r\n");
        self.stream
            .write_all(data.as_bytes())
            .map_err(|err| HookError::failed(format!("{}: {err}", self.server)))?;
        self.expect(250, "the message")?;
        let _ = self.send("QUIT", 221);
        Ok(())
    }
}

/// The rustls client configuration: RustCrypto's provider, the Mozilla
/// roots or the given CA file.
fn tls_config(params: &Params) -> Result<Arc<rustls::ClientConfig>, HookError> {
    let mut roots = rustls::RootCertStore::empty();
    match &params.ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|err| {
                HookError::failed(format!(
                    "cannot read ca_file {path}: {err} (grant its directory read-only in grants.paths)"
                ))
            })?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert =
                    cert.map_err(|err| HookError::failed(format!("ca_file {path}: {err}")))?;
                roots
                    .add(cert)
                    .map_err(|err| HookError::failed(format!("ca_file {path}: {err}")))?;
            }
        }
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls_rustcrypto::provider()))
            .with_safe_default_protocol_versions()
            .map_err(|err| HookError::failed(format!("TLS setup: {err}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Standard base64 (AUTH PLAIN's encoding).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The bare address of "Name <addr>" or "addr".
fn address(mailbox: &str) -> &str {
    match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(start), Some(end)) if start < end => &mailbox[start + 1..end],
        _ => mailbox.trim(),
    }
}

struct Email;

impl Plugin for Email {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "email".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Emails rewind events over SMTP or through a sendmail-style command".into(),
            capabilities: Capabilities {
                exec: vec!["<params.command, for transport = command>".into()],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

impl Notify for Email {
    fn notify(ctx: &Context, event: &Event) -> Result<(), HookError> {
        let params: Params = ctx.params()?;
        if params.to.is_empty() {
            return Err(HookError::invalid_input("params.to lists no recipients"));
        }
        let message = message(&params, event);
        match params.transport {
            Transport::Smtp => Smtp::connect(&params)?.deliver(&params, &message),
            Transport::Command => {
                let Some((program, args)) =
                    params.command.as_deref().and_then(<[String]>::split_first)
                else {
                    return Err(HookError::invalid_input(
                        "transport = \"command\" needs params.command, e.g. [\"sendmail\", \"-t\", \"-i\"]",
                    ));
                };
                Command::new(program.clone())
                    .args(args.iter().cloned())
                    .stdin(message.into_bytes())
                    .timeout(Duration::from_millis(params.timeout_ms))
                    .run()?;
                Ok(())
            }
        }
    }
}

rewind_sdk::export_plugin!(Email: notify);
