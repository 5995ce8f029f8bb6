//! The `cloudfront` plugin against moto's server (S3, CloudFront, IAM) on
//! 127.0.0.1: a site of a few hundred objects broken by a deploy and put
//! back by `rewind guard`, on versioned and unversioned buckets; one
//! invalidation, and no second one for a retried revert; errors that name
//! their fix. boto3 (from the test venv) sets the scene and reads it back.

use std::time::{Duration, Instant};

use rewind::sandbox::{ErrorKind, HookInput, HookOutput};
use serde_json::{Value, json};

use crate::common::{Call, HttpServer, Project, load, pin, scratch};
use crate::servers::{MOTO_PRELUDE, Moto};

const BUCKET: &str = "app-assets";
/// Objects of the site as [`site`] uploads it.
const SITE_OBJECTS: usize = 302;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A bucket with a site under `site/` (index.html, scripts, styles,
/// images with their Content-Type and Cache-Control, a gzip-encoded JSON
/// file with user metadata: `n_assets` of each asset kind), an object
/// outside the site, a public-read policy (the health check reads
/// index.html like a browser) and a CloudFront distribution; returns the
/// distribution id.
fn site(moto: &Moto, versioned: bool, n_assets: usize) -> String {
    moto.python(&format!(
        r#"
import gzip
bucket, versioned, n = "{BUCKET}", {versioned}, {n_assets}
s3.create_bucket(Bucket=bucket)
if versioned:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={{"Status": "Enabled"}})
s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({{"Version": "2012-10-17", "Statement": [
    {{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{{bucket}}/*"}}]}}))
def put(key, body, ctype, cc, **extra):
    s3.put_object(Bucket=bucket, Key="site/" + key, Body=body, ContentType=ctype, CacheControl=cc, **extra)
put("index.html", b"<html>build v1</html>", "text/html; charset=utf-8", "no-cache")
for i in range(n):
    put(f"assets/app-{{i}}.js", f"console.log({{i}}, 'v1')".encode(), "application/javascript", "public, max-age=31536000, immutable")
    put(f"assets/style-{{i}}.css", f".c{{i}} {{{{ color: red }}}}".encode(), "text/css", "public, max-age=31536000")
    put(f"img/logo-{{i}}.svg", f"<svg id='{{i}}'/>".encode(), "image/svg+xml", "public, max-age=86400")
put("data/feed.json.gz", gzip.compress(b'{{"v": 1}}'), "application/json", "max-age=60",
    ContentEncoding="gzip", Metadata={{"build": "v1"}})
s3.put_object(Bucket=bucket, Key="other/keep.txt", Body=b"not part of the site")
d = cf.create_distribution(DistributionConfig={{"CallerReference": "site", "Comment": "", "Enabled": True,
    "Origins": {{"Quantity": 1, "Items": [{{"Id": "s3", "DomainName": f"{{bucket}}.s3.amazonaws.com",
        "S3OriginConfig": {{"OriginAccessIdentity": ""}}}}]}},
    "DefaultCacheBehavior": {{"TargetOriginId": "s3", "ViewerProtocolPolicy": "allow-all", "MinTTL": 0,
        "ForwardedValues": {{"QueryString": False, "Cookies": {{"Forward": "none"}}}},
        "TrustedSigners": {{"Enabled": False, "Quantity": 0}}}}}})
print(d["Distribution"]["Id"])
"#,
        versioned = if versioned { "True" } else { "False" },
    ))
}

/// The broken deploy: changed bytes with changed metadata, changed
/// metadata alone, a new index.html and feed, one asset deleted, one added.
const DEPLOY: &str = r#"
import gzip
bucket = "app-assets"
def put(key, body, ctype, cc, **extra):
    s3.put_object(Bucket=bucket, Key="site/" + key, Body=body, ContentType=ctype, CacheControl=cc, **extra)
for i in range(10):
    put(f"assets/app-{i}.js", b"syntax error (", "text/plain", "no-store")
for i in range(5):
    k = f"site/assets/style-{i}.css"
    s3.copy_object(Bucket=bucket, Key=k, CopySource={"Bucket": bucket, "Key": k},
                   MetadataDirective="REPLACE", ContentType="text/plain", CacheControl="no-store")
put("index.html", b"<html>build v2 BROKEN</html>", "text/html; charset=utf-8", "no-cache")
put("data/feed.json.gz", gzip.compress(b'{"v": 2}'), "application/json", "max-age=60",
    ContentEncoding="gzip", Metadata={"build": "v2"})
s3.delete_object(Bucket=bucket, Key="site/img/logo-7.svg")
put("assets/new-chunk.js", b"added by the deploy", "application/javascript", "no-cache")
print("deployed v2")
"#;

/// Every key of the bucket outside the backup copies, with the md5 of its
/// bytes and the metadata it is served with.
fn snapshot(moto: &Moto) -> Value {
    let out = moto.python(&format!(
        r#"
out = {{}}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="{BUCKET}"):
    for o in page.get("Contents", []):
        if o["Key"].startswith(".rewind-backup/"):
            continue
        g = s3.get_object(Bucket="{BUCKET}", Key=o["Key"])
        out[o["Key"]] = [hashlib.md5(g["Body"].read()).hexdigest(), g.get("ContentType"),
                         g.get("CacheControl"), g.get("ContentEncoding"), g.get("Metadata")]
print(json.dumps(out, sort_keys=True))
"#
    ));
    serde_json::from_str(&out).unwrap()
}

/// The number of keys under the backup prefix, per run.
fn backup_copies(moto: &Moto) -> Vec<usize> {
    let out = moto.python(&format!(
        r#"
runs = {{}}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="{BUCKET}", Prefix=".rewind-backup/"):
    for o in page.get("Contents", []):
        run = o["Key"].split("/")[1]
        runs[run] = runs.get(run, 0) + 1
print(json.dumps(sorted(runs.values())))
"#
    ));
    serde_json::from_str(&out).unwrap()
}

/// Every invalidation of `dist`: id, status, paths, CallerReference.
fn invalidations(moto: &Moto, dist: &str) -> Vec<Value> {
    let out = moto.python(&format!(
        r#"
out = []
for s in cf.list_invalidations(DistributionId="{dist}")["InvalidationList"].get("Items", []):
    i = cf.get_invalidation(DistributionId="{dist}", Id=s["Id"])["Invalidation"]
    out.append({{"id": i["Id"], "status": i["Status"], "paths": i["InvalidationBatch"]["Paths"].get("Items", []),
                "caller_reference": i["InvalidationBatch"]["CallerReference"]}})
print(json.dumps(out))
"#
    ));
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The `site` instance (the plugin under test) with `extra` params and
/// grants, a health check that reads index.html through S3 like a
/// browser, and both in the chains.
fn project(moto: &Moto, params: &str, grants: &str) -> Project {
    project_with(
        moto,
        params,
        grants,
        "[guard]\nhealth = [\"web\"]\nretries = 0\ndelay_s = 0\n",
    )
}

fn project_with(moto: &Moto, params: &str, grants: &str, guard: &str) -> Project {
    let mut project = Project::new(&format!(
        r#"[plugins.site]
{pin}
{grants}
params = {{ bucket = "{BUCKET}", prefix = "site/", s3_endpoint = "{url}", cloudfront_endpoint = "{url}", {params} }}
limits = {{ timeout_s = 120 }}

[plugins.web]
{health}
grants.http = ["{url}"]
params = {{ url = "{url}/{BUCKET}/site/index.html", body_contains = "build v1", timeout_ms = 5000 }}

[chains]
backup = ["site"]
rollback = ["site"]

{guard}
"#,
        pin = pin("cloudfront"),
        health = pin("http-health"),
        url = moto.url(),
    ));
    project.set_env("AWS_ACCESS_KEY_ID", "testing-key");
    project.set_env("AWS_SECRET_ACCESS_KEY", "testing-secret");
    project.set_env("MOTO_URL", &moto.url());
    project.set_env("MOTO_KEY", "testing-key");
    project.set_env("MOTO_SECRET", "testing-secret");
    project
}

fn grants(moto: &Moto) -> String {
    format!(
        "grants.http = [\"{}\"]\ngrants.env = [\"AWS_ACCESS_KEY_ID\", \"AWS_SECRET_ACCESS_KEY\"]",
        moto.url()
    )
}

/// The deploy command for `rewind guard`: a boto3 script.
fn deploy_command(project: &Project) -> Vec<String> {
    let script = project.root().join("deploy.py");
    std::fs::write(&script, format!("{MOTO_PRELUDE}\n{DEPLOY}")).unwrap();
    let python = std::env::var("REWIND_TEST_PYTHON").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/test-venv/bin/python"
        )
        .to_string()
    });
    vec![python, script.display().to_string()]
}

/// `rewind guard` over a broken deploy puts the site back exactly and
/// invalidates once.
fn guard_rolls_back(versioned: bool) {
    let moto = Moto::start();
    let dist = site(&moto, versioned, 100);
    let before = snapshot(&moto);
    assert_eq!(before.as_object().unwrap().len(), SITE_OBJECTS + 1);
    let project = project(
        &moto,
        &format!(
            r#"distribution_id = "{dist}", invalidation_paths = ["/index.html", "/assets/*"]"#
        ),
        &grants(&moto),
    );

    let deploy = deploy_command(&project);
    let mut args = vec!["guard", "--json", "--"];
    args.extend(deploy.iter().map(String::as_str));
    let started = Instant::now();
    let out = project.rewind(&args);
    assert_eq!(out.status.code(), Some(3), "rolled back:\n{}", text(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["outcome"], "rolled-back", "{result:#}");
    eprintln!(
        "guard (versioned: {versioned}) took {:?}",
        started.elapsed()
    );

    // Keys, bytes and metadata exactly as before the deploy; the added
    // object is gone, the deleted one back, the key outside the prefix
    // untouched.
    let after = snapshot(&moto);
    assert!(after.get("site/assets/new-chunk.js").is_none());
    assert!(after.get("site/img/logo-7.svg").is_some());
    assert_eq!(after, before);

    // What the revert did, as it reported it.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        text(&out).contains("restored 18, deleted 1, 284 unchanged"),
        "{stderr}"
    );

    // One invalidation, of the configured paths, completed.
    let all = invalidations(&moto, &dist);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["paths"], json!(["/index.html", "/assets/*"]));
    assert!(
        all[0]["status"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("completed"),
        "{all:#?}"
    );
    assert!(
        all[0]["caller_reference"]
            .as_str()
            .unwrap()
            .starts_with("rewind-"),
        "{all:#?}"
    );

    // A versioned bucket's backup copies nothing; on an unversioned one
    // each backup (the guard's, and the rollback's safety backup of the
    // broken deploy) copies each object of the site once, server-side.
    assert_eq!(
        backup_copies(&moto),
        if versioned {
            vec![]
        } else {
            vec![SITE_OBJECTS, SITE_OBJECTS]
        }
    );
}

#[test]
fn guard_rolls_a_broken_deploy_back_on_a_versioned_bucket() {
    guard_rolls_back(true);
}

#[test]
fn guard_rolls_a_broken_deploy_back_on_an_unversioned_bucket() {
    guard_rolls_back(false);
}

/// Library-level calls read granted variables from the test process's
/// environment, which a test cannot set safely; moto without IAM auth
/// takes any key, so two variables `cargo test` sets stand in for the
/// credentials (the key id must not contain `/`: it is part of the
/// signature's credential scope, which moto routes by).
const KEY_VAR: &str = "CARGO_PKG_NAME";
const SECRET_VAR: &str = "CARGO_PKG_VERSION";
fn call(moto: &Moto, dist: &str) -> Call {
    Call::new(
        "site",
        json!({
            "bucket": BUCKET, "prefix": "site/", "s3_endpoint": moto.url(),
            "cloudfront_endpoint": moto.url(), "distribution_id": dist,
            "access_key_id_env": KEY_VAR, "secret_access_key_env": SECRET_VAR,
        }),
    )
    .http(&moto.url())
    .env(KEY_VAR)
    .env(SECRET_VAR)
}

fn report(
    outcome: &rewind::sandbox::CallOutcome,
) -> rewind::bindings::rewind::hooks::types::Report {
    match &outcome.result {
        Ok(HookOutput::Report(report)) => report.clone(),
        other => panic!("revert did not report: {other:?}\n{:#?}", outcome.logs),
    }
}

#[test]
fn dry_run_lists_the_plan_and_a_retried_revert_creates_no_second_invalidation() {
    let moto = Moto::start();
    let dist = site(&moto, true, 10);
    let before = snapshot(&moto);
    let s = scratch();
    let plugin = load("cloudfront");
    let saved = call(&moto, &dist).backup(&plugin, &s.store);
    moto.python(DEPLOY);
    let broken = snapshot(&moto);
    assert_ne!(broken, before);

    // Dry run: what would be restored, deleted and invalidated; nothing changes.
    let mut dry = call(&moto, &dist);
    dry.dry_run = true;
    let plan = report(&dry.run(&plugin, &s.store, HookInput::Revert(&saved)));
    assert!(
        plan.summary
            .contains("would restore 18, delete 1, leave 14 unchanged; would invalidate"),
        "{}",
        plan.summary
    );
    let detail = |k: &str, v: &str| plan.details.iter().any(|(dk, dv)| dk == k && dv == v);
    assert!(
        detail("restore", "site/assets/app-3.js (content changed)"),
        "{:#?}",
        plan.details
    );
    assert!(detail(
        "restore",
        "site/assets/style-2.css (metadata changed)"
    ));
    assert!(detail(
        "restore",
        "site/img/logo-7.svg (deleted since the backup)"
    ));
    assert!(detail(
        "delete",
        "site/assets/new-chunk.js (not in the backup)"
    ));
    assert!(detail("invalidate", &format!("distribution {dist}: /*")));
    assert_eq!(snapshot(&moto), broken);
    assert!(invalidations(&moto, &dist).is_empty());

    // The revert, then the same revert again (same run id, as a retry).
    let first = report(&call(&moto, &dist).run(&plugin, &s.store, HookInput::Revert(&saved)));
    assert!(
        first.summary.contains("restored 18, deleted 1"),
        "{}",
        first.summary
    );
    assert_eq!(snapshot(&moto), before);
    let again = call(&moto, &dist).run(&plugin, &s.store, HookInput::Revert(&saved));
    let second = report(&again);
    assert!(
        second
            .summary
            .contains("restored 0, deleted 0, 32 unchanged"),
        "{}",
        second.summary
    );
    assert!(
        again
            .logs
            .iter()
            .any(|l| l.message.contains("already exists for this revert")),
        "{:#?}",
        again.logs
    );
    let all = invalidations(&moto, &dist);
    assert_eq!(all.len(), 1, "a retried revert made another: {all:#?}");
    assert_eq!(all[0]["paths"], json!(["/*"]));
    let id = all[0]["id"].as_str().unwrap();
    assert!(first.summary.contains(id) && second.summary.contains(id));
}

#[test]
fn moto_refuses_a_second_conditional_create() {
    // The S3 store's lease relies on `If-None-Match: *`; some S3
    // look-alikes ignore it. moto does not: the second create is refused
    // and the first object stays.
    let moto = Moto::start();
    let out = moto.python(
        r#"
s3.create_bucket(Bucket="leases")
s3.put_object(Bucket="leases", Key="lock", Body=b"holder-1", IfNoneMatch="*")
try:
    s3.put_object(Bucket="leases", Key="lock", Body=b"holder-2", IfNoneMatch="*")
    print("accepted")
except botocore.exceptions.ClientError as e:
    print(e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
etag = s3.head_object(Bucket="leases", Key="lock")["ETag"]
try:
    s3.put_object(Bucket="leases", Key="lock", Body=b"holder-3", IfMatch='"0123456789abcdef0123456789abcdef"')
    print("accepted")
except botocore.exceptions.ClientError as e:
    print(e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
s3.put_object(Bucket="leases", Key="lock", Body=b"holder-1 renewed", IfMatch=etag)
print(s3.get_object(Bucket="leases", Key="lock")["Body"].read().decode())
"#,
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "PreconditionFailed 412",
            "PreconditionFailed 412",
            "holder-1 renewed"
        ]
    );
}

/// `rewind backup` of `project` fails; its output.
fn backup_fails(project: &Project) -> String {
    let out = project.rewind(&["backup"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    text(&out)
}

#[test]
fn configuration_errors_name_their_fix() {
    let moto = Moto::start();
    let dist = site(&moto, true, 2);
    let dist_param = format!(r#"distribution_id = "{dist}""#);

    // The origin not granted: the sandbox refuses before any connection.
    let no_http = project(
        &moto,
        &dist_param,
        "grants.env = [\"AWS_ACCESS_KEY_ID\", \"AWS_SECRET_ACCESS_KEY\"]",
    );
    let out = backup_fails(&no_http);
    assert!(
        out.contains(&format!("grants.http = [\"{}\"]", moto.url())),
        "{out}"
    );

    // A credential variable not granted.
    let no_env = project(
        &moto,
        &dist_param,
        &format!(
            "grants.http = [\"{}\"]\ngrants.env = [\"AWS_ACCESS_KEY_ID\"]",
            moto.url()
        ),
    );
    let out = backup_fails(&no_env);
    assert!(
        out.contains("add grants.env = [\\\"AWS_SECRET_ACCESS_KEY\\\"]")
            || out.contains("add grants.env = [\"AWS_SECRET_ACCESS_KEY\"]"),
        "{out}"
    );

    // No such bucket.
    let wrong_bucket = project(&moto, &dist_param, &grants(&moto));
    let config = std::fs::read_to_string(wrong_bucket.root().join("rewind.toml")).unwrap();
    std::fs::write(
        wrong_bucket.root().join("rewind.toml"),
        config.replacen(
            &format!("bucket = \"{BUCKET}\""),
            "bucket = \"no-such-bucket\"",
            1,
        ),
    )
    .unwrap();
    let out = backup_fails(&wrong_bucket);
    assert!(
        out.contains("NoSuchBucket") && out.contains("check params.bucket"),
        "{out}"
    );

    // No such distribution: found by the backup, before any rollback needs it.
    let wrong_dist = project(&moto, r#"distribution_id = "E2NOSUCHDIST""#, &grants(&moto));
    let out = backup_fails(&wrong_dist);
    assert!(
        out.contains("NoSuchDistribution") && out.contains("check params.distribution_id"),
        "{out}"
    );

    // The backup prefix inside the site of an unversioned bucket.
    moto.python(
        r#"s3.put_bucket_versioning(Bucket="app-assets", VersioningConfiguration={"Status": "Suspended"})"#,
    );
    let overlap = project(&moto, r#"backup_prefix = "site/.backup/""#, &grants(&moto));
    let out = backup_fails(&overlap);
    assert!(
        out.contains("params.backup_prefix `site/.backup/` overlaps params.prefix `site/`"),
        "{out}"
    );
}

#[test]
fn signatures_are_verified_by_moto_and_a_wrong_secret_names_the_variable() {
    // With IAM auth on, moto checks every request's SigV4 signature the
    // way botocore computes it. (moto 5.2.5 also refuses botocore's own
    // CloudFront signatures under IAM auth, so this covers S3 only.)
    let moto = Moto::start();
    site(&moto, false, 5);
    let (key, secret) = moto.enable_iam_auth();
    let before = snapshot(&moto);
    // No health check: anonymous reads are refused under IAM auth.
    let mut project = project_with(&moto, "", &grants(&moto), "");
    project.set_env("AWS_ACCESS_KEY_ID", &key);
    project.set_env("AWS_SECRET_ACCESS_KEY", &secret);
    project.set_env("MOTO_KEY", &key);
    project.set_env("MOTO_SECRET", &secret);

    // The right key: backup (listing, HEADs, copies) and a rollback
    // (copies with metadata, a delete) are accepted.
    project.json(&["backup", "--json"], 0);
    moto.python(DEPLOY);
    project.json(&["rollback", "--yes", "--json"], 0);
    assert_eq!(snapshot(&moto), before);

    project.set_env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let out = backup_fails(&project);
    assert!(
        out.contains("SignatureDoesNotMatch") && out.contains("check AWS_SECRET_ACCESS_KEY"),
        "{out}"
    );
    project.set_env("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY0000000");
    let out = backup_fails(&project);
    assert!(
        out.contains("InvalidAccessKeyId") && out.contains("check AWS_ACCESS_KEY_ID"),
        "{out}"
    );
}

#[test]
fn throttling_is_retried_with_backoff_and_bounded() {
    let slow = HttpServer::start(
        503,
        "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
    );
    let s = scratch();
    let outcome = Call::new(
        "site",
        json!({
            "bucket": BUCKET, "s3_endpoint": slow.origin(), "max_retries": 2,
            "access_key_id_env": KEY_VAR, "secret_access_key_env": SECRET_VAR,
        }),
    )
    .http(&slow.origin())
    .env(KEY_VAR)
    .env(SECRET_VAR)
    .run(&load("cloudfront"), &s.store, HookInput::Backup);
    let err = outcome.result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Failed, "{err:?}");
    assert!(
        err.message
            .contains("still refused with HTTP 503 SlowDown after 3 attempts"),
        "{err:?}"
    );
    assert_eq!(slow.hits(), 3, "the first try and two retries");
    assert!(
        outcome.duration >= Duration::from_millis(600),
        "backoff: 200 + 400 ms"
    );
}

#[test]
fn a_wait_for_completed_that_times_out_names_the_invalidation() {
    // A CloudFront stand-in whose invalidation never completes.
    let cloudfront = HttpServer::start(
        200,
        "<Invalidation><Id>I2SLOWINVAL</Id><Status>InProgress</Status><InvalidationBatch>\
         <Paths><Quantity>1</Quantity><Items><Path>/*</Path></Items></Paths>\
         <CallerReference>x</CallerReference></InvalidationBatch></Invalidation>",
    );
    let moto = Moto::start();
    site(&moto, true, 2);
    let s = scratch();
    let plugin = load("cloudfront");
    let call = |timeout: u64| call_via(&moto, &cloudfront, "E2SLOW", timeout);
    let saved = call(2).backup(&plugin, &s.store);
    let started = Instant::now();
    let err = call(2)
        .run(&plugin, &s.store, HookInput::Revert(&saved))
        .result
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err:?}");
    assert!(
        err.message.contains(
            "invalidation I2SLOWINVAL on distribution E2SLOW is still InProgress after 2 s"
        ) && err
            .message
            .contains("aws cloudfront get-invalidation --distribution-id E2SLOW --id I2SLOWINVAL"),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// Objects above `copy_part_size_mib` are copied in parts (UploadPartCopy),
/// the way one larger than CopyObject's 5 GiB must be: here a 12 MiB
/// object in 5 MiB parts, which moto assembles and checks like S3 (a part
/// under 5 MiB that is not the last is refused).
fn large_objects_are_copied_in_parts(versioned: bool) {
    let moto = Moto::start();
    site(&moto, versioned, 2);
    moto.python(
        r#"
import random
body = random.Random(7).randbytes(12 * 1024 * 1024 + 1)
s3.put_object(Bucket="app-assets", Key="site/media/intro.mp4", Body=body, ContentType="video/mp4",
              CacheControl="public, max-age=600", Metadata={"build": "v1"})
"#,
    );
    let before = snapshot(&moto);
    let project = project_with(&moto, "copy_part_size_mib = 5", &grants(&moto), "");
    let out = project.rewind(&["backup"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    moto.python(
        r#"
s3.put_object(Bucket="app-assets", Key="site/media/intro.mp4", Body=b"truncated by a broken deploy",
              ContentType="text/plain", Metadata={"build": "v2"})
"#,
    );
    assert_ne!(snapshot(&moto), before);

    let out = project.rewind(&["rollback", "--yes", "--verbose"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(snapshot(&moto), before, "bytes and metadata back");
    assert!(
        text(&out).contains("copying `site/media/intro.mp4` (12582913 bytes) in 3 parts of 5 MiB"),
        "{}",
        text(&out)
    );
    // A versioned bucket's backup copies nothing; an unversioned one's
    // backup copy of the large object was made in parts too.
    assert_eq!(
        backup_copies(&moto),
        if versioned {
            vec![]
        } else {
            vec![SITE_OBJECTS_OF_2 + 1, SITE_OBJECTS_OF_2 + 1]
        }
    );
    // No multipart upload is left open.
    let open = moto
        .python(r#"print(len(s3.list_multipart_uploads(Bucket="app-assets").get("Uploads", [])))"#);
    assert_eq!(open, "0");
}

/// Objects of the site as [`site`] uploads it with two of each asset.
const SITE_OBJECTS_OF_2: usize = 8;

#[test]
fn large_objects_are_copied_in_parts_on_a_versioned_bucket() {
    large_objects_are_copied_in_parts(true);
}

#[test]
fn large_objects_are_copied_in_parts_on_an_unversioned_bucket() {
    large_objects_are_copied_in_parts(false);
}

#[test]
fn a_part_size_s3_does_not_take_is_refused_with_its_limits() {
    let moto = Moto::start();
    site(&moto, false, 2);
    let project = project_with(&moto, "copy_part_size_mib = 2", &grants(&moto), "");
    let out = backup_fails(&project);
    assert!(
        out.contains("params.copy_part_size_mib is 2; S3 takes parts of 5 to 5120 MiB"),
        "{out}"
    );
}

#[test]
fn a_key_without_write_permission_is_denied_and_the_error_names_the_permission() {
    // IAM auth on; a second user that may only read the bucket.
    let moto = Moto::start();
    site(&moto, true, 10);
    moto.enable_iam_auth();
    let before = snapshot(&moto);
    let reader = moto.python(
        r#"
iam.create_user(UserName="reader")
iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:GetBucketVersioning"],
     "Resource": ["arn:aws:s3:::app-assets", "arn:aws:s3:::app-assets/*"]}]}))
k = iam.create_access_key(UserName="reader")["AccessKey"]
print(k["AccessKeyId"], k["SecretAccessKey"])
"#,
    );
    let (key, secret) = reader.split_once(' ').unwrap();
    let mut project = project_with(&moto, "", &grants(&moto), "");
    project.set_env("AWS_ACCESS_KEY_ID", key);
    project.set_env("AWS_SECRET_ACCESS_KEY", secret);

    // Reading is enough for a backup of a versioned bucket.
    project.json(&["backup", "--json"], 0);
    moto.python(DEPLOY);
    let broken = snapshot(&moto);

    // Putting the objects back is not allowed: the rollback stops at the
    // first copy, names the operation, its IAM permission and the
    // variable holding the key, and changes nothing.
    let out = project.rewind(&["rollback", "--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let out = text(&out);
    assert!(
        out.contains("CopyObject (s3:GetObject on the source, s3:PutObject on the target)")
            && out.contains("AccessDenied")
            && out.contains("the key in AWS_ACCESS_KEY_ID lacks this permission"),
        "{out}"
    );
    assert_eq!(snapshot(&moto), broken);
    assert_ne!(broken, before);
}

/// A CloudFront stand-in that has too many invalidations in progress for
/// the first `busy` CreateInvalidation requests (as CloudFront answers
/// them: HTTP 400 TooManyInvalidationsInProgress), then creates one that
/// is completed.
fn busy_cloudfront(busy: usize) -> HttpServer {
    let creates = std::sync::atomic::AtomicUsize::new(0);
    HttpServer::start_answering(Duration::ZERO, move |request| {
        match (
            request.method.as_str(),
            request.path.ends_with("/invalidation"),
        ) {
            ("POST", true) => {
                if creates.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < busy {
                    (
                        400,
                        "<ErrorResponse><Error><Type>Sender</Type>\
                         <Code>TooManyInvalidationsInProgress</Code><Message>Processing your \
                         request will cause you to exceed the maximum number of in-progress \
                         wildcard invalidations.</Message></Error></ErrorResponse>"
                            .into(),
                    )
                } else {
                    (
                        201,
                        "<Invalidation><Id>I2SLOT</Id><Status>Completed</Status>\
                         <InvalidationBatch><Paths><Quantity>1</Quantity><Items><Path>/*</Path>\
                         </Items></Paths><CallerReference>x</CallerReference></InvalidationBatch>\
                         </Invalidation>"
                            .into(),
                    )
                }
            }
            ("GET", true) => (
                200,
                "<InvalidationList><IsTruncated>false</IsTruncated><Quantity>0</Quantity>\
                 </InvalidationList>"
                    .into(),
            ),
            // GetDistribution: it exists.
            _ => (200, "<Distribution><Id>E2BUSY</Id></Distribution>".into()),
        }
    })
}

/// A hook call on the site in moto whose CloudFront is `cloudfront`, for
/// distribution `dist`.
fn call_via(moto: &Moto, cloudfront: &HttpServer, dist: &str, wait_timeout_s: u64) -> Call {
    Call::new(
        "site",
        json!({
            "bucket": BUCKET, "prefix": "site/", "s3_endpoint": moto.url(),
            "cloudfront_endpoint": cloudfront.origin(), "distribution_id": dist,
            "wait_timeout_s": wait_timeout_s,
            "access_key_id_env": KEY_VAR, "secret_access_key_env": SECRET_VAR,
        }),
    )
    .http(&moto.url())
    .http(&cloudfront.origin())
    .env(KEY_VAR)
    .env(SECRET_VAR)
}

#[test]
fn too_many_invalidations_in_progress_waits_for_a_slot_then_times_out_clearly() {
    let moto = Moto::start();
    site(&moto, true, 2);
    let s = scratch();
    let plugin = load("cloudfront");
    let call =
        |cloudfront: &HttpServer, timeout: u64| call_via(&moto, cloudfront, "E2BUSY", timeout);

    // Busy twice, then a slot: the revert waits (2 s, 4 s) and succeeds.
    let cloudfront = busy_cloudfront(2);
    let saved = call(&cloudfront, 60).backup(&plugin, &s.store);
    let outcome = call(&cloudfront, 60).run(&plugin, &s.store, HookInput::Revert(&saved));
    let summary = report(&outcome).summary;
    assert!(
        summary.contains("invalidation I2SLOT of /* on E2BUSY: Completed"),
        "{summary}"
    );
    let posts = |server: &HttpServer| {
        server
            .recorded()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    };
    assert_eq!(posts(&cloudfront), 3);
    assert!(
        outcome.logs.iter().any(|l| l
            .message
            .contains("TooManyInvalidationsInProgress; trying again in 2 s")),
        "{:#?}",
        outcome.logs
    );

    // Busy for longer than the wait budget: a timeout that says the
    // bucket is restored and how to finish.
    let cloudfront = busy_cloudfront(usize::MAX);
    let started = Instant::now();
    let err = call(&cloudfront, 3)
        .run(&plugin, &s.store, HookInput::Revert(&saved))
        .result
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err:?}");
    assert!(
        err.message.contains(
            "CreateInvalidation on distribution E2BUSY: still TooManyInvalidationsInProgress after 3 s"
        ) && err.message.contains("The bucket is restored")
            && err.message.contains("`rewind rollback --resume` creates this one"),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn cloudfront_requests_are_signed_exactly_as_botocore_signs_them() {
    // moto checks S3 signatures under IAM auth (the test above) but not
    // CloudFront's; so recompute each CloudFront request's signature with
    // botocore's SigV4 signer from what the stand-in received, with the
    // same time and the headers the plugin signed.
    let moto = Moto::start();
    site(&moto, true, 2);
    let cloudfront = busy_cloudfront(0);
    let s = scratch();
    let plugin = load("cloudfront");
    let saved = call_via(&moto, &cloudfront, "E2BUSY", 60).backup(&plugin, &s.store);
    report(&call_via(&moto, &cloudfront, "E2BUSY", 60).run(
        &plugin,
        &s.store,
        HookInput::Revert(&saved),
    ));

    let requests: Vec<Value> = cloudfront
        .recorded()
        .iter()
        .map(|r| {
            json!({
                "method": r.method, "url": format!("{}{}", cloudfront.origin(), r.path),
                "headers": r.headers, "body": String::from_utf8_lossy(&r.body),
            })
        })
        .collect();
    assert!(
        requests.iter().any(|r| r["method"] == "POST"),
        "{requests:#?}"
    );
    let recorded = s.dir.path().join("cloudfront-requests.json");
    std::fs::write(&recorded, serde_json::to_vec(&requests).unwrap()).unwrap();
    let checked = moto.python(&format!(
        r#"
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
creds = Credentials(os.environ["{KEY_VAR}"], os.environ["{SECRET_VAR}"])
ok = 0
for r in json.load(open({recorded:?})):
    headers = dict(r["headers"])
    auth = headers["authorization"]
    scope = auth.split("Credential=")[1].split(",")[0].split("/")
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    request = AWSRequest(method=r["method"], url=r["url"], data=r["body"].encode(),
                         headers={{h: headers[h] for h in signed}})
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(creds, scope[3], scope[2])
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    got = auth.split("Signature=")[1]
    assert (scope[2], scope[3]) == ("us-east-1", "cloudfront"), scope
    assert got == expected, (r["method"], r["url"], got, expected)
    ok += 1
print(ok)
"#,
        recorded = recorded.display().to_string()
    ));
    assert_eq!(checked, requests.len().to_string());
}
