//! The database plugins against real servers: PostgreSQL and MariaDB
//! started on loopback by the test, SQLite files, all driven through the
//! `rewind` binary.

use crate::common::{
    Project, files_table, health_file_table, pin, postgres_table, release_symlink_table,
};
use crate::servers::{Mariadb, PASSWORD, Postgres};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------- postgres

fn seed_postgres(pg: &Postgres) {
    pg.sql("postgres", "create database shop");
    pg.sql(
        "shop",
        "create table customers (id int primary key, name text not null, email text);
         insert into customers select i, 'customer ' || i, 'c' || i || '@example.com' from generate_series(1, 2000) i;
         create table orders (id serial primary key, customer_id int references customers(id), amount numeric(10,2), note text, created timestamptz default '2026-01-01');
         insert into orders (customer_id, amount, note) select 1 + i % 2000, (i * 37 % 10000) / 100.0, repeat('x', i % 50) from generate_series(1, 5000) i;
         create index orders_customer on orders (customer_id);",
    );
}

fn postgres_project(pg: &Postgres, extra_params: &str) -> Project {
    let mut project = Project::new(&format!(
        r#"{db}
[chains]
backup = ["db"]
rollback = ["db"]

[guard]
health = ["db"]
retries = 0
"#,
        db = postgres_table("db", pg, "shop", extra_params),
    ));
    project.set_env("PGPASSWORD", PASSWORD);
    project
}

#[test]
fn postgres_backup_mutate_rollback_restores_identical_data() {
    let pg = Postgres::start();
    seed_postgres(&pg);
    let project = postgres_project(&pg, "");
    let before = pg.fingerprint("shop");
    assert!(before.contains("orders: 5000"), "{before}");

    let backup = project.json(&["backup", "--json"], 0);
    let names: Vec<&str> = backup["steps"][0]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dump", "state"]);

    // A deploy's "migration" and some damage.
    pg.sql(
        "shop",
        "alter table orders add column coupon text;
         update orders set amount = amount * 2 where id % 3 = 0;
         delete from orders where id > 4000;
         drop table customers cascade;",
    );
    assert_ne!(pg.fingerprint("shop"), before);

    let result = project.json(&["rollback", "--yes", "--json"], 0);
    assert_eq!(result["run"]["status"], "succeeded", "{result:#}");
    assert_eq!(pg.fingerprint("shop"), before);

    // Health of the instance through the binary.
    let health = project.json(&["health", "--json"], 0);
    assert_eq!(health["healthy"], true);
    assert!(
        health["steps"][0]["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("PostgreSQL 1"),
        "{health:#}"
    );
}

#[test]
fn postgres_recreate_mode_removes_tables_created_after_the_backup() {
    let pg = Postgres::start();
    seed_postgres(&pg);
    let project = postgres_project(&pg, ", mode = \"recreate\"");
    let before = pg.fingerprint("shop");
    project.json(&["backup", "--json"], 0);
    pg.sql(
        "shop",
        "create table new_feature (id int); insert into new_feature values (1);",
    );
    project.json(&["rollback", "--quick", "--yes", "--json"], 0);
    assert_eq!(pg.fingerprint("shop"), before);

    // Into another database, leaving the original alone.
    let copy = postgres_project(
        &pg,
        ", mode = \"recreate\", restore_database = \"shop_copy\"",
    );
    copy.json(&["backup", "--json"], 0);
    pg.sql("shop", "delete from orders");
    copy.json(&["rollback", "--quick", "--yes", "--json"], 0);
    assert_eq!(pg.fingerprint("shop_copy"), before);
    assert!(pg.fingerprint("shop").contains("orders: 0"));
}

#[test]
fn postgres_wrong_password_and_unreachable_server_are_clear_errors() {
    let pg = Postgres::start();
    seed_postgres(&pg);
    let mut project = postgres_project(&pg, "");
    project.set_env("PGPASSWORD", "wrong");
    let out = project.rewind(&["backup", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["status"], "failed");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("password authentication failed"), "{error}");
    // The failed run is recorded, and is never offered for a rollback.
    let out = project.rewind(&["rollback", "--yes"]);
    assert!(text(&out.stderr).contains("no backup to roll back to"));

    project.set_env("PGPASSWORD", PASSWORD);
    drop(pg);
    let health = project.json(&["health", "--json"], 1);
    let detail = health["steps"][0]["checks"][0]["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("Connection refused") || detail.contains("could not connect"),
        "{detail}"
    );
}

#[test]
fn postgres_restore_without_the_exec_grant_is_denied_naming_the_grant() {
    let pg = Postgres::start();
    seed_postgres(&pg);
    let project = postgres_project(&pg, "");
    project.json(&["backup", "--json"], 0);
    let bin = pg.bin.display().to_string();
    let config = std::fs::read_to_string(project.root().join("rewind.toml")).unwrap();
    std::fs::write(
        project.root().join("rewind.toml"),
        config.replace(&format!(", \"{bin}/pg_restore **\""), ""),
    )
    .unwrap();
    let out = project.rewind(&["rollback", "--quick", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(4));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = result["run"]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("grants.exec = [\"{bin}/pg_restore")),
        "{error}"
    );
}

// ---------------------------------------------------------------- mariadb

fn seed_mariadb(db: &Mariadb) {
    db.sql("mysql", "create database shop");
    db.sql(
        "shop",
        "create table customers (id int primary key, name varchar(100) not null, email varchar(100));
         create table orders (id int auto_increment primary key, customer_id int, amount decimal(10,2), note text, index (customer_id));
         insert into customers select seq, concat('customer ', seq), concat('c', seq, '@example.com') from seq_1_to_2000;
         insert into orders (customer_id, amount, note) select 1 + seq % 2000, (seq * 37 % 10000) / 100.0, repeat('x', seq % 50) from seq_1_to_5000;
         create trigger orders_note before insert on orders for each row set new.note = coalesce(new.note, 'none');
         create procedure order_count() select count(*) from orders;",
    );
}

fn mariadb_project(db: &Mariadb, extra_params: &str) -> Project {
    let mut project = Project::new(&format!(
        r#"[plugins.db]
{pin}
grants.exec = ["mariadb-dump **", "mariadb **"]
grants.env = ["MYSQL_PWD"]
params = {{ database = "shop", port = {port}, user = "root", password_env = "MYSQL_PWD", dump_program = "mariadb-dump", client_program = "mariadb"{extra_params} }}

[chains]
backup = ["db"]
rollback = ["db"]
"#,
        pin = pin("mysql"),
        port = db.port,
    ));
    project.set_env("MYSQL_PWD", PASSWORD);
    project
}

#[test]
fn mariadb_backup_mutate_rollback_restores_identical_data_routines_and_triggers() {
    crate::servers::with_mariadb(|db| {
        seed_mariadb(db);
        let project = mariadb_project(db, "");
        let before = db.fingerprint("shop");
        assert!(before.contains("orders: 5000"), "{before}");

        project.json(&["backup", "--json"], 0);
        db.sql(
            "shop",
            "alter table orders add column coupon varchar(20);
         update orders set amount = amount * 2 where id % 3 = 0;
         delete from orders where id > 4000;
         drop table customers;
         drop trigger orders_note;
         drop procedure order_count;",
        );
        assert_ne!(db.fingerprint("shop"), before);

        let result = project.json(&["rollback", "--yes", "--json"], 0);
        assert_eq!(result["run"]["status"], "succeeded", "{result:#}");
        assert_eq!(db.fingerprint("shop"), before);
        assert_eq!(
            db.sql(
                "shop",
                "select count(*) from information_schema.triggers where trigger_schema = 'shop'"
            ),
            "1"
        );
        assert_eq!(db.sql("shop", "call order_count()"), "5000");
    });
}

#[test]
fn mariadb_recreate_mode_and_wrong_password() {
    crate::servers::with_mariadb(|db| {
        seed_mariadb(db);
        let mut project = mariadb_project(db, ", mode = \"recreate\"");
        let before = db.fingerprint("shop");
        project.json(&["backup", "--json"], 0);
        db.sql("shop", "create table new_feature (id int)");
        project.json(&["rollback", "--quick", "--yes", "--json"], 0);
        assert_eq!(db.fingerprint("shop"), before);

        project.set_env("MYSQL_PWD", "wrong");
        let run = project.json(&["backup", "--json"], 1);
        let error = run["error"].as_str().unwrap();
        assert!(error.contains("Access denied"), "{error}");
    });
}

// ---------------------------------------------------------------- sqlite

fn sqlite(path: &std::path::Path, sql: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(path)
        .arg(sql)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

#[test]
fn sqlite_backup_of_a_live_database_and_restore() {
    let project = Project::new("");
    let data = project.root().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("app.db");
    sqlite(
        &db,
        "pragma journal_mode=wal;
         create table orders (id integer primary key, amount real, note text);
         with recursive n(i) as (select 1 union all select i + 1 from n where i < 5000)
         insert into orders select i, i * 0.37, printf('order %d', i) from n;",
    );
    let fingerprint = |db: &std::path::Path| {
        sqlite(
            db,
            "select count(*) || ' ' || sum(amount) || ' ' || group_concat(note, ',') from (select * from orders order by id); select sql from sqlite_master order by name;",
        )
    };
    let before = fingerprint(&db);
    project.write(&format!(
        r#"[plugins.app-db]
{pin}
grants.paths = ["{data}"]
grants.exec = ["sqlite3 **"]
params = {{ path = "{db}" }}

[chains]
backup = ["app-db"]
rollback = ["app-db"]
"#,
        pin = pin("sqlite"),
        data = data.display(),
        db = db.display(),
    ));

    // A writer holds the database open in WAL mode during the backup.
    let mut writer = std::process::Command::new("sqlite3")
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = writer.stdin.as_mut().unwrap();
        writeln!(
            stdin,
            "begin; insert into orders values (99999, 1, 'uncommitted');"
        )
        .unwrap();
        stdin.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let backup = project.json(&["backup", "--json"], 0);
    drop(writer.stdin.take());
    writer.wait().unwrap();
    assert_eq!(backup["steps"][0]["artifacts"][0]["name"], "dump");

    sqlite(
        &db,
        "delete from orders where id > 100; alter table orders add column coupon text; create table extra (x);",
    );
    assert_ne!(fingerprint(&db), before);
    project.json(&["rollback", "--quick", "--yes", "--json"], 0);
    assert_eq!(
        fingerprint(&db),
        before,
        "uncommitted rows were not in the backup"
    );
    assert_eq!(sqlite(&db, "pragma integrity_check"), "ok");
}

// ---------------------------------------------------------------- the seeds

/// The runbooks' scenario end to end: `rewind guard` of a deploy that runs
/// a schema migration on PostgreSQL, switches `current` to a new release
/// and rewrites the config; the new release fails its health check; the
/// automatic rollback restores code, config and data, restarts the
/// service, and the webhook receiver gets ROLLBACK_SUCCESS with details.
#[test]
fn the_seeds_scenario_guarded_deploy_rolls_back_code_data_config_and_restarts() {
    use crate::common::HttpServer;

    let pg = Postgres::start();
    seed_postgres(&pg);
    let receiver = HttpServer::start(200, "ok");
    let smtp = crate::servers::SmtpServer::start(None);
    let mut project = Project::new("");
    let app = project.root().join("app");
    for (release, health) in [("v41", "ok"), ("v42", "broken")] {
        std::fs::create_dir_all(app.join("releases").join(release)).unwrap();
        std::fs::write(app.join("releases").join(release).join("HEALTH"), health).unwrap();
    }
    std::os::unix::fs::symlink("releases/v41", app.join("current")).unwrap();
    std::fs::create_dir_all(app.join("shared")).unwrap();
    std::fs::write(
        app.join("shared/.env"),
        "APP_VERSION=41\nDB_DATABASE=shop\n",
    )
    .unwrap();
    let restarted = project.root().join("restarted.log");
    project.write(&format!(
        r#"{code}
{config}
{db}
[plugins.php-fpm]
{service}
grants.exec = ["sh -c *"]
params = {{ commands = [{{ run = ["sh", "-c", "echo restarted >> {restarted}"], timeout_s = 5 }}] }}

{web}
[plugins.ops]
{webhook}
grants.http = ["{origin}"]
params = {{ url = "{url}" }}
limits = {{ timeout_s = 5 }}

[plugins.mail]
{email}
grants.tcp = ["127.0.0.1:{smtp_port}"]
params = {{ from = "rewind@shop.example", to = ["oncall@shop.example"], port = {smtp_port} }}
limits = {{ timeout_s = 10 }}

[chains]
backup = ["db", "code", "config"]
rollback = ["code", "config", "db", "php-fpm"]

[guard]
health = ["web"]
retries = 1
delay_s = 0

[notify]
sinks = ["ops", "mail"]
"#,
        code = release_symlink_table("code", &app),
        config = files_table("config", &app.join("shared"), &[&app.join("shared/.env")]),
        db = postgres_table("db", &pg, "shop", ""),
        web = health_file_table("web", &app.join("current/HEALTH"), Some("current/HEALTH")),
        service = pin("service"),
        webhook = pin("webhook"),
        email = pin("email"),
        smtp_port = smtp.port,
        restarted = restarted.display(),
        origin = receiver.origin(),
        url = receiver.url("/deploys"),
    ));
    project.set_env("PGPASSWORD", PASSWORD);
    let data_before = pg.fingerprint("shop");

    let bin = pg.bin.display();
    let deploy = format!(
        "set -e; cd {app}; \
         PGPASSWORD={PASSWORD} {bin}/psql -h 127.0.0.1 -p {port} -U postgres -d shop -c 'alter table orders add column coupon text; update orders set amount = 0'; \
         printf 'APP_VERSION=42\\nDB_DATABASE=shop\\n' > shared/.env; \
         ln -sfn releases/v42 current.new && mv -T current.new current",
        app = app.display(),
        port = pg.port,
    );
    let out = project.rewind(&["guard", "--json", "--", "sh", "-c", &deploy]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "deploy failed and was rolled back\n{}",
        text(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["outcome"], "rolled-back");

    assert_eq!(
        std::fs::read_link(app.join("current")).unwrap(),
        std::path::Path::new("releases/v41")
    );
    assert_eq!(
        std::fs::read_to_string(app.join("shared/.env")).unwrap(),
        "APP_VERSION=41\nDB_DATABASE=shop\n"
    );
    assert_eq!(pg.fingerprint("shop"), data_before);
    assert_eq!(std::fs::read_to_string(&restarted).unwrap(), "restarted\n");

    let outcome = receiver
        .recorded()
        .into_iter()
        .map(|r| r.json())
        .find(|e| e["kind"] == "ROLLBACK_SUCCESS" && e["fields"]["run_kind"] == "guard")
        .expect("the guard's ROLLBACK_SUCCESS reached the receiver");
    assert_eq!(outcome["fields"]["outcome"], "rolled-back");
    assert_eq!(outcome["fields"]["release"], "v41");
    assert!(
        outcome["message"].as_str().unwrap().contains("unhealthy"),
        "{outcome:#}"
    );
    let mails = smtp.messages();
    let mail = mails
        .iter()
        .find(|m| m.contains("X-Rewind-Event: ROLLBACK_SUCCESS") && m.contains("run_kind: guard"))
        .unwrap_or_else(|| panic!("no ROLLBACK_SUCCESS mail for the guard: {mails:#?}"));
    assert!(mail.contains("release: v41"), "{mail}");
    assert!(mail.contains("outcome: rolled-back"), "{mail}");
}
