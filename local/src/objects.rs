//! Object operations that s3s-fs gets wrong for the mount: PutObject and CopyObject go through
//! staging (a failed verification never replaces the object) after the key, its length, its
//! preconditions and its place in the tree are checked; Head/Get/Delete of a key that is a
//! directory on disk answer 404/404/no-op; keys ending in `/` go to the `markers` module;
//! DeleteBucket refuses a bucket that is not empty.

use std::future::Future;

use s3s::dto;
use s3s::{S3, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::args::{check_key, check_key_len, copy_source, unquote};
use crate::error::{io_err, no_such_key, s3_err};
use crate::service::LocalFs;
use crate::store::{STAGING, Store};

/// Checks PutObject's If-Match/If-None-Match against the current object (not atomically).
fn check_preconditions(
    store: &Store,
    bucket: &str,
    key: &str,
    if_match: Option<&dto::IfMatch>,
    if_none_match: Option<&dto::IfNoneMatch>,
) -> S3Result<()> {
    let current = if if_match.is_some() || if_none_match.is_some() {
        store.current_etag(bucket, key)?
    } else {
        None
    };
    if let Some(cond) = if_none_match
        && let Some(current) = &current
        && (cond.is_any()
            || cond
                .as_etag()
                .is_some_and(|e| unquote(e.value()) == current))
    {
        return Err(s3_err(
            S3ErrorCode::PreconditionFailed,
            "If-None-Match: the object exists",
        ));
    }
    if let Some(cond) = if_match {
        let matches = current.as_ref().is_some_and(|current| {
            cond.is_any()
                || cond
                    .as_etag()
                    .is_some_and(|e| unquote(e.value()) == current)
        });
        if !matches {
            return Err(s3_err(
                S3ErrorCode::PreconditionFailed,
                "If-Match: the object does not exist or has another ETag",
            ));
        }
    }
    Ok(())
}

impl LocalFs {
    /// Runs `write` (s3s-fs writing and verifying an object) against a fresh key in staging,
    /// then moves the result over `bucket`/`key`, or discards it if `write` failed.
    async fn staged<T, F, Fut>(&self, bucket: String, key: String, write: F) -> S3Result<T>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = S3Result<T>>,
    {
        let stage = self.store.stage_key();
        match write(stage.clone()).await {
            Ok(resp) => {
                self.with_store(move |store| store.commit_staged(&stage, &bucket, &key))
                    .await?;
                Ok(resp)
            }
            Err(e) => {
                self.with_store(move |store| {
                    store.discard_staged(&stage);
                    Ok(())
                })
                .await?;
                Err(e)
            }
        }
    }

    pub(crate) async fn delete_bucket_impl(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        let bucket = req.input.bucket.clone();
        self.with_store(move |store| {
            store.require_bucket(&bucket)?;
            let used = store
                .subtree_has_key(&bucket, "", &store.bucket_dir(&bucket))
                .map_err(|e| io_err("cannot read the bucket", e))?;
            if used || !store.list_uploads(&bucket, "")?.is_empty() {
                return Err(s3_err(
                    S3ErrorCode::BucketNotEmpty,
                    format!("the bucket `{bucket}` is not empty"),
                ));
            }
            Ok(())
        })
        .await?;
        self.inner.delete_bucket(req).await
    }

    pub(crate) async fn put_object_impl(
        &self,
        mut req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let bucket = req.input.bucket.clone();
        let key = req.input.key.clone();
        check_key(&key)?;
        check_key_len(&bucket, &key, false)?;
        if key.ends_with('/') {
            return self.put_marker_impl(req).await;
        }

        // Preconditions and conflicts, before the body is read.
        let if_match = req.input.if_match.take();
        let if_none_match = req.input.if_none_match.take();
        {
            let (bucket, key) = (bucket.clone(), key.clone());
            self.with_store(move |store| {
                store.require_bucket(&bucket)?;
                store.prepare_object_path(&bucket, &key, false)?;
                check_preconditions(
                    store,
                    &bucket,
                    &key,
                    if_match.as_ref(),
                    if_none_match.as_ref(),
                )
            })
            .await?;
        }

        // s3s-fs writes the object and verifies Content-MD5 and checksums afterwards: let it do
        // that in staging, then move the result over the key.
        self.staged(bucket, key, |stage| {
            req.input.bucket = STAGING.to_owned();
            req.input.key = stage;
            self.inner.put_object(req)
        })
        .await
    }

    /// Head and Get: whether `key` names a marker. A key that is a directory on disk (not an
    /// object) is NoSuchKey; a missing bucket is NoSuchBucket.
    async fn is_marker_key(&self, bucket: &str, key: &str) -> S3Result<bool> {
        check_key(key)?;
        if key.ends_with('/') {
            return Ok(true);
        }
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.with_store(move |store| {
            store.require_bucket(&bucket)?;
            if store.data_path(&bucket, &key).is_dir() {
                return Err(no_such_key(&key));
            }
            Ok(false)
        })
        .await
    }

    pub(crate) async fn head_object_impl(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        if self
            .is_marker_key(&req.input.bucket, &req.input.key)
            .await?
        {
            return self.head_marker(req).await;
        }
        self.inner.head_object(req).await
    }

    pub(crate) async fn get_object_impl(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        if self
            .is_marker_key(&req.input.bucket, &req.input.key)
            .await?
        {
            return self.get_marker(req).await;
        }
        self.inner.get_object(req).await
    }

    pub(crate) async fn delete_object_impl(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        check_key(&req.input.key)?;
        let (bucket, key) = (req.input.bucket, req.input.key);
        self.with_store(move |store| store.delete_key(&bucket, &key))
            .await?;
        Ok(S3Response::new(dto::DeleteObjectOutput::default()))
    }

    pub(crate) async fn delete_objects_impl(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let input = req.input;
        let quiet = input.delete.quiet.unwrap_or(false);
        let bucket = input.bucket;
        let objects = input.delete.objects;
        let (deleted, errors) = self
            .with_store(move |store| {
                store.require_bucket(&bucket)?;
                let mut deleted = Vec::new();
                let mut errors = Vec::new();
                for object in objects {
                    match check_key(&object.key)
                        .and_then(|()| store.delete_key(&bucket, &object.key))
                    {
                        Ok(()) => deleted.push(dto::DeletedObject {
                            key: Some(object.key),
                            version_id: object.version_id,
                            ..Default::default()
                        }),
                        Err(e) => errors.push(dto::Error {
                            code: Some(e.code().as_str().to_owned()),
                            message: e.message().map(str::to_owned),
                            key: Some(object.key),
                            version_id: object.version_id,
                        }),
                    }
                }
                Ok((deleted, errors))
            })
            .await?;
        Ok(S3Response::new(dto::DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    pub(crate) async fn copy_object_impl(
        &self,
        mut req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        let (src_bucket, src_key) = copy_source(&req.input.copy_source)?;
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        check_key(&key)?;
        check_key_len(&bucket, &key, false)?;
        if src_key.ends_with('/') != key.ends_with('/') {
            return Err(s3_err(
                S3ErrorCode::InvalidRequest,
                "the --local server copies directory markers (keys ending in `/`) only onto \
                 directory markers, and objects only onto object keys",
            ));
        }
        let replace = req.input.metadata_directive.as_ref().is_some_and(|d| {
            d.as_str()
                .eq_ignore_ascii_case(dto::MetadataDirective::REPLACE)
        });
        if key.ends_with('/') {
            return self
                .copy_marker(req.input, (src_bucket, src_key), replace)
                .await;
        }

        {
            let (src_bucket, src_key, bucket, key) = (
                src_bucket.clone(),
                src_key.clone(),
                bucket.clone(),
                key.clone(),
            );
            self.with_store(move |store| {
                store.require_bucket(&src_bucket)?;
                store.require_bucket(&bucket)?;
                if !store.data_path(&src_bucket, &src_key).is_file() {
                    return Err(no_such_key(&src_key));
                }
                store.prepare_object_path(&bucket, &key, false)
            })
            .await?;
        }
        if src_bucket == bucket && src_key == key {
            // s3s-fs updates a self-copy in place (only metadata and the time change).
            return self.inner.copy_object(req).await;
        }
        self.staged(bucket, key, |stage| {
            req.input.bucket = STAGING.to_owned();
            req.input.key = stage;
            self.inner.copy_object(req)
        })
        .await
    }
}
