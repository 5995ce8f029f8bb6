//! The S3 and CloudFront operations the hooks use, each one request (or a
//! paginated series), errors explained by [`Client::explain`].

use std::collections::BTreeMap;

use rewind_sdk::{HookError, log};
use serde::{Deserialize, Serialize};

use crate::aws::{
    Call, Client, Failure, Service, child_text, encode, encode_key, header, parse_xml,
};

/// Where the bucket is: a path-style endpoint (`{endpoint}/{bucket}/{key}`)
/// or AWS's virtual-hosted `https://{bucket}.s3.{region}.amazonaws.com`.
#[derive(Clone, Debug)]
pub struct S3 {
    pub endpoint: Option<String>,
    pub region: String,
}

/// The metadata an object is served with, restored with it (a copy with
/// `x-amz-metadata-directive: REPLACE` keeps only what it is given).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website_redirect_location: Option<String>,
    /// `x-amz-meta-*`, names without the prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, String>,
}

const META_HEADERS: [&str; 6] = [
    "content-type",
    "cache-control",
    "content-encoding",
    "content-disposition",
    "content-language",
    "x-amz-website-redirect-location",
];

impl Meta {
    fn slots(&mut self) -> [&mut Option<String>; 6] {
        [
            &mut self.content_type,
            &mut self.cache_control,
            &mut self.content_encoding,
            &mut self.content_disposition,
            &mut self.content_language,
            &mut self.website_redirect_location,
        ]
    }

    /// The headers that set this metadata on a PUT or a copy.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut copy = self.clone();
        let mut out: Vec<(String, String)> = META_HEADERS
            .iter()
            .zip(copy.slots())
            .filter_map(|(name, value)| Some((name.to_string(), value.take()?)))
            .collect();
        for (k, v) in &self.user {
            out.push((format!("x-amz-meta-{k}"), v.clone()));
        }
        out
    }
}

/// An object as a HEAD sees it.
#[derive(Clone, Debug)]
pub struct Head {
    pub etag: String,
    pub size: u64,
    pub version_id: Option<String>,
    pub meta: Meta,
}

/// One key of a listing.
#[derive(Clone, Debug)]
pub struct Listed {
    pub key: String,
    pub etag: String,
}

/// Copy sources are `/bucket/key[?versionId=…]`, escaped.
pub fn copy_source(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    let mut out = format!("/{}/{}", encode(bucket), encode_key(key));
    if let Some(v) = version_id {
        out.push_str(&format!("?versionId={}", encode(v)));
    }
    out
}

impl S3 {
    pub fn bucket_url(&self, bucket: &str) -> String {
        match &self.endpoint {
            Some(ep) => format!("{}/{}", ep.trim_end_matches('/'), bucket),
            None => format!("https://{bucket}.s3.{}.amazonaws.com/", self.region),
        }
    }

    pub fn object_url(&self, bucket: &str, key: &str) -> String {
        format!(
            "{}/{}",
            self.bucket_url(bucket).trim_end_matches('/'),
            encode_key(key)
        )
    }

    /// GetBucketVersioning: true when `Enabled` (a `Suspended` bucket no
    /// longer keeps new versions).
    pub fn versioned(&self, client: &Client, bucket: &str) -> Result<bool, HookError> {
        let call = Call::new(
            Service::S3,
            "GET",
            format!("{}?versioning", self.bucket_url(bucket)),
        );
        let response = client.send(&call).map_err(|f| {
            client.explain(
                "GetBucketVersioning (s3:GetBucketVersioning)",
                &format!("bucket `{bucket}`"),
                f,
            )
        })?;
        let text = response.text();
        let doc = parse_xml(&text, "GetBucketVersioning")?;
        Ok(child_text(doc.root_element(), "Status").as_deref() == Some("Enabled"))
    }

    /// ListObjectsV2 of `prefix`, every page.
    pub fn list(
        &self,
        client: &Client,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<Listed>, HookError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}?list-type=2&prefix={}",
                self.bucket_url(bucket),
                encode(prefix)
            );
            if let Some(t) = &token {
                url.push_str(&format!("&continuation-token={}", encode(t)));
            }
            let response = client
                .send(&Call::new(Service::S3, "GET", url))
                .map_err(|f| {
                    client.explain(
                        "ListObjectsV2 (s3:ListBucket)",
                        &format!("s3://{bucket}/{prefix}"),
                        f,
                    )
                })?;
            let text = response.text();
            let doc = parse_xml(&text, "ListObjectsV2")?;
            let root = doc.root_element();
            for contents in root
                .children()
                .filter(|n| n.is_element() && n.tag_name().name() == "Contents")
            {
                let key = child_text(contents, "Key").unwrap_or_default();
                out.push(Listed {
                    key,
                    etag: child_text(contents, "ETag").unwrap_or_default(),
                });
            }
            let truncated = child_text(root, "IsTruncated").as_deref() == Some("true");
            token = child_text(root, "NextContinuationToken").filter(|t| !t.is_empty());
            if !truncated {
                break;
            }
            if token.is_none() {
                return Err(HookError::failed(format!(
                    "ListObjectsV2 of s3://{bucket}/{prefix}: a truncated page without a continuation token"
                )));
            }
        }
        Ok(out)
    }

    /// HeadObject; `None` when the key does not exist (any more).
    pub fn head(
        &self,
        client: &Client,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Head>, HookError> {
        let call = Call::new(Service::S3, "HEAD", self.object_url(bucket, key));
        let response = match client.send(&call) {
            Ok(r) => r,
            Err(Failure::Aws(e)) if e.status == 404 => return Ok(None),
            Err(f) => {
                return Err(client.explain(
                    "HeadObject (s3:GetObject)",
                    &format!("s3://{bucket}/{key}"),
                    f,
                ));
            }
        };
        let mut meta = Meta::default();
        for (name, slot) in META_HEADERS.iter().zip(meta.slots()) {
            *slot = header(&response, name).map(str::to_string);
        }
        for (k, v) in &response.headers {
            if let Some(name) = k.strip_prefix("x-amz-meta-") {
                meta.user.insert(name.to_string(), v.clone());
            }
        }
        Ok(Some(Head {
            etag: header(&response, "etag").unwrap_or("").to_string(),
            size: header(&response, "content-length")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            version_id: header(&response, "x-amz-version-id").map(str::to_string),
            meta,
        }))
    }

    /// CopyObject, server-side: `source` (from [`copy_source`]) to
    /// `bucket`/`key`; with `meta`, replacing the metadata by it, else
    /// copying the source's. Returns the new object's ETag.
    pub fn copy(
        &self,
        client: &Client,
        source: &str,
        bucket: &str,
        key: &str,
        meta: Option<&Meta>,
    ) -> Result<String, HookError> {
        let mut call = Call::new(Service::S3, "PUT", self.object_url(bucket, key))
            .header("x-amz-copy-source", source);
        match meta {
            Some(meta) => {
                call = call.header("x-amz-metadata-directive", "REPLACE");
                for (k, v) in meta.headers() {
                    call = call.header(&k, &v);
                }
            }
            None => call = call.header("x-amz-metadata-directive", "COPY"),
        }
        let response = client.send(&call).map_err(|f| {
            client.explain(
                "CopyObject (s3:GetObject on the source, s3:PutObject on the target)",
                &format!("{source} -> s3://{bucket}/{key}"),
                f,
            )
        })?;
        // A copy can fail after its 200 (the error is in the body).
        let text = response.text();
        let doc = parse_xml(&text, "CopyObject")?;
        let root = doc.root_element();
        if root.tag_name().name() == "Error" {
            return Err(HookError::failed(format!(
                "CopyObject {source} -> s3://{bucket}/{key} failed: {} {}",
                child_text(root, "Code").unwrap_or_default(),
                child_text(root, "Message").unwrap_or_default()
            )));
        }
        Ok(child_text(root, "ETag").unwrap_or_default())
    }

    /// A server-side copy of `size` bytes in parts of `part_size` (S3's
    /// UploadPartCopy; CopyObject stops at 5 GiB): CreateMultipartUpload
    /// with `meta`, one ranged UploadPartCopy per part, then
    /// CompleteMultipartUpload. The target key changes only on completion;
    /// a failure aborts the upload so no parts are left billed. Returns
    /// the new object's ETag (a multipart ETag, `…-N`).
    #[allow(clippy::too_many_arguments)]
    pub fn copy_in_parts(
        &self,
        client: &Client,
        source: &str,
        size: u64,
        bucket: &str,
        key: &str,
        meta: &Meta,
        part_size: u64,
    ) -> Result<String, HookError> {
        let target = format!("{source} -> s3://{bucket}/{key}");
        let url = self.object_url(bucket, key);
        let mut create = Call::new(Service::S3, "POST", format!("{url}?uploads"));
        for (k, v) in meta.headers() {
            create = create.header(&k, &v);
        }
        let response = client.send(&create).map_err(|f| {
            client.explain(
                "CreateMultipartUpload (s3:PutObject)",
                &format!("s3://{bucket}/{key}"),
                f,
            )
        })?;
        let text = response.text();
        let doc = parse_xml(&text, "CreateMultipartUpload")?;
        let upload_id = child_text(doc.root_element(), "UploadId")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                HookError::failed(format!("CreateMultipartUpload for {target}: no UploadId"))
            })?;
        let upload = format!("uploadId={}", encode(&upload_id));
        let copied = self.copy_parts(client, source, size, &url, &upload, part_size, &target);
        let result = copied.and_then(|etags| {
            let parts: String = etags
                .iter()
                .enumerate()
                .map(|(i, etag)| {
                    format!(
                        "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                        i + 1,
                        xml_escape(etag)
                    )
                })
                .collect();
            let body = format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{parts}</CompleteMultipartUpload>"#
            );
            let complete = Call::new(Service::S3, "POST", format!("{url}?{upload}"))
                .header("content-type", "application/xml")
                .body(body.into_bytes());
            let response = client.send(&complete).map_err(|f| {
                client.explain("CompleteMultipartUpload (s3:PutObject)", &target, f)
            })?;
            // Like a copy, a completion can fail after its 200.
            let text = response.text();
            let doc = parse_xml(&text, "CompleteMultipartUpload")?;
            let root = doc.root_element();
            if root.tag_name().name() == "Error" {
                return Err(HookError::failed(format!(
                    "CompleteMultipartUpload {target} failed: {} {}",
                    child_text(root, "Code").unwrap_or_default(),
                    child_text(root, "Message").unwrap_or_default()
                )));
            }
            Ok(child_text(root, "ETag").unwrap_or_default())
        });
        if result.is_err() {
            let abort = Call::new(Service::S3, "DELETE", format!("{url}?{upload}"));
            if let Err(f) = client.send(&abort) {
                let err =
                    client.explain("AbortMultipartUpload (s3:AbortMultipartUpload)", &target, f);
                log::warn(format!(
                    "{}; the unfinished upload {upload_id} stays until a lifecycle rule removes it",
                    err.message()
                ));
            }
        }
        result
    }

    /// The UploadPartCopy requests of [`S3::copy_in_parts`]: their ETags,
    /// in part order.
    #[allow(clippy::too_many_arguments)]
    fn copy_parts(
        &self,
        client: &Client,
        source: &str,
        size: u64,
        url: &str,
        upload: &str,
        part_size: u64,
        target: &str,
    ) -> Result<Vec<String>, HookError> {
        let mut etags = Vec::new();
        let mut start = 0u64;
        while start < size {
            let end = (start + part_size).min(size) - 1;
            let number = etags.len() + 1;
            let call = Call::new(
                Service::S3,
                "PUT",
                format!("{url}?partNumber={number}&{upload}"),
            )
            .header("x-amz-copy-source", source)
            .header("x-amz-copy-source-range", &format!("bytes={start}-{end}"));
            let response = client.send(&call).map_err(|f| {
                client.explain(
                    "UploadPartCopy (s3:GetObject on the source, s3:PutObject on the target)",
                    &format!("{target}, part {number} (bytes {start}-{end})"),
                    f,
                )
            })?;
            let text = response.text();
            let doc = parse_xml(&text, "UploadPartCopy")?;
            let root = doc.root_element();
            if root.tag_name().name() == "Error" {
                return Err(HookError::failed(format!(
                    "UploadPartCopy {target}, part {number} failed: {} {}",
                    child_text(root, "Code").unwrap_or_default(),
                    child_text(root, "Message").unwrap_or_default()
                )));
            }
            etags.push(child_text(root, "ETag").unwrap_or_default());
            start = end + 1;
        }
        Ok(etags)
    }

    /// DeleteObject (on a versioned bucket: a delete marker).
    pub fn delete(&self, client: &Client, bucket: &str, key: &str) -> Result<(), HookError> {
        let call = Call::new(Service::S3, "DELETE", self.object_url(bucket, key));
        client.send(&call).map_err(|f| {
            client.explain(
                "DeleteObject (s3:DeleteObject)",
                &format!("s3://{bucket}/{key}"),
                f,
            )
        })?;
        Ok(())
    }
}

/// The CloudFront API at `endpoint`.
#[derive(Clone, Debug)]
pub struct CloudFront {
    pub endpoint: String,
}

/// An invalidation as GetInvalidation / CreateInvalidation return it.
#[derive(Clone, Debug)]
pub struct Invalidation {
    pub id: String,
    pub status: String,
    pub caller_reference: String,
    pub paths: Vec<String>,
}

impl Invalidation {
    pub fn completed(&self) -> bool {
        self.status.eq_ignore_ascii_case("Completed")
    }
}

const API: &str = "2020-05-31";

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// CloudFront's answer when a distribution has as many invalidations in
/// progress as it allows: not an error of ours, a reason to wait.
pub const TOO_MANY_INVALIDATIONS: &str = "TooManyInvalidationsInProgress";

impl CloudFront {
    fn url(&self, path: &str) -> String {
        format!("{}/{API}/{path}", self.endpoint.trim_end_matches('/'))
    }

    fn target(dist: &str) -> String {
        format!("distribution `{dist}`")
    }

    /// GetDistribution: the distribution exists and the key may read it.
    pub fn check_distribution(&self, client: &Client, dist: &str) -> Result<(), HookError> {
        let call = Call::new(
            Service::CloudFront,
            "GET",
            self.url(&format!("distribution/{}", encode(dist))),
        );
        client.send(&call).map_err(|f| {
            client.explain(
                "GetDistribution (cloudfront:GetDistribution)",
                &Self::target(dist),
                f,
            )
        })?;
        Ok(())
    }

    fn parse_invalidation(text: &str) -> Result<Invalidation, HookError> {
        let doc = parse_xml(text, "Invalidation")?;
        let root = doc.root_element();
        let batch = root
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == "InvalidationBatch");
        let paths = batch
            .map(|b| {
                b.descendants()
                    .filter(|n| n.is_element() && n.tag_name().name() == "Path")
                    .map(|n| n.text().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Invalidation {
            id: child_text(root, "Id").unwrap_or_default(),
            status: child_text(root, "Status").unwrap_or_default(),
            caller_reference: batch
                .and_then(|b| child_text(b, "CallerReference"))
                .unwrap_or_default(),
            paths,
        })
    }

    /// CreateInvalidation. CloudFront answers a repeated CallerReference
    /// with the same paths by returning the existing invalidation. `None`
    /// when the distribution has too many invalidations in progress to
    /// take another now.
    pub fn create_invalidation(
        &self,
        client: &Client,
        dist: &str,
        paths: &[String],
        caller_reference: &str,
    ) -> Result<Option<Invalidation>, HookError> {
        let items: String = paths
            .iter()
            .map(|p| format!("<Path>{}</Path>", xml_escape(p)))
            .collect();
        let body = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><InvalidationBatch xmlns="http://cloudfront.amazonaws.com/doc/{API}/"><Paths><Quantity>{}</Quantity><Items>{items}</Items></Paths><CallerReference>{}</CallerReference></InvalidationBatch>"#,
            paths.len(),
            xml_escape(caller_reference)
        );
        let call = Call::new(
            Service::CloudFront,
            "POST",
            self.url(&format!("distribution/{}/invalidation", encode(dist))),
        )
        .header("content-type", "application/xml")
        .body(body.into_bytes());
        let response = match client.send(&call) {
            Ok(response) => response,
            Err(Failure::Aws(e)) if e.code == TOO_MANY_INVALIDATIONS => return Ok(None),
            Err(f) => {
                return Err(client.explain(
                    "CreateInvalidation (cloudfront:CreateInvalidation)",
                    &Self::target(dist),
                    f,
                ));
            }
        };
        Self::parse_invalidation(&response.text()).map(Some)
    }

    pub fn get_invalidation(
        &self,
        client: &Client,
        dist: &str,
        id: &str,
    ) -> Result<Invalidation, HookError> {
        let call = Call::new(
            Service::CloudFront,
            "GET",
            self.url(&format!(
                "distribution/{}/invalidation/{}",
                encode(dist),
                encode(id)
            )),
        );
        let response = client.send(&call).map_err(|f| {
            client.explain(
                "GetInvalidation (cloudfront:GetInvalidation)",
                &format!("invalidation `{id}` of {}", Self::target(dist)),
                f,
            )
        })?;
        Self::parse_invalidation(&response.text())
    }

    /// ListInvalidations, every page up to `max` summaries: (id, create
    /// time, status).
    pub fn list_invalidations(
        &self,
        client: &Client,
        dist: &str,
        max: usize,
    ) -> Result<Vec<(String, String, String)>, HookError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut url = self.url(&format!("distribution/{}/invalidation", encode(dist)));
            if let Some(m) = &marker {
                url.push_str(&format!("?Marker={}", encode(m)));
            }
            let response = client
                .send(&Call::new(Service::CloudFront, "GET", url))
                .map_err(|f| {
                    client.explain(
                        "ListInvalidations (cloudfront:ListInvalidations)",
                        &Self::target(dist),
                        f,
                    )
                })?;
            let text = response.text();
            let doc = parse_xml(&text, "ListInvalidations")?;
            let root = doc.root_element();
            for summary in root
                .descendants()
                .filter(|n| n.is_element() && n.tag_name().name() == "InvalidationSummary")
            {
                out.push((
                    child_text(summary, "Id").unwrap_or_default(),
                    child_text(summary, "CreateTime").unwrap_or_default(),
                    child_text(summary, "Status").unwrap_or_default(),
                ));
            }
            let truncated = child_text(root, "IsTruncated").as_deref() == Some("true");
            marker = child_text(root, "NextMarker").filter(|m| !m.is_empty());
            if !truncated || marker.is_none() || out.len() >= max {
                break;
            }
        }
        Ok(out)
    }
}
