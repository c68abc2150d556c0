//! Bucket housekeeping outside a mount: `s3upfs cleanup` lists and aborts multipart
//! uploads orphaned under a prefix (a killed daemon leaves them, and they are billed),
//! `s3upfs lifecycle` installs the rule that makes S3 abort them by itself.

use std::time::{Duration, SystemTime};

use crate::s3::{ObjectStore, PendingUpload};

/// Aborts (or with `dry_run` only lists) the multipart uploads under `prefix` started
/// more than `older_than` ago. Uploads without a start time are left alone.
pub(crate) fn abort_orphans(
    store: &dyn ObjectStore,
    prefix: &str,
    older_than: Duration,
    dry_run: bool,
) -> Result<Vec<PendingUpload>, String> {
    let now = SystemTime::now();
    let uploads = store
        .list_multipart_uploads(prefix)
        .map_err(|e| e.to_string())?;
    let mut chosen = Vec::new();
    for upload in uploads {
        let old_enough = upload
            .initiated
            .and_then(|started| now.duration_since(started).ok())
            .is_some_and(|age| age >= older_than);
        if !old_enough {
            continue;
        }
        if !dry_run {
            store
                .abort_multipart_upload(&upload.key, &upload.upload_id)
                .map_err(|e| e.to_string())?;
            log::info!("aborted orphaned multipart upload of {:?}", upload.key);
        }
        chosen.push(upload);
    }
    Ok(chosen)
}

/// Formats an upload for the cleanup listing: age, key, upload id.
pub(crate) fn describe(upload: &PendingUpload) -> String {
    let age = upload
        .initiated
        .and_then(|started| SystemTime::now().duration_since(started).ok())
        .map(|age| format!("{}h{:02}m", age.as_secs() / 3600, age.as_secs() / 60 % 60))
        .unwrap_or_else(|| "?".to_owned());
    format!("{age}\t{}\t{}", upload.key, upload.upload_id)
}
