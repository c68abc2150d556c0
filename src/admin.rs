//! Bucket housekeeping outside a mount: `s3upfs cleanup` lists and aborts multipart
//! uploads orphaned under a prefix (a killed daemon leaves them, and they are billed),
//! `s3upfs lifecycle` installs the rule that makes S3 abort them by itself.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::s3::{Connection, ObjectStore, PendingUpload, SdkStore};

/// `s3upfs cleanup`: aborts (or lists) the uploads under `prefix` older than `older_than`.
pub(crate) fn cleanup(
    connection: &Connection,
    prefix: &str,
    older_than: Duration,
    dry_run: bool,
) -> Result<(), String> {
    let (_runtime, store) = connect_checked(connection, prefix)?;
    let found = abort_orphans(store.as_ref(), prefix, older_than, dry_run)
        .map_err(|e| format!("cleanup failed: {e}"))?;
    for upload in &found {
        println!("{}", describe(upload));
    }
    let verb = if dry_run { "would abort" } else { "aborted" };
    println!("{verb} {} multipart upload(s)", found.len());
    Ok(())
}

/// `s3upfs lifecycle`: installs the rule that aborts incomplete uploads after `days`.
pub(crate) fn lifecycle(connection: &Connection, days: i32) -> Result<(), String> {
    let (_runtime, store) = connect_checked(connection, "")?;
    store
        .put_abort_incomplete_rule("s3upfs-abort-incomplete-multipart-uploads", days)
        .map_err(|e| format!("installing the lifecycle rule failed: {e}"))?;
    println!(
        "bucket {}: incomplete multipart uploads are now aborted {days} day(s) after they start",
        store.bucket()
    );
    Ok(())
}

/// A store for an admin command, with the bucket proven usable, and the runtime that
/// drives its requests.
pub(crate) fn connect_checked(
    connection: &Connection,
    prefix: &str,
) -> Result<(tokio::runtime::Runtime, Arc<SdkStore>), String> {
    // Multi-threaded: the client blocks on the runtime's handle, which only drives I/O
    // on a runtime with worker threads of its own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the I/O runtime: {e}"))?;
    let store = crate::s3::connect(runtime.handle(), connection)?;
    store.check_bucket(prefix)?;
    Ok((runtime, store))
}

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
