//! The S3 client: a blocking facade over aws-sdk-s3, run on the mount's shared tokio runtime.
//!
//! Owns the SDK client, the bucket name, and the translation of SDK errors into
//! [`S3Error`] (a kind the layers above map to errnos, plus a readable message with
//! the S3 error code). Keys here are full object keys: the mount prefix is the
//! namespace's business. Callers are plain threads (FUSE dispatch, upload pool), so
//! every call blocks on the runtime; nothing here is called from inside it.

mod connect;
mod error;

pub use connect::{Connection, DEFAULT_REQUEST_TIMEOUT, MAX_ATTEMPTS, connect};
pub use error::{S3Error, S3ErrorKind};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, MetadataDirective,
};
use bytes::Bytes;
use tokio::runtime::Handle;

/// Content-Type of directory marker objects, as s3fs-fuse writes them.
pub const DIRECTORY_CONTENT_TYPE: &str = "application/x-directory";

/// User metadata and content type sent with a new object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectHeaders {
    /// `x-amz-meta-*` entries, names without the prefix.
    pub metadata: HashMap<String, String>,
    pub content_type: Option<String>,
}

/// What HeadObject tells about an object.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    pub size: u64,
    pub last_modified: SystemTime,
    pub etag: Option<String>,
    pub metadata: HashMap<String, String>,
    pub content_type: Option<String>,
    pub checksum_crc32c: Option<String>,
}

/// One object in a listing.
#[derive(Clone, Debug)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub last_modified: SystemTime,
}

/// One page of ListObjectsV2 with a `/` delimiter.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    pub common_prefixes: Vec<String>,
    pub next_token: Option<String>,
}

/// A part of a multipart upload as CompleteMultipartUpload needs it.
#[derive(Clone, Debug)]
pub struct UploadedPart {
    pub part_number: u32,
    pub etag: String,
    /// Parts we upload carry one; parts copied server-side do not.
    pub checksum_crc32c: Option<String>,
}

/// Largest object one CopyObject may copy (S3's limit). Larger ones are copied with
/// UploadPartCopy. Tests lower it through S3UPFS_COPY_OBJECT_LIMIT to reach that path
/// with small objects.
fn copy_object_limit() -> u64 {
    std::env::var("S3UPFS_COPY_OBJECT_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5 << 30)
}

/// Part copies in flight for one large copy.
const COPY_CONCURRENCY: usize = 8;

/// An unfinished multipart upload found by ListMultipartUploads.
#[derive(Clone, Debug)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<SystemTime>,
}

pub struct S3Client {
    client: Client,
    runtime: Handle,
    bucket: String,
    endpoint: Option<String>,
    request_timeout: Duration,
}

impl S3Client {
    pub fn new(
        client: Client,
        runtime: Handle,
        bucket: String,
        endpoint: Option<String>,
        request_timeout: Duration,
    ) -> Self {
        Self {
            client,
            runtime,
            bucket,
            endpoint,
            request_timeout,
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// Runs an SDK future to completion from a plain (non-runtime) thread, within the
    /// request timeout plus 1 s per MiB of `bytes` carried: a server that accepts a
    /// request and never answers fails it (and the caller's retry budget decides
    /// what next) instead of hanging close(), lookups and unmount forever.
    fn within<T>(
        &self,
        operation: &'static str,
        key: &str,
        bytes: u64,
        future: impl std::future::Future<Output = Result<T, S3Error>>,
    ) -> Result<T, S3Error> {
        let limit = self.request_timeout + Duration::from_secs(bytes >> 20);
        log::debug!("S3 {operation} {key:?}");
        match self
            .runtime
            .block_on(async move { tokio::time::timeout(limit, future).await })
        {
            Ok(result) => result,
            Err(_) => Err(S3Error::unreachable(
                operation,
                key,
                format!("no answer within {} s", limit.as_secs()),
            )),
        }
    }

    /// [`Self::within`] for one SDK request.
    fn send<T, E>(
        &self,
        operation: &'static str,
        key: &str,
        bytes: u64,
        request: impl std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<T, S3Error>
    where
        E: ProvideErrorMetadata + std::fmt::Debug,
    {
        self.within(operation, key, bytes, async move {
            request
                .await
                .map_err(|e| S3Error::from_sdk(operation, key, e))
        })
    }

    pub fn put_object(
        &self,
        key: &str,
        body: Bytes,
        checksum_crc32c: &str,
        headers: &ObjectHeaders,
    ) -> Result<Option<String>, S3Error> {
        let bytes = body.len() as u64;
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_crc32_c(checksum_crc32c)
            .set_metadata(Some(headers.metadata.clone()))
            .set_content_type(headers.content_type.clone())
            .body(ByteStream::from(body));
        if headers.metadata.is_empty() {
            request = request.set_metadata(None);
        }
        let output = self.send(
            "PutObject",
            key,
            bytes,
            request.customize().disable_payload_signing().send(),
        )?;
        Ok(output.checksum_crc32_c().map(str::to_owned))
    }

    /// Starts a multipart upload whose parts carry CRC32C checksums (`checksummed`) or
    /// none (server-side part copies).
    pub fn create_multipart_upload(
        &self,
        key: &str,
        headers: &ObjectHeaders,
        checksummed: bool,
    ) -> Result<String, S3Error> {
        let request = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_checksum_algorithm(checksummed.then_some(ChecksumAlgorithm::Crc32C))
            .set_metadata((!headers.metadata.is_empty()).then(|| headers.metadata.clone()))
            .set_content_type(headers.content_type.clone());
        let output = self.send("CreateMultipartUpload", key, 0, request.send())?;
        output.upload_id().map(str::to_owned).ok_or_else(|| {
            S3Error::protocol("CreateMultipartUpload", key, "response has no upload id")
        })
    }

    /// Uploads one part; the server verifies `checksum_crc32c` against the body.
    pub fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
        checksum_crc32c: &str,
    ) -> Result<String, S3Error> {
        let bytes = body.len() as u64;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number as i32)
            .checksum_crc32_c(checksum_crc32c)
            .body(ByteStream::from(body));
        let output = self.send(
            "UploadPart",
            key,
            bytes,
            request.customize().disable_payload_signing().send(),
        )?;
        output
            .e_tag()
            .map(str::to_owned)
            .ok_or_else(|| S3Error::protocol("UploadPart", key, "response has no ETag"))
    }

    /// Completes an upload; returns the object's composite CRC32C if the server reports it.
    pub fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<Option<String>, S3Error> {
        let completed: Vec<CompletedPart> = parts
            .iter()
            .map(|part| {
                CompletedPart::builder()
                    .part_number(part.part_number as i32)
                    .e_tag(&part.etag)
                    .set_checksum_crc32_c(part.checksum_crc32c.clone())
                    .build()
            })
            .collect();
        let request = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            );
        let output = self.send("CompleteMultipartUpload", key, 0, request.send())?;
        Ok(output.checksum_crc32_c().map(str::to_owned))
    }

    pub fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let request = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id);
        // Already gone is what we wanted.
        missing_is_none(self.send("AbortMultipartUpload", key, 0, request.send())).map(|_| ())
    }

    /// HeadObject; `Ok(None)` when the object does not exist.
    pub fn head_object(&self, key: &str) -> Result<Option<ObjectInfo>, S3Error> {
        let request = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled);
        let output = missing_is_none(self.send("HeadObject", key, 0, request.send()))?;
        Ok(output.map(|output| ObjectInfo {
            size: output.content_length().unwrap_or(0).max(0) as u64,
            last_modified: output
                .last_modified()
                .and_then(|t| SystemTime::try_from(*t).ok())
                .unwrap_or(SystemTime::UNIX_EPOCH),
            etag: output.e_tag().map(str::to_owned),
            metadata: output.metadata().cloned().unwrap_or_default(),
            content_type: output.content_type().map(str::to_owned),
            checksum_crc32c: output.checksum_crc32_c().map(str::to_owned),
        }))
    }

    /// One page of ListObjectsV2 under `prefix`, with `/` as delimiter when `delimited`.
    pub fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage, S3Error> {
        let request = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimited.then(|| "/".to_owned()))
            .set_continuation_token(continuation)
            .set_max_keys(max_keys);
        let output = self.send("ListObjectsV2", prefix, 0, request.send())?;
        let objects = output
            .contents()
            .iter()
            .filter_map(|object| {
                Some(ListedObject {
                    key: object.key()?.to_owned(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    last_modified: object
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                })
            })
            .collect();
        let common_prefixes = output
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(str::to_owned))
            .collect();
        let next_token = if output.is_truncated().unwrap_or(false) {
            output.next_continuation_token().map(str::to_owned)
        } else {
            None
        };
        Ok(ListPage {
            objects,
            common_prefixes,
            next_token,
        })
    }

    /// Every page of a listing, concatenated.
    pub fn list_all(&self, prefix: &str, delimited: bool) -> Result<ListPage, S3Error> {
        let mut all = ListPage::default();
        let mut token = None;
        loop {
            let page = self.list_page(prefix, delimited, token, None)?;
            all.objects.extend(page.objects);
            all.common_prefixes.extend(page.common_prefixes);
            match page.next_token {
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// GetObject of `length` bytes from `offset` (fewer at the end of the object).
    pub fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Bytes, S3Error> {
        if length == 0 {
            return Ok(Bytes::new());
        }
        let range = format!("bytes={}-{}", offset, offset + length - 1);
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(range);
        self.within("GetObject", key, length, async {
            let output = request
                .send()
                .await
                .map_err(|e| S3Error::from_sdk("GetObject", key, e))?;
            let body = output
                .body
                .collect()
                .await
                .map_err(|e| S3Error::transfer("GetObject", key, e.to_string()))?;
            Ok(body.into_bytes())
        })
    }

    /// Whole-object GetObject (symlink targets and other small bodies).
    pub fn get_object(&self, key: &str) -> Result<Bytes, S3Error> {
        let request = self.client.get_object().bucket(&self.bucket).key(key);
        self.within("GetObject", key, 0, async {
            let output = request
                .send()
                .await
                .map_err(|e| S3Error::from_sdk("GetObject", key, e))?;
            let body = output
                .body
                .collect()
                .await
                .map_err(|e| S3Error::transfer("GetObject", key, e.to_string()))?;
            Ok(body.into_bytes())
        })
    }

    /// Server-side copy of an object of `size` bytes. With `headers`, the metadata is
    /// replaced; otherwise it is kept. Objects over 5 GiB are copied in parallel ranges
    /// with UploadPartCopy.
    pub fn copy_object(
        &self,
        source_key: &str,
        target_key: &str,
        headers: Option<&ObjectHeaders>,
        size: u64,
    ) -> Result<(), S3Error> {
        let limit = copy_object_limit();
        if size <= limit {
            return self.copy_whole(source_key, target_key, headers, size);
        }
        let headers = match headers {
            Some(headers) => headers.clone(),
            None => {
                let info = self.head_object(source_key)?.ok_or_else(|| {
                    S3Error::protocol("CopyObject", source_key, "source object is gone")
                })?;
                ObjectHeaders {
                    metadata: info.metadata,
                    content_type: info.content_type,
                }
            }
        };
        let part_size = size.div_ceil(10_000).max(limit.min(512 << 20));
        let upload_id = self.create_multipart_upload(target_key, &headers, false)?;
        let result = self
            .copy_parts(source_key, target_key, &upload_id, size, part_size)
            .and_then(|parts| self.complete_multipart_upload(target_key, &upload_id, &parts));
        if let Err(error) = result {
            if let Err(abort) = self.abort_multipart_upload(target_key, &upload_id) {
                log::warn!(
                    "multipart copy to {target_key:?} failed and its upload {upload_id} could not be aborted ({abort}): remove it with `s3upfs cleanup`"
                );
            }
            return Err(error);
        }
        Ok(())
    }

    fn copy_parts(
        &self,
        source_key: &str,
        target_key: &str,
        upload_id: &str,
        size: u64,
        part_size: u64,
    ) -> Result<Vec<UploadedPart>, S3Error> {
        let source = format!("{}/{}", self.bucket, encode_copy_source(source_key));
        let permits = Arc::new(tokio::sync::Semaphore::new(COPY_CONCURRENCY));
        // Server-side copies: budget them at 64 MiB/s of source data per request slot.
        let bound = size / 64 / COPY_CONCURRENCY as u64;
        self.within("UploadPartCopy", source_key, bound, async {
            let mut tasks = tokio::task::JoinSet::new();
            for (index, start) in (0..size).step_by(part_size as usize).enumerate() {
                let end = (start + part_size).min(size) - 1;
                let request = self
                    .client
                    .upload_part_copy()
                    .bucket(&self.bucket)
                    .key(target_key)
                    .upload_id(upload_id)
                    .part_number(index as i32 + 1)
                    .copy_source(&source)
                    .copy_source_range(format!("bytes={start}-{end}"));
                let permits = Arc::clone(&permits);
                tasks.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    (index as u32 + 1, request.send().await)
                });
            }
            let mut parts = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                let (part_number, result) = joined
                    .map_err(|e| S3Error::protocol("UploadPartCopy", source_key, &e.to_string()))?;
                let output =
                    result.map_err(|e| S3Error::from_sdk("UploadPartCopy", source_key, e))?;
                let etag = output
                    .copy_part_result()
                    .and_then(|r| r.e_tag())
                    .ok_or_else(|| {
                        S3Error::protocol("UploadPartCopy", source_key, "response has no ETag")
                    })?;
                parts.push(UploadedPart {
                    part_number,
                    etag: etag.to_owned(),
                    checksum_crc32c: None,
                });
            }
            parts.sort_by_key(|part| part.part_number);
            Ok(parts)
        })
    }

    fn copy_whole(
        &self,
        source_key: &str,
        target_key: &str,
        headers: Option<&ObjectHeaders>,
        size: u64,
    ) -> Result<(), S3Error> {
        // Never a versionId in the copy source: Garage answers NoSuchKey to it.
        let source = format!("{}/{}", self.bucket, encode_copy_source(source_key));
        let mut request = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(target_key)
            .copy_source(source);
        if let Some(headers) = headers {
            request = request
                .metadata_directive(MetadataDirective::Replace)
                .set_metadata((!headers.metadata.is_empty()).then(|| headers.metadata.clone()))
                .set_content_type(headers.content_type.clone());
        }
        // Server-side: budgeted at 64 MiB/s of source data.
        self.send("CopyObject", source_key, size / 64, request.send())?;
        Ok(())
    }

    pub fn delete_object(&self, key: &str) -> Result<(), S3Error> {
        let request = self.client.delete_object().bucket(&self.bucket).key(key);
        missing_is_none(self.send("DeleteObject", key, 0, request.send())).map(|_| ())
    }

    /// Unfinished multipart uploads under `prefix`.
    pub fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, S3Error> {
        let mut uploads = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let request = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone());
            let output = self.send("ListMultipartUploads", prefix, 0, request.send())?;
            for upload in output.uploads() {
                if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                    uploads.push(PendingUpload {
                        key: key.to_owned(),
                        upload_id: id.to_owned(),
                        initiated: upload
                            .initiated()
                            .and_then(|t| SystemTime::try_from(*t).ok()),
                    });
                }
            }
            if !output.is_truncated().unwrap_or(false) {
                return Ok(uploads);
            }
            key_marker = output.next_key_marker().map(str::to_owned);
            id_marker = output.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                return Ok(uploads);
            }
        }
    }

    /// Installs (or replaces) the rule that makes S3 abort multipart uploads left
    /// incomplete for `days`, keeping the bucket's other lifecycle rules.
    pub fn put_abort_incomplete_rule(&self, rule_id: &str, days: i32) -> Result<(), S3Error> {
        use aws_sdk_s3::types::{
            AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
            LifecycleRule, LifecycleRuleFilter,
        };
        let request = self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&self.bucket);
        let existing = match self.within("GetBucketLifecycleConfiguration", "", 0, async move {
            Ok(request.send().await)
        })? {
            Ok(output) => output.rules().to_vec(),
            // No configuration yet is the common case (Garage says NoSuchLifecycleConfiguration
            // too). Any other failure must stop us: writing our rule alone would delete the
            // bucket's other rules.
            Err(e) if e.code() == Some("NoSuchLifecycleConfiguration") => Vec::new(),
            Err(e) => return Err(S3Error::from_sdk("GetBucketLifecycleConfiguration", "", e)),
        };
        let ours = LifecycleRule::builder()
            .id(rule_id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(days)
                    .build(),
            )
            .build()
            .map_err(|e| {
                S3Error::protocol("PutBucketLifecycleConfiguration", "", &e.to_string())
            })?;
        let mut rules: Vec<LifecycleRule> = existing
            .into_iter()
            .filter(|rule| rule.id() != Some(rule_id))
            .collect();
        rules.push(ours);
        let configuration = BucketLifecycleConfiguration::builder()
            .set_rules(Some(rules))
            .build()
            .map_err(|e| {
                S3Error::protocol("PutBucketLifecycleConfiguration", "", &e.to_string())
            })?;
        let request = self
            .client
            .put_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .lifecycle_configuration(configuration);
        self.send("PutBucketLifecycleConfiguration", "", 0, request.send())?;
        Ok(())
    }

    /// Proves the bucket is reachable and readable with these credentials.
    pub fn probe(&self, prefix: &str, timeout: Duration) -> Result<(), S3Error> {
        let request = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .max_keys(1);
        // One retry at most: a wrong bucket or bad credentials must fail the mount at once.
        let quick = aws_sdk_s3::config::Builder::default()
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(2));
        let send = request.customize().config_override(quick).send();
        match self
            .runtime
            .block_on(async move { tokio::time::timeout(timeout, send).await })
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(S3Error::from_sdk("ListObjectsV2", prefix, e)),
            Err(_) => Err(S3Error::unreachable(
                "ListObjectsV2",
                prefix,
                format!("no answer within {} s", timeout.as_secs()),
            )),
        }
    }
}

/// Repeats `attempt` (each already retried by the SDK) while its error is worth another
/// try and `budget` has not run out since the first try: an outage shorter than the
/// budget is ridden out, and a body the server rejected as corrupted in transit
/// (BadDigest) is sent again. `abandon` stops early (the upload failed elsewhere).
pub fn retry_within<T>(
    budget: Duration,
    mut attempt: impl FnMut() -> Result<T, S3Error>,
    abandon: impl Fn() -> bool,
) -> Result<T, S3Error> {
    let deadline = std::time::Instant::now() + budget;
    let mut pause = Duration::from_millis(500);
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(error) if error.is_retryable() && std::time::Instant::now() + pause < deadline => {
                if abandon() {
                    return Err(error);
                }
                log::warn!("{error}; trying again in {} ms", pause.as_millis());
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(4));
            }
            Err(error) => return Err(error),
        }
    }
}

/// Turns "no such key/upload" into `Ok(None)`: for deletes, aborts and HEADs, absence
/// is an answer, not a failure.
fn missing_is_none<T>(result: Result<T, S3Error>) -> Result<Option<T>, S3Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if error.kind == S3ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// URL-encodes a key for `x-amz-copy-source`, keeping `/` as the path separator.
fn encode_copy_source(key: &str) -> String {
    let mut encoded = String::with_capacity(key.len());
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                encoded.push(byte as char)
            }
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::encode_copy_source;

    #[test]
    fn copy_source_escapes_everything_but_unreserved_and_slash() {
        assert_eq!(
            encode_copy_source("a/b c+d%e#f?g"),
            "a/b%20c%2Bd%25e%23f%3Fg"
        );
        assert_eq!(encode_copy_source("ü\n"), "%C3%BC%0A");
    }
}
