//! Moving a file's started multipart upload to another key, for a rename while the
//! file is being written (audit M1).

use std::sync::Arc;

use log::{error, info, warn};

use super::*;
use crate::s3::UploadedPart;
use crate::upload::progress::FileProgress;

impl ObjectWriter {
    /// Rename of a file whose multipart upload has started (audit M1: POSIX, the writer
    /// keeps writing and the object appears under the new name with every byte). The
    /// upload is bound to its key, so the parts uploaded so far are completed as an
    /// object under the old key, copied on the server into a new upload under `key`
    /// (the same part numbers), and writing goes on into that upload. Part 1 is sent
    /// first, so it can no longer be patched. The caller deletes the old key. On
    /// failure the upload is aborted and the writer has failed.
    pub(crate) fn move_started_upload(&mut self, key: String) -> Result<(), UploadError> {
        let context = Arc::clone(&self.context);
        let State::Writing(parts) = &mut self.state else {
            return Err(upload_error!("the upload is no longer in progress"));
        };
        let Some(upload) = parts.upload.clone() else {
            self.key = key;
            return Ok(());
        };
        parts.send_retained_first(&context);
        match move_parts(&context, &upload, upload.key(), &key, &self.headers) {
            Ok(moved) => {
                if upload.key() != self.key
                    && let Err(e) = context.store.delete_object(upload.key())
                {
                    // A resumed upload of another temporary name (rsync) was completed there.
                    warn!("could not remove {:?} after moving it: {e}", upload.key());
                }
                parts.upload = Some(moved);
                info!(
                    "{:?} renamed to {key:?} while being written: its upload moved there",
                    self.key
                );
                self.key = key;
                Ok(())
            }
            Err(reason) => {
                self.abort_upload(&upload);
                let reason =
                    reason.context(&format!("moving the upload to {key:?} for a rename failed"));
                error!("upload of {:?} failed and was aborted: {reason}", self.key);
                self.state = State::Failed(reason.clone());
                Err(reason)
            }
        }
    }
}

/// The move of [`ObjectWriter::move_started_upload`]: waits for the parts in flight,
/// completes them under `old_key`, and copies them into a new upload under `new_key`.
fn move_parts(
    context: &UploadContext,
    upload: &MultipartUpload,
    old_key: &str,
    new_key: &str,
    headers: &ObjectHeaders,
) -> Result<Arc<MultipartUpload>, UploadError> {
    let store = &context.store;
    let budget = context.retry_budget;
    let uploaded = upload.wait_for_parts()?;
    let old_id = upload
        .upload_id()
        .ok_or_else(|| "the multipart upload was never created".to_owned())?;
    crate::s3::retry_within(
        budget,
        || store.complete_multipart_upload(old_key, &old_id, &uploaded),
        || false,
    )
    .map_err(UploadError::from)?;
    if let Some(resume) = &context.resume {
        resume.journal().remove(&old_id);
    }
    copy_into_new_upload(
        context,
        &uploaded,
        old_key,
        new_key,
        headers,
        upload.reported(),
    )
    .inspect_err(|_| {
        // Only a prefix of the file is under the old key: it must not stay visible.
        if let Err(e) = store.delete_object(old_key) {
            warn!("could not remove the partial object {old_key:?} ({e}): delete it by hand");
        }
    })
}

/// A new upload under `new_key` holding copies of `uploaded`, taken from the object
/// they were completed as under `old_key`.
fn copy_into_new_upload(
    context: &UploadContext,
    uploaded: &[UploadedPart],
    old_key: &str,
    new_key: &str,
    headers: &ObjectHeaders,
    reported: &Arc<FileProgress>,
) -> Result<Arc<MultipartUpload>, UploadError> {
    let store = &context.store;
    let budget = context.retry_budget;
    let new_id = crate::s3::retry_within(
        budget,
        || store.create_multipart_upload(new_key, headers, true),
        || false,
    )
    .map_err(UploadError::from)?;
    let copied: Result<Vec<UploadedPart>, UploadError> = uploaded
        .iter()
        .map(|part| {
            let start = context.schedule.part_start(part.part_number);
            let range = start..start + context.schedule.part_size(part.part_number);
            let etag = crate::s3::retry_within(
                budget,
                || {
                    store.upload_part_copy(
                        old_key,
                        new_key,
                        &new_id,
                        part.part_number,
                        range.clone(),
                    )
                },
                || false,
            )
            .map_err(UploadError::from)?;
            // The same bytes: the same checksum, which Complete names.
            Ok(UploadedPart {
                etag,
                ..part.clone()
            })
        })
        .collect();
    match copied {
        Ok(copied) => Ok(MultipartUpload::resumed(
            new_key.to_owned(),
            headers.clone(),
            new_id,
            copied,
            Arc::clone(reported),
        )),
        Err(reason) => {
            if let Err(e) = store.abort_multipart_upload(new_key, &new_id) {
                warn!(
                    "could not abort the upload {new_id} of {new_key:?} ({e}): `s3upfs cleanup` removes it"
                );
            }
            Err(reason)
        }
    }
}
