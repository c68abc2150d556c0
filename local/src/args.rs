//! What a request may name, checked before anything on disk is touched: keys (one path segment
//! per `/`-separated segment, never escaping the bucket directory, short enough for s3s-fs's
//! sidecar file names), copy sources, upload ids, part numbers and page sizes. Also how s3s-fs
//! spells bucket and key in its file names (base64url), which the key-length limit follows from.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use s3s::dto;
use s3s::{S3ErrorCode, S3Result};

use crate::error::{no_such_upload, s3_err};
use crate::store::META;

const MAX_FILE_NAME: usize = 255;
pub(crate) const MAX_PART_NUMBER: i32 = 10_000;
/// The most entries one listing page returns.
pub(crate) const MAX_LIST: usize = 1000;

/// Keys must map to a path inside the bucket directory, one path segment per `/`-separated
/// segment; a trailing `/` (directory marker) is allowed.
pub(crate) fn check_key(key: &str) -> S3Result<()> {
    let body = key.strip_suffix('/').unwrap_or(key);
    let bad = body.is_empty()
        || key.contains('\0')
        || body
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if bad {
        return Err(s3_err(
            S3ErrorCode::InvalidArgument,
            format!(
                "the --local server cannot store the key `{key}`: keys must not be empty, start \
                 with `/`, or contain empty, `.` or `..` path segments"
            ),
        ));
    }
    Ok(())
}

/// The bucket and key of a `x-amz-copy-source`, validated like a request's own.
pub(crate) fn copy_source(source: &dto::CopySource) -> S3Result<(String, String)> {
    let dto::CopySource::Bucket { bucket, key, .. } = source else {
        return Err(s3_err(
            S3ErrorCode::NotImplemented,
            "only bucket/key copy sources are supported",
        ));
    };
    if !s3s::path::check_bucket_name(bucket) {
        return Err(s3_err(
            S3ErrorCode::InvalidArgument,
            format!("invalid copy source bucket `{bucket}`"),
        ));
    }
    check_key(key)?;
    Ok((bucket.to_string(), key.to_string()))
}

/// Base64, URL-safe alphabet, no padding: how s3s-fs encodes bucket and key in sidecar names.
pub(crate) fn b64url(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

pub(crate) fn b64url_decode(s: &str) -> Option<String> {
    String::from_utf8(URL_SAFE_NO_PAD.decode(s).ok()?).ok()
}

/// Length of the unpadded base64 of `n` bytes.
fn b64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// s3s-fs names sidecar files `.bucket-<b64 bucket>.object-<b64 key>[.upload-<uuid>].metadata.json`;
/// they must fit in a file name.
pub(crate) fn check_key_len(bucket: &str, key: &str, multipart: bool) -> S3Result<()> {
    let upload = if multipart { ".upload-".len() + 36 } else { 0 };
    let fixed = ".bucket-".len() + b64_len(bucket.len()) + ".object-".len() + upload + META.len();
    if fixed + b64_len(key.len()) <= MAX_FILE_NAME {
        return Ok(());
    }
    let max = MAX_FILE_NAME.saturating_sub(fixed) * 3 / 4;
    let what = if multipart {
        "multipart upload keys"
    } else {
        "keys"
    };
    Err(s3_err(
        S3ErrorCode::KeyTooLongError,
        format!(
            "the key is {} bytes; the --local server (s3s-fs) stores metadata in a file named \
             after the base64 of the key, which limits {what} in this bucket to {max} bytes",
            key.len()
        ),
    ))
}

/// Upload ids are UUIDs; s3s-fs names files after the lowercase hyphenated form.
pub(crate) fn normalize_upload_id(id: &str) -> S3Result<String> {
    let ok = id.len() == 36
        && id.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if ok {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(no_such_upload(id))
    }
}

pub(crate) fn check_part_number(n: i32) -> S3Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        Ok(())
    } else {
        Err(s3_err(
            S3ErrorCode::InvalidArgument,
            format!("part number {n} is not between 1 and {MAX_PART_NUMBER}"),
        ))
    }
}

/// max-keys, max-parts or max-uploads (named `name`): absent means 1000, more is capped at
/// 1000, negative is refused. Returns the limit as the response echoes it and as a count.
pub(crate) fn page_limit(requested: Option<i32>, name: &str) -> S3Result<(i32, usize)> {
    let limit = match requested {
        None => 1000,
        Some(n) if n < 0 => {
            return Err(s3_err(
                S3ErrorCode::InvalidArgument,
                format!("{name} must not be negative"),
            ));
        }
        Some(n) => n.min(1000),
    };
    Ok((limit, usize::try_from(limit).unwrap_or(MAX_LIST)))
}

/// An ETag's value without quotes or the weak prefix.
pub(crate) fn unquote(etag: &str) -> &str {
    etag.trim_start_matches("W/").trim_matches('"')
}

/// The unquoted value of an ETag s3s-fs answered with (empty if it gave none).
pub(crate) fn etag_value(etag: Option<&dto::ETag>) -> String {
    etag.map(|e| unquote(e.value()).to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_names_use_unpadded_url_safe_base64_and_decode_back() {
        // `?>` encodes to `Pz4` in standard base64 (`/` and `+` would appear for other bytes).
        assert_eq!(b64url("s3upfs"), "czN1cGZz");
        assert_eq!(b64url("a?>b~"), "YT8-Yn4");
        assert_eq!(b64url_decode("YT8-Yn4").as_deref(), Some("a?>b~"));
        assert_eq!(b64url_decode("not base64!"), None);
    }

    #[test]
    fn a_key_of_162_bytes_fits_the_sidecar_name_and_163_does_not() {
        assert!(check_key_len("s3upfs", &"k".repeat(162), false).is_ok());
        assert!(check_key_len("s3upfs", &"k".repeat(163), false).is_err());
        assert!(check_key_len("s3upfs", &"k".repeat(129), true).is_ok());
        assert!(check_key_len("s3upfs", &"k".repeat(130), true).is_err());
    }

    #[test]
    fn keys_with_empty_dot_or_dotdot_segments_are_refused() {
        for key in ["", "/", "/a", "a//b", "a/./b", "../x", "a/..", "a\0b"] {
            assert!(check_key(key).is_err(), "{key:?}");
        }
        for key in ["a", "a/b", "a/", "a/b/", ".hidden", "a/..b"] {
            assert!(check_key(key).is_ok(), "{key:?}");
        }
    }

    #[test]
    fn upload_ids_are_lowercased_uuids() {
        assert_eq!(
            normalize_upload_id("0A1B2C3D-0000-4000-8000-00000000000F").unwrap(),
            "0a1b2c3d-0000-4000-8000-00000000000f"
        );
        assert!(normalize_upload_id("0a1b2c3d00004000800000000000000f").is_err());
    }
}
