//! Framework plugins against real applications: a Laravel 8 app on
//! Debian's php-laravel-framework (tests/fixtures/laravel-app), on SQLite
//! and on MariaDB, driven through the `rewind` binary.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{
    Project, files_table, health_file_table, pin, postgres_table, release_symlink_table,
};

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

// ---------------------------------------------------------------- laravel

pub(crate) struct LaravelApp {
    pub(crate) root: PathBuf,
}

impl LaravelApp {
    /// The fixture app in `dir/app`, on SQLite (or the given .env), with
    /// its first migration run.
    pub(crate) fn new(dir: &Path, env: Option<&str>) -> LaravelApp {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/laravel-app");
        let root = dir.join("app");
        copy_dir(&fixture, &root);
        if let Some(env) = env {
            std::fs::write(root.join(".env"), env).unwrap();
        }
        std::fs::write(root.join("database/database.sqlite"), "").unwrap();
        let app = LaravelApp { root };
        app.artisan(&["migrate", "--force"]);
        app
    }

    pub(crate) fn artisan(&self, args: &[&str]) -> String {
        let out = Command::new("php")
            .arg(self.root.join("artisan"))
            .args(args)
            .output()
            .expect("php is not installed: run `bash tests/run`");
        assert!(
            out.status.success(),
            "artisan {args:?}:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Add a migration file; `up` and `down` are PHP statements.
    pub(crate) fn add_migration(&self, name: &str, up: &str, down: &str) {
        let class: String = name
            .split('_')
            .skip(4)
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        std::fs::write(
            self.root.join(format!("database/migrations/{name}.php")),
            format!(
                "<?php\nuse Illuminate\\Database\\Migrations\\Migration;\nuse Illuminate\\Database\\Schema\\Blueprint;\nuse Illuminate\\Support\\Facades\\Schema;\n\nclass {class} extends Migration\n{{\n    public function up() {{ {up} }}\n    public function down() {{ {down} }}\n}}\n"
            ),
        )
        .unwrap();
    }

    /// A migration creating (and dropping) one table.
    pub(crate) fn add_table(&self, name: &str, table: &str) {
        self.add_migration(
            name,
            &format!("Schema::create('{table}', function (Blueprint $t) {{ $t->id(); $t->string('label'); }});"),
            &format!("Schema::dropIfExists('{table}');"),
        );
    }

    /// A release directory `base/releases/<name>` holding the fixture app,
    /// whose `.env` is `base/shared/.env`.
    pub(crate) fn new_release(base: &Path, name: &str) -> LaravelApp {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/laravel-app");
        let root = base.join("releases").join(name);
        copy_dir(&fixture, &root);
        std::fs::remove_file(root.join(".env")).unwrap();
        std::os::unix::fs::symlink(base.join("shared/.env"), root.join(".env")).unwrap();
        LaravelApp { root }
    }

    /// The migrations table and the schema, from SQLite itself.
    pub(crate) fn fingerprint(&self) -> String {
        self.fingerprint_of(&self.root.join("database/database.sqlite"))
    }

    pub(crate) fn fingerprint_of(&self, db: &Path) -> String {
        let out = Command::new("sqlite3")
            .arg(db)
            .arg("select migration || ' ' || batch from migrations order by id; select name || ': ' || sql from sqlite_master where name not like 'sqlite_%' order by name;")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    }
}

pub(crate) fn laravel_project(app: &LaravelApp, params: &str) -> Project {
    let project = Project::new("");
    project.write(&format!(
        r#"[plugins.migrations]
{pin}
grants.exec = ["php {artisan} **"]
params = {{ app = "{app}"{params} }}

[chains]
backup = ["migrations"]
rollback = ["migrations"]
"#,
        pin = pin("laravel"),
        artisan = app.root.join("artisan").display(),
        app = app.root.display(),
    ));
    project
}

#[test]
fn laravel_rollback_undoes_exactly_the_migrations_of_the_deploy_0_1_or_3() {
    for count in [0usize, 1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let app = LaravelApp::new(dir.path(), None);
        app.add_table("2026_01_02_000000_create_customers_table", "customers");
        app.artisan(&["migrate", "--force"]);
        let project = laravel_project(&app, "");
        let before = app.fingerprint();
        project.json(&["backup", "--json"], 0);

        // The deploy: `count` migrations, in two batches when there are 3.
        for i in 0..count {
            app.add_table(
                &format!("2026_02_0{}_000000_create_feature{i}_table", i + 1),
                &format!("feature{i}"),
            );
            if i != 0 {
                app.artisan(&["migrate", "--force"]);
            }
        }
        app.artisan(&["migrate", "--force"]);
        if count > 0 {
            assert_ne!(app.fingerprint(), before);
        }

        let result = project.json(&["rollback", "--quick", "--yes", "--json"], 0);
        let step = &result["run"]["steps"][0];
        assert_eq!(step["status"], "succeeded", "{result:#}");
        assert_eq!(
            app.fingerprint(),
            before,
            "after undoing a deploy of {count} migration(s)"
        );
        let rolled_back = step["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d[0] == "rolled_back")
            .unwrap()[1]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count();
        assert_eq!(rolled_back, count);
        // Maintenance mode is over, and the config cache is rebuilt.
        assert!(!app.root.join("storage/framework/down").exists());
        assert!(app.root.join("bootstrap/cache/config.php").exists());
    }
}

#[test]
fn laravel_dry_run_prints_the_sql_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = LaravelApp::new(dir.path(), None);
    let project = laravel_project(&app, "");
    project.json(&["backup", "--json"], 0);
    app.add_table("2026_02_01_000000_create_coupons_table", "coupons");
    app.artisan(&["migrate", "--force"]);
    let after_deploy = app.fingerprint();
    let out = project.rewind(&["rollback", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(plan.contains("would roll back 1 migration(s)"), "{plan}");
    assert!(plan.contains("drop table if exists \"coupons\""), "{plan}");
    assert_eq!(app.fingerprint(), after_deploy);
}

#[test]
fn laravel_a_failing_down_migration_fails_the_run_with_artisans_error() {
    let dir = tempfile::tempdir().unwrap();
    let app = LaravelApp::new(dir.path(), None);
    let project = laravel_project(&app, "");
    project.json(&["backup", "--json"], 0);
    app.add_migration(
        "2026_02_01_000000_irreversible_change",
        "Schema::create('ledger', function (Blueprint $t) { $t->id(); });",
        "throw new \\RuntimeException('ledger entries cannot be removed');",
    );
    app.artisan(&["migrate", "--force"]);
    let out = project.rewind(&["rollback", "--quick", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["run"]["status"], "failed");
    let error = result["run"]["steps"][0]["error"].to_string();
    assert!(
        error.contains("ledger entries cannot be removed"),
        "{error}"
    );
    // Maintenance mode ends whatever happened: a later step (a database
    // restore) may still repair what this one could not.
    assert!(!app.root.join("storage/framework/down").exists());
}

#[test]
fn laravel_maintenance_mode_that_cannot_be_entered_does_not_block_the_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let app = LaravelApp::new(dir.path(), None);
    let project = laravel_project(&app, "");
    let before = app.fingerprint();
    project.json(&["backup", "--json"], 0);
    app.add_table("2026_02_01_000000_create_coupons_table", "coupons");
    app.artisan(&["migrate", "--force"]);
    // No storage/framework: `artisan down` cannot write its marker.
    std::fs::remove_dir_all(app.root.join("storage/framework")).unwrap();

    let result = project.json(&["rollback", "--quick", "--yes", "--json"], 0);
    let step = &result["run"]["steps"][0];
    assert_eq!(step["status"], "succeeded", "{result:#}");
    assert_eq!(app.fingerprint(), before, "the migration is rolled back");
    assert!(
        step["logs"]
            .to_string()
            .contains("could not enter maintenance mode; rolling back without it"),
        "the warning is recorded: {result:#}"
    );
}

#[test]
fn laravel_on_mariadb() {
    let db = crate::servers::Mariadb::start();
    db.sql("mysql", "create database shop");
    let dir = tempfile::tempdir().unwrap();
    let env = format!(
        "APP_ENV=production\nDB_CONNECTION=mysql\nDB_HOST=127.0.0.1\nDB_PORT={}\nDB_DATABASE=shop\nDB_USERNAME=root\nDB_PASSWORD={}\n",
        db.port,
        crate::servers::PASSWORD
    );
    let app = LaravelApp::new(dir.path(), Some(&env));
    let project = laravel_project(&app, ", caches = [\"config\", \"view\"]");
    let fingerprint = || {
        db.sql(
            "shop",
            "select group_concat(concat(migration, ' ', batch) order by id) from migrations",
        ) + &db.fingerprint("shop")
    };
    let before = fingerprint();
    project.json(&["backup", "--json"], 0);
    app.add_table("2026_02_01_000000_create_coupons_table", "coupons");
    app.add_table("2026_02_02_000000_create_vouchers_table", "vouchers");
    app.artisan(&["migrate", "--force"]);
    assert_ne!(fingerprint(), before);
    project.json(&["rollback", "--quick", "--yes", "--json"], 0);
    assert_eq!(fingerprint(), before);

    // The deploy's migration files are still there: health calls them pending…
    let health = project.json(&["hook", "migrations", "health", "--json"], 1);
    let detail = health["result"]["checks"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("pending migrations: 2026_02_01_000000_create_coupons_table"),
        "{detail}"
    );
    // …until the code rollback removes them, as switching the release does.
    for name in [
        "2026_02_01_000000_create_coupons_table",
        "2026_02_02_000000_create_vouchers_table",
    ] {
        std::fs::remove_file(app.root.join(format!("database/migrations/{name}.php"))).unwrap();
    }
    let health = project.json(&["hook", "migrations", "health", "--json"], 0);
    assert_eq!(
        health["result"]["checks"][0]["status"], "healthy",
        "{health:#}"
    );
}

/// Seed 003: `rewind guard` of a deploy that switches the release, changes
/// `.env`, runs 2 migrations and fails its health check; the rollback
/// undoes exactly those migrations (with the new release's code, which has
/// their `down()`), restores `.env`, switches the release back, rebuilds
/// the caches with the old release, and the app is healthy again.
#[test]
fn laravel_seed_003_guarded_deploy_rolls_back_release_env_migrations_and_caches() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let shared = base.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let env_v1 = format!(
        "APP_ENV=production\nAPP_NAME=shop\nDB_CONNECTION=sqlite\nDB_DATABASE={}/database.sqlite\n",
        shared.display()
    );
    std::fs::write(shared.join(".env"), &env_v1).unwrap();
    std::fs::write(shared.join("database.sqlite"), "").unwrap();

    // releases/v1: the fixture app, its .env the shared one.
    let v1 = LaravelApp::new_release(&base, "v1");
    std::fs::write(v1.root.join("HEALTH"), "ok").unwrap();
    std::os::unix::fs::symlink("releases/v1", base.join("current")).unwrap();
    v1.artisan(&["migrate", "--force"]);
    v1.artisan(&["config:cache"]);
    let before = v1.fingerprint_of(&shared.join("database.sqlite"));

    // releases/v2: the same app plus two migrations, and a broken health.
    let v2 = LaravelApp::new_release(&base, "v2");
    std::fs::write(v2.root.join("HEALTH"), "broken").unwrap();
    v2.add_table("2026_03_01_000000_create_coupons_table", "coupons");
    // (SQLite cannot drop a column without doctrine/dbal: an index instead.)
    v2.add_migration(
        "2026_03_02_000000_index_orders_by_customer",
        "Schema::table('orders', function (Blueprint $t) { $t->index('customer'); });",
        "Schema::table('orders', function (Blueprint $t) { $t->dropIndex(['customer']); });",
    );

    let current = base.join("current");
    let project = Project::new("");
    project.write(&format!(
        r#"{code}
{env}
[plugins.migrations]
{laravel}
grants.exec = ["php {current}/artisan **"]
params = {{ app = "{current}", caches = [] }}

[plugins.caches]
{laravel}
grants.exec = ["php {current}/artisan **"]
params = {{ app = "{current}", migrate = false, maintenance = false, caches = ["config", "route", "view"] }}

{web}
[chains]
backup = ["migrations", "env", "code"]
rollback = ["migrations", "env", "code", "caches"]

[guard]
health = ["web", "migrations"]
retries = 0
"#,
        code = release_symlink_table("code", &base),
        env = files_table("env", &shared, &[&shared.join(".env")]),
        web = health_file_table("web", &current.join("HEALTH"), None),
        laravel = pin("laravel"),
        current = current.display(),
    ));

    let deploy = format!(
        "set -e; cd {base}; ln -sfn releases/v2 current.new && mv -T current.new current; \
         sed -i 's/APP_NAME=shop/APP_NAME=shop-v2/' shared/.env; \
         php current/artisan migrate --force; php current/artisan config:cache",
        base = base.display(),
    );
    let out = project.rewind(&["guard", "--json", "--", "sh", "-c", &deploy]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps: Vec<String> = result["rollback"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["instance"].as_str().unwrap(),
                s["hook"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        steps[..4],
        [
            "migrations revert",
            "env restore",
            "code revert",
            "caches revert"
        ]
    );

    assert_eq!(
        std::fs::read_link(&current).unwrap(),
        Path::new("releases/v1")
    );
    assert_eq!(
        std::fs::read_to_string(shared.join(".env")).unwrap(),
        env_v1
    );
    assert_eq!(
        v1.fingerprint_of(&shared.join("database.sqlite")),
        before,
        "exactly the 2 migrations undone"
    );
    let cached = std::fs::read_to_string(v1.root.join("bootstrap/cache/config.php")).unwrap();
    assert!(
        cached.contains("'name' => 'shop'") && !cached.contains("shop-v2"),
        "v1's config cache is rebuilt from the restored .env"
    );
    let compiled_views = std::fs::read_dir(v1.root.join("storage/framework/views"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".php"))
        .count();
    assert!(compiled_views > 0, "view:cache ran in v1");
    let health = project.json(&["health", "--json"], 0);
    assert_eq!(health["healthy"], true, "{health:#}");
}

// ---------------------------------------------------------------- alembic

pub(crate) fn venv_bin(program: &str) -> PathBuf {
    let python = std::env::var("REWIND_TEST_PYTHON").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/test-venv/bin/python"
        )
        .to_string()
    });
    let path = Path::new(&python).with_file_name(program);
    assert!(
        path.is_file(),
        "{} is missing: run `bash tests/run` (it installs the Python packages)",
        path.display()
    );
    path
}

pub(crate) struct AlembicProject {
    pub(crate) root: PathBuf,
    pub(crate) url: String,
}

impl AlembicProject {
    pub(crate) fn new(dir: &Path, pg: &crate::servers::Postgres) -> AlembicProject {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/alembic-project");
        let root = dir.join("alembic-project");
        copy_dir(&fixture, &root);
        pg.sql("postgres", "create database shop");
        AlembicProject {
            root,
            url: format!(
                "postgresql+psycopg2://postgres:{}@127.0.0.1:{}/shop",
                crate::servers::PASSWORD,
                pg.port
            ),
        }
    }

    pub(crate) fn ini(&self) -> PathBuf {
        self.root.join("alembic.ini")
    }

    /// A revision creating (and on downgrade dropping) table `t_<rev>`.
    fn revision(&self, rev: &str, down: Option<&str>, branch: Option<&str>) {
        self.revision_with(
            rev,
            down,
            branch,
            &format!("op.create_table('t_{rev}', sa.Column('id', sa.Integer, primary_key=True))"),
            &format!("op.drop_table('t_{rev}')"),
        );
    }

    pub(crate) fn revision_with(
        &self,
        rev: &str,
        down: Option<&str>,
        branch: Option<&str>,
        upgrade: &str,
        downgrade: &str,
    ) {
        let quote = |v: Option<&str>| v.map_or("None".to_string(), |v| format!("{v:?}"));
        let labels = branch.map_or("None".to_string(), |b| format!("({b:?},)"));
        std::fs::write(
            self.root.join(format!("alembic/versions/{rev}.py")),
            format!(
                "from alembic import op\nimport sqlalchemy as sa\n\nrevision = {rev:?}\ndown_revision = {down}\nbranch_labels = {labels}\ndepends_on = None\n\n\ndef upgrade():\n    {upgrade}\n\n\ndef downgrade():\n    {downgrade}\n",
                down = quote(down)
            ),
        )
        .unwrap();
    }

    pub(crate) fn alembic(&self, args: &[&str]) -> String {
        let out = Command::new(venv_bin("alembic"))
            .arg("-c")
            .arg(self.ini())
            .args(args)
            .env("DATABASE_URL", &self.url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "alembic {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub(crate) fn rewind_project(&self, extra: &str) -> Project {
        let mut project = Project::new("");
        project.write(&format!(
            r#"[plugins.schema]
{pin}
grants.exec = ["{alembic} -c {ini} **"]
grants.env = ["DATABASE_URL"]
params = {{ config = "{ini}", alembic = "{alembic}", env = ["DATABASE_URL"] }}

[chains]
backup = ["schema"]
rollback = ["schema"]
{extra}
"#,
            pin = pin("alembic"),
            alembic = venv_bin("alembic").display(),
            ini = self.ini().display(),
        ));
        project.set_env("DATABASE_URL", &self.url);
        project
    }
}

#[test]
fn alembic_downgrades_to_the_recorded_revision_after_0_1_or_several() {
    let pg = crate::servers::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let alembic = AlembicProject::new(dir.path(), &pg);
    let project = alembic.rewind_project("");
    alembic.revision("a1", None, None);
    alembic.alembic(&["upgrade", "head"]);

    let mut previous = "a1".to_string();
    let mut next = 2;
    for count in [0, 1, 3] {
        let before = pg.fingerprint("shop");
        let backup = project.json(&["backup", "--json"], 0);
        assert_eq!(backup["status"], "succeeded");
        for _ in 0..count {
            let rev = format!("a{next}");
            alembic.revision(&rev, Some(&previous), None);
            previous = rev;
            next += 1;
        }
        alembic.alembic(&["upgrade", "head"]);
        let result = project.json(&["rollback", "--quick", "--yes", "--json"], 0);
        assert_eq!(result["run"]["status"], "succeeded", "{result:#}");
        assert_eq!(pg.fingerprint("shop"), before, "after a deploy of {count}");
        assert_eq!(
            alembic.alembic(&["current"]).split_whitespace().next(),
            Some("a1")
        );
        // The next deploy builds on the rolled-back files no more.
        for rev in 2..next {
            let _ = std::fs::remove_file(alembic.root.join(format!("alembic/versions/a{rev}.py")));
        }
        previous = "a1".into();
    }
}

#[test]
fn alembic_branched_history_returns_to_every_recorded_head() {
    let pg = crate::servers::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let alembic = AlembicProject::new(dir.path(), &pg);
    let project = alembic.rewind_project("");
    alembic.revision("a1", None, None);
    alembic.revision("a2", Some("a1"), None);
    alembic.revision("b1", Some("a1"), Some("feature"));
    alembic.alembic(&["upgrade", "heads"]);
    let before = pg.fingerprint("shop");
    let backup = project.json(&["backup", "--json"], 0);
    let digest = backup["steps"][0]["artifacts"][0]["digest"]
        .as_str()
        .unwrap();
    assert_eq!(digest.len(), 64);

    alembic.revision("a3", Some("a2"), None);
    alembic.revision("b2", Some("b1"), None);
    alembic.alembic(&["upgrade", "heads"]);
    let out = project.rewind(&["rollback", "--dry-run"]);
    assert!(
        text(&out.stdout).contains("would downgrade from a3, b2 to a2, b1"),
        "{}",
        text(&out.stdout)
    );
    project.json(&["rollback", "--quick", "--yes", "--json"], 0);
    assert_eq!(pg.fingerprint("shop"), before);
    let current: BTreeSet<String> = alembic
        .alembic(&["current"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert_eq!(
        current,
        BTreeSet::from(["a2".to_string(), "b1".to_string()])
    );
}

/// Seed 001: a deploy with a bad migration; health fails; the rollback
/// returns to the recorded revision, confirmed by `alembic current`.
#[test]
fn alembic_seed_001_bad_migration_is_rolled_back_to_the_recorded_revision() {
    let pg = crate::servers::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let alembic = AlembicProject::new(dir.path(), &pg);
    alembic.revision_with(
        "r1",
        None,
        None,
        "op.create_table('users', sa.Column('id', sa.Integer, primary_key=True), sa.Column('email', sa.String(200)))",
        "op.drop_table('users')",
    );
    alembic.alembic(&["upgrade", "head"]);
    let psql = pg.bin.join("psql");
    let project = alembic.rewind_project(&format!(
        r#"
[plugins.app]
{command}
grants.exec = ["{psql} **"]
grants.env = ["PGPASSWORD"]
params = {{ health = ["{psql}", "-h", "127.0.0.1", "-p", "{port}", "-U", "postgres", "-d", "shop", "-c", "select email from users limit 1"], inherit_env = ["PGPASSWORD"] }}

[guard]
health = ["app", "schema"]
retries = 0
"#,
        command = pin("command"),
        psql = psql.display(),
        port = pg.port,
    ));
    let mut project = project;
    project.set_env("PGPASSWORD", crate::servers::PASSWORD);
    let before = pg.fingerprint("shop");

    // The bad migration drops a column the application still reads.
    alembic.revision_with(
        "r2",
        Some("r1"),
        None,
        "op.drop_column('users', 'email')",
        "op.add_column('users', sa.Column('email', sa.String(200)))",
    );
    let deploy = format!(
        "DATABASE_URL='{}' {} -c {} upgrade head",
        alembic.url,
        venv_bin("alembic").display(),
        alembic.ini().display()
    );
    let out = project.rewind(&["guard", "--json", "--", "sh", "-c", &deploy]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(pg.fingerprint("shop"), before);
    assert_eq!(
        alembic.alembic(&["current"]).split_whitespace().next(),
        Some("r1")
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary = result["rollback"]["steps"][0]["summary"].as_str().unwrap();
    assert!(summary.contains("alembic current confirms"), "{summary}");

    // Health with an expectation: r1 is what runs now, r2 is not.
    let config = std::fs::read_to_string(project.root().join("rewind.toml")).unwrap();
    let check = |rev: &str| {
        std::fs::write(
            project.root().join("rewind.toml"),
            config.replace(
                "env = [\"DATABASE_URL\"] }",
                &format!("env = [\"DATABASE_URL\"], expect = [\"{rev}\"] }}"),
            ),
        )
        .unwrap();
        let out = project.rewind(&["hook", "schema", "health", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let check = &json["result"]["checks"][0];
        (
            check["status"].as_str().unwrap().to_string(),
            check["detail"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(check("r1").0, "healthy");
    let (status, detail) = check("r2");
    assert_eq!(status, "unhealthy");
    assert!(
        detail.contains("alembic current is r1, expected r2"),
        "{detail}"
    );
}

// ---------------------------------------------------------------- django

/// The fixture Django project (apps `shop` and `billing`) at `root`.
pub(crate) struct DjangoProject {
    pub(crate) root: PathBuf,
    /// PGPORT/PGPASSWORD/PGDATABASE, or SQLITE_PATH.
    pub(crate) env: Vec<(String, String)>,
}

impl DjangoProject {
    pub(crate) fn new(root: &Path, env: Vec<(String, String)>) -> DjangoProject {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/django-project");
        copy_dir(&fixture, root);
        DjangoProject {
            root: root.to_path_buf(),
            env,
        }
    }

    pub(crate) fn manage(&self, args: &[&str]) -> String {
        let out = Command::new(venv_bin("python"))
            .arg(self.root.join("manage.py"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "manage.py {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub(crate) fn add_migration(
        &self,
        app: &str,
        name: &str,
        dependencies: &str,
        operations: &str,
    ) {
        std::fs::write(
            self.root.join(format!("{app}/migrations/{name}.py")),
            format!(
                "from django.db import migrations, models\n\n\nclass Migration(migrations.Migration):\n    dependencies = [{dependencies}]\n    operations = [{operations}]\n"
            ),
        )
        .unwrap();
    }

    /// A deploy's migrations: one per app, billing's depending on shop's.
    fn add_deploy_migrations(&self) {
        self.add_migration(
            "shop",
            "0002_product_sku",
            "(\"shop\", \"0001_initial\")",
            "migrations.AddField(\"product\", \"sku\", models.CharField(max_length=32, default=\"\"))",
        );
        self.add_migration(
            "billing",
            "0002_invoice_note",
            "(\"billing\", \"0001_initial\"), (\"shop\", \"0002_product_sku\")",
            "migrations.AddField(\"invoice\", \"note\", models.TextField(default=\"\"))",
        );
    }

    fn grants(&self) -> String {
        let names: Vec<String> = self.env.iter().map(|(k, _)| format!("\"{k}\"")).collect();
        names.join(", ")
    }

    /// A rewind project whose one instance, `migrations`, is this project.
    fn rewind_project(&self) -> Project {
        let mut project = Project::new("");
        project.write(&format!(
            "{}\n[chains]\nbackup = [\"migrations\"]\nrollback = [\"migrations\"]\n",
            self.instance("migrations", &self.root.join("manage.py"))
        ));
        for (k, v) in &self.env {
            project.set_env(k, v);
        }
        project
    }

    pub(crate) fn instance(&self, name: &str, manage: &Path) -> String {
        let python = venv_bin("python");
        format!(
            r#"[plugins.{name}]
{pin}
grants.exec = ["{python} {manage} **"]
grants.env = [{grants}]
params = {{ manage = "{manage}", python = "{python}", env = [{grants}] }}
"#,
            pin = pin("django"),
            python = python.display(),
            manage = manage.display(),
            grants = self.grants(),
        )
    }
}

fn sqlite_fingerprint(db: &Path) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg("select app || '.' || name from django_migrations order by id; select name || ': ' || sql from sqlite_master where name not like 'sqlite_%' order by name;")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn django_on_postgres_and_sqlite_returns_every_app_to_the_recorded_migration() {
    let pg = crate::servers::Postgres::start();
    pg.sql("postgres", "create database shop");
    let dir = tempfile::tempdir().unwrap();
    let sqlite_path = dir.path().join("db.sqlite3");
    let backends: Vec<(&str, Vec<(String, String)>)> = vec![
        (
            "postgres",
            vec![
                ("PGPORT".into(), pg.port.to_string()),
                ("PGPASSWORD".into(), crate::servers::PASSWORD.into()),
                ("PGDATABASE".into(), "shop".into()),
            ],
        ),
        (
            "sqlite",
            vec![("SQLITE_PATH".into(), sqlite_path.display().to_string())],
        ),
    ];
    for (backend, env) in backends {
        let django = DjangoProject::new(&dir.path().join(backend), env.clone());
        django.manage(&["migrate", "--noinput"]);
        let fingerprint = || match backend {
            "postgres" => pg.fingerprint("shop"),
            _ => sqlite_fingerprint(&sqlite_path),
        };
        let before = fingerprint();
        let project = django.rewind_project();
        project.json(&["backup", "--json"], 0);

        django.add_deploy_migrations();
        django.manage(&["migrate", "--noinput"]);
        assert_ne!(fingerprint(), before);

        let out = project.rewind(&["rollback", "--dry-run"]);
        let plan = text(&out.stdout);
        assert!(
            plan.contains("billing → 0001_initial, shop → 0001_initial"),
            "{plan}"
        );
        assert!(plan.contains("Undo Add field note to invoice"), "{plan}");

        let result = project.json(&["rollback", "--quick", "--yes", "--json"], 0);
        assert_eq!(
            result["run"]["status"], "succeeded",
            "{backend}: {result:#}"
        );
        assert_eq!(fingerprint(), before, "{backend}");
    }
}

#[test]
fn django_an_irreversible_migration_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_path = dir.path().join("db.sqlite3");
    let env = vec![("SQLITE_PATH".to_string(), sqlite_path.display().to_string())];
    let django = DjangoProject::new(&dir.path().join("project"), env.clone());
    django.manage(&["migrate", "--noinput"]);
    let project = django.rewind_project();
    project.json(&["backup", "--json"], 0);
    django.add_migration(
        "billing",
        "0002_backfill_amounts",
        "(\"billing\", \"0001_initial\")",
        "migrations.RunPython(lambda apps, schema: None)",
    );
    django.manage(&["migrate", "--noinput"]);
    let out = project.rewind(&["rollback", "--quick", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(4));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = result["run"]["steps"][0]["error"]["message"]
        .as_str()
        .unwrap();
    assert!(
        error.contains("irreversible") && error.contains("billing.0002_backfill_amounts"),
        "{error}"
    );
}

/// Seed 004: Django on PostgreSQL. The deploy switches the release and
/// runs its migrations, then fails its health check; the automatic
/// rollback unapplies the migrations (with the new release's code),
/// switches back, restores the database from the pre-deploy dump, checks
/// health, and notifies.
#[test]
fn django_seed_004_guarded_deploy_on_postgres() {
    use crate::common::HttpServer;
    let pg = crate::servers::Postgres::start();
    pg.sql("postgres", "create database shop");
    let receiver = HttpServer::start(200, "ok");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let env = vec![
        ("PGPORT".to_string(), pg.port.to_string()),
        (
            "PGPASSWORD".to_string(),
            crate::servers::PASSWORD.to_string(),
        ),
        ("PGDATABASE".to_string(), "shop".to_string()),
    ];
    let v1 = DjangoProject::new(&base.join("releases/v1"), env.clone());
    std::fs::write(v1.root.join("HEALTH"), "ok").unwrap();
    let v2 = DjangoProject::new(&base.join("releases/v2"), env.clone());
    std::fs::write(v2.root.join("HEALTH"), "broken").unwrap();
    v2.add_deploy_migrations();
    std::os::unix::fs::symlink("releases/v1", base.join("current")).unwrap();
    v1.manage(&["migrate", "--noinput"]);
    pg.sql(
        "shop",
        "insert into shop_product (name) select 'product ' || i from generate_series(1, 500) i",
    );
    let before = pg.fingerprint("shop");

    let current = base.join("current");
    let mut project = Project::new("");
    project.write(&format!(
        r#"{migrations}
{code}
{db}
{web}
[plugins.ops]
{webhook}
grants.http = ["{origin}"]
params = {{ url = "{url}" }}

[chains]
backup = ["db", "migrations", "code"]
rollback = ["migrations", "code", "db"]

[guard]
health = ["web", "migrations"]
retries = 0

[notify]
sinks = ["ops"]
"#,
        migrations = v1.instance("migrations", &current.join("manage.py")),
        code = release_symlink_table("code", &base),
        db = postgres_table("db", &pg, "shop", ""),
        web = health_file_table("web", &current.join("HEALTH"), None),
        webhook = pin("webhook"),
        origin = receiver.origin(),
        url = receiver.url("/deploys"),
    ));
    for (k, v) in &env {
        project.set_env(k, v);
    }

    let deploy = format!(
        "set -e; cd {base}; ln -sfn releases/v2 current.new && mv -T current.new current; \
         PGPORT={port} PGPASSWORD={pw} {python} current/manage.py migrate --noinput",
        base = base.display(),
        port = pg.port,
        pw = crate::servers::PASSWORD,
        python = venv_bin("python").display(),
    );
    let out = project.rewind(&["guard", "--json", "--", "sh", "-c", &deploy]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_link(&current).unwrap(),
        Path::new("releases/v1")
    );
    assert_eq!(pg.fingerprint("shop"), before);
    let health = project.json(&["health", "--json"], 0);
    assert_eq!(health["healthy"], true, "{health:#}");
    let notified = receiver
        .recorded()
        .into_iter()
        .map(|r| r.json())
        .any(|e| e["kind"] == "ROLLBACK_SUCCESS" && e["fields"]["run_kind"] == "guard");
    assert!(notified, "the receiver got the guard's ROLLBACK_SUCCESS");
}
