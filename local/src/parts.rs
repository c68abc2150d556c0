//! Multipart uploads on disk. s3s-fs keeps an upload as `.upload-<id>.json` (it exists while
//! the upload is pending), `.upload_id-<id>.part-<n>` (the data of each part) and the upload's
//! metadata sidecar; this crate adds `.s3upfs-part-<id>-<n>` beside each part, recording the
//! ETag and checksums it was uploaded with. This file owns those files: reading parts back for
//! ListParts, checking a CompleteMultipartUpload's part list before s3s-fs consumes the upload,
//! renumbering the listed parts to the 1..N s3s-fs accepts, and finding pending uploads.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use s3s::dto;
use s3s::{S3ErrorCode, S3Result};

use crate::args::{b64url, b64url_decode, unquote};
use crate::checksums::{ALGS, Alg, checksums_of, composite, md5_of_file};
use crate::error::{io_err, no_such_upload, s3_err};
use crate::store::{META, Store, is_not_found, remove_if_exists};

const PART_RECORD_PREFIX: &str = ".s3upfs-part-";
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// An uploaded part as ListParts and CompleteMultipartUpload see it.
pub(crate) struct PartInfo {
    pub number: i32,
    pub size: u64,
    pub modified: SystemTime,
    pub etag: String,
    pub sums: dto::Checksum,
}

/// A pending upload: key, upload id and when it was created.
pub(crate) type Upload = (String, String, SystemTime);

impl Store {
    fn upload_info(&self, id: &str) -> PathBuf {
        self.root.join(format!(".upload-{id}.json"))
    }

    pub(crate) fn part_path(&self, id: &str, n: i32) -> PathBuf {
        self.root.join(format!(".upload_id-{id}.part-{n}"))
    }

    fn part_record(&self, id: &str, n: i32) -> PathBuf {
        self.root.join(format!("{PART_RECORD_PREFIX}{id}-{n}"))
    }

    pub(crate) fn require_upload(&self, id: &str) -> S3Result<()> {
        if self.upload_info(id).is_file() {
            Ok(())
        } else {
            Err(no_such_upload(id))
        }
    }

    /// Removes the part records of uploads that no longer exist (at start).
    pub(crate) fn clean_orphan_part_records(&self) -> io::Result<()> {
        for item in self.root_items()? {
            let Some(rest) = item.name.strip_prefix(PART_RECORD_PREFIX) else {
                continue;
            };
            let Some(id) = rest.get(..36) else { continue };
            if !self.upload_info(id).exists() {
                remove_if_exists(&item.entry.path())?;
            }
        }
        Ok(())
    }

    /// Records a part's ETag and checksums, one `name=value` line each.
    pub(crate) fn write_part_record(
        &self,
        id: &str,
        n: i32,
        etag: &str,
        sums: &dto::Checksum,
    ) -> S3Result<()> {
        let mut text = format!("etag={etag}\n");
        for alg in ALGS {
            if let Some(value) = alg.get(sums) {
                text.push_str(&format!("{}={value}\n", alg.name()));
            }
        }
        self.write_sidecar(&self.part_record(id, n), text.as_bytes())
    }

    fn read_part_record(&self, id: &str, n: i32) -> Option<(String, dto::Checksum)> {
        let text = fs::read_to_string(self.part_record(id, n)).ok()?;
        let mut etag = None;
        let mut sums = dto::Checksum::default();
        for line in text.lines() {
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            if name == "etag" {
                etag = Some(value.to_owned());
            } else if let Some(alg) = Alg::from_name(name) {
                *alg.slot(&mut sums) = Some(value.to_owned());
            }
        }
        Some((etag?, sums))
    }

    pub(crate) fn remove_part(&self, id: &str, n: i32) {
        let _ = fs::remove_file(self.part_path(id, n));
        let _ = fs::remove_file(self.part_record(id, n));
    }

    /// Part numbers of the uploaded parts of `id`, from the s3s-fs part files.
    pub(crate) fn part_numbers(&self, id: &str) -> io::Result<Vec<i32>> {
        let prefix = format!(".upload_id-{id}.part-");
        let mut numbers: Vec<i32> = self
            .root_items()?
            .into_iter()
            .filter_map(|item| item.name.strip_prefix(&prefix)?.parse().ok())
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Size, time, ETag and checksums of part `n` (ETag from the data if it has no record).
    pub(crate) fn part_info(&self, id: &str, n: i32) -> io::Result<PartInfo> {
        let path = self.part_path(id, n);
        let meta = fs::metadata(&path)?;
        let (etag, sums) = match self.read_part_record(id, n) {
            Some(record) => record,
            None => (md5_of_file(&path)?, dto::Checksum::default()),
        };
        Ok(PartInfo {
            number: n,
            size: meta.len(),
            modified: meta.modified()?,
            etag,
            sums,
        })
    }

    /// Removes the part records of `id` once s3s-fs has completed or aborted the upload.
    pub(crate) fn remove_part_records(&self, id: &str) -> S3Result<()> {
        self.remove_root_files(&format!("{PART_RECORD_PREFIX}{id}-"))
            .map_err(|e| io_err("cannot remove part records", e))
    }

    /// Checks a CompleteMultipartUpload part list against the uploaded parts, then renames the
    /// listed parts to 1..N (what s3s-fs accepts) and drops the unlisted ones. Returns the
    /// composite checksums of the object-to-be.
    pub(crate) fn prepare_complete(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        parts: &[dto::CompletedPart],
    ) -> S3Result<dto::Checksum> {
        self.require_bucket(bucket)?;
        self.require_upload(id)?;
        if parts.is_empty() {
            return Err(s3_err(
                S3ErrorCode::InvalidRequest,
                "CompleteMultipartUpload needs at least one part",
            ));
        }
        let numbers = ascending_part_numbers(parts)?;
        let mut infos = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let info = self.check_listed_part(id, numbers[i], part)?;
            if i + 1 < parts.len() && info.size < MIN_PART_SIZE {
                return Err(s3_err(
                    S3ErrorCode::EntityTooSmall,
                    format!(
                        "part {} has {} bytes; every part but the last needs at least {MIN_PART_SIZE}",
                        info.number, info.size
                    ),
                ));
            }
            infos.push(info);
        }
        self.prepare_object_path(bucket, key, false)?;
        let composite = composite(infos.iter().map(|info| &info.sums));
        self.renumber_parts(id, &numbers)?;
        Ok(composite)
    }

    /// The uploaded part `n`, if it matches the ETag and checksums the part list names for it.
    fn check_listed_part(&self, id: &str, n: i32, part: &dto::CompletedPart) -> S3Result<PartInfo> {
        let info = match self.part_info(id, n) {
            Ok(info) => info,
            Err(e) if is_not_found(&e) => {
                return Err(s3_err(
                    S3ErrorCode::InvalidPart,
                    format!("part {n} was not uploaded"),
                ));
            }
            Err(e) => return Err(io_err("cannot read an uploaded part", e)),
        };
        if let Some(etag) = &part.e_tag
            && unquote(etag.value()) != info.etag
        {
            return Err(s3_err(
                S3ErrorCode::InvalidPart,
                format!(
                    "part {n}: ETag {} does not match the uploaded part's {}",
                    etag.value(),
                    info.etag
                ),
            ));
        }
        let listed = checksums_of!(part);
        for alg in ALGS {
            if let Some(value) = alg.get(&listed)
                && alg.get(&info.sums) != Some(value)
            {
                return Err(s3_err(
                    S3ErrorCode::InvalidPart,
                    format!(
                        "part {n}: {} {value} does not match the uploaded part's {}",
                        alg.header(),
                        alg.get(&info.sums).map_or("(none)", String::as_str)
                    ),
                ));
            }
        }
        Ok(info)
    }

    /// Drops the parts not in `numbers` and renames the listed ones to 1..N.
    fn renumber_parts(&self, id: &str, numbers: &[i32]) -> S3Result<()> {
        let rename = |e| io_err("cannot renumber the parts", e);
        for n in self.part_numbers(id).map_err(rename)? {
            if numbers.binary_search(&n).is_err() {
                self.remove_part(id, n);
            }
        }
        for (i, &n) in numbers.iter().enumerate() {
            // Ascending, so target <= n and never a listed part not moved yet.
            let target = i32::try_from(i + 1).unwrap_or(i32::MAX);
            if target != n {
                fs::rename(self.part_path(id, n), self.part_path(id, target)).map_err(rename)?;
                match fs::rename(self.part_record(id, n), self.part_record(id, target)) {
                    Err(e) if !is_not_found(&e) => return Err(rename(e)),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The pending uploads of `bucket` whose keys start with `prefix`, sorted by key and id.
    pub(crate) fn list_uploads(&self, bucket: &str, prefix: &str) -> S3Result<Vec<Upload>> {
        self.require_bucket(bucket)?;
        let head = format!(".bucket-{}.object-", b64url(bucket));
        let mut uploads = Vec::new();
        let items = self
            .root_items()
            .map_err(|e| io_err("cannot read the data directory", e))?;
        for item in items {
            let Some((key_b64, id)) = item
                .name
                .strip_prefix(&head)
                .and_then(|n| n.strip_suffix(META))
                .and_then(|n| n.rsplit_once(".upload-"))
            else {
                continue;
            };
            let Some(key) = b64url_decode(key_b64) else {
                continue;
            };
            if !key.starts_with(prefix) {
                continue;
            }
            // The metadata of an upload outlives a failed Complete; the info file does not.
            let Ok(info) = fs::metadata(self.upload_info(id)) else {
                continue;
            };
            let initiated = info.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            uploads.push((key, id.to_owned(), initiated));
        }
        uploads.sort();
        Ok(uploads)
    }
}

/// The part numbers of a part list, which must ascend without repeats.
fn ascending_part_numbers(parts: &[dto::CompletedPart]) -> S3Result<Vec<i32>> {
    let mut numbers: Vec<i32> = Vec::with_capacity(parts.len());
    for part in parts {
        let n = part
            .part_number
            .ok_or_else(|| s3_err(S3ErrorCode::InvalidPart, "a part has no part number"))?;
        if numbers.last().is_some_and(|&last| n <= last) {
            return Err(s3_err(
                S3ErrorCode::InvalidPartOrder,
                "the parts must be listed in ascending order of part number, without repeats",
            ));
        }
        numbers.push(n);
    }
    Ok(numbers)
}
