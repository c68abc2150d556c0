//! [`ObjectStore`] over aws-sdk-s3, run on the mount's shared tokio runtime.
//!
//! Owns the SDK client, the bucket name and the request timeout, and translates SDK
//! errors into [`S3Error`]. Every request is bounded: a server that accepts a request
//! and never answers fails it, and the caller's retry budget decides what next. Also
//! the calls only the CLI makes (the bucket probe, the lifecycle rule).

use std::ops::Range;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
    MetadataDirective,
};
use bytes::Bytes;
use tokio::runtime::Handle;

use super::{
    ListPage, ListedObject, ObjectHeaders, ObjectInfo, ObjectStore, PendingUpload, S3Error,
    S3ErrorKind, UploadedPart,
};

pub(crate) struct SdkStore {
    client: Client,
    runtime: Handle,
    bucket: String,
    endpoint: Option<String>,
    request_timeout: Duration,
    copy_object_limit: u64,
    /// Whether multipart uploads ask for a FULL_OBJECT checksum; cleared for good the
    /// first time the server refuses the request (the embedded server, servers before
    /// S3's 2025 checksums), so its uploads keep working with composite checksums.
    full_object: std::sync::atomic::AtomicBool,
}

impl SdkStore {
    pub(crate) fn new(
        client: Client,
        runtime: Handle,
        bucket: String,
        endpoint: Option<String>,
        request_timeout: Duration,
        copy_object_limit: u64,
    ) -> Self {
        Self {
            client,
            runtime,
            bucket,
            endpoint,
            request_timeout,
            copy_object_limit,
            full_object: std::sync::atomic::AtomicBool::new(true),
        }
    }

    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    pub(crate) fn endpoint(&self) -> Option<&str> {
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

    /// Installs (or replaces) the rule that makes S3 abort multipart uploads left
    /// incomplete for `days`, keeping the bucket's other lifecycle rules.
    pub(crate) fn put_abort_incomplete_rule(
        &self,
        rule_id: &str,
        days: i32,
    ) -> Result<(), S3Error> {
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
    pub(crate) fn probe(&self, prefix: &str, timeout: Duration) -> Result<(), S3Error> {
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

impl ObjectStore for SdkStore {
    fn head_object(&self, key: &str) -> Result<Option<ObjectInfo>, S3Error> {
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
            metadata: output.metadata().cloned().unwrap_or_default(),
            content_type: output.content_type().map(str::to_owned),
            checksum_crc32c: output.checksum_crc32_c().map(str::to_owned),
        }))
    }

    fn list_page(
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

    fn get_object(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, S3Error> {
        let mut bytes = 0;
        let mut request = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some(range) = range {
            if range.is_empty() {
                return Ok(Bytes::new());
            }
            bytes = range.end - range.start;
            request = request.range(format!("bytes={}-{}", range.start, range.end - 1));
        }
        self.within("GetObject", key, bytes, async {
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

    fn put_object(
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

    fn copy_object(
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

    fn delete_object(&self, key: &str) -> Result<(), S3Error> {
        let request = self.client.delete_object().bucket(&self.bucket).key(key);
        missing_is_none(self.send("DeleteObject", key, 0, request.send())).map(|_| ())
    }

    fn create_multipart_upload(
        &self,
        key: &str,
        headers: &ObjectHeaders,
        checksummed: bool,
    ) -> Result<String, S3Error> {
        use std::sync::atomic::Ordering;
        let create = |full_object: bool| {
            let request = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .set_checksum_algorithm(checksummed.then_some(ChecksumAlgorithm::Crc32C))
                // The object's checksum is then the CRC32C of its bytes, not of its parts'.
                .set_checksum_type(full_object.then_some(ChecksumType::FullObject))
                .set_metadata((!headers.metadata.is_empty()).then(|| headers.metadata.clone()))
                .set_content_type(headers.content_type.clone());
            self.send("CreateMultipartUpload", key, 0, request.send())
        };
        let full_object = checksummed && self.full_object.load(Ordering::Relaxed);
        let output = match create(full_object) {
            Err(e)
                if full_object
                    && matches!(e.kind, S3ErrorKind::Rejected | S3ErrorKind::Other)
                    && (e.detail.contains("NotImplemented")
                        || e.detail.contains("InvalidRequest")
                        || e.detail.contains("InvalidArgument")) =>
            {
                self.full_object.store(false, Ordering::Relaxed);
                log::warn!(
                    "the server refused a full-object checksum ({e}): multipart objects get \
                     S3's composite CRC32C instead, which `s3upfs verify` reports as \
                     unverifiable"
                );
                create(false)?
            }
            other => other?,
        };
        output.upload_id().map(str::to_owned).ok_or_else(|| {
            S3Error::protocol("CreateMultipartUpload", key, "response has no upload id")
        })
    }

    fn upload_part(
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

    fn upload_part_copy(
        &self,
        source_key: &str,
        target_key: &str,
        upload_id: &str,
        part_number: u32,
        range: Range<u64>,
    ) -> Result<String, S3Error> {
        if range.is_empty() {
            return Err(S3Error::protocol(
                "UploadPartCopy",
                source_key,
                "empty range",
            ));
        }
        let source = format!("{}/{}", self.bucket, encode_copy_source(source_key));
        let request = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(target_key)
            .upload_id(upload_id)
            .part_number(part_number as i32)
            .copy_source(source)
            .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1));
        // Server-side: budgeted at 64 MiB/s of source data.
        let bound = (range.end - range.start) / 64;
        let output = self.send("UploadPartCopy", source_key, bound, request.send())?;
        output
            .copy_part_result()
            .and_then(|r| r.e_tag())
            .map(str::to_owned)
            .ok_or_else(|| S3Error::protocol("UploadPartCopy", source_key, "response has no ETag"))
    }

    fn complete_multipart_upload(
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

    fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let request = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id);
        // Already gone is what we wanted.
        missing_is_none(self.send("AbortMultipartUpload", key, 0, request.send())).map(|_| ())
    }

    fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<UploadedPart>, S3Error> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let request = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone());
            let output = self.send("ListParts", key, 0, request.send())?;
            for part in output.parts() {
                if let (Some(number), Some(etag)) = (part.part_number(), part.e_tag()) {
                    parts.push(UploadedPart {
                        part_number: number.max(0) as u32,
                        etag: etag.to_owned(),
                        checksum_crc32c: part.checksum_crc32_c().map(str::to_owned),
                        size: part.size().map_or(0, |size| size.max(0) as u64),
                    });
                }
            }
            marker = output.next_part_number_marker().map(str::to_owned);
            if !output.is_truncated().unwrap_or(false) || marker.is_none() {
                return Ok(parts);
            }
        }
    }

    fn copy_object_limit(&self) -> u64 {
        self.copy_object_limit
    }

    fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, S3Error> {
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
    const KEPT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(key, KEPT).to_string()
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
