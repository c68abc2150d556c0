//! The storage seam: the S3 calls the mount makes, as one small blocking trait.
//!
//! [`ObjectStore`] holds exactly the requests the layers above send (head, list with
//! `/` delimiter, ranged get, put, copy, delete, the multipart family and the
//! listings that find unfinished uploads). Callers are plain threads (FUSE dispatch,
//! upload workers, the delete and flush threads), so every call blocks and returns an
//! [`S3Error`] that says what the layers above need to decide: a kind, and a line to
//! log. Keys here are full object keys: the mount prefix is the namespace's business.
//!
//! Implementations:
//! - [`SdkStore`] (sdk.rs): aws-sdk-s3 on the mount's tokio runtime, every request
//!   bounded by the request timeout;
//! - `MemoryStore` (memory.rs, tests only): an in-memory bucket as strict as S3 about
//!   what the mount relies on (CRC32C checks, ETags, the 5 MiB minimum part,
//!   NoSuchUpload, InvalidPart), with hooks that fail or delay any call. The fast test
//!   tier drives the namespace and the upload pipeline on it.
//!
//! What is built from these calls and is the same for every store lives here too:
//! paging through a listing ([`ObjectStore::list_all`]), copying an object of any size
//! (copy.rs), the retry policy (retry.rs) and the checksums (checksum.rs).

mod checksum;
mod connect;
mod copy;
mod error;
#[cfg(test)]
pub(crate) mod memory;
mod retry;
mod sdk;

#[cfg(test)]
pub(crate) use checksum::composite_checksum;
pub(crate) use checksum::{
    crc32c_base64, decode_crc32c, encode_crc32c, full_object_checksum, matches_parts,
};
pub(crate) use connect::{Connection, DEFAULT_REQUEST_TIMEOUT, connect};
pub(crate) use error::{S3Error, S3ErrorKind};
pub(crate) use retry::retry_within;
pub(crate) use sdk::SdkStore;

use std::collections::HashMap;
use std::ops::Range;
use std::time::SystemTime;

use bytes::Bytes;

/// Content-Type of directory marker objects, as s3fs-fuse writes them.
pub(crate) const DIRECTORY_CONTENT_TYPE: &str = "application/x-directory";

/// Largest object one CopyObject may copy (S3's limit); larger ones are copied in
/// ranges with UploadPartCopy.
pub(crate) const COPY_OBJECT_LIMIT: u64 = 5 << 30;

/// User metadata and content type sent with a new object.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ObjectHeaders {
    /// `x-amz-meta-*` entries, names without the prefix.
    pub(crate) metadata: HashMap<String, String>,
    pub(crate) content_type: Option<String>,
}

/// What HeadObject tells about an object.
#[derive(Clone, Debug)]
pub(crate) struct ObjectInfo {
    pub(crate) size: u64,
    pub(crate) last_modified: SystemTime,
    pub(crate) metadata: HashMap<String, String>,
    pub(crate) content_type: Option<String>,
    pub(crate) checksum_crc32c: Option<String>,
}

/// One object in a listing.
#[derive(Clone, Debug)]
pub(crate) struct ListedObject {
    pub(crate) key: String,
    pub(crate) size: u64,
    pub(crate) last_modified: SystemTime,
}

/// One page of ListObjectsV2, with a `/` delimiter when asked for.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListPage {
    pub(crate) objects: Vec<ListedObject>,
    pub(crate) common_prefixes: Vec<String>,
    pub(crate) next_token: Option<String>,
}

/// A part of a multipart upload as CompleteMultipartUpload needs it (and as ListParts
/// reports it).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct UploadedPart {
    pub(crate) part_number: u32,
    pub(crate) etag: String,
    /// Parts we upload carry one; parts copied server-side do not.
    pub(crate) checksum_crc32c: Option<String>,
    pub(crate) size: u64,
}

/// An unfinished multipart upload found by ListMultipartUploads.
#[derive(Clone, Debug)]
pub(crate) struct PendingUpload {
    pub(crate) key: String,
    pub(crate) upload_id: String,
    pub(crate) initiated: Option<SystemTime>,
}

/// The S3 requests the mount makes. Absence is an answer where the caller treats it
/// as one: a missing object is `Ok(None)` from [`Self::head_object`], and deleting or
/// aborting what is already gone succeeds.
pub(crate) trait ObjectStore: Send + Sync {
    /// HeadObject; `Ok(None)` when the object does not exist.
    fn head_object(&self, key: &str) -> Result<Option<ObjectInfo>, S3Error>;

    /// One page of ListObjectsV2 under `prefix`, with `/` as delimiter when `delimited`.
    fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage, S3Error>;

    /// GetObject, of `range` only when given (fewer bytes at the end of the object).
    fn get_object(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, S3Error>;

    /// PutObject; the server verifies `checksum_crc32c` against the body. Returns the
    /// object's CRC32C if the server reports it.
    fn put_object(
        &self,
        key: &str,
        body: Bytes,
        checksum_crc32c: &str,
        headers: &ObjectHeaders,
    ) -> Result<Option<String>, S3Error>;

    /// One CopyObject of an object of `size` bytes (at most [`Self::copy_object_limit`]).
    /// With `headers` the metadata is replaced; otherwise it is kept.
    fn copy_object(
        &self,
        source_key: &str,
        target_key: &str,
        headers: Option<&ObjectHeaders>,
        size: u64,
    ) -> Result<(), S3Error>;

    fn delete_object(&self, key: &str) -> Result<(), S3Error>;

    /// Starts a multipart upload whose parts carry CRC32C checksums (`checksummed`: the
    /// object gets a full-object CRC32C where the server keeps one) or none (server-side
    /// part copies).
    fn create_multipart_upload(
        &self,
        key: &str,
        headers: &ObjectHeaders,
        checksummed: bool,
    ) -> Result<String, S3Error>;

    /// Uploads one part and returns its ETag; the server verifies `checksum_crc32c`.
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
        checksum_crc32c: &str,
    ) -> Result<String, S3Error>;

    /// Copies `range` of `source_key` as one part of an upload to `target_key`.
    fn upload_part_copy(
        &self,
        source_key: &str,
        target_key: &str,
        upload_id: &str,
        part_number: u32,
        range: Range<u64>,
    ) -> Result<String, S3Error>;

    /// Completes an upload; returns the object's CRC32C (full-object, or composite
    /// `...-N`) if reported.
    fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<Option<String>, S3Error>;

    fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), S3Error>;

    /// The parts an unfinished upload holds so far, in part-number order. (Resuming an
    /// interrupted upload will build on it; today only the tests call it.)
    #[cfg_attr(not(test), allow(dead_code))]
    fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<UploadedPart>, S3Error>;

    /// Unfinished multipart uploads under `prefix`.
    fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, S3Error>;

    /// Largest object [`Self::copy_object`] copies in one request.
    fn copy_object_limit(&self) -> u64 {
        COPY_OBJECT_LIMIT
    }

    /// Every page of a listing, concatenated.
    fn list_all(&self, prefix: &str, delimited: bool) -> Result<ListPage, S3Error> {
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

    /// Server-side copy of an object of any size: one CopyObject up to the limit,
    /// parallel UploadPartCopy ranges above it.
    fn copy(
        &self,
        source_key: &str,
        target_key: &str,
        headers: Option<&ObjectHeaders>,
        size: u64,
    ) -> Result<(), S3Error> {
        copy::copy(self, source_key, target_key, headers, size)
    }
}
