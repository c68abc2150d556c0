//! Completing an object: PutObject for a single part, CompleteMultipartUpload
//! otherwise, with the checks that what landed is what was written (CRC32C, composite
//! checksum, size), and the ways a writer stops without completing (discard, abort).

use std::sync::Arc;

use bytes::Bytes;
use log::{debug, error, info, warn};

use super::*;
use crate::s3::{UploadedPart, crc32c_base64, full_object_checksum, matches_parts};

impl ObjectWriter {
    /// Makes the object appear in S3 with exactly the bytes written, or fails and
    /// leaves no object and no multipart upload. Idempotent.
    pub(crate) fn commit(&mut self) -> Result<(), UploadError> {
        self.spare = None;
        let parts = match std::mem::replace(&mut self.state, State::Discarded) {
            State::Writing(parts) => parts,
            other => {
                let result = match &other {
                    State::Failed(reason) => Err(reason.clone()),
                    _ => Ok(()),
                };
                self.state = other;
                return result;
            }
        };
        let size = parts.size;
        let started = parts.started;
        self.progress.set_state(FileState::Completing);
        let result = match parts.upload.clone() {
            None => self.put_single(parts),
            Some(upload) => self.complete_multipart(parts, &upload),
        };
        match result {
            Ok(part_count) => {
                let seconds = started.elapsed().as_secs_f64();
                info!(
                    "uploaded {:?}: {size} bytes in {part_count} part(s), {seconds:.2} s, {:.1} MiB/s",
                    self.key,
                    size as f64 / (1 << 20) as f64 / seconds.max(1e-6)
                );
                self.state = State::Completed { size };
                self.progress.set_state(FileState::Completed);
                self.context.totals.object_completed();
                Ok(())
            }
            Err(reason) => {
                error!("upload of {:?} failed and was aborted: {reason}", self.key);
                self.report_failure(&reason);
                self.state = State::Failed(reason.clone());
                Err(reason)
            }
        }
    }

    pub(super) fn put_single(&self, mut parts: Parts) -> Result<u32, UploadError> {
        if let (Some(entry), Some(resume)) = (parts.unused_parked(), &self.context.resume) {
            resume.abort(&entry, "the file was written again as a single part");
        }
        let body = parts
            .current
            .take()
            .map(|buffer| Bytes::from(buffer.data))
            .unwrap_or_default();
        let checksum = crc32c_base64(&body);
        let reported = crate::s3::retry_within(
            self.context.retry_budget,
            || {
                self.context
                    .store
                    .put_object(&self.key, body.clone(), &checksum, &self.headers)
            },
            || false,
        )
        .map_err(UploadError::from)?;
        if let Some(reported) = reported
            && reported != checksum
        {
            // The object is there but not what we wrote: remove it rather than leave it.
            return Err(upload_error!(
                "server stored CRC32C {reported}, we sent {checksum}; {}",
                self.remove_object(&self.key)
            ));
        }
        self.progress.part_sent();
        self.progress.part_done(Some(body.len() as u64), false);
        self.context.totals.uploaded(body.len() as u64);
        Ok(1)
    }

    pub(super) fn complete_multipart(
        &self,
        mut parts: Parts,
        upload: &Arc<MultipartUpload>,
    ) -> Result<u32, UploadError> {
        let store = &self.context.store;
        let last_part = parts.part_count();
        parts.send_retained_first(&self.context);
        if let Some(buffer) = parts.current.take()
            && !buffer.data.is_empty()
        {
            parts.send_part(&self.context, upload, buffer);
        }
        let uploaded = match upload.wait_for_parts() {
            Ok(uploaded) => uploaded,
            Err(reason) => {
                self.abort_upload(upload);
                return Err(reason);
            }
        };
        let finish = || -> Result<(), UploadError> {
            let upload_id = upload
                .upload_id()
                .ok_or_else(|| "multipart upload was never created".to_owned())?;
            if uploaded.len() != last_part as usize {
                return Err(upload_error!(
                    "{} of {last_part} parts uploaded",
                    uploaded.len()
                ));
            }
            let reported = match crate::s3::retry_within(
                self.context.retry_budget,
                || store.complete_multipart_upload(upload.key(), &upload_id, &uploaded),
                || false,
            ) {
                Ok(reported) => reported,
                // The upload is gone: either our own retry after a Complete whose answer
                // was lost, or someone else aborted it (`cleanup`, a lifecycle rule).
                // Only an object with our checksum proves the first.
                Err(e) if e.kind == crate::s3::S3ErrorKind::NotFound => {
                    return match store.head_object(upload.key()) {
                        Ok(Some(info))
                            if info
                                .checksum_crc32c
                                .as_deref()
                                .is_some_and(|c| matches_parts(c, &uploaded)) =>
                        {
                            if let Some(resume) = &self.context.resume {
                                resume.journal().remove(&upload_id);
                            }
                            Ok(())
                        }
                        _ => Err(upload_error!(
                            "the multipart upload was gone at completion (NoSuchUpload: aborted \
                             elsewhere?) and the object under the key is not ours: {e}; \
                             nothing was changed"
                        )),
                    };
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(resume) = &self.context.resume {
                resume.journal().remove(&upload_id);
            }
            // The full-object CRC32C combined from the parts' own, or the composite
            // one ("...-N") from a server that keeps only that: either must be ours.
            if let Some(reported) = reported
                && !matches_parts(&reported, &uploaded)
            {
                let expected = full_object_checksum(&uploaded).unwrap_or_default();
                // Complete has happened, so there is no upload left to abort: the object
                // itself must go.
                return Err(upload_error!(
                    "server reports CRC32C {reported} for the completed object, expected {expected}; {}",
                    self.remove_object(upload.key())
                ));
            }
            Ok(())
        };
        if let Err(reason) = finish() {
            self.abort_upload(upload);
            return Err(reason);
        }
        if upload.key() != self.key {
            // A resumed upload of another temporary name of the same file (rsync):
            // completed there, it moves to our key by a server-side copy.
            store
                .copy(upload.key(), &self.key, Some(&self.headers), parts.size)
                .map_err(|e| format!("object uploaded, but copying it to its name failed: {e}"))?;
            if let Err(e) = store.delete_object(upload.key()) {
                warn!("could not remove {:?} after moving it: {e}", upload.key());
            }
        }
        self.verify_size(parts.size, &uploaded)?;
        if upload.key() == self.key && upload.headers() != &self.headers {
            // chmod/utimes arrived after CreateMultipartUpload: one copy applies them.
            store
                .copy(&self.key, &self.key, Some(&self.headers), parts.size)
                .map_err(|e| format!("object uploaded, but updating its metadata failed: {e}"))?;
        }
        debug!("completed {:?} in {last_part} parts", self.key);
        Ok(last_part)
    }

    pub(super) fn abort_upload(&self, upload: &MultipartUpload) {
        match self.context.pool.aborter() {
            Some(aborter) => upload.abort(&aborter),
            None => {
                if let Some(id) = upload.upload_id()
                    && let Err(e) = self.context.store.abort_multipart_upload(upload.key(), &id)
                {
                    error!(
                        "could not abort the upload of {:?} at shutdown: {e}",
                        self.key
                    );
                }
            }
        }
    }

    /// Deletes an object that landed wrong; says what became of it, for the error line.
    pub(super) fn remove_object(&self, key: &str) -> String {
        match self.context.store.delete_object(key) {
            Ok(()) => "object removed".to_owned(),
            Err(e) => format!("removing the object failed too ({e}): delete it by hand"),
        }
    }

    /// After Complete, the object must have exactly the size written. A wrong object is
    /// removed only when its checksum proves it is ours (what `parts` make): one that
    /// another writer put there meanwhile is left alone.
    fn verify_size(&self, size: u64, parts: &[UploadedPart]) -> Result<(), UploadError> {
        match self.context.store.head_object(&self.key) {
            Ok(Some(info)) if info.size == size => Ok(()),
            Ok(Some(info))
                if info
                    .checksum_crc32c
                    .as_deref()
                    .is_some_and(|c| matches_parts(c, parts)) =>
            {
                Err(upload_error!(
                    "completed object has {} bytes, {size} were written; {}",
                    info.size,
                    self.remove_object(&self.key)
                ))
            }
            Ok(Some(info)) => Err(upload_error!(
                "the object under the key has {} bytes, {size} were written, and it is not \
                 ours (replaced meanwhile?): left as it is",
                info.size
            )),
            Ok(None) => Err(upload_error!("completed object is not there")),
            Err(e) => Err(upload_error!("could not verify the completed object: {e}")),
        }
    }

    /// Drops everything written and aborts the upload because the file was unlinked:
    /// later writes are accepted and go nowhere, as POSIX has it for an unlinked file.
    pub(crate) fn discard(&mut self, why: &str) {
        self.stop(why, State::Discarded, true);
    }

    /// Aborts the upload (the mount is going away, the writer was killed) unless it is
    /// completed or failed already; true if it did. Later writes and the close fail
    /// with EIO, so a writer still there learns that its file did not make it.
    pub(crate) fn abort_unfinished(&mut self, why: &str) -> bool {
        if self.is_completed() || self.failure().is_some() {
            return false;
        }
        self.stop(
            why,
            State::Failed(upload_error!("upload aborted: {why}")),
            false,
        );
        true
    }

    /// Counts a failure for `status`: the file's, and the mount's recent failures.
    pub(super) fn report_failure(&self, reason: &UploadError) {
        self.progress.failed(&reason.to_string());
        self.context.totals.failed(&self.key, &reason.to_string());
    }

    /// Stops writing; the upload is aborted, or parked when `may_park` (see `resume`).
    pub(super) fn stop(&mut self, why: &str, next: State, may_park: bool) {
        self.spare = None;
        if let State::Failed(reason) = &next {
            self.report_failure(reason);
        }
        let Some(mut parts) = (match std::mem::replace(&mut self.state, next) {
            State::Writing(parts) => Some(parts),
            _ => None,
        }) else {
            return;
        };
        if let (Some(entry), Some(resume)) = (parts.unused_parked(), &self.context.resume) {
            // Taken for a rewrite that stopped before its first part: parked again.
            resume.park(&entry.key, &entry.upload_id);
        }
        if let Some(upload) = parts.upload {
            // No wait for parts in flight: a stop must never hang (the server may not
            // answer); the pool repeats the abort once they are done.
            upload.fail(upload_error!("aborted: {why}"));
            match self.context.pool.aborter() {
                Some(aborter) => upload.abort_in_background(&aborter, may_park),
                None => self.abort_upload(&upload),
            }
            info!("aborting the upload of {:?} ({why})", self.key);
        }
    }
}
