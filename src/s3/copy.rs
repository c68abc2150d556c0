//! Copying an object of any size on the server: one CopyObject up to the store's
//! limit (5 GiB on S3), above it a multipart upload of UploadPartCopy ranges run on a
//! few threads at once, aborted if any range fails. Written once over the trait, so
//! every store gets it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{ObjectHeaders, ObjectStore, S3Error, UploadedPart};

/// Part copies in flight for one large copy.
const COPY_CONCURRENCY: usize = 8;
/// S3 allows 10,000 parts.
const MAX_PARTS: u64 = 10_000;

pub(super) fn copy<S: ObjectStore + ?Sized>(
    store: &S,
    source_key: &str,
    target_key: &str,
    headers: Option<&ObjectHeaders>,
    size: u64,
) -> Result<(), S3Error> {
    let limit = store.copy_object_limit();
    if size <= limit {
        return store.copy_object(source_key, target_key, headers, size);
    }
    let headers = match headers {
        Some(headers) => headers.clone(),
        None => {
            let info = store.head_object(source_key)?.ok_or_else(|| {
                S3Error::protocol("CopyObject", source_key, "source object is gone")
            })?;
            ObjectHeaders {
                metadata: info.metadata,
                content_type: info.content_type,
            }
        }
    };
    let part_size = size.div_ceil(MAX_PARTS).max(limit.min(512 << 20)).max(1);
    let upload_id = store.create_multipart_upload(target_key, &headers, false)?;
    let result = copy_parts(store, source_key, target_key, &upload_id, size, part_size)
        .and_then(|parts| store.complete_multipart_upload(target_key, &upload_id, &parts));
    if let Err(error) = result {
        if let Err(abort) = store.abort_multipart_upload(target_key, &upload_id) {
            log::warn!(
                "multipart copy to {target_key:?} failed and its upload {upload_id} could not be aborted ({abort}): remove it with `s3upfs cleanup`"
            );
        }
        return Err(error);
    }
    Ok(())
}

/// Copies every range, [`COPY_CONCURRENCY`] at a time; the first failure stops the
/// ranges not yet started and is returned.
fn copy_parts<S: ObjectStore + ?Sized>(
    store: &S,
    source_key: &str,
    target_key: &str,
    upload_id: &str,
    size: u64,
    part_size: u64,
) -> Result<Vec<UploadedPart>, S3Error> {
    let count = size.div_ceil(part_size);
    let next = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let outcome: Mutex<Result<Vec<UploadedPart>, S3Error>> = Mutex::new(Ok(Vec::new()));
    let worker = || {
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            if index >= count || failed.load(Ordering::Relaxed) {
                return;
            }
            let start = index * part_size;
            let range = start..(start + part_size).min(size);
            let part_number = index as u32 + 1;
            let copied =
                store.upload_part_copy(source_key, target_key, upload_id, part_number, range);
            let mut outcome = outcome.lock().unwrap_or_else(|p| p.into_inner());
            match (copied, &mut *outcome) {
                (Ok(etag), Ok(parts)) => parts.push(UploadedPart {
                    part_number,
                    etag,
                    checksum_crc32c: None,
                    size: part_size.min(size - start),
                }),
                (Err(error), Ok(_)) => {
                    failed.store(true, Ordering::Relaxed);
                    *outcome = Err(error);
                }
                (_, Err(_)) => {}
            }
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..COPY_CONCURRENCY.min(count as usize) {
            scope.spawn(worker);
        }
    });
    let mut parts = outcome.into_inner().unwrap_or_else(|p| p.into_inner())?;
    parts.sort_by_key(|part| part.part_number);
    Ok(parts)
}
