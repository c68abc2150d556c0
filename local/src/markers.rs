//! Directory markers: empty objects whose key ends in `/` (`a/b/`), which the mount writes for
//! directories that must exist without files in them. s3s-fs cannot store a key ending in `/`;
//! here a marker is the directory `a/b` plus its metadata and internal sidecars, and the internal
//! sidecar is what makes it a marker (a directory that only exists because keys live under it is
//! not one). This file owns writing, reading, copying and the on-disk test of a marker; listings
//! show them through [`Store::marker_entry`], deletes go through [`Store::delete_key`].

use std::fs;
use std::path::PathBuf;
use std::time::SystemTime;

use s3s::dto;
use s3s::{S3, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::checksums::{WantedChecksums, checksums_of, decode_content_md5, set_checksums};
use crate::error::{conflict, io_err, no_such_key, s3_err};
use crate::list::Listed;
use crate::service::LocalFs;
use crate::sidecars::{InternalInfo, attributes_of};
use crate::store::{INTERNAL, META, Store, is_not_found, remove_if_exists};

/// MD5 of the empty string: the ETag of every directory marker.
pub(crate) const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// Where a marker's metadata sidecar comes from.
pub(crate) enum MetaSource {
    Json(Vec<u8>),
    CopyOf(PathBuf),
}

impl Store {
    /// A marker is a directory with an internal sidecar for its `…/` key.
    pub(crate) fn is_marker(&self, bucket: &str, key: &str) -> bool {
        key.ends_with('/')
            && self.sidecar(bucket, key, INTERNAL).is_file()
            && self.data_path(bucket, key).is_dir()
    }

    /// When the marker `key` was written; NoSuchKey if it is not a marker.
    fn marker_modified(&self, bucket: &str, key: &str) -> S3Result<SystemTime> {
        self.require_bucket(bucket)?;
        if !self.data_path(bucket, key).is_dir() {
            return Err(no_such_key(key));
        }
        match fs::metadata(self.sidecar(bucket, key, INTERNAL)) {
            Ok(m) => m.modified().map_err(|e| io_err("cannot stat marker", e)),
            Err(e) if is_not_found(&e) => Err(no_such_key(key)),
            Err(e) => Err(io_err("cannot stat marker", e)),
        }
    }

    /// The listing entry of the marker `key_dir`, if the directory is one.
    pub(crate) fn marker_entry(&self, bucket: &str, key_dir: &str) -> Option<Listed> {
        let meta = fs::metadata(self.sidecar(bucket, key_dir, INTERNAL)).ok()?;
        Some(Listed {
            key: key_dir.to_owned(),
            size: 0,
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            marker: true,
        })
    }

    fn put_marker(
        &self,
        bucket: &str,
        key: &str,
        meta: MetaSource,
        internal: &InternalInfo,
    ) -> S3Result<()> {
        let _guard = self.lock();
        self.require_bucket(bucket)?;
        self.check_no_file_ancestor(bucket, key)?;
        let dir = self.data_path(bucket, key);
        if let Ok(m) = fs::symlink_metadata(&dir)
            && !m.is_dir()
        {
            let object = key.trim_end_matches('/');
            return Err(conflict(key, &format!("the object `{object}` exists")));
        }
        fs::create_dir_all(&dir).map_err(|e| io_err("cannot create the marker directory", e))?;
        let meta_path = self.sidecar(bucket, key, META);
        match meta {
            MetaSource::Json(json) => self.write_sidecar(&meta_path, &json)?,
            MetaSource::CopyOf(source) if source == meta_path => {}
            MetaSource::CopyOf(source) => match fs::read(&source) {
                Ok(bytes) => self.write_sidecar(&meta_path, &bytes)?,
                Err(e) if is_not_found(&e) => remove_if_exists(&meta_path)
                    .map_err(|e| io_err("cannot remove stale metadata", e))?,
                Err(e) => return Err(io_err("cannot read the source metadata", e)),
            },
        }
        // Written last: it is what makes the directory a marker.
        self.write_sidecar(&self.sidecar(bucket, key, INTERNAL), &internal.to_json())
    }
}

impl LocalFs {
    /// PutObject of a key ending in `/`: the body must be empty; its checksums are verified.
    pub(crate) async fn put_marker_impl(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let expected = checksums_of!(req.input);
        let wanted = WantedChecksums::new(&req, expected, req.input.checksum_algorithm.as_ref())?;
        let mut input = req.input;
        if let Some(body) = input.body.take() {
            // Reads the (empty) body, and with it any checksum trailers.
            let mut body = s3s::Body::from(body);
            if let Err(e) = body.store_all_limited(0).await {
                return Err(s3_err(
                    S3ErrorCode::UnexpectedContent,
                    format!(
                        "a directory marker (a key ending in `/`) must have an empty body: {e}"
                    ),
                ));
            }
        }
        if let Some(md5) = &input.content_md5
            && decode_content_md5(md5)? != EMPTY_MD5
        {
            return Err(s3_err(
                S3ErrorCode::BadDigest,
                "Content-MD5 does not match the empty body",
            ));
        }
        let sums = wanted.hasher().finalize();
        wanted.verify(&sums)?;

        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let internal = InternalInfo::new(EMPTY_MD5, &sums);
        let if_none_match = input.if_none_match.take();
        let meta = MetaSource::Json(attributes_of!(input).to_json());
        self.with_store(move |store| {
            if if_none_match.is_some() && store.is_marker(&bucket, &key) {
                return Err(s3_err(
                    S3ErrorCode::PreconditionFailed,
                    "If-None-Match: the object exists",
                ));
            }
            store.put_marker(&bucket, &key, meta, &internal)
        })
        .await?;
        let mut output = dto::PutObjectOutput {
            e_tag: Some(dto::ETag::Strong(EMPTY_MD5.to_owned())),
            size: Some(0),
            ..Default::default()
        };
        set_checksums!(output, sums);
        Ok(S3Response::new(output))
    }

    /// HeadObject of a marker: s3s-fs reads its sidecars; size and time are the marker's.
    pub(crate) async fn head_marker(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let modified = self
            .with_store(move |store| store.marker_modified(&bucket, &key))
            .await?;
        let mut resp = self.inner.head_object(req).await?;
        resp.output.content_length = Some(0);
        resp.output.last_modified = Some(dto::Timestamp::from(modified));
        resp.output.e_tag = Some(dto::ETag::Strong(EMPTY_MD5.to_owned()));
        Ok(resp)
    }

    /// GetObject of a marker: an empty body with what HeadObject returns.
    pub(crate) async fn get_marker(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        if req.input.range.is_some() {
            // A marker is empty: any range is unsatisfiable (as S3 answers for 0-byte objects).
            let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
            self.with_store(move |store| store.marker_modified(&bucket, &key))
                .await?;
            return Err(s3_err(
                S3ErrorCode::InvalidRange,
                "the requested range is not satisfiable: a directory marker is empty",
            ));
        }
        let head = self
            .head_marker(req.map_input(|input| dto::HeadObjectInput {
                bucket: input.bucket,
                key: input.key,
                ..Default::default()
            }))
            .await?;
        let h = head.output;
        let mut output = dto::GetObjectOutput {
            body: Some(dto::StreamingBlob::from(s3s::Body::empty())),
            content_length: Some(0),
            e_tag: h.e_tag,
            last_modified: h.last_modified,
            metadata: h.metadata,
            content_type: h.content_type,
            content_encoding: h.content_encoding,
            content_disposition: h.content_disposition,
            content_language: h.content_language,
            cache_control: h.cache_control,
            expires: h.expires,
            website_redirect_location: h.website_redirect_location,
            ..Default::default()
        };
        set_checksums!(output, checksums_of!(h));
        Ok(S3Response::new(output))
    }

    /// CopyObject marker → marker: the metadata is copied (COPY) or set from the request
    /// (REPLACE); a marker has no data to copy.
    pub(crate) async fn copy_marker(
        &self,
        input: dto::CopyObjectInput,
        (src_bucket, src_key): (String, String),
        replace: bool,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let meta = if replace {
            MetaSource::Json(attributes_of!(input).to_json())
        } else {
            MetaSource::CopyOf(self.store.sidecar(&src_bucket, &src_key, META))
        };
        self.with_store(move |store| {
            store.require_bucket(&src_bucket)?;
            if !store.is_marker(&src_bucket, &src_key) {
                return Err(no_such_key(&src_key));
            }
            let internal = InternalInfo::new(EMPTY_MD5, &dto::Checksum::default());
            store.put_marker(&bucket, &key, meta, &internal)
        })
        .await?;
        Ok(S3Response::new(dto::CopyObjectOutput {
            copy_object_result: Some(dto::CopyObjectResult {
                e_tag: Some(dto::ETag::Strong(EMPTY_MD5.to_owned())),
                last_modified: Some(dto::Timestamp::from(SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}
