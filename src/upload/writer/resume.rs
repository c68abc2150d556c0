//! A rewrite continuing a parked upload (see `upload::resume`): the writer takes the
//! parked upload over, asks ListParts what S3 holds, and each full part it fills is
//! compared with the part of that number, size and CRC32C: a match is not sent again,
//! and from the first mismatch on parts are uploaded into the same upload, replacing
//! what was there. Complete names exactly the parts of this write, so the object is
//! byte for byte what was written, and the checksum and size checks at completion
//! stay. Part 1 is compared at completion (it is kept in memory until then).

use std::collections::HashMap;
use std::sync::Arc;

use log::{info, warn};

use super::*;
use crate::s3::{UploadedPart, crc32c_base64};
use crate::upload::journal::Entry;

/// What ListParts said the parked upload holds, and whether parts still match.
#[derive(Debug)]
pub(super) struct Reuse {
    listed: HashMap<u32, UploadedPart>,
    mismatched: bool,
    /// The parked upload until the first part goes out: a file that ends within one
    /// part (an empty `touch`, dd's first close) is put whole, and the parked upload
    /// is then aborted, not completed empty.
    pub(super) parked: Option<Entry>,
}

impl Reuse {
    /// The part S3 holds as `number` when it is exactly `data`; None (and no more
    /// reuse after part 1) otherwise.
    pub(super) fn matching(&mut self, number: u32, data: &[u8]) -> Option<UploadedPart> {
        if self.mismatched && number != 1 {
            return None;
        }
        let same = self.listed.get(&number).filter(|part| {
            part.size == data.len() as u64
                && part.checksum_crc32c.as_deref() == Some(crc32c_base64(data).as_str())
        });
        if same.is_none() && number != 1 {
            self.mismatched = true;
        }
        same.cloned()
    }
}

impl ObjectWriter {
    /// A writer for `key` that continues `entry`, the parked upload of the same key;
    /// a fresh one (the parked upload aborted) when that cannot be done.
    pub(crate) fn resuming(
        context: Arc<UploadContext>,
        key: String,
        headers: ObjectHeaders,
        entry: Entry,
    ) -> Self {
        let mut writer = Self::new(Arc::clone(&context), key, headers);
        if let Err(why) = writer.take_over(&entry)
            && let Some(resume) = &context.resume
        {
            resume.abort(&entry, &why);
        }
        writer
    }

    fn take_over(&mut self, entry: &Entry) -> Result<(), String> {
        let context = Arc::clone(&self.context);
        if entry.part_size != context.schedule.part_size(1) {
            return Err(format!(
                "it was cut in parts of {} bytes, the mount now cuts {}",
                entry.part_size,
                context.schedule.part_size(1)
            ));
        }
        let listed = context
            .store
            .list_parts(&entry.key, &entry.upload_id)
            .map_err(|e| {
                warn!("cannot resume the upload of {:?}: {e}", entry.key);
                format!("ListParts failed: {e}")
            })?;
        let State::Writing(parts) = &mut self.state else {
            return Err("the writer is not writing".to_owned());
        };
        info!(
            "resuming the parked upload of {:?} ({}): {} parts in S3 are compared as they are written",
            entry.key,
            entry.upload_id,
            listed.len()
        );
        parts.reuse = Some(Box::new(Reuse {
            listed: listed.into_iter().map(|p| (p.part_number, p)).collect(),
            mismatched: false,
            parked: Some(entry.clone()),
        }));
        Ok(())
    }
}

impl Parts {
    /// The upload parts go to: the parked one this write resumes, or a new one.
    pub(super) fn upload_for(
        &mut self,
        key: String,
        headers: ObjectHeaders,
        progress: &Arc<crate::upload::progress::FileProgress>,
    ) -> Arc<MultipartUpload> {
        let parked = self.reuse.as_mut().and_then(|reuse| reuse.parked.take());
        Arc::clone(self.upload.get_or_insert_with(|| match parked {
            Some(entry) => MultipartUpload::resumed(
                entry.key.clone(),
                entry.headers(),
                entry.upload_id,
                Vec::new(),
                Arc::clone(progress),
            ),
            None => MultipartUpload::new(key, headers, Arc::clone(progress)),
        }))
    }

    /// The parked upload this write took and never used (it ended within one part, or
    /// stopped before its first part went out).
    pub(super) fn unused_parked(&mut self) -> Option<Entry> {
        self.reuse.as_mut().and_then(|reuse| reuse.parked.take())
    }

    /// Sends a full part, or adopts the parked upload's identical part instead.
    pub(super) fn send_part(
        &mut self,
        context: &UploadContext,
        upload: &Arc<MultipartUpload>,
        buffer: PartBuffer,
    ) {
        if let Some(part) = self
            .reuse
            .as_mut()
            .and_then(|reuse| reuse.matching(buffer.number, &buffer.data))
        {
            upload.adopt(part);
            return;
        }
        context
            .pool
            .submit(upload, buffer.number, buffer.data, buffer.reservation);
    }
}
