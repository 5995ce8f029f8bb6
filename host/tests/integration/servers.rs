//! Real database servers for the tests: PostgreSQL and MariaDB, each in a
//! temp dir on a free 127.0.0.1 port, stopped when dropped. `tests/run`
//! installs the Debian packages; a missing server binary fails the test
//! with the command that installs it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "s3cret-test-pw";

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Run `program` as `user` when we are root (servers refuse to run as root).
fn as_user(user: &str, program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", user, "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn check(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn chown(path: &Path, user: &str) {
    if is_root() {
        check(
            Command::new("chown")
                .args(["-R", &format!("{user}:{user}")])
                .arg(path)
                .output()
                .unwrap(),
            "chown",
        );
    }
}

/// A PostgreSQL server with password authentication.
pub struct Postgres {
    pub bin: PathBuf,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|dirs| {
                dirs.flatten()
                    .map(|d| d.path().join("bin"))
                    .filter(|b| b.join("pg_ctl").is_file())
                    .max()
            })
            .expect(
                "PostgreSQL is not installed: run `bash tests/run` (apt-get install postgresql)",
            );
        let dir = tempfile::Builder::new()
            .prefix("rewind-pg-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("pw"), PASSWORD).unwrap();
        chown(dir.path(), "postgres");
        let data = dir.path().join("data");
        check(
            as_user("postgres", &bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=scram-sha-256", "--no-sync"])
                .arg(format!("--pwfile={}", dir.path().join("pw").display()))
                .output()
                .unwrap(),
            "initdb",
        );
        let port = free_port();
        check(
            as_user("postgres", &bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.path().join("log"))
                .arg("-o")
                .arg(format!(
                    "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off",
                    dir.path().display()
                ))
                .args(["-w", "start"])
                .output()
                .unwrap(),
            "pg_ctl start",
        );
        Postgres { bin, port, dir }
    }

    /// Run SQL in `database`; returns trimmed stdout (unaligned, no headers).
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let out = check(self.psql(database, sql), &format!("psql {sql}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn psql(&self, database: &str, sql: &str) -> Output {
        Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap()
    }

    /// Row count and an md5 of every row in key order, for each table of
    /// the public schema: equal fingerprints mean equal data.
    pub fn fingerprint(&self, database: &str) -> String {
        let tables = self.sql(
            database,
            "select string_agg(tablename, ',' order by tablename) from pg_tables where schemaname = 'public'",
        );
        let mut out = vec![format!("tables: {tables}")];
        for table in tables.split(',').filter(|t| !t.is_empty()) {
            out.push(self.sql(
                database,
                &format!(
                    "select '{table}: ' || count(*) || ' ' || coalesce(md5(string_agg(t::text, '|' order by t::text)), '-') from {table} t"
                ),
            ));
        }
        out.push(self.sql(
            database,
            "select 'columns: ' || string_agg(table_name || '.' || column_name || ':' || data_type, ',' order by table_name, ordinal_position) from information_schema.columns where table_schema = 'public'",
        ));
        out.join("\n")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_user("postgres", &self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// A MariaDB server whose root user has a password, on TCP.
pub struct Mariadb {
    pub port: u16,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Mariadb {
    /// A server of our own on a free port. A port is free when it is
    /// picked but may be taken before the server binds it (tests run in
    /// parallel); a server that then runs without its TCP port would leave
    /// the test talking to another test's server, so the server is asked
    /// over TCP which data directory it serves, and started again on
    /// another port if it is not ours.
    pub fn start() -> Mariadb {
        for _ in 0..5 {
            let db = Self::start_once();
            if db.serves_over_tcp() {
                return db;
            }
        }
        panic!("MariaDB could not get a TCP port of its own in 5 attempts");
    }

    fn serves_over_tcp(&self) -> bool {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1"])
            .arg(format!("--port={}", self.port))
            .args([
                "-u",
                "root",
                &format!("-p{PASSWORD}"),
                "-N",
                "-e",
                "SELECT @@datadir",
            ])
            .output()
            .unwrap();
        let served = String::from_utf8_lossy(&out.stdout);
        let ours = self.dir.path().join("data");
        out.status.success()
            && std::path::Path::new(served.trim().trim_end_matches('/')) == ours.as_path()
    }

    fn start_once() -> Mariadb {
        let server = ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect(
                "MariaDB is not installed: run `bash tests/run` (apt-get install mariadb-server)",
            );
        let dir = tempfile::Builder::new()
            .prefix("rewind-mariadb-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let user = if is_root() { "mysql" } else { "" };
        let mut install = Command::new("mariadb-install-db");
        install
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if is_root() {
            chown(dir.path(), "mysql");
            install.arg(format!("--user={user}"));
        }
        check(install.output().unwrap(), "mariadb-install-db");
        let port = free_port();
        let socket = dir.path().join("sock");
        let mut server_cmd = Command::new(server);
        server_cmd
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .args(["--bind-address=127.0.0.1", &format!("--port={port}")])
            .arg("--innodb-flush-log-at-trx-commit=0")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap());
        if is_root() {
            server_cmd.arg(format!("--user={user}"));
        }
        let child = server_cmd.spawn().unwrap();
        let db = Mariadb { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        // Set the root password over the socket (unix_socket auth as root).
        loop {
            let out = Command::new("mariadb")
                .arg("--no-defaults")
                .arg(format!("--socket={}", socket.display()))
                .args(["-u", "root", "-e"])
                .arg(format!(
                    "ALTER USER 'root'@'localhost' IDENTIFIED BY '{PASSWORD}'; \
                     CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; \
                     GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
                ))
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "MariaDB did not start: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(db.dir.path().join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        db
    }

    pub fn sql(&self, database: &str, sql: &str) -> String {
        let out = check(self.mysql(database, sql), &format!("mariadb {sql}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn mysql(&self, database: &str, sql: &str) -> Output {
        // Digests below concatenate thousands of rows.
        let sql = format!("SET SESSION group_concat_max_len = 1000000000; {sql}");
        Command::new("mariadb")
            .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1"])
            .args(["-P", &self.port.to_string(), "-u", "root", "-N", "-B"])
            .args(["-D", database, "-e", &sql])
            .env("MYSQL_PWD", PASSWORD)
            .output()
            .unwrap()
    }

    /// Row count and a digest of every row, per table, plus the columns.
    pub fn fingerprint(&self, database: &str) -> String {
        let tables = self.sql(
            "information_schema",
            &format!(
                "select group_concat(table_name order by table_name) from tables where table_schema = '{database}'"
            ),
        );
        let mut out = vec![format!("tables: {tables}")];
        for table in tables.split(',').filter(|t| !t.is_empty() && *t != "NULL") {
            let columns = self.sql(
                "information_schema",
                &format!(
                    "select group_concat(column_name order by ordinal_position) from columns where table_schema = '{database}' and table_name = '{table}'"
                ),
            );
            out.push(format!("{table} columns: {columns}"));
            out.push(self.sql(
                database,
                &format!(
                    "select concat('{table}: ', count(*), ' ', coalesce(md5(group_concat(md5(concat_ws('|', {columns})) order by md5(concat_ws('|', {columns})) separator ',')), '-')) from `{table}`"
                ),
            ));
        }
        out.join("\n")
    }
}

impl Mariadb {
    /// Whether the server process has exited (it never does on its own).
    pub fn crashed(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// Run `scenario` against a fresh MariaDB server. When it fails because the
/// server process itself died (MariaDB 10.11's mariadbd has segfaulted here
/// under the full suite's load, in its own code: `dmesg` shows it), run it
/// once more on a new server; any other failure is the test's own.
pub fn with_mariadb(scenario: impl Fn(&Mariadb)) {
    for attempt in 1..=2 {
        let mut db = Mariadb::start();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&db)));
        match result {
            Ok(()) => return,
            Err(_) if attempt == 1 && db.crashed() => {
                eprintln!("mariadbd died during the scenario (a server crash); running it again");
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// aiosmtpd (a real SMTP server, from PyPI) storing mail in a Maildir.
pub struct SmtpServer {
    pub port: u16,
    maildir: tempfile::TempDir,
    child: std::process::Child,
}

impl SmtpServer {
    pub fn start(tls: Option<(&std::path::Path, &std::path::Path)>) -> SmtpServer {
        let python = std::env::var("REWIND_TEST_PYTHON").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/test-venv/bin/python"
            )
            .to_string()
        });
        let maildir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = std::process::Command::new(&python);
        cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]);
        if let Some((cert, key)) = tls {
            cmd.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
        }
        let child = cmd
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("{python} (aiosmtpd) does not run: {err}; run `bash tests/run`")
            });
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        SmtpServer {
            port,
            maildir,
            child,
        }
    }

    /// Every message received, as text.
    pub fn messages(&self) -> Vec<String> {
        let new = self.maildir.path().join("mail/new");
        let mut out: Vec<String> = std::fs::read_dir(new)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        out.sort();
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto's server (`moto[server]` from PyPI, in the test venv): S3,
/// CloudFront and IAM on a free 127.0.0.1 port, in memory, stopped when
/// dropped. The venv's boto3 is the reference client that sets up and
/// reads back its state ([`Moto::python`]).
pub struct Moto {
    pub port: u16,
    python: String,
    child: std::process::Child,
    /// The key boto3 signs with: any key until IAM auth is enabled.
    creds: std::sync::Mutex<(String, String)>,
}

/// Defines `s3`, `cf` and `iam` (boto3 clients of the server under test)
/// before each script [`Moto::python`] runs.
pub const MOTO_PRELUDE: &str = r#"
import json, os, sys, hashlib, boto3, botocore
_kw = dict(endpoint_url=os.environ["MOTO_URL"], region_name="us-east-1",
           aws_access_key_id=os.environ["MOTO_KEY"], aws_secret_access_key=os.environ["MOTO_SECRET"])
s3 = boto3.client("s3", **_kw)
cf = boto3.client("cloudfront", **_kw)
iam = boto3.client("iam", **_kw)
"#;

impl Moto {
    pub fn start() -> Moto {
        let python = std::env::var("REWIND_TEST_PYTHON").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/test-venv/bin/python"
            )
            .to_string()
        });
        // A port that another test's server takes before ours binds it
        // makes ours exit: then start again on another.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&python)
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
                .arg(port.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|err| {
                    panic!("{python} (moto) does not run: {err}; run `bash tests/run`")
                });
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut exited = false;
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if child.try_wait().unwrap().is_some() {
                    exited = true;
                    break;
                }
                assert!(Instant::now() < deadline, "moto's server did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_millis(200));
            if exited || child.try_wait().unwrap().is_some() {
                let _ = child.wait();
                continue;
            }
            return Moto {
                port,
                python,
                child,
                creds: std::sync::Mutex::new(("testing-key".into(), "testing-secret".into())),
            };
        }
        panic!(
            "moto's server did not start in 5 attempts (is moto[server] installed? `bash tests/run`)"
        );
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Run `script` with boto3 clients `s3`, `cf`, `iam` of this server;
    /// its stdout, trimmed. A failing script fails the test.
    pub fn python(&self, script: &str) -> String {
        let (key, secret) = self.creds.lock().unwrap().clone();
        let out = check(
            Command::new(&self.python)
                .arg("-c")
                .arg(format!("{MOTO_PRELUDE}\n{script}"))
                .env("MOTO_URL", self.url())
                .env("MOTO_KEY", key)
                .env("MOTO_SECRET", secret)
                .output()
                .unwrap(),
            "a boto3 script against moto",
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Make moto check every request's SigV4 signature against IAM: an
    /// IAM user with an allow-all policy and its key, which is returned
    /// (and used by [`Moto::python`] from now on).
    pub fn enable_iam_auth(&self) -> (String, String) {
        let out = self.python(
            r#"
iam.create_user(UserName="deployer")
iam.put_user_policy(UserName="deployer", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
k = iam.create_access_key(UserName="deployer")["AccessKey"]
import urllib.request
urllib.request.urlopen(urllib.request.Request(os.environ["MOTO_URL"] + "/moto-api/reset-auth",
    data=b"0", method="POST", headers={"Content-Type": "text/plain"})).read()
print(k["AccessKeyId"], k["SecretAccessKey"])
"#,
        );
        let (key, secret) = out.split_once(' ').expect("a key and a secret");
        let creds = (key.to_string(), secret.to_string());
        *self.creds.lock().unwrap() = creds.clone();
        creds
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CNCF distribution registry (Debian's `docker-registry`) on a free
/// 127.0.0.1 port, anonymous, plain HTTP, storing in a temp dir; stopped
/// when dropped.
pub struct OciRegistry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: std::process::Child,
}

impl OciRegistry {
    /// An anonymous registry: anyone pulls and pushes.
    pub fn start() -> OciRegistry {
        Self::start_with(None)
    }

    /// A registry that requires basic auth (htpasswd, as its docs set it
    /// up) for `user` with `password`, pulls included.
    pub fn start_with_password(user: &str, password: &str) -> OciRegistry {
        Self::start_with(Some((user, password)))
    }

    fn start_with(login: Option<(&str, &str)>) -> OciRegistry {
        let program = Path::new("/usr/bin/docker-registry");
        assert!(
            program.exists(),
            "{} is missing: apt-get install docker-registry (tests/run does)",
            program.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = login {
            // The registry reads bcrypt entries only.
            let hash = bcrypt::hash_with_result(password, 4)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoA);
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rewind-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, yaml).unwrap();
        let child = Command::new(program)
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        OciRegistry { dir, port, child }
    }

    /// `oci://127.0.0.1:PORT/<path>`.
    pub fn reference(&self, path: &str) -> String {
        format!("oci://127.0.0.1:{}/{path}", self.port)
    }

    /// The blob file with `digest` (`sha256:…`) in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
