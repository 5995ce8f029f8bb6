//! rewind plugin `cloudfront`: static assets in S3 behind CloudFront.
//!
//! **backup** records the live asset set under `bucket`/`prefix` exactly —
//! every key with its ETag, size and serving metadata — as one JSON
//! artifact. On a versioned bucket it records each object's version id and
//! copies nothing; on an unversioned one it copies every object server-side
//! to `backup_prefix` + the run id (never through this host).
//!
//! **revert** puts the bucket back to exactly that set: changed and deleted
//! objects come back (from their versions or the backup copies) with their
//! metadata, objects that were not there are deleted, objects that match
//! are left alone. Then one CloudFront invalidation, whose CallerReference
//! comes from the run, so a retried revert does not create a second, and a
//! wait for `Completed`.

mod api;
mod aws;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rewind_sdk::{
    ArtifactRef, Backup, Capabilities, Context, HookError, Plugin, PluginInfo, Report, Revert,
    artifacts, log,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use api::{CloudFront, Invalidation, Meta, S3, TOO_MANY_INVALIDATIONS, copy_source};
use aws::{Client, CredentialVars};

rewind_sdk::params! {
    struct Params {
        /// The bucket the site is served from
        bucket: String,
        /// The site's key prefix ("" for the whole bucket; else ending in `/`, e.g. `site/`)
        prefix: String = "",
        /// The bucket's region
        region: String = "us-east-1",
        /// An S3-compatible endpoint, path-style (`{endpoint}/{bucket}/{key}`); default AWS's `https://{bucket}.s3.{region}.amazonaws.com`
        s3_endpoint: Option<String>,
        /// The CloudFront API endpoint
        cloudfront_endpoint: String = "https://cloudfront.amazonaws.com",
        /// The distribution to invalidate after a revert (none: no invalidation)
        distribution_id: Option<String>,
        /// The paths to invalidate
        invalidation_paths: Vec<String> = ["/*"],
        /// How long a revert waits for the invalidation to be `Completed` (keep below limits.timeout_s)
        wait_timeout_s: u64 = 240,
        /// Unversioned buckets: where backup copies go (default: `bucket`)
        backup_bucket: Option<String>,
        /// Unversioned buckets: backup copies go under this prefix + the run id; must not overlap `prefix`
        backup_prefix: String = ".rewind-backup/",
        /// The granted variable with the access key id
        access_key_id_env: String = "AWS_ACCESS_KEY_ID",
        /// The granted variable with the secret access key
        secret_access_key_env: String = "AWS_SECRET_ACCESS_KEY",
        /// The granted variable with a session token (optional; unset for long-term keys)
        session_token_env: String = "AWS_SESSION_TOKEN",
        /// Per request
        request_timeout_s: u64 = 30,
        /// Retries of a throttled (SlowDown, Throttling, 503) or failed request, with backoff
        max_retries: u32 = 5,
        /// Objects larger than this are copied server-side in parts of this size (UploadPartCopy); S3 allows 5 to 5120 MiB per part, and one CopyObject copies at most 5 GiB
        copy_part_size_mib: u64 = 5120,
    }
}

/// The artifact `assets`: the live set as backup saw it.
#[derive(Serialize, Deserialize)]
struct Record {
    format: u32,
    bucket: String,
    prefix: String,
    /// Versioned: objects come back from `version_id`. Else from copies
    /// under `backup_bucket`/`backup_location`.
    versioned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup_bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup_location: Option<String>,
    run_id: String,
    objects: Vec<Object>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Object {
    key: String,
    etag: String,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version_id: Option<String>,
    #[serde(flatten)]
    meta: Meta,
}

/// S3's limits on a part of a multipart upload: 5 MiB to 5 GiB, at most
/// 10,000 parts.
const PART_SIZE_MIB: std::ops::RangeInclusive<u64> = 5..=5120;
const MAX_PARTS: u64 = 10_000;

impl Params {
    fn client(&self) -> Result<Client, HookError> {
        Client::new(
            CredentialVars {
                access_key_id: self.access_key_id_env.clone(),
                secret_access_key: self.secret_access_key_env.clone(),
                session_token: self.session_token_env.clone(),
            },
            &self.region,
            Duration::from_secs(self.request_timeout_s.max(1)),
            self.max_retries,
        )
    }

    fn s3(&self) -> S3 {
        S3 {
            endpoint: self.s3_endpoint.clone(),
            region: self.region.clone(),
        }
    }

    fn cloudfront(&self) -> CloudFront {
        CloudFront {
            endpoint: self.cloudfront_endpoint.clone(),
        }
    }

    /// Copy `object` server-side from `source` to `bucket`/`key`: one
    /// CopyObject up to the part size, else a multipart copy. With
    /// `replace`, the object gets the recorded metadata; else (backup
    /// copies) the source's. Returns the new ETag, and whether it came
    /// from parts (a multipart ETag is not the content's).
    fn copy(
        &self,
        client: &Client,
        source: &str,
        object: &Object,
        (bucket, key): (&str, &str),
        replace: bool,
    ) -> Result<(String, bool), HookError> {
        if !PART_SIZE_MIB.contains(&self.copy_part_size_mib) {
            return Err(HookError::invalid_input(format!(
                "params.copy_part_size_mib is {}; S3 takes parts of {} to {} MiB",
                self.copy_part_size_mib,
                PART_SIZE_MIB.start(),
                PART_SIZE_MIB.end()
            )));
        }
        let part_size = self.copy_part_size_mib << 20;
        let s3 = self.s3();
        if object.size <= part_size {
            let meta = replace.then_some(&object.meta);
            return Ok((s3.copy(client, source, bucket, key, meta)?, false));
        }
        if object.size.div_ceil(part_size) > MAX_PARTS {
            return Err(HookError::invalid_input(format!(
                "`{}` is {} bytes: in parts of {} MiB that is more than S3's {MAX_PARTS} parts; \
                 raise params.copy_part_size_mib",
                object.key, object.size, self.copy_part_size_mib
            )));
        }
        log::info(format!(
            "copying `{}` ({} bytes) in {} parts of {} MiB",
            object.key,
            object.size,
            object.size.div_ceil(part_size),
            self.copy_part_size_mib
        ));
        let etag = s3.copy_in_parts(
            client,
            source,
            object.size,
            bucket,
            key,
            &object.meta,
            part_size,
        )?;
        Ok((etag, true))
    }

    fn backup_bucket(&self) -> &str {
        self.backup_bucket.as_deref().unwrap_or(&self.bucket)
    }

    /// Backup copies may not live among the site's objects (they would be
    /// served, listed as part of the site, and deleted by a revert), nor
    /// the site inside the backups.
    fn check_backup_location(&self) -> Result<(), HookError> {
        if self.backup_bucket() != self.bucket {
            return Ok(());
        }
        let (site, backup) = (self.prefix.as_str(), self.backup_prefix.as_str());
        if backup.is_empty() || backup.starts_with(site) || site.starts_with(backup) {
            return Err(HookError::invalid_input(format!(
                "params.backup_prefix `{backup}` overlaps params.prefix `{site}` in bucket `{}`: \
                 backup copies of an unversioned bucket would be served and listed as part of \
                 the site. Set backup_prefix outside the site (prefix `site/` with \
                 backup_prefix `.rewind-backup/`), set params.backup_bucket to another bucket, \
                 or enable versioning on the bucket (then nothing is copied)",
                self.bucket
            )));
        }
        Ok(())
    }

    /// Whether `key` lies under the backup prefix of this bucket (never part
    /// of the site, never deleted by a revert).
    fn is_backup_key(&self, key: &str) -> bool {
        self.backup_bucket() == self.bucket
            && !self.backup_prefix.is_empty()
            && key.starts_with(&self.backup_prefix)
    }
}

struct Cloudfront;

impl Plugin for Cloudfront {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "cloudfront".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Records the S3 asset set behind CloudFront (versions or server-side copies); \
                      reverts it exactly and invalidates once"
                .into(),
            capabilities: Capabilities {
                http: vec![
                    "<params.s3_endpoint, else https://<params.bucket>.s3.<params.region>.amazonaws.com>"
                        .into(),
                    "<params.cloudfront_endpoint: https://cloudfront.amazonaws.com>".into(),
                ],
                env: vec![
                    "<params.access_key_id_env: AWS_ACCESS_KEY_ID>".into(),
                    "<params.secret_access_key_env: AWS_SECRET_ACCESS_KEY>".into(),
                    "<params.session_token_env: AWS_SESSION_TOKEN, optional>".into(),
                ],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

fn location(params: &Params) -> String {
    format!("s3://{}/{}", params.bucket, params.prefix)
}

impl Backup for Cloudfront {
    fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> {
        let params: Params = ctx.params()?;
        let client = params.client()?;
        let s3 = params.s3();
        if let Some(dist) = &params.distribution_id {
            // A wrong id is found now, not in the middle of a rollback.
            params.cloudfront().check_distribution(&client, dist)?;
        }
        let versioned = s3.versioned(&client, &params.bucket)?;
        if !versioned {
            params.check_backup_location()?;
        }
        let listed = s3.list(&client, &params.bucket, &params.prefix)?;
        let mut objects = Vec::with_capacity(listed.len());
        for item in listed.iter().filter(|l| !params.is_backup_key(&l.key)) {
            // HEAD each object: its metadata, and (versioned) the version
            // id of exactly what is live.
            let Some(head) = s3.head(&client, &params.bucket, &item.key)? else {
                log::warn(format!("{} vanished while listing; not recorded", item.key));
                continue;
            };
            if versioned && head.version_id.is_none() {
                return Err(HookError::failed(format!(
                    "bucket `{}` is versioned but HEAD of `{}` names no version id",
                    params.bucket, item.key
                )));
            }
            objects.push(Object {
                key: item.key.clone(),
                etag: head.etag,
                size: head.size,
                version_id: if versioned { head.version_id } else { None },
                meta: head.meta,
            });
        }
        let total: u64 = objects.iter().map(|o| o.size).sum();
        let mut record = Record {
            format: 1,
            bucket: params.bucket.clone(),
            prefix: params.prefix.clone(),
            versioned,
            backup_bucket: None,
            backup_location: None,
            run_id: ctx.run_id().to_string(),
            objects,
        };
        if versioned {
            log::info(format!(
                "{}: {} objects ({total} bytes), versioned: version ids recorded, nothing copied",
                location(&params),
                record.objects.len()
            ));
        } else {
            let dest_bucket = params.backup_bucket().to_string();
            let dest = format!("{}{}/", params.backup_prefix, ctx.run_id());
            if ctx.dry_run() {
                log::info(format!(
                    "dry run: would copy {} objects ({total} bytes) to s3://{dest_bucket}/{dest}",
                    record.objects.len()
                ));
            } else {
                for object in &record.objects {
                    let source = copy_source(&params.bucket, &object.key, None);
                    let key = format!("{dest}{}", object.key);
                    params.copy(&client, &source, object, (&dest_bucket, &key), false)?;
                }
                log::info(format!(
                    "{}: {} objects ({total} bytes), unversioned: copied server-side to s3://{dest_bucket}/{dest}",
                    location(&params),
                    record.objects.len()
                ));
            }
            record.backup_bucket = Some(dest_bucket);
            record.backup_location = Some(dest);
        }
        Ok(vec![artifacts::write_json("assets", &record)?])
    }
}

/// What a revert does to one key.
enum Action<'a> {
    Restore(&'a Object, &'static str),
    Delete(String),
}

/// The CallerReference of this revert's invalidation: the run, plus what
/// is invalidated (so two instances, or other paths, never collide).
fn caller_reference(ctx: &Context, params: &Params, dist: &str) -> (String, String) {
    let mut hash = Sha256::new();
    for part in [ctx.instance(), dist, &params.bucket, &params.prefix] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    for path in &params.invalidation_paths {
        hash.update(path.as_bytes());
        hash.update([0]);
    }
    let scope = hex::encode(&hash.finalize()[..6]);
    (format!("rewind-{}-{scope}", ctx.run_id()), scope)
}

impl Revert for Cloudfront {
    fn revert(ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {
        let params: Params = ctx.params()?;
        let record: Record = artifacts::read_json(artifacts::find(saved, "assets")?)?;
        if record.bucket != params.bucket || record.prefix != params.prefix {
            return Err(HookError::invalid_input(format!(
                "this backup recorded s3://{}/{}, but params name {}: revert with the params \
                 the backup was taken with",
                record.bucket,
                record.prefix,
                location(&params)
            )));
        }
        if params.invalidation_paths.is_empty() {
            return Err(HookError::invalid_input(
                "params.invalidation_paths is empty; name at least one path (default [\"/*\"])",
            ));
        }
        let client = params.client()?;
        let s3 = params.s3();
        let cloudfront = params.cloudfront();
        if let Some(dist) = &params.distribution_id {
            // Before the bucket changes: a wrong id must not leave a
            // restored bucket behind a stale cache.
            cloudfront.check_distribution(&client, dist)?;
        }

        // The plan: compare the live set with the record.
        let live: BTreeMap<String, api::Listed> = s3
            .list(&client, &params.bucket, &params.prefix)?
            .into_iter()
            .filter(|l| !params.is_backup_key(&l.key))
            .map(|l| (l.key.clone(), l))
            .collect();
        let wanted: BTreeMap<&str, &Object> =
            record.objects.iter().map(|o| (o.key.as_str(), o)).collect();
        let mut actions = Vec::new();
        let mut unchanged = 0usize;
        for object in &record.objects {
            match live.get(&object.key) {
                None => actions.push(Action::Restore(object, "deleted since the backup")),
                Some(now) if now.etag != object.etag => {
                    actions.push(Action::Restore(object, "content changed"))
                }
                Some(_) => {
                    // Same bytes; the metadata may still differ.
                    match s3.head(&client, &params.bucket, &object.key)? {
                        Some(head) if head.meta == object.meta && head.etag == object.etag => {
                            unchanged += 1
                        }
                        Some(_) => actions.push(Action::Restore(object, "metadata changed")),
                        None => actions.push(Action::Restore(object, "deleted since the backup")),
                    }
                }
            }
        }
        for key in live.keys() {
            if !wanted.contains_key(key.as_str()) {
                actions.push(Action::Delete(key.clone()));
            }
        }
        let restores = actions
            .iter()
            .filter(|a| matches!(a, Action::Restore(..)))
            .count();
        let deletes = actions.len() - restores;

        let mut report_details: Vec<(String, String)> = Vec::new();
        let describe = |a: &Action<'_>| match a {
            Action::Restore(o, why) => ("restore".to_string(), format!("{} ({why})", o.key)),
            Action::Delete(key) => ("delete".to_string(), format!("{key} (not in the backup)")),
        };
        if ctx.dry_run() {
            for action in &actions {
                let (k, v) = describe(action);
                log::info(format!("would {k} {v}"));
                report_details.push((k, v));
            }
            let invalidate = match &params.distribution_id {
                Some(dist) => {
                    let text = format!(
                        "distribution {dist}: {}",
                        params.invalidation_paths.join(" ")
                    );
                    log::info(format!("would invalidate {text}"));
                    report_details.push(("invalidate".into(), text.clone()));
                    format!("; would invalidate {text}")
                }
                None => "; no distribution_id: no invalidation".into(),
            };
            let mut report = Report::new(format!(
                "dry run: {}: would restore {restores}, delete {deletes}, leave {unchanged} unchanged{invalidate}",
                location(&params)
            ));
            report.details = report_details;
            return Ok(report);
        }

        // Restore first, then delete: the site never lacks a file it had.
        for action in &actions {
            if let Action::Restore(object, why) = action {
                let source = match (&object.version_id, record.versioned) {
                    (Some(version), true) => {
                        copy_source(&params.bucket, &object.key, Some(version))
                    }
                    _ => {
                        let (Some(bucket), Some(dir)) =
                            (&record.backup_bucket, &record.backup_location)
                        else {
                            return Err(HookError::invalid_input(
                                "the backup record names neither version ids nor backup copies",
                            ));
                        };
                        copy_source(bucket, &format!("{dir}{}", object.key), None)
                    }
                };
                let (etag, in_parts) = params
                    .copy(
                        &client,
                        &source,
                        object,
                        (&params.bucket, &object.key),
                        true,
                    )
                    .map_err(|err| match err {
                        HookError::Failed(f)
                            if f.message.contains("NoSuchKey")
                                || f.message.contains("NoSuchVersion") =>
                        {
                            HookError::failed(format!(
                                "{} — the backed-up copy of `{}` is gone ({source}); it cannot \
                                 be restored from this backup",
                                f.message, object.key
                            ))
                        }
                        other => other,
                    })?;
                // Multipart uploads' ETags are not content hashes, and a
                // copy in parts gives a new one; only a plain ETag copied
                // in one request can be compared.
                if !in_parts
                    && !object.etag.contains('-')
                    && !etag.is_empty()
                    && etag != object.etag
                {
                    return Err(HookError::failed(format!(
                        "restored `{}` from {source}, but its ETag is {etag}, not the recorded {}",
                        object.key, object.etag
                    )));
                }
                log::info(format!("restored {} ({why})", object.key));
            }
        }
        for action in &actions {
            if let Action::Delete(key) = action {
                s3.delete(&client, &params.bucket, key)?;
                log::info(format!("deleted {key} (not in the backup)"));
            }
        }
        for action in &actions {
            report_details.push(describe(action));
        }
        let mut summary = format!(
            "{}: restored {restores}, deleted {deletes}, {unchanged} unchanged",
            location(&params)
        );

        if let Some(dist) = &params.distribution_id {
            // One budget for waiting on a slot and on `Completed`.
            let deadline = Instant::now() + Duration::from_secs(params.wait_timeout_s);
            let invalidation = invalidate(
                ctx,
                &params,
                &client,
                &cloudfront,
                dist,
                actions.is_empty(),
                deadline,
            )?;
            report_details.push(("invalidation".into(), invalidation.id.clone()));
            report_details.push(("invalidation_paths".into(), invalidation.paths.join(" ")));
            let done = wait(&params, &client, &cloudfront, dist, invalidation, deadline)?;
            summary.push_str(&format!(
                "; invalidation {} of {} on {dist}: {}",
                done.id,
                done.paths.join(" "),
                done.status
            ));
        }
        let mut report = Report::new(summary);
        report.details = report_details;
        Ok(report)
    }
}

/// The invalidation of this revert: the one a previous attempt of this run
/// created (CloudFront returns it for the same CallerReference; servers
/// that do not are covered by looking first), or, when the bucket needed no
/// change, one of ours with the same scope that is still in progress (a
/// resumed rollback after a timed-out wait), else a new one.
fn invalidate(
    ctx: &Context,
    params: &Params,
    client: &Client,
    cloudfront: &CloudFront,
    dist: &str,
    bucket_unchanged: bool,
    deadline: Instant,
) -> Result<Invalidation, HookError> {
    let (reference, scope) = caller_reference(ctx, params, dist);
    let mut recent = cloudfront.list_invalidations(client, dist, 500)?;
    // Newest first (ISO 8601 times from one server compare as text).
    recent.sort_by(|a, b| b.1.cmp(&a.1));
    for (id, _, status) in recent.iter().take(25) {
        let found = cloudfront.get_invalidation(client, dist, id)?;
        let ours = found.caller_reference == reference;
        let same_scope_running = bucket_unchanged
            && !status.eq_ignore_ascii_case("Completed")
            && found.caller_reference.starts_with("rewind-")
            && found.caller_reference.ends_with(&format!("-{scope}"));
        if ours || same_scope_running {
            log::info(format!(
                "invalidation {} ({}) already exists for this revert; not creating another",
                found.id, found.caller_reference
            ));
            return Ok(found);
        }
    }
    // Other invalidations in progress finish within minutes: wait for a
    // slot (the bucket is already restored) rather than fail the revert.
    let mut delay = Duration::from_secs(2);
    let created = loop {
        if let Some(created) =
            cloudfront.create_invalidation(client, dist, &params.invalidation_paths, &reference)?
        {
            break created;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(HookError::Timeout(format!(
                "CreateInvalidation on distribution {dist}: still {TOO_MANY_INVALIDATIONS} after \
                 {} s (params.wait_timeout_s) — CloudFront allows a limited number of \
                 invalidations in progress per distribution. The bucket is restored; when \
                 they finish (`aws cloudfront list-invalidations --distribution-id {dist}`), \
                 `rewind rollback --resume` creates this one",
                params.wait_timeout_s
            )));
        }
        log::warn(format!(
            "distribution {dist}: {TOO_MANY_INVALIDATIONS}; trying again in {} s",
            delay.as_secs()
        ));
        std::thread::sleep(delay.min(deadline - now));
        delay = (delay * 2).min(Duration::from_secs(20));
    };
    log::info(format!(
        "created invalidation {} of {} on {dist} (CallerReference {reference})",
        created.id,
        created.paths.join(" ")
    ));
    Ok(created)
}

/// Poll until `Completed`, with backoff, for at most `wait_timeout_s`.
fn wait(
    params: &Params,
    client: &Client,
    cloudfront: &CloudFront,
    dist: &str,
    mut invalidation: Invalidation,
    deadline: Instant,
) -> Result<Invalidation, HookError> {
    let mut delay = Duration::from_secs(1);
    while !invalidation.completed() {
        let now = Instant::now();
        if now >= deadline {
            return Err(HookError::Timeout(format!(
                "invalidation {} on distribution {dist} is still {} after {} s (params.wait_timeout_s); \
                 the bucket is restored. Check it with `aws cloudfront get-invalidation \
                 --distribution-id {dist} --id {}`; `rewind rollback --resume` waits for it \
                 again without creating another",
                invalidation.id,
                if invalidation.status.is_empty() {
                    "pending"
                } else {
                    &invalidation.status
                },
                params.wait_timeout_s,
                invalidation.id
            )));
        }
        std::thread::sleep(delay.min(deadline - now));
        delay = (delay * 2).min(Duration::from_secs(20));
        invalidation = cloudfront.get_invalidation(client, dist, &invalidation.id)?;
    }
    Ok(invalidation)
}

rewind_sdk::export_plugin!(Cloudfront: backup, revert);
