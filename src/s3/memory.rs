//! An in-memory bucket behind [`ObjectStore`], for the fast test tier.
//!
//! It is as strict as S3 about what the mount relies on, so a bug the server would
//! refuse is refused here too: CRC32C checked on every PutObject and UploadPart
//! (BadDigest), ETags that change with the content (`-N` for multipart objects),
//! S3's composite checksum at Complete, the 5 MiB minimum for every part but the last
//! (EntityTooSmall), parts named at Complete that were never uploaded or carry another
//! ETag or checksum (InvalidPart), part order (InvalidPartOrder), unknown upload ids
//! (NoSuchUpload), ranges past the end (InvalidRange), a CopyObject over the copy
//! limit, and a copy of an object onto itself that changes nothing.
//!
//! Every call is recorded ([`MemoryStore::calls`]) and first passes through a hook
//! ([`MemoryStore::set_hook`]) that may fail it or hold it (sleep, wait on a channel):
//! the in-process counterpart of the fault proxy in the integration tier.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};

use super::{
    COPY_OBJECT_LIMIT, ListPage, ListedObject, ObjectHeaders, ObjectInfo, ObjectStore,
    PendingUpload, S3Error, UploadedPart, composite_checksum, crc32c_base64,
};

/// S3's smallest part, the last part of an upload aside.
pub(crate) const MIN_PART_SIZE: usize = 5 << 20;
const MAX_PART_NUMBER: u32 = 10_000;
const MAX_KEYS: usize = 1000;

/// When a hook runs: before a call takes effect, and after it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Before,
    After,
}

/// Decides whether a call fails: `(phase, operation, key)` in, an error out (or `None`
/// to let it through). It may also block to delay the call.
pub(crate) type Hook = Box<dyn Fn(Phase, &'static str, &str) -> Option<S3Error> + Send + Sync>;

#[derive(Clone, Debug)]
pub(crate) struct StoredObject {
    pub(crate) body: Bytes,
    pub(crate) etag: String,
    pub(crate) headers: ObjectHeaders,
    pub(crate) checksum_crc32c: Option<String>,
    pub(crate) last_modified: SystemTime,
}

struct Part {
    body: Bytes,
    etag: String,
    checksum_crc32c: Option<String>,
}

struct Upload {
    key: String,
    headers: ObjectHeaders,
    checksummed: bool,
    initiated: SystemTime,
    parts: BTreeMap<u32, Part>,
}

#[derive(Default)]
struct Bucket {
    objects: BTreeMap<String, StoredObject>,
    uploads: BTreeMap<String, Upload>,
}

#[derive(Default)]
pub(crate) struct MemoryStore {
    bucket: Mutex<Bucket>,
    hook: Mutex<Option<std::sync::Arc<Hook>>>,
    calls: Mutex<Vec<(&'static str, String)>>,
    next_upload: AtomicU64,
    copy_object_limit: AtomicU64,
    /// Keep only S3's composite `...-N` CRC32C of a multipart object, as servers without
    /// full-object checksums do (AWS and Garage 2.x keep the full-object one we ask for).
    composite_checksums: AtomicBool,
}

fn error(operation: &'static str, key: &str, status: u16, code: &str, message: &str) -> S3Error {
    S3Error::service(operation, key, status, code, message)
}

fn etag_of(body: &[u8]) -> String {
    format!("\"{:08x}{:08x}\"", crc32c::crc32c(body), body.len())
}

impl ObjectStore for MemoryStore {
    fn head_object(&self, key: &str) -> Result<Option<ObjectInfo>, S3Error> {
        self.call("HeadObject", key, || {
            Ok(self.bucket().objects.get(key).map(|object| ObjectInfo {
                size: object.body.len() as u64,
                last_modified: object.last_modified,
                metadata: object.headers.metadata.clone(),
                content_type: object.headers.content_type.clone(),
                checksum_crc32c: object.checksum_crc32c.clone(),
            }))
        })
    }

    fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage, S3Error> {
        self.call("ListObjectsV2", prefix, || {
            let max = max_keys.map_or(MAX_KEYS, |m| (m.max(1) as usize).min(MAX_KEYS));
            let bucket = self.bucket();
            // Every entry in key order: objects, and common prefixes standing for the keys below them.
            let mut entries: Vec<(String, Option<&StoredObject>)> = Vec::new();
            for (key, object) in bucket.objects.range(prefix.to_owned()..) {
                let Some(rest) = key.strip_prefix(prefix) else {
                    break;
                };
                match rest.find('/').filter(|_| delimited) {
                    Some(slash) => {
                        let common = format!("{prefix}{}", &rest[..=slash]);
                        if entries.last().map(|(name, _)| name) != Some(&common) {
                            entries.push((common, None));
                        }
                    }
                    None => entries.push((key.clone(), Some(object))),
                }
            }
            let start = match &continuation {
                Some(token) => entries.partition_point(|(name, _)| name <= token),
                None => 0,
            };
            let mut page = ListPage::default();
            let end = (start + max).min(entries.len());
            for (name, object) in &entries[start..end] {
                match object {
                    Some(object) => page.objects.push(ListedObject {
                        key: name.clone(),
                        size: object.body.len() as u64,
                        last_modified: object.last_modified,
                    }),
                    None => page.common_prefixes.push(name.clone()),
                }
            }
            if end < entries.len() {
                page.next_token = entries.get(end - 1).map(|(name, _)| name.clone());
            }
            Ok(page)
        })
    }

    fn get_object(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, S3Error> {
        self.call("GetObject", key, || {
            let bucket = self.bucket();
            let object = bucket
                .objects
                .get(key)
                .ok_or_else(|| error("GetObject", key, 404, "NoSuchKey", "no such key"))?;
            let len = object.body.len() as u64;
            match range {
                None => Ok(object.body.clone()),
                Some(range) if range.start >= len || range.is_empty() => Err(error(
                    "GetObject",
                    key,
                    416,
                    "InvalidRange",
                    "the range is not satisfiable",
                )),
                Some(range) => Ok(object
                    .body
                    .slice(range.start as usize..range.end.min(len) as usize)),
            }
        })
    }

    fn put_object(
        &self,
        key: &str,
        body: Bytes,
        checksum_crc32c: &str,
        headers: &ObjectHeaders,
    ) -> Result<Option<String>, S3Error> {
        self.call("PutObject", key, || {
            let actual = crc32c_base64(&body);
            if actual != checksum_crc32c {
                return Err(error("PutObject", key, 400, "BadDigest", "CRC32C mismatch"));
            }
            self.bucket().objects.insert(
                key.to_owned(),
                StoredObject {
                    etag: etag_of(&body),
                    body,
                    headers: headers.clone(),
                    checksum_crc32c: Some(actual.clone()),
                    last_modified: SystemTime::now(),
                },
            );
            Ok(Some(actual))
        })
    }

    fn copy_object(
        &self,
        source_key: &str,
        target_key: &str,
        headers: Option<&ObjectHeaders>,
        _size: u64,
    ) -> Result<(), S3Error> {
        self.call("CopyObject", target_key, || {
            let mut bucket = self.bucket();
            let source =
                bucket.objects.get(source_key).cloned().ok_or_else(|| {
                    error("CopyObject", source_key, 404, "NoSuchKey", "no such key")
                })?;
            if source.body.len() as u64 > self.copy_object_limit.load(Ordering::Relaxed) {
                return Err(error(
                    "CopyObject",
                    source_key,
                    400,
                    "InvalidRequest",
                    "the source is larger than CopyObject copies",
                ));
            }
            if source_key == target_key && headers.is_none() {
                return Err(error(
                    "CopyObject",
                    source_key,
                    400,
                    "InvalidRequest",
                    "copying an object onto itself must change its metadata",
                ));
            }
            let copied = StoredObject {
                headers: headers.cloned().unwrap_or(source.headers.clone()),
                last_modified: SystemTime::now(),
                ..source
            };
            bucket.objects.insert(target_key.to_owned(), copied);
            Ok(())
        })
    }

    fn delete_object(&self, key: &str) -> Result<(), S3Error> {
        self.call("DeleteObject", key, || {
            self.bucket().objects.remove(key);
            Ok(())
        })
    }

    fn create_multipart_upload(
        &self,
        key: &str,
        headers: &ObjectHeaders,
        checksummed: bool,
    ) -> Result<String, S3Error> {
        self.call("CreateMultipartUpload", key, || {
            let id = format!(
                "upload-{}",
                self.next_upload.fetch_add(1, Ordering::Relaxed)
            );
            self.bucket().uploads.insert(
                id.clone(),
                Upload {
                    key: key.to_owned(),
                    headers: headers.clone(),
                    checksummed,
                    initiated: SystemTime::now(),
                    parts: BTreeMap::new(),
                },
            );
            Ok(id)
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
        self.call("UploadPart", &format!("{key}#{part_number}"), || {
            if crc32c_base64(&body) != checksum_crc32c {
                return Err(error(
                    "UploadPart",
                    key,
                    400,
                    "BadDigest",
                    "CRC32C mismatch",
                ));
            }
            let part = Part {
                etag: etag_of(&body),
                checksum_crc32c: Some(checksum_crc32c.to_owned()),
                body,
            };
            self.add_part("UploadPart", key, upload_id, part_number, part)
        })
    }

    fn upload_part_copy(
        &self,
        source_key: &str,
        target_key: &str,
        upload_id: &str,
        part_number: u32,
        range: Range<u64>,
    ) -> Result<String, S3Error> {
        self.call(
            "UploadPartCopy",
            &format!("{target_key}#{part_number}"),
            || {
                let body = {
                    let bucket = self.bucket();
                    let source = bucket.objects.get(source_key).ok_or_else(|| {
                        error(
                            "UploadPartCopy",
                            source_key,
                            404,
                            "NoSuchKey",
                            "no such key",
                        )
                    })?;
                    if range.is_empty() || range.end > source.body.len() as u64 {
                        return Err(error(
                            "UploadPartCopy",
                            source_key,
                            400,
                            "InvalidArgument",
                            "the copy range is outside the source",
                        ));
                    }
                    source.body.slice(range.start as usize..range.end as usize)
                };
                // S3 computes a copied part's checksum when the upload takes checksums.
                let part = Part {
                    etag: etag_of(&body),
                    checksum_crc32c: Some(crc32c_base64(&body)),
                    body,
                };
                self.add_part("UploadPartCopy", target_key, upload_id, part_number, part)
            },
        )
    }

    fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<Option<String>, S3Error> {
        const OP: &str = "CompleteMultipartUpload";
        self.call(OP, key, || {
            let mut bucket = self.bucket();
            let upload = match bucket.uploads.get(upload_id) {
                Some(upload) if upload.key == key => upload,
                _ => return Err(error(OP, key, 404, "NoSuchUpload", "no such upload")),
            };
            if parts.is_empty() {
                return Err(error(OP, key, 400, "MalformedXML", "no parts"));
            }
            if parts
                .windows(2)
                .any(|w| w[0].part_number >= w[1].part_number)
            {
                return Err(error(
                    OP,
                    key,
                    400,
                    "InvalidPartOrder",
                    "parts out of order",
                ));
            }
            let mut body = BytesMut::new();
            for (index, named) in parts.iter().enumerate() {
                let stored = upload
                    .parts
                    .get(&named.part_number)
                    .filter(|stored| stored.etag == named.etag)
                    .filter(|stored| {
                        !upload.checksummed || stored.checksum_crc32c == named.checksum_crc32c
                    })
                    .ok_or_else(|| {
                        let message =
                            format!("part {} was not uploaded as named", named.part_number);
                        error(OP, key, 400, "InvalidPart", &message)
                    })?;
                if index + 1 < parts.len() && stored.body.len() < MIN_PART_SIZE {
                    let message = format!("part {} is under 5 MiB", named.part_number);
                    return Err(error(OP, key, 400, "EntityTooSmall", &message));
                }
                body.extend_from_slice(&stored.body);
            }
            let composite = self.composite_checksums.load(Ordering::Relaxed);
            let checksum = upload.checksummed.then(|| match composite {
                false => crc32c_base64(&body),
                true => composite_checksum(parts),
            });
            let etags: String = parts.iter().map(|part| part.etag.as_str()).collect();
            let object = StoredObject {
                body: body.freeze(),
                etag: format!(
                    "\"{:08x}-{}\"",
                    crc32c::crc32c(etags.as_bytes()),
                    parts.len()
                ),
                headers: upload.headers.clone(),
                checksum_crc32c: checksum.clone(),
                last_modified: SystemTime::now(),
            };
            bucket.uploads.remove(upload_id);
            bucket.objects.insert(key.to_owned(), object);
            Ok(checksum)
        })
    }

    fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        self.call("AbortMultipartUpload", key, || {
            let mut bucket = self.bucket();
            if bucket.uploads.get(upload_id).is_some_and(|u| u.key == key) {
                bucket.uploads.remove(upload_id);
            }
            Ok(())
        })
    }

    fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<UploadedPart>, S3Error> {
        self.call("ListParts", key, || {
            let bucket = self.bucket();
            match bucket.uploads.get(upload_id) {
                Some(upload) if upload.key == key => Ok(upload
                    .parts
                    .iter()
                    .map(|(number, part)| UploadedPart {
                        part_number: *number,
                        etag: part.etag.clone(),
                        checksum_crc32c: part.checksum_crc32c.clone(),
                        size: part.body.len() as u64,
                    })
                    .collect()),
                _ => Err(error(
                    "ListParts",
                    key,
                    404,
                    "NoSuchUpload",
                    "no such upload",
                )),
            }
        })
    }

    fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, S3Error> {
        self.call("ListMultipartUploads", prefix, || {
            let bucket = self.bucket();
            let mut uploads: Vec<PendingUpload> = bucket
                .uploads
                .iter()
                .filter(|(_, upload)| upload.key.starts_with(prefix))
                .map(|(id, upload)| PendingUpload {
                    key: upload.key.clone(),
                    upload_id: id.clone(),
                    initiated: Some(upload.initiated),
                })
                .collect();
            uploads.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(uploads)
        })
    }

    fn copy_object_limit(&self) -> u64 {
        self.copy_object_limit.load(Ordering::Relaxed)
    }
}

mod control;
#[cfg(test)]
mod tests;

pub(crate) use control::{access_denied, internal_error};
