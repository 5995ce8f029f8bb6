//! Notification sinks through the `rewind` binary: what Slack and webhook
//! receivers get (checked field by field, signature verified), and sinks
//! that fail or hang never fail the rollback.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::common::{HttpServer, Project, pin};
use crate::servers::SmtpServer;

const SECRET: &str = "hook-secret-123";

/// A project whose backup and revert are trivial commands, so the
/// notifications are what is under test.
fn project(sinks: &str, sink_blocks: &str) -> Project {
    let mut project = Project::new(&format!(
        r#"[plugins.app]
{command}
grants.exec = ["echo v1", "true"]
params = {{ backup = ["echo", "v1"], revert = ["true"] }}

{sink_blocks}

[chains]
backup = ["app"]
rollback = ["app"]

[notify]
sinks = [{sinks}]
"#,
        command = pin("command"),
    ));
    project.set_env("WEBHOOK_SECRET", SECRET);
    project
}

fn slack_block(server: &HttpServer) -> String {
    format!(
        r#"[plugins.slack]
{pin}
grants.http = ["{origin}"]
params = {{ webhook_url = "{url}", timeout_ms = 2000 }}
limits = {{ timeout_s = 5 }}
"#,
        pin = pin("slack"),
        origin = server.origin(),
        url = server.url("/services/T000/B000/XXXX"),
    )
}

fn webhook_block(server: &HttpServer) -> String {
    format!(
        r#"[plugins.hook]
{pin}
grants.http = ["{origin}"]
grants.env = ["WEBHOOK_SECRET"]
params = {{ url = "{url}", secret_env = "WEBHOOK_SECRET", timeout_ms = 2000 }}
limits = {{ timeout_s = 5 }}
"#,
        pin = pin("webhook"),
        origin = server.origin(),
        url = server.url("/rewind-events"),
    )
}

#[test]
fn slack_and_webhook_receive_the_rollback_with_its_details() {
    let slack = HttpServer::start(200, "ok");
    let hook = HttpServer::start(204, "");
    let project = project(
        "\"slack\", \"hook\"",
        &format!("{}\n{}", slack_block(&slack), webhook_block(&hook)),
    );
    let backup = project.json(&["backup", "--json"], 0);
    let rollback = project.json(&["rollback", "--yes", "--json"], 0);
    let run_id = rollback["run"]["id"].as_str().unwrap();

    // Slack: a start and an outcome message per run, the outcome yellow.
    let messages: Vec<serde_json::Value> = slack.recorded().iter().map(|r| r.json()).collect();
    assert_eq!(messages.len(), 4, "{messages:#?}");
    let outcome = messages
        .iter()
        .find(|m| {
            m["text"]
                .as_str()
                .unwrap()
                .starts_with("[ROLLBACK_SUCCESS]")
        })
        .expect("a ROLLBACK_SUCCESS message");
    let attachment = &outcome["attachments"][0];
    assert_eq!(attachment["color"], "#ecb22e");
    let fields: Vec<(String, String)> = attachment["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["title"].as_str().unwrap().to_string(),
                f["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
    };
    assert_eq!(field("Project"), "shop");
    assert_eq!(field("Environment"), "test");
    assert_eq!(field("Run"), run_id);
    assert_eq!(field("Restored backup"), backup["id"].as_str().unwrap());
    assert!(field("Duration").ends_with(" s"));
    let backup_done = messages
        .iter()
        .find(|m| {
            m["text"]
                .as_str()
                .unwrap()
                .starts_with("[SUCCESS] backup completed")
        })
        .expect("the backup's outcome");
    assert_eq!(backup_done["attachments"][0]["color"], "#2eb67d");

    // Webhook: the event as JSON, signed.
    let requests = hook.recorded();
    let outcome = requests
        .iter()
        .find(|r| r.header("x-rewind-event") == Some("ROLLBACK_SUCCESS"))
        .expect("the rollback outcome was posted");
    assert_eq!(outcome.method, "POST");
    assert_eq!(outcome.path, "/rewind-events");
    assert_eq!(outcome.header("content-type"), Some("application/json"));
    let event = outcome.json();
    assert_eq!(event["kind"], "ROLLBACK_SUCCESS");
    assert_eq!(event["run_id"], run_id);
    assert_eq!(event["project"], "shop");
    assert_eq!(event["fields"]["source_run"], backup["id"]);
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&outcome.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        outcome.header("x-rewind-signature"),
        Some(expected.as_str())
    );
    // A tampered body would not verify.
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&[outcome.body.as_slice(), b" "].concat());
    assert_ne!(
        format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        expected
    );
}

#[test]
fn a_failing_or_hanging_sink_is_reported_and_never_fails_the_rollback() {
    let broken = HttpServer::start(500, "internal error");
    let hanging = HttpServer::start_with_delay(200, "late", Duration::from_secs(30));
    let project = project(
        "\"slack\", \"hook\"",
        &format!("{}\n{}", slack_block(&broken), webhook_block(&hanging)),
    );
    project.json(&["backup", "--json"], 0);
    let started = Instant::now();
    let out = project.rewind(&["rollback", "--yes", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Bounded by the sinks' own limits, not by the hanging receiver.
    assert!(started.elapsed() < Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notify sink `slack` failed") && stderr.contains("HTTP 500"),
        "{stderr}"
    );
    assert!(stderr.contains("notify sink `hook` failed"), "{stderr}");
    let events = std::fs::read_to_string(project.root().join("store/events.jsonl")).unwrap();
    assert!(events.contains("\"ROLLBACK_SUCCESS\""), "{events}");
    assert!(
        events.contains("notify sink `slack` failed"),
        "the failure is in the event log: {events}"
    );
}

// ---------------------------------------------------------------- email

fn email_block(params: &str, grants: &str) -> String {
    format!(
        r#"[plugins.mail]
{pin}
{grants}
params = {{ from = "rewind <rewind@shop.example>", to = ["oncall@shop.example", "Lead <lead@shop.example>"], {params} }}
limits = {{ timeout_s = 10 }}
"#,
        pin = pin("email"),
    )
}

fn rollback_outcome(messages: &[String]) -> &String {
    messages
        .iter()
        .find(|m| m.contains("X-Rewind-Event: ROLLBACK_SUCCESS"))
        .unwrap_or_else(|| panic!("no ROLLBACK_SUCCESS mail in {messages:#?}"))
}

#[test]
fn email_over_smtp_to_a_granted_relay_says_what_happened_and_what_to_do() {
    let smtp = SmtpServer::start(None);
    let project = project(
        "\"mail\"",
        &email_block(
            &format!("host = \"127.0.0.1\", port = {}", smtp.port),
            &format!("grants.tcp = [\"127.0.0.1:{}\"]", smtp.port),
        ),
    );
    let backup = project.json(&["backup", "--json"], 0);
    let out = project.rewind(&["rollback", "--yes", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let rollback: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let messages = smtp.messages();
    assert_eq!(messages.len(), 4, "start and outcome of two runs: {stderr}");
    let mail = rollback_outcome(&messages);
    let run_id = rollback["run"]["id"].as_str().unwrap();
    assert!(
        mail.contains(&format!(
            "Subject: [rewind] ROLLBACK_SUCCESS: rolled back to {} - shop (test)",
            backup["id"].as_str().unwrap()
        )),
        "{mail}"
    );
    assert!(
        mail.contains("To: oncall@shop.example, Lead <lead@shop.example>"),
        "{mail}"
    );
    assert!(mail.contains(&format!("Run:         {run_id}")), "{mail}");
    assert!(mail.contains(&format!("rewind history {run_id}")), "{mail}");
    assert!(mail.contains("The previous state is live again"), "{mail}");
    let date = mail
        .lines()
        .find(|l| l.starts_with("Date: "))
        .expect("a Date header");
    let weekday = jiff::Timestamp::now().strftime("%a, %d %b %Y").to_string();
    assert!(date.contains(&weekday), "{date} vs {weekday}");
}

#[test]
fn email_to_a_relay_that_is_not_granted_is_refused_and_the_rollback_still_succeeds() {
    let smtp = SmtpServer::start(None);
    let project = project(
        "\"mail\"",
        &email_block(
            &format!("host = \"127.0.0.1\", port = {}", smtp.port),
            "grants.tcp = [\"127.0.0.1:1\"]",
        ),
    );
    project.json(&["backup", "--json"], 0);
    let out = project.rewind(&["rollback", "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notify sink `mail` failed")
            && stderr.contains(&format!("grants.tcp = [\"127.0.0.1:{}\"]", smtp.port)),
        "{stderr}"
    );
    assert!(smtp.messages().is_empty());
}

/// A test CA and a server certificate for 127.0.0.1 that it signed:
/// (dir, ca, cert, key).
fn certificate() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let dir = tempfile::tempdir().unwrap();
    let script = "set -e
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=rewind-test-ca -keyout ca.key -out ca.pem
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out leaf.csr
printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile leaf.ext -out cert.pem";
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = |name: &str| dir.path().join(name);
    let (ca, cert, key) = (path("ca.pem"), path("cert.pem"), path("key.pem"));
    (dir, ca, cert, key)
}

#[test]
fn email_over_smtp_with_starttls_checks_the_certificate() {
    let (certs, ca, cert, key) = certificate();
    // This server refuses mail until STARTTLS.
    let smtp = SmtpServer::start(Some((&cert, &key)));
    let block = |params: &str| {
        email_block(
            &format!("port = {}, {params}", smtp.port),
            &format!(
                "grants.tcp = [\"127.0.0.1:{}\"]\ngrants.paths = [\"ro:{}\"]",
                smtp.port,
                certs.path().display()
            ),
        )
    };
    let run_rollback = |sink_block: &str| {
        let project = project("\"mail\"", sink_block);
        project.json(&["backup", "--json"], 0);
        let out = project.rewind(&["rollback", "--yes"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "a sink never fails the rollback"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let stderr = run_rollback(&block(&format!(
        "starttls = true, ca_file = \"{}\"",
        ca.display()
    )));
    assert!(!stderr.contains("failed"), "{stderr}");
    let mail = rollback_outcome(&smtp.messages()).clone();
    assert!(
        mail.contains("Subject: [rewind] ROLLBACK_SUCCESS"),
        "{mail}"
    );

    // Without STARTTLS this relay refuses, and the sink says why.
    let stderr = run_rollback(&block(&format!("ca_file = \"{}\"", ca.display())));
    assert!(
        stderr.contains("notify sink `mail` failed") && stderr.contains("STARTTLS"),
        "{stderr}"
    );
    // A certificate the plugin was not told to trust is rejected.
    let stderr = run_rollback(&block("starttls = true"));
    assert!(
        stderr.contains("notify sink `mail` failed")
            && stderr.to_lowercase().contains("certificate"),
        "{stderr}"
    );
}

#[test]
fn email_through_curl_with_starttls() {
    let (_certs, ca, cert, key) = certificate();
    // This server refuses mail until STARTTLS.
    let smtp = SmtpServer::start(Some((&cert, &key)));
    let url = format!("smtp://127.0.0.1:{}", smtp.port);
    let command = format!(
        r#"transport = "command", command = ["curl", "--silent", "--show-error", "--ssl-reqd", "--cacert", "{cert}", "--url", "{url}", "--mail-from", "rewind@shop.example", "--mail-rcpt", "oncall@shop.example", "--upload-file", "-"]"#,
        cert = ca.display()
    );
    let project = project(
        "\"mail\"",
        &email_block(
            &command,
            &format!(
                "grants.exec = [\"curl --silent --show-error --ssl-reqd --cacert {} --url {url} **\"]",
                ca.display()
            ),
        ),
    );
    project.json(&["backup", "--json"], 0);
    let out = project.rewind(&["rollback", "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let messages = smtp.messages();
    let mail = rollback_outcome(&messages);
    assert!(
        mail.contains("Subject: [rewind] ROLLBACK_SUCCESS"),
        "{mail}"
    );
}
