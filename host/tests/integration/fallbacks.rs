//! Issue 12 against real applications: a rollback whose own schema step
//! fails still gets production back, through the database restore of the
//! same backup (`fallback = "db"`); without a fallback it stops and says
//! exactly how to continue; and `check` / `rollback --dry-run` fail
//! beforehand for what a rollback would fail on, naming the fix.
//!
//! The apps are the fixtures of frameworks.rs (a Laravel 8 app on Debian's
//! php-laravel-framework, a Django project, an Alembic project) on real
//! SQLite and PostgreSQL, driven through the `rewind` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{Project, health_file_table, pin, postgres_table, release_symlink_table};
use crate::frameworks::{AlembicProject, DjangoProject, LaravelApp, text};
use crate::servers::{PASSWORD, Postgres};

/// Each step record of a run as `instance hook status[ fallback_for X]`,
/// health left out.
fn steps(run: &Value) -> Vec<String> {
    run["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps in {run:#}"))
        .iter()
        .filter(|s| s["hook"] != "health")
        .map(|s| {
            let mut line = format!(
                "{} {} {}",
                s["instance"].as_str().unwrap(),
                s["hook"].as_str().unwrap(),
                s["status"].as_str().unwrap()
            );
            if let Some(failed) = s["fallback_for"].as_str() {
                line.push_str(&format!(" fallback_for {failed}"));
            }
            line
        })
        .collect()
}

/// The error a run recorded for its step `instance hook`.
fn step_error(run: &Value, instance: &str, hook: &str) -> String {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["instance"] == instance && s["hook"] == hook && s["status"] == "failed")
        .unwrap_or_else(|| panic!("no failed `{instance} {hook}` in {run:#}"))["error"]
        .to_string()
}

/// A run's manifest as the store keeps it (`store/runs/<id>.json`).
fn stored_run(project: &Project, id: &str) -> Value {
    let path = project.root().join(format!("store/runs/{id}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap())
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn said(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

fn assert_code(out: &Output, code: i32, what: &str) {
    assert_eq!(out.status.code(), Some(code), "{what}:\n{}", said(out));
}

// ------------------------------------------------------ laravel on sqlite

/// The case is only meaningful where Laravel's `dropColumn` on SQLite
/// fails: without doctrine/dbal (Debian's php-laravel-framework without
/// php-doctrine-dbal).
fn assert_doctrine_dbal_is_absent() {
    let out = Command::new("php")
        .arg("-r")
        .arg(
            "require '/usr/share/php/Illuminate/autoload.php'; \
             exit(class_exists('Doctrine\\DBAL\\Driver\\AbstractSQLiteDriver') ? 0 : 7);",
        )
        .output()
        .expect("php is not installed: run `bash tests/run`");
    assert_eq!(
        out.status.code(),
        Some(7),
        "Doctrine\\DBAL\\Driver\\AbstractSQLiteDriver is loadable here (php-doctrine-dbal is \
         installed?), so dropColumn on SQLite works and this test would not exercise a failing \
         revert; run it where doctrine/dbal is absent (apt-get remove php-doctrine-dbal)\n{}",
        said(&out)
    );
}

/// A release layout (`releases/v1`, `releases/v2`, `current`, `shared/.env`,
/// `shared/database.sqlite`) with v1 live and migrated, a few orders in the
/// database, and v2 adding a nullable column to `orders` (whose `down`,
/// `dropColumn`, needs doctrine/dbal on SQLite) and a `coupons` table.
struct LaravelReleases {
    _dir: tempfile::TempDir,
    base: PathBuf,
    v1: LaravelApp,
    v2: LaravelApp,
}

impl LaravelReleases {
    fn new() -> LaravelReleases {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let shared = base.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(
            shared.join(".env"),
            format!(
                "APP_ENV=production\nAPP_NAME=shop\nDB_CONNECTION=sqlite\nDB_DATABASE={}/database.sqlite\n",
                shared.display()
            ),
        )
        .unwrap();
        std::fs::write(shared.join("database.sqlite"), "").unwrap();
        let v1 = LaravelApp::new_release(&base, "v1");
        std::fs::write(v1.root.join("HEALTH"), "ok").unwrap();
        std::os::unix::fs::symlink("releases/v1", base.join("current")).unwrap();
        v1.artisan(&["migrate", "--force"]);
        let v2 = LaravelApp::new_release(&base, "v2");
        let releases = LaravelReleases {
            _dir: dir,
            base,
            v1,
            v2,
        };
        releases.sqlite(
            "insert into orders (customer, amount) values ('ada', 12.50), ('grace', 7), ('linus', 99.99)",
        );
        std::fs::write(releases.v2.root.join("HEALTH"), "broken").unwrap();
        releases.v2.add_migration(
            "2026_03_01_000000_add_x_to_orders",
            "Schema::table('orders', function (Blueprint $t) { $t->string('x')->nullable(); });",
            "Schema::table('orders', function (Blueprint $t) { $t->dropColumn('x'); });",
        );
        releases
            .v2
            .add_table("2026_03_02_000000_create_coupons_table", "coupons");
        releases
    }

    fn db(&self) -> PathBuf {
        self.base.join("shared/database.sqlite")
    }

    fn current(&self) -> PathBuf {
        self.base.join("current")
    }

    fn sqlite(&self, sql: &str) -> String {
        let out = Command::new("sqlite3")
            .arg(self.db())
            .arg(sql)
            .output()
            .unwrap();
        assert!(out.status.success(), "sqlite3 {sql}: {}", said(&out));
        text(&out.stdout)
    }

    /// The migrations table and schema (the frameworks.rs fingerprint),
    /// then the whole database as `sqlite3 .dump` writes it: schema and
    /// every row.
    fn state(&self) -> String {
        format!(
            "{}\n{}",
            self.v1.fingerprint_of(&self.db()),
            self.sqlite(".dump")
        )
    }

    /// The deploy: switch to v2, migrate, and change a row.
    fn deploy(&self) -> String {
        format!(
            "set -e; cd {base}; ln -sfn releases/v2 current.new && mv -T current.new current; \
             php current/artisan migrate --force; \
             sqlite3 shared/database.sqlite \"update orders set x = 'v2', amount = 0\"",
            base = self.base.display()
        )
    }

    /// db (sqlite: the database file), migrations (laravel, with `extra`
    /// lines), code (release-symlink), web (health: current/HEALTH).
    fn project(&self, migrations_extra: &str, rollback: &str) -> Project {
        let project = Project::new("");
        project.write(&format!(
            r#"[plugins.db]
{sqlite}
grants.paths = ["{shared}"]
grants.exec = ["sqlite3 **"]
params = {{ path = "{db}" }}

[plugins.migrations]
{laravel}
grants.exec = ["php {current}/artisan **"]
params = {{ app = "{current}", caches = [] }}
{migrations_extra}

{code}
{web}
[chains]
backup = ["db", "migrations", "code"]
rollback = [{rollback}]

[guard]
health = ["web"]
retries = 0
"#,
            sqlite = pin("sqlite"),
            laravel = pin("laravel"),
            code = release_symlink_table("code", &self.base),
            web = health_file_table("web", &self.current().join("HEALTH"), None),
            shared = self.base.join("shared").display(),
            db = self.db().display(),
            current = self.current().display(),
        ));
        project
    }

    fn assert_back_on_v1(&self, before: &str) {
        assert_eq!(
            std::fs::read_link(self.current()).unwrap(),
            Path::new("releases/v1")
        );
        assert_eq!(
            self.state(),
            before,
            "the database is byte for byte what it was before the deploy"
        );
        for release in [&self.v1, &self.v2] {
            assert!(
                !release.root.join("storage/framework/down").exists(),
                "{} is left in maintenance mode",
                release.root.display()
            );
        }
    }
}

/// Issue 12's trial, end to end: Laravel 8 on SQLite without doctrine/dbal.
/// The deploy adds a column and a table and fails its health check;
/// `artisan migrate:rollback` drops the table and then fails on
/// `dropColumn`; the database restore of the same backup (the migrations'
/// fallback) brings back the recorded database, the code step still runs,
/// and the guard reports a rollback (exit 3), not a failure.
#[test]
fn laravel_on_sqlite_without_doctrine_reaches_the_recorded_state_through_the_db_fallback() {
    assert_doctrine_dbal_is_absent();
    let app = LaravelReleases::new();
    let project = app.project("fallback = \"db\"", "\"migrations\", \"code\"");
    let before = app.state();
    assert!(before.contains("'grace'"), "the orders are there: {before}");

    // The plan says what happens if the migrations step fails.
    project.json(&["backup", "--json"], 0);
    let out = project.rewind(&["rollback", "--dry-run"]);
    assert_code(&out, 0, "rollback --dry-run");
    assert!(
        text(&out.stdout).contains("if it fails: fall back to db restore"),
        "{}",
        said(&out)
    );

    let out = project.rewind(&["guard", "--json", "--", "sh", "-c", &app.deploy()]);
    assert_code(&out, 3, "guard");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["outcome"], "rolled-back", "{result:#}");
    let rollback = &result["rollback"];
    assert_eq!(rollback["status"], "succeeded", "{rollback:#}");
    assert_eq!(
        steps(rollback),
        [
            "migrations revert failed",
            "db restore succeeded fallback_for migrations",
            "code revert succeeded",
        ]
    );
    let error = step_error(rollback, "migrations", "revert");
    assert!(
        error.contains("Doctrine\\\\DBAL\\\\Driver\\\\AbstractSQLiteDriver")
            || error.contains("AbstractSQLiteDriver"),
        "artisan's own error is recorded: {error}"
    );
    app.assert_back_on_v1(&before);
    // The store's manifest says the same as the output.
    let stored = stored_run(&project, rollback["id"].as_str().unwrap());
    assert_eq!(steps(&stored), steps(rollback));
    assert_eq!(stored["status"], "succeeded");
    let health = project.json(&["health", "--json"], 0);
    assert_eq!(health["healthy"], true, "{health:#}");
}

/// The same deploy without a fallback (`on_failure = "stop"`, db last in
/// the chain): the rollback stops at the migrations step with exit 4 and
/// says what ran, what failed and why, what did not run, and the command
/// that continues; `status` says it too; that command finishes the
/// rollback, whose database restore then brings back the recorded state.
#[test]
fn laravel_without_fallback_stops_names_the_command_and_resume_skip_finishes() {
    assert_doctrine_dbal_is_absent();
    let app = LaravelReleases::new();
    let project = app.project("on_failure = \"stop\"", "\"migrations\", \"code\", \"db\"");
    let before = app.state();

    let out = project.rewind(&["guard", "--", "sh", "-c", &app.deploy()]);
    assert_code(&out, 4, "guard");
    let report = said(&out);
    for expected in [
        "`migrations revert` failed",
        "AbstractSQLiteDriver",
        "not run: `code revert`, `db restore`",
        "rewind rollback --resume --skip migrations",
    ] {
        assert!(report.contains(expected), "no {expected:?} in:\n{report}");
    }
    // Stopped: still the broken release, the deploy's coupons table gone
    // but its column still there (half rolled back, as the issue found).
    assert_eq!(
        std::fs::read_link(app.current()).unwrap(),
        Path::new("releases/v2")
    );
    let schema = app.sqlite(".schema orders");
    assert!(schema.contains("\"x\""), "{schema}");

    let status = text(&project.rewind(&["status"]).stdout);
    let failed = project.json(&["status", "--json"], 0)["failed_rollback"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("status names no failed rollback:\n{status}"))
        .to_string();
    assert!(
        status.contains(&failed)
            && status.contains("migrations revert")
            && status.contains("`rewind rollback --resume --skip migrations`"),
        "{status}"
    );

    let resumed = project.json(
        &["rollback", "--resume", "--skip", "migrations", "--json"],
        0,
    );
    assert_eq!(resumed["run"]["resumes"], failed.as_str());
    assert_eq!(
        steps(&resumed["run"]),
        [
            "migrations revert skipped",
            "code revert succeeded",
            "db restore succeeded"
        ]
    );
    app.assert_back_on_v1(&before);
}

// ------------------------------------------------- django on postgresql

/// `[plugins.db]`: the postgres plugin on `pg`'s database `shop`, restored
/// with `mode = "recreate"`, so the restore is exactly the dump, whatever
/// the deploy added.
fn postgres_db(pg: &Postgres) -> String {
    postgres_table("db", pg, "shop", ", mode = \"recreate\"").to_string()
}

/// `rollback --yes`: exit 0, `instance`'s revert failed and `db`'s restore,
/// as its fallback, succeeded, and so did the run. `instance`'s error.
fn rolled_back_through_db(project: &Project, instance: &str) -> String {
    let result = project.json(&["rollback", "--yes", "--json"], 0);
    let run = &result["run"];
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(
        steps(run),
        [
            format!("{instance} revert failed"),
            format!("db restore succeeded fallback_for {instance}")
        ]
    );
    step_error(run, instance, "revert")
}

/// Django on PostgreSQL: the deploy adds a field and runs a data migration
/// without `reverse_code`, so Django refuses to unapply it; the postgres
/// restore of the same backup brings back every table, row and
/// `django_migrations` row.
#[test]
fn django_irreversible_migration_on_postgres_falls_back_to_the_db_restore() {
    let pg = Postgres::start();
    pg.sql("postgres", "create database shop");
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("PGPORT".to_string(), pg.port.to_string()),
        ("PGPASSWORD".to_string(), PASSWORD.to_string()),
        ("PGDATABASE".to_string(), "shop".to_string()),
    ];
    let django = DjangoProject::new(&dir.path().join("project"), env.clone());
    django.manage(&["migrate", "--noinput"]);
    pg.sql(
        "shop",
        "insert into shop_product (name) select 'product ' || i from generate_series(1, 50) i; \
         insert into billing_invoice (product_id, amount) select id, id * 1.5 from shop_product",
    );
    let django_migrations = || {
        pg.sql(
            "shop",
            "select string_agg(app || '.' || name || '@' || applied, ',' order by id) from django_migrations",
        )
    };
    let (before, migrations_before) = (pg.fingerprint("shop"), django_migrations());

    let mut project = Project::new("");
    project.write(&format!(
        "{migrations}fallback = \"db\"\n\n{db}\n[chains]\nbackup = [\"db\", \"migrations\"]\nrollback = [\"migrations\"]\n",
        migrations = django.instance("migrations", &django.root.join("manage.py")),
        db = postgres_db(&pg),
    ));
    for (k, v) in &env {
        project.set_env(k, v);
    }
    project.json(&["backup", "--json"], 0);

    // The deploy: a field, then a data migration that cannot be undone.
    django.add_migration(
        "shop",
        "0002_product_sku",
        "(\"shop\", \"0001_initial\")",
        "migrations.AddField(\"product\", \"sku\", models.CharField(max_length=32, default=\"\"))",
    );
    django.add_migration(
        "billing",
        "0002_reprice",
        "(\"billing\", \"0001_initial\"), (\"shop\", \"0002_product_sku\")",
        "migrations.RunPython(lambda apps, schema: apps.get_model(\"billing\", \"Invoice\").objects.update(amount=0))",
    );
    django.manage(&["migrate", "--noinput"]);
    assert_ne!(pg.fingerprint("shop"), before);

    let error = rolled_back_through_db(&project, "migrations");
    assert!(
        error.contains("irreversible") && error.contains("billing.0002_reprice"),
        "{error}"
    );
    assert_eq!(pg.fingerprint("shop"), before, "tables, columns and rows");
    assert_eq!(django_migrations(), migrations_before);
}

// ------------------------------------------------ alembic on postgresql

/// Alembic on PostgreSQL, one transaction per migration (so a downgrade
/// that fails leaves what it already did): the deploy's two revisions are
/// downgraded newest first, the newest (r3) fine, then r2's downgrade
/// raises: the schema is half downgraded. The postgres restore of the same
/// backup brings back the recorded revision and the data.
#[test]
fn alembic_downgrade_failing_midway_falls_back_to_the_db_restore() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let alembic = AlembicProject::new(dir.path(), &pg);
    let env_py = alembic.root.join("alembic/env.py");
    let text_env = std::fs::read_to_string(&env_py).unwrap();
    std::fs::write(
        &env_py,
        text_env.replace(
            "context.configure(connection=connection)",
            "context.configure(connection=connection, transaction_per_migration=True)",
        ),
    )
    .unwrap();
    alembic.revision_with(
        "r1",
        None,
        None,
        "op.create_table('users', sa.Column('id', sa.Integer, primary_key=True), sa.Column('email', sa.String(200))); op.execute(\"insert into users (email) select 'user' || i || '@example.com' from generate_series(1, 40) i\")",
        "op.drop_table('users')",
    );
    alembic.alembic(&["upgrade", "head"]);
    let before = pg.fingerprint("shop");

    let project = alembic.rewind_project(&format!("\n{}", postgres_db(&pg)));
    // The schema instance falls back to db, which the backup chain covers.
    let config_path = project.root().join("rewind.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        config
            .replacen(
                "env = [\"DATABASE_URL\"] }\n",
                "env = [\"DATABASE_URL\"] }\nfallback = \"db\"\n",
                1,
            )
            .replace("backup = [\"schema\"]", "backup = [\"db\", \"schema\"]"),
    )
    .unwrap();
    let mut project = project;
    project.set_env("PGPASSWORD", PASSWORD);
    project.json(&["backup", "--json"], 0);

    // r2's downgrade looks at the database from a connection of its own
    // before it raises, and writes down what it saw: proof that r3 was
    // already downgraded, and committed, when r2 failed.
    let seen = dir.path().join("seen-by-r2");
    alembic.revision_with(
        "r2",
        Some("r1"),
        None,
        "op.add_column('users', sa.Column('name', sa.String(100))); op.execute(\"update users set name = 'n', email = 'lost@example.com'\")",
        &format!(
            "import os; c = sa.create_engine(os.environ['DATABASE_URL']).connect(); open({seen:?}, 'w').write(c.execute(sa.text('select version_num from alembic_version')).scalar() + ' ' + str(sa.inspect(c).has_table('audit'))); c.close(); raise RuntimeError('r2 cannot be downgraded: the old emails are gone')",
            seen = seen.display().to_string()
        ),
    );
    alembic.revision_with(
        "r3",
        Some("r2"),
        None,
        "op.create_table('audit', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('audit')",
    );
    alembic.alembic(&["upgrade", "head"]);

    let error = rolled_back_through_db(&project, "schema");
    assert!(
        error.contains("r2 cannot be downgraded"),
        "alembic's error: {error}"
    );
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        "r2 False",
        "when r2's downgrade raised, r3's was done and committed"
    );
    assert_eq!(
        alembic.alembic(&["current"]).split_whitespace().next(),
        Some("r1")
    );
    assert_eq!(pg.fingerprint("shop"), before, "tables, columns and rows");
}

// ---------------------------------------------------------- preflight

/// Run `args`; it must fail (any non-zero code), saying every `expected`.
fn fails_naming(project: &Project, args: &[&str], expected: &[&str]) {
    let out = project.rewind(args);
    let report = said(&out);
    assert_ne!(
        out.status.code(),
        Some(0),
        "rewind {args:?} passed:\n{report}"
    );
    for e in expected {
        assert!(
            report.contains(e),
            "rewind {args:?} does not say {e:?}:\n{report}"
        );
    }
}

/// `rewind check` and `rollback --dry-run` fail, naming the fix, for what
/// would make the postgres step of a rollback fail: a param of the wrong
/// type, a command the plugin runs that is not granted, a program that is
/// not installed. Each case is checked against a backup taken with the
/// good config, so the dry run has a real plan to preflight.
#[test]
fn preflight_check_and_dry_run_fail_for_a_wrong_param_an_ungranted_or_missing_program() {
    let pg = Postgres::start();
    pg.sql("postgres", "create database shop");
    let missing = tempfile::tempdir().unwrap();
    let nowhere = missing.path().join("bin").display().to_string();
    let port = pg.port;
    let instance = |exec: &[&str], bin_dir: &str, port: &str| {
        let exec: Vec<String> = exec
            .iter()
            .map(|e| format!("\"{bin_dir}/{e} **\""))
            .collect();
        format!(
            "[plugins.db]\n{}\ngrants.exec = [{}]\ngrants.env = [\"PGPASSWORD\"]\nparams = {{ database = \"shop\", password_env = \"PGPASSWORD\", bin_dir = \"{bin_dir}\", port = {port} }}\n\n[chains]\nbackup = [\"db\"]\nrollback = [\"db\"]\n",
            pin("postgres"),
            exec.join(", ")
        )
    };
    let bin = pg.bin.display().to_string();
    let all = ["pg_dump", "pg_restore", "psql"];
    let good = instance(&all, &bin, &port.to_string());
    let mut project = Project::new(&good);
    project.set_env("PGPASSWORD", PASSWORD);
    // Before any backup: check passes, says the store is yet to be made,
    // and does not make it (check changes nothing).
    let report = project.json(&["check", "--json"], 0);
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(
        report
            .to_string()
            .contains("does not exist yet; the first backup creates it"),
        "{report:#}"
    );
    assert!(
        !project.root().join("store").exists(),
        "check created the store"
    );
    project.json(&["backup", "--json"], 0);
    let report = project.json(&["check", "--json"], 0);
    assert_eq!(report["ok"], true, "the good config passes: {report:#}");
    assert_code(&project.rewind(&["rollback", "--dry-run"]), 0, "dry run");

    let cases = [
        // The port as a string.
        (
            instance(&all, &bin, &format!("\"{port}\"")),
            vec![format!(
                r#"plugins.db.params.port: expected an integer, found the string "{port}""#
            )],
        ),
        // The restore's program is not granted: the grant line to add.
        (
            instance(&["pg_dump", "psql"], &bin, &port.to_string()),
            vec!["grants.exec = [\"".to_string(), "pg_restore".to_string()],
        ),
        // Granted, but not installed where bin_dir says.
        (
            instance(&all, &nowhere, &port.to_string()),
            vec![format!("{nowhere}/pg_restore")],
        ),
    ];
    for (config, fix) in &cases {
        let fix: Vec<&str> = fix.iter().map(String::as_str).collect();
        project.write(config);
        fails_naming(&project, &["check"], &fix);
        fails_naming(&project, &["rollback", "--dry-run"], &fix);
    }
    // Nothing of it changed the database or the history.
    project.write(&good);
    let history = project.json(&["history", "--json"], 0);
    assert_eq!(history.as_array().unwrap().len(), 1, "{history:#}");
}

/// The Laravel plugin's own preflight: with `maintenance = true` and no
/// `storage/framework` (or a file there), `artisan down` cannot write its
/// marker; `check` and `rollback --dry-run` say so and how to fix it. A
/// wrong `app` (no artisan there) is named too. `maintenance = false`, or
/// the directory back, passes.
#[test]
fn preflight_laravel_maintenance_file_that_cannot_be_written_and_a_missing_artisan() {
    let dir = tempfile::tempdir().unwrap();
    let app = LaravelApp::new(&dir.path().canonicalize().unwrap(), None);
    // Read-only: enough for the plugin to look at storage/framework.
    let root = app.root.display().to_string();
    let project = crate::frameworks::laravel_project(&app, "");
    let config_path = project.root().join("rewind.toml");
    let config = std::fs::read_to_string(&config_path).unwrap().replace(
        "grants.exec",
        &format!("grants.paths = [\"ro:{root}\"]\ngrants.exec"),
    );
    std::fs::write(&config_path, &config).unwrap();
    project.json(&["backup", "--json"], 0);
    assert_code(&project.rewind(&["rollback", "--dry-run"]), 0, "dry run");

    let framework = app.root.join("storage/framework");
    std::fs::rename(&framework, app.root.join("storage/framework.moved")).unwrap();
    let fix = [
        format!("maintenance mode cannot be entered: {root}/storage/framework does not exist"),
        "create it, or set maintenance = false".to_string(),
    ];
    let fix: Vec<&str> = fix.iter().map(String::as_str).collect();
    fails_naming(&project, &["rollback", "--dry-run"], &fix);
    fails_naming(&project, &["check"], &fix);

    std::fs::write(&framework, "not a directory").unwrap();
    fails_naming(
        &project,
        &["rollback", "--dry-run"],
        &[&format!("{root}/storage/framework is not a directory")],
    );

    // Without maintenance mode nothing needs writing there.
    std::fs::write(
        &config_path,
        config.replace("params = { app", "params = { maintenance = false, app"),
    )
    .unwrap();
    assert_code(
        &project.rewind(&["rollback", "--dry-run"]),
        0,
        "maintenance = false",
    );
    std::fs::write(&config_path, &config).unwrap();
    std::fs::remove_file(&framework).unwrap();
    std::fs::rename(app.root.join("storage/framework.moved"), &framework).unwrap();
    assert_code(
        &project.rewind(&["rollback", "--dry-run"]),
        0,
        "directory back",
    );

    // `app` that does not hold artisan.
    let wrong = format!("{root}/public");
    std::fs::write(
        &config_path,
        config
            .replace(&format!("app = \"{root}\""), &format!("app = \"{wrong}\""))
            .replace(
                &format!("php {root}/artisan"),
                &format!("php {wrong}/artisan"),
            ),
    )
    .unwrap();
    fails_naming(
        &project,
        &["rollback", "--dry-run"],
        &[&format!(
            "{wrong}/artisan does not exist: params.app must be the Laravel application's root"
        )],
    );
}

/// Django's and Alembic's dry runs name a `manage` or `config` that is not
/// there, as the param to fix.
#[test]
fn preflight_django_and_alembic_name_a_missing_manage_py_or_alembic_ini() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("db.sqlite3");
    let django = DjangoProject::new(
        &dir.path().join("project"),
        vec![("SQLITE_PATH".into(), sqlite.display().to_string())],
    );
    django.manage(&["migrate", "--noinput"]);
    let mut project = Project::new("");
    let manage = django.root.join("manage.py");
    let write = |project: &Project, manage: &Path| {
        project.write(&format!(
            "{}\n[chains]\nbackup = [\"migrations\"]\nrollback = [\"migrations\"]\n",
            django.instance("migrations", manage)
        ))
    };
    write(&project, &manage);
    project.set_env("SQLITE_PATH", &sqlite.display().to_string());
    project.json(&["backup", "--json"], 0);
    assert_code(&project.rewind(&["rollback", "--dry-run"]), 0, "dry run");
    let wrong = django.root.join("src/manage.py");
    write(&project, &wrong);
    fails_naming(
        &project,
        &["rollback", "--dry-run"],
        &[&format!(
            "{} does not exist: params.manage must be the project's manage.py",
            wrong.display()
        )],
    );

    let pg = Postgres::start();
    let alembic = AlembicProject::new(dir.path(), &pg);
    alembic.revision_with(
        "r1",
        None,
        None,
        "op.create_table('t', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('t')",
    );
    alembic.alembic(&["upgrade", "head"]);
    let project = alembic.rewind_project("");
    project.json(&["backup", "--json"], 0);
    let ini = alembic.ini().display().to_string();
    let moved = format!("{ini}.moved");
    std::fs::rename(&ini, &moved).unwrap();
    fails_naming(
        &project,
        &["rollback", "--dry-run"],
        &[
            &format!("{ini} does not exist"),
            "params.config must be the project's alembic.ini",
        ],
    );
    std::fs::rename(&moved, &ini).unwrap();
    assert_code(&project.rewind(&["rollback", "--dry-run"]), 0, "ini back");
}
