//! Checksums: the five algorithms S3 names ([`Alg`]), what a request asks the server to verify
//! ([`WantedChecksums`]: header values, an announced algorithm, aws-chunked trailers), Content-MD5,
//! checksums of files on disk and the composite checksum of a multipart object. s3s-fs verifies
//! only PutObject bodies; the bridge needs the same for parts and markers, so it lives here once.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto;
use s3s::{S3ErrorCode, S3Request, S3Result};

use crate::error::s3_err;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum Alg {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

pub(crate) const ALGS: [Alg; 5] = [
    Alg::Crc32,
    Alg::Crc32c,
    Alg::Crc64Nvme,
    Alg::Sha1,
    Alg::Sha256,
];

impl Alg {
    /// Name in part records and (prefixed with `checksum_`) in s3s-fs internal sidecars.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Alg::Crc32 => "crc32",
            Alg::Crc32c => "crc32c",
            Alg::Crc64Nvme => "crc64nvme",
            Alg::Sha1 => "sha1",
            Alg::Sha256 => "sha256",
        }
    }

    pub(crate) fn header(self) -> &'static str {
        match self {
            Alg::Crc32 => "x-amz-checksum-crc32",
            Alg::Crc32c => "x-amz-checksum-crc32c",
            Alg::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Alg::Sha1 => "x-amz-checksum-sha1",
            Alg::Sha256 => "x-amz-checksum-sha256",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Alg> {
        let name = name.trim().to_ascii_lowercase();
        let name = name.strip_prefix("x-amz-checksum-").unwrap_or(&name);
        ALGS.into_iter().find(|alg| alg.name() == name)
    }

    /// The algorithm a request names, or InvalidArgument.
    pub(crate) fn requested(algorithm: &dto::ChecksumAlgorithm) -> S3Result<Alg> {
        Alg::from_name(algorithm.as_str()).ok_or_else(|| {
            s3_err(
                S3ErrorCode::InvalidArgument,
                format!("unsupported checksum algorithm `{}`", algorithm.as_str()),
            )
        })
    }

    pub(crate) fn get(self, sums: &dto::Checksum) -> Option<&String> {
        match self {
            Alg::Crc32 => sums.checksum_crc32.as_ref(),
            Alg::Crc32c => sums.checksum_crc32c.as_ref(),
            Alg::Crc64Nvme => sums.checksum_crc64nvme.as_ref(),
            Alg::Sha1 => sums.checksum_sha1.as_ref(),
            Alg::Sha256 => sums.checksum_sha256.as_ref(),
        }
    }

    pub(crate) fn slot(self, sums: &mut dto::Checksum) -> &mut Option<String> {
        match self {
            Alg::Crc32 => &mut sums.checksum_crc32,
            Alg::Crc32c => &mut sums.checksum_crc32c,
            Alg::Crc64Nvme => &mut sums.checksum_crc64nvme,
            Alg::Sha1 => &mut sums.checksum_sha1,
            Alg::Sha256 => &mut sums.checksum_sha256,
        }
    }

    pub(crate) fn enable(self, hasher: &mut ChecksumHasher) {
        match self {
            Alg::Crc32 => hasher.crc32 = Some(Default::default()),
            Alg::Crc32c => hasher.crc32c = Some(Default::default()),
            Alg::Crc64Nvme => hasher.crc64nvme = Some(Default::default()),
            Alg::Sha1 => hasher.sha1 = Some(Default::default()),
            Alg::Sha256 => hasher.sha256 = Some(Default::default()),
        }
    }

    /// Raw digest, for composite (multipart) checksums. CRC64NVME has no composite form.
    fn digest(self, data: &[u8]) -> Option<Vec<u8>> {
        use s3s::crypto::{Crc32, Crc32c, Sha1, Sha256};
        match self {
            Alg::Crc32 => Some(Crc32::checksum(data).to_vec()),
            Alg::Crc32c => Some(Crc32c::checksum(data).to_vec()),
            Alg::Sha1 => Some(Sha1::checksum(data).as_ref().to_vec()),
            Alg::Sha256 => Some(Sha256::checksum(data).as_ref().to_vec()),
            Alg::Crc64Nvme => None,
        }
    }
}

/// The five `checksum_*` fields of any s3s DTO that has them (inputs, completed parts), as a
/// [`dto::Checksum`].
macro_rules! checksums_of {
    ($dto:expr) => {
        s3s::dto::Checksum {
            checksum_crc32: $dto.checksum_crc32.clone(),
            checksum_crc32c: $dto.checksum_crc32c.clone(),
            checksum_crc64nvme: $dto.checksum_crc64nvme.clone(),
            checksum_sha1: $dto.checksum_sha1.clone(),
            checksum_sha256: $dto.checksum_sha256.clone(),
            ..Default::default()
        }
    };
}
pub(crate) use checksums_of;

/// Sets the five `checksum_*` fields of an s3s output DTO from a [`dto::Checksum`].
macro_rules! set_checksums {
    ($out:expr, $sums:expr) => {{
        let sums: s3s::dto::Checksum = $sums;
        let out = &mut $out;
        out.checksum_crc32 = sums.checksum_crc32;
        out.checksum_crc32c = sums.checksum_crc32c;
        out.checksum_crc64nvme = sums.checksum_crc64nvme;
        out.checksum_sha1 = sums.checksum_sha1;
        out.checksum_sha256 = sums.checksum_sha256;
    }};
}
pub(crate) use set_checksums;

/// The checksums a request asks the server to verify or compute: values sent as headers, the
/// `x-amz-sdk-checksum-algorithm`/`x-amz-checksum-algorithm`, and names announced in
/// `x-amz-trailer` (values arrive after the body).
pub(crate) struct WantedChecksums {
    expected: dto::Checksum,
    algs: BTreeSet<Alg>,
    trailers: Option<s3s::TrailingHeaders>,
}

impl WantedChecksums {
    pub(crate) fn new<T>(
        req: &S3Request<T>,
        expected: dto::Checksum,
        algorithm: Option<&dto::ChecksumAlgorithm>,
    ) -> S3Result<Self> {
        let mut algs: BTreeSet<Alg> = ALGS
            .into_iter()
            .filter(|alg| alg.get(&expected).is_some())
            .collect();
        if let Some(algorithm) = algorithm {
            algs.insert(Alg::requested(algorithm)?);
        }
        if let Some(names) = req
            .headers
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
        {
            algs.extend(names.split(',').filter_map(Alg::from_name));
        }
        Ok(Self {
            expected,
            algs,
            trailers: req.trailing_headers.clone(),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.algs.is_empty()
    }

    pub(crate) fn hasher(&self) -> ChecksumHasher {
        let mut hasher = ChecksumHasher::default();
        for alg in &self.algs {
            alg.enable(&mut hasher);
        }
        hasher
    }

    /// Compares `computed` with the header values, or the trailer values once the body has
    /// been read.
    pub(crate) fn verify(&self, computed: &dto::Checksum) -> S3Result<()> {
        for &alg in &self.algs {
            let expected = alg.get(&self.expected).cloned().or_else(|| {
                self.trailers.as_ref().and_then(|t| {
                    t.read(|h| {
                        h.get(alg.header())
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    })
                    .flatten()
                })
            });
            if let Some(expected) = expected
                && Some(&expected) != alg.get(computed)
            {
                return Err(s3_err(
                    S3ErrorCode::BadDigest,
                    format!(
                        "{} mismatch: the request says {expected}, the body has {}",
                        alg.header(),
                        alg.get(computed).map_or("nothing", String::as_str)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The hex MD5 a Content-MD5 header carries, or InvalidDigest.
pub(crate) fn decode_content_md5(value: &str) -> S3Result<String> {
    match STANDARD.decode(value) {
        Ok(bytes) if bytes.len() == 16 => Ok(hex::encode(bytes)),
        _ => Err(s3_err(
            S3ErrorCode::InvalidDigest,
            "the Content-MD5 header is not a base64 MD5",
        )),
    }
}

/// Feeds the file at `path` to `update` in 256 KiB reads.
fn read_chunks(path: &Path, mut update: impl FnMut(&[u8])) -> io::Result<()> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        update(&buf[..n]);
    }
}

pub(crate) fn checksums_of_file(
    path: &Path,
    mut hasher: ChecksumHasher,
) -> io::Result<dto::Checksum> {
    read_chunks(path, |chunk| hasher.update(chunk))?;
    Ok(hasher.finalize())
}

pub(crate) fn md5_of_file(path: &Path) -> io::Result<String> {
    let mut md5 = s3s::crypto::Md5::new();
    read_chunks(path, |chunk| md5.update(chunk))?;
    Ok(hex::encode(md5.finalize()))
}

/// The composite checksums of an object made of parts with checksums `parts`, as S3 computes
/// them: `<base64 of the digest of the concatenated part digests>-<N>`, for every algorithm
/// that every part carries (none for CRC64NVME).
pub(crate) fn composite<'a>(
    parts: impl ExactSizeIterator<Item = &'a dto::Checksum> + Clone,
) -> dto::Checksum {
    let count = parts.len();
    let mut composite = dto::Checksum::default();
    for alg in ALGS {
        let mut raw = Vec::new();
        let complete = parts.clone().all(|sums| {
            alg.get(sums)
                .and_then(|v| STANDARD.decode(v).ok())
                .map(|bytes| raw.extend_from_slice(&bytes))
                .is_some()
        });
        if complete && let Some(digest) = alg.digest(&raw) {
            *alg.slot(&mut composite) = Some(format!("{}-{count}", STANDARD.encode(digest)));
        }
    }
    composite
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_composite_crc32c_is_the_crc_of_the_part_crcs_with_the_part_count() {
        let crc = |data: &[u8]| s3s::crypto::Crc32c::checksum(data);
        let part = |data: &[u8]| dto::Checksum {
            checksum_crc32c: Some(STANDARD.encode(crc(data))),
            ..Default::default()
        };
        let parts = [part(b"one"), part(b"two")];
        let raw = [crc(b"one"), crc(b"two")].concat();
        let expected = format!("{}-2", STANDARD.encode(crc(&raw)));
        let sums = composite(parts.iter());
        assert_eq!(sums.checksum_crc32c, Some(expected));
        assert_eq!(sums.checksum_sha256, None);
    }

    #[test]
    fn a_checksum_missing_from_one_part_is_left_out_of_the_composite() {
        let with = dto::Checksum {
            checksum_crc32: Some(STANDARD.encode([0u8; 4])),
            ..Default::default()
        };
        let parts = [with, dto::Checksum::default()];
        assert_eq!(composite(parts.iter()).checksum_crc32, None);
    }

    #[test]
    fn content_md5_must_be_16_base64_bytes() {
        assert_eq!(
            decode_content_md5("1B2M2Y8AsgTpgAmY7PhCfg==").unwrap(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert!(decode_content_md5("AAAA").is_err());
        assert!(decode_content_md5("not base64").is_err());
    }

    #[test]
    fn algorithm_names_are_read_with_or_without_the_header_prefix() {
        assert_eq!(Alg::from_name(" CRC32C "), Some(Alg::Crc32c));
        assert_eq!(Alg::from_name("x-amz-checksum-sha256"), Some(Alg::Sha256));
        assert_eq!(Alg::from_name("md5"), None);
    }
}
