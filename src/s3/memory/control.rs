//! The in-memory store's controls for tests: building it, its fault hook, what it was
//! asked (the call log) and what it holds, and objects put as another client would.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::*;

impl MemoryStore {
    pub(crate) fn new() -> Self {
        let store = Self::default();
        store
            .copy_object_limit
            .store(COPY_OBJECT_LIMIT, Ordering::Relaxed);
        store
    }

    /// Every call after this passes through `hook` first.
    pub(crate) fn set_hook(
        &self,
        hook: impl Fn(Phase, &'static str, &str) -> Option<S3Error> + Send + Sync + 'static,
    ) {
        *self.hook.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::sync::Arc::new(Box::new(hook)));
    }

    pub(crate) fn keep_composite_checksums(&self) {
        self.composite_checksums.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_copy_object_limit(&self, limit: u64) {
        self.copy_object_limit.store(limit, Ordering::Relaxed);
    }

    /// Every call so far, in order: `(operation, key)`; a part's key is `KEY#NUMBER`.
    pub(crate) fn calls(&self) -> Vec<(&'static str, String)> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many calls of `operation` were made.
    pub(crate) fn count(&self, operation: &str) -> usize {
        self.calls()
            .iter()
            .filter(|(op, _)| *op == operation)
            .count()
    }

    pub(crate) fn object(&self, key: &str) -> Option<StoredObject> {
        self.bucket().objects.get(key).cloned()
    }

    pub(crate) fn keys(&self) -> Vec<String> {
        self.bucket().objects.keys().cloned().collect()
    }

    /// Unfinished uploads: `(key, upload id)`.
    pub(crate) fn uploads(&self) -> Vec<(String, String)> {
        let bucket = self.bucket();
        bucket
            .uploads
            .iter()
            .map(|(id, upload)| (upload.key.clone(), id.clone()))
            .collect()
    }

    /// Puts an object as another client would, without going through the hook.
    pub(crate) fn insert(&self, key: &str, body: &[u8], metadata: &[(&str, &str)]) {
        let headers = ObjectHeaders {
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            content_type: None,
        };
        self.insert_with(key, body, headers);
    }

    /// [`Self::insert`] with any headers.
    pub(crate) fn insert_with(&self, key: &str, body: &[u8], headers: ObjectHeaders) {
        self.bucket().objects.insert(
            key.to_owned(),
            StoredObject {
                etag: etag_of(body),
                checksum_crc32c: Some(crc32c_base64(body)),
                body: Bytes::copy_from_slice(body),
                headers,
                last_modified: SystemTime::now(),
            },
        );
    }

    pub(super) fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the call, and runs the hook before `effect` and again after it took
    /// effect (outside every lock, so the hook may block). A failure after the effect
    /// is an answer lost on the way back: the request happened, the caller is told
    /// it failed.
    pub(super) fn call<T>(
        &self,
        operation: &'static str,
        key: &str,
        effect: impl FnOnce() -> Result<T, S3Error>,
    ) -> Result<T, S3Error> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((operation, key.to_owned()));
        let hook = self.hook.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(error) = hook
            .as_ref()
            .and_then(|hook| hook(Phase::Before, operation, key))
        {
            return Err(error);
        }
        let value = effect()?;
        match hook.and_then(|hook| hook(Phase::After, operation, key)) {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }
}

impl MemoryStore {
    pub(super) fn add_part(
        &self,
        operation: &'static str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        part: Part,
    ) -> Result<String, S3Error> {
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            let message = format!("part number {part_number} is outside 1..=10000");
            return Err(error(operation, key, 400, "InvalidArgument", &message));
        }
        let mut bucket = self.bucket();
        match bucket.uploads.get_mut(upload_id) {
            Some(upload) if upload.key == key => {
                let etag = part.etag.clone();
                upload.parts.insert(part_number, part);
                Ok(etag)
            }
            _ => Err(error(operation, key, 404, "NoSuchUpload", "no such upload")),
        }
    }
}

/// A failure as a fault hook returns it: a 500 the upload path retries.
pub(crate) fn internal_error(operation: &'static str, key: &str) -> S3Error {
    error(operation, key, 500, "InternalError", "injected")
}

/// A refusal as a fault hook returns it (403 AccessDenied).
pub(crate) fn access_denied(operation: &'static str, key: &str) -> S3Error {
    error(operation, key, 403, "AccessDenied", "injected")
}
