//! The JSON sidecar files s3s-fs keeps beside each object, as serde types with s3s-fs's own
//! field names: the internal sidecar (ETag and checksums) that the bridge reads for listings and
//! preconditions and rewrites after a multipart completion, and the metadata sidecar (user
//! metadata and content headers) it writes for directory markers. Same names, so s3s-fs reads
//! what is written here, and data directories written by s3s-fs or an older s3upfs stay readable.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use s3s::dto;
use serde::{Deserialize, Serialize};

/// `….internal.json`: `{"e_tag":…, "checksum_<alg>":…}`. s3s-fs writes it as a JSON map;
/// fields it may add later are ignored here.
#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
pub(crate) struct InternalInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_crc32: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_crc32c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_crc64nvme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_sha256: Option<String>,
}

impl InternalInfo {
    pub(crate) fn new(etag: &str, sums: &dto::Checksum) -> Self {
        InternalInfo {
            e_tag: Some(etag.to_owned()),
            checksum_crc32: sums.checksum_crc32.clone(),
            checksum_crc32c: sums.checksum_crc32c.clone(),
            checksum_crc64nvme: sums.checksum_crc64nvme.clone(),
            checksum_sha1: sums.checksum_sha1.clone(),
            checksum_sha256: sums.checksum_sha256.clone(),
        }
    }

    /// The sidecar at `path`, or None if it is missing or unreadable.
    pub(crate) fn read(path: &Path) -> Option<Self> {
        serde_json::from_slice(&fs::read(path).ok()?).ok()
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("strings always serialize")
    }
}

/// `….metadata.json` (s3s-fs's `ObjectAttributes`), for directory markers.
#[derive(Serialize, Default, Debug)]
pub(crate) struct ObjectAttributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub website_redirect_location: Option<String>,
}

/// The [`ObjectAttributes`] a PutObject or CopyObject (REPLACE) input sets.
macro_rules! attributes_of {
    ($input:expr) => {{
        let input = $input;
        $crate::sidecars::ObjectAttributes {
            user_metadata: input.metadata.map(|m| m.into_iter().collect()),
            content_encoding: input.content_encoding,
            content_type: input.content_type,
            content_disposition: input.content_disposition,
            content_language: input.content_language,
            cache_control: input.cache_control,
            expires: $crate::sidecars::expires_string(input.expires.as_ref()),
            website_redirect_location: input.website_redirect_location,
        }
    }};
}
pub(crate) use attributes_of;

impl ObjectAttributes {
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("strings always serialize")
    }
}

/// `Expires` as s3s-fs stores it.
pub(crate) fn expires_string(expires: Option<&dto::Timestamp>) -> Option<String> {
    let mut buf = Vec::new();
    expires?
        .format(dto::TimestampFormat::DateTime, &mut buf)
        .ok()?;
    String::from_utf8(buf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_sidecar_is_written_with_s3s_fs_field_names_in_a_stable_order() {
        let sums = dto::Checksum {
            checksum_crc32c: Some("AAAAAA==".into()),
            checksum_sha256: Some("x\"y".into()),
            ..Default::default()
        };
        let json = String::from_utf8(InternalInfo::new("abc-2", &sums).to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"e_tag":"abc-2","checksum_crc32c":"AAAAAA==","checksum_sha256":"x\"y"}"#
        );
    }

    #[test]
    fn an_internal_sidecar_written_by_s3s_fs_or_an_older_s3upfs_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("internal.json");
        // s3s-fs writes a sorted map; the old hand-written writer put e_tag first.
        for text in [
            r#"{"checksum_crc32c":"q1w2e3==","e_tag":"d41d8cd98f00b204e9800998ecf8427e"}"#,
            r#"{"e_tag":"d41d8cd98f00b204e9800998ecf8427e","checksum_crc32c":"q1w2e3=="}"#,
        ] {
            fs::write(&path, text).unwrap();
            let info = InternalInfo::read(&path).unwrap();
            assert_eq!(
                info.e_tag.as_deref(),
                Some("d41d8cd98f00b204e9800998ecf8427e")
            );
            assert_eq!(info.checksum_crc32c.as_deref(), Some("q1w2e3=="));
        }
        fs::write(&path, r#"{"checksum_sha1":"x","later_field":1}"#).unwrap();
        assert_eq!(InternalInfo::read(&path).unwrap().e_tag, None);
        fs::write(&path, "not json").unwrap();
        assert_eq!(InternalInfo::read(&path), None);
    }

    #[test]
    fn a_metadata_sidecar_has_sorted_user_metadata_and_only_the_headers_set() {
        let attributes = ObjectAttributes {
            user_metadata: Some(
                [("uid", "1000"), ("mode", "40755")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
            content_type: Some("application/x-directory".into()),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(attributes.to_json()).unwrap(),
            r#"{"user_metadata":{"mode":"40755","uid":"1000"},"content_type":"application/x-directory"}"#
        );
        assert_eq!(ObjectAttributes::default().to_json(), b"{}");
    }
}
