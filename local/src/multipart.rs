//! The multipart operations as the mount needs them: Create refuses what s3s-fs could not
//! store (marker keys, long keys, FULL_OBJECT checksums); UploadPart verifies and echoes the
//! part's checksums and records them; Complete checks the part list (see [`Store::prepare_complete`])
//! before s3s-fs concatenates the parts, then records the composite checksums; Abort and
//! UploadPart of an unknown upload are NoSuchUpload; ListParts and ListMultipartUploads (which
//! s3s-fs does not implement) are answered from the files the `parts` module owns.

use s3s::checksum::ChecksumHasher;
use s3s::dto;
use s3s::{S3, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::args::{
    check_key, check_key_len, check_part_number, copy_source, etag_value, normalize_upload_id,
    page_limit,
};
use crate::checksums::{
    Alg, WantedChecksums, checksums_of, checksums_of_file, decode_content_md5, set_checksums,
};
use crate::error::{io_err, no_such_key, s3_err};
use crate::service::LocalFs;
use crate::sidecars::InternalInfo;
use crate::store::{INTERNAL, is_not_found};

impl LocalFs {
    pub(crate) async fn create_multipart_upload_impl(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        check_key(&key)?;
        if key.ends_with('/') {
            return Err(s3_err(
                S3ErrorCode::InvalidArgument,
                "a directory marker (a key ending in `/`) cannot be uploaded in parts",
            ));
        }
        check_key_len(&bucket, &key, true)?;
        if let Some(algorithm) = &req.input.checksum_algorithm {
            Alg::requested(algorithm)?;
        }
        if req.input.checksum_type.as_ref().is_some_and(|t| {
            t.as_str()
                .eq_ignore_ascii_case(dto::ChecksumType::FULL_OBJECT)
        }) {
            return Err(s3_err(
                S3ErrorCode::NotImplemented,
                "the --local server computes only COMPOSITE multipart checksums",
            ));
        }
        self.with_store(move |store| {
            store.require_bucket(&bucket)?;
            store.prepare_object_path(&bucket, &key, false)
        })
        .await?;
        let algorithm = req.input.checksum_algorithm.clone();
        let mut resp = self.inner.create_multipart_upload(req).await?;
        if resp.output.checksum_algorithm.is_none() {
            resp.output.checksum_algorithm = algorithm;
        }
        Ok(resp)
    }

    pub(crate) async fn upload_part_impl(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        check_key(&req.input.key)?;
        let id = normalize_upload_id(&req.input.upload_id)?;
        let n = req.input.part_number;
        check_part_number(n)?;
        self.store.require_upload(&id)?;
        let md5 = req
            .input
            .content_md5
            .as_deref()
            .map(decode_content_md5)
            .transpose()?;
        let expected = checksums_of!(req.input);
        let wanted = WantedChecksums::new(&req, expected, req.input.checksum_algorithm.as_ref())?;

        let mut resp = self.inner.upload_part(req).await?;
        let etag = etag_value(resp.output.e_tag.as_ref());
        let sums = self
            .with_store(move |store| {
                let verified = (|| {
                    if let Some(md5) = md5
                        && md5 != etag
                    {
                        return Err(s3_err(
                            S3ErrorCode::BadDigest,
                            format!(
                                "Content-MD5 mismatch: the request says {md5}, the body has {etag}"
                            ),
                        ));
                    }
                    let sums = if wanted.is_empty() {
                        dto::Checksum::default()
                    } else {
                        checksums_of_file(&store.part_path(&id, n), wanted.hasher())
                            .map_err(|e| io_err("cannot read the uploaded part", e))?
                    };
                    wanted.verify(&sums)?;
                    store.write_part_record(&id, n, &etag, &sums)?;
                    Ok(sums)
                })();
                if verified.is_err() {
                    store.remove_part(&id, n);
                }
                verified
            })
            .await?;
        set_checksums!(resp.output, sums);
        Ok(resp)
    }

    pub(crate) async fn upload_part_copy_impl(
        &self,
        req: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        let (src_bucket, src_key) = copy_source(&req.input.copy_source)?;
        check_key(&req.input.key)?;
        let id = normalize_upload_id(&req.input.upload_id)?;
        let n = req.input.part_number;
        check_part_number(n)?;
        self.store.require_upload(&id)?;
        if !self.store.data_path(&src_bucket, &src_key).is_file() {
            return Err(no_such_key(&src_key));
        }
        let mut resp = self.inner.upload_part_copy(req).await?;
        let etag = etag_value(
            resp.output
                .copy_part_result
                .as_ref()
                .and_then(|r| r.e_tag.as_ref()),
        );
        // As S3 does for an upload that takes checksums: the copied part's CRC32C,
        // computed here from the bytes, recorded for Complete and returned.
        let sums = self
            .with_store(move |store| {
                let mut hasher = ChecksumHasher::default();
                Alg::Crc32c.enable(&mut hasher);
                let sums = checksums_of_file(&store.part_path(&id, n), hasher)
                    .map_err(|e| io_err("cannot read the copied part", e))?;
                store.write_part_record(&id, n, &etag, &sums)?;
                Ok(sums)
            })
            .await?;
        if let Some(result) = resp.output.copy_part_result.as_mut() {
            result.checksum_crc32c = sums.checksum_crc32c;
        }
        Ok(resp)
    }

    pub(crate) async fn complete_multipart_upload_impl(
        &self,
        mut req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        check_key(&key)?;
        let id = normalize_upload_id(&req.input.upload_id)?;
        let parts = req
            .input
            .multipart_upload
            .as_ref()
            .and_then(|m| m.parts.clone())
            .unwrap_or_default();
        let count = parts.len();

        let composite = {
            let (bucket, key, id) = (bucket.clone(), key.clone(), id.clone());
            self.with_store(move |store| store.prepare_complete(&bucket, &key, &id, &parts))
                .await?
        };
        if let Some(parts) = req
            .input
            .multipart_upload
            .as_mut()
            .and_then(|m| m.parts.as_mut())
        {
            for (i, part) in parts.iter_mut().enumerate() {
                part.part_number = Some(i32::try_from(i + 1).unwrap_or(i32::MAX));
            }
        }

        let mut resp = self.inner.complete_multipart_upload(req).await?;
        if let Some(future) = resp.output.future.take() {
            resp.output = future.await?;
        }
        let etag = etag_value(resp.output.e_tag.as_ref());

        // Replace what s3s-fs kept from a previous object (its checksums) with the new ones.
        let internal = InternalInfo::new(&etag, &composite);
        self.with_store(move |store| {
            store.write_sidecar(&store.sidecar(&bucket, &key, INTERNAL), &internal.to_json())?;
            store.remove_part_records(&id)
        })
        .await?;

        let has_composite = composite.checksum_crc32.is_some()
            || composite.checksum_crc32c.is_some()
            || composite.checksum_sha1.is_some()
            || composite.checksum_sha256.is_some();
        set_checksums!(resp.output, composite);
        if has_composite {
            resp.output.checksum_type =
                Some(dto::ChecksumType::from_static(dto::ChecksumType::COMPOSITE));
        }
        log::debug!(
            "local S3 server: completed {count}-part upload of {}",
            resp.output.key.as_deref().unwrap_or("")
        );
        Ok(resp)
    }

    pub(crate) async fn abort_multipart_upload_impl(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        let id = normalize_upload_id(&req.input.upload_id)?;
        self.store.require_upload(&id)?;
        let resp = self.inner.abort_multipart_upload(req).await?;
        self.with_store(move |store| store.remove_part_records(&id))
            .await?;
        Ok(resp)
    }

    pub(crate) async fn list_parts_impl(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        let input = req.input;
        let id = normalize_upload_id(&input.upload_id)?;
        let (max_parts, limit) = page_limit(input.max_parts, "max-parts")?;
        let marker = input.part_number_marker.unwrap_or(0);
        let (parts, truncated) = self
            .with_store(move |store| {
                store.require_upload(&id)?;
                let read = |e| io_err("cannot read the uploaded parts", e);
                let numbers: Vec<i32> = store
                    .part_numbers(&id)
                    .map_err(read)?
                    .into_iter()
                    .filter(|&n| n > marker)
                    .collect();
                let mut parts = Vec::new();
                for &n in numbers.iter().take(limit) {
                    match store.part_info(&id, n) {
                        Ok(info) => parts.push(info),
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(read(e)),
                    }
                }
                Ok((parts, numbers.len() > limit))
            })
            .await?;
        let next = if truncated {
            parts.last().map(|p| p.number)
        } else {
            None
        };
        let parts: Vec<dto::Part> = parts
            .into_iter()
            .map(|p| {
                let mut part = dto::Part {
                    part_number: Some(p.number),
                    size: Some(i64::try_from(p.size).unwrap_or(i64::MAX)),
                    last_modified: Some(dto::Timestamp::from(p.modified)),
                    e_tag: Some(dto::ETag::Strong(p.etag)),
                    ..Default::default()
                };
                set_checksums!(part, p.sums);
                part
            })
            .collect();
        Ok(S3Response::new(dto::ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max_parts),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            is_truncated: Some(truncated),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    pub(crate) async fn list_multipart_uploads_impl(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        let input = req.input;
        let (max_uploads, limit) = page_limit(input.max_uploads, "max-uploads")?;
        let (bucket, prefix) = (
            input.bucket.clone(),
            input.prefix.clone().unwrap_or_default(),
        );
        let all = self
            .with_store(move |store| store.list_uploads(&bucket, &prefix))
            .await?;
        let key_marker = input.key_marker.as_deref();
        let id_marker = input.upload_id_marker.as_deref();
        let mut remaining = all
            .into_iter()
            .filter(|(key, id, _)| match key_marker {
                None => true,
                Some(marker) => {
                    key.as_str() > marker
                        || (key == marker && id_marker.is_some_and(|m| id.as_str() > m))
                }
            })
            .peekable();
        let uploads: Vec<dto::MultipartUpload> = remaining
            .by_ref()
            .take(limit)
            .map(|(key, id, initiated)| dto::MultipartUpload {
                key: Some(key),
                upload_id: Some(id),
                initiated: Some(dto::Timestamp::from(initiated)),
                ..Default::default()
            })
            .collect();
        let truncated = limit > 0 && remaining.peek().is_some();
        let (next_key, next_id) = match (truncated, uploads.last()) {
            (true, Some(last)) => (last.key.clone(), last.upload_id.clone()),
            _ => (None, None),
        };
        Ok(S3Response::new(dto::ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max_uploads),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            uploads: Some(uploads),
            ..Default::default()
        }))
    }
}
