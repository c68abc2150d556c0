//! POSIX attributes in S3 user metadata, in the forms s3fs-fuse and rclone read and write:
//! `x-amz-meta-mode` (decimal st_mode with type bits), `-uid`, `-gid` (decimal) and
//! `-mtime` (seconds, optionally with a fraction; we write `sec.nnnnnnnnn`), and `-atime`
//! and `-ctime` in the same form, as s3fs writes them.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::s3::ObjectHeaders;

/// Attributes found in (or destined for) an object's metadata; absent ones fall back to
/// the mount's defaults and the object's Last-Modified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PosixMetadata {
    /// Full st_mode including the file type bits.
    pub(crate) mode: Option<u32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) mtime: Option<SystemTime>,
    /// Last access, as `touch -a` or utimes sets it (reads do not: noatime).
    pub(crate) atime: Option<SystemTime>,
    /// Last change of the inode: content, attributes or name.
    pub(crate) ctime: Option<SystemTime>,
}

impl PosixMetadata {
    /// Reads the attributes from metadata names as the SDK gives them (no `x-amz-meta-`
    /// prefix, any case). Unparsable values are ignored, not errors: other tools wrote them.
    pub(crate) fn decode(metadata: &HashMap<String, String>) -> Self {
        let mut decoded = Self::default();
        for (name, value) in metadata {
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "mode" => decoded.mode = value.parse().ok(),
                "uid" => decoded.uid = value.parse().ok(),
                "gid" => decoded.gid = value.parse().ok(),
                "mtime" => decoded.mtime = parse_seconds(value),
                "atime" => decoded.atime = parse_seconds(value),
                "ctime" => decoded.ctime = parse_seconds(value),
                _ => {}
            }
        }
        decoded
    }

    /// A new entry's times: all three `now`.
    pub(crate) fn created(now: SystemTime) -> Self {
        Self {
            mtime: Some(now),
            atime: Some(now),
            ctime: Some(now),
            ..Self::default()
        }
    }

    /// Keeps `earlier`'s mtime and ctime where they are later than ours: a directory's
    /// times moved by this mount's entry changes outlive a refresh of its marker.
    pub(crate) fn keep_later_times(&mut self, earlier: &PosixMetadata) {
        self.mtime = self.mtime.max(earlier.mtime);
        self.ctime = self.ctime.max(earlier.ctime);
    }

    /// What an object's headers hold beyond ours: other tools' `x-amz-meta-*` entries
    /// and its Content-Type, to be kept on every copy we make of it. None when empty.
    /// A Content-Type equal to `guessed` (what the name gives, what we would write) is
    /// left out: a copy guesses it again, and a table of a million files does not keep
    /// a million copies of it.
    pub(crate) fn foreign(
        metadata: &HashMap<String, String>,
        content_type: Option<&str>,
        guessed: &str,
    ) -> Option<std::sync::Arc<ObjectHeaders>> {
        let content_type = content_type.filter(|t| *t != guessed);
        let metadata: HashMap<String, String> = metadata
            .iter()
            .filter(|(name, _)| !is_ours(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        (!metadata.is_empty() || content_type.is_some()).then(|| {
            std::sync::Arc::new(ObjectHeaders {
                metadata,
                content_type: content_type.map(str::to_owned),
            })
        })
    }

    /// Writes the present attributes into `metadata`, replacing ours and keeping the rest.
    pub(crate) fn encode_into(&self, metadata: &mut HashMap<String, String>) {
        if let Some(mode) = self.mode {
            metadata.insert("mode".to_owned(), mode.to_string());
        }
        if let Some(uid) = self.uid {
            metadata.insert("uid".to_owned(), uid.to_string());
        }
        if let Some(gid) = self.gid {
            metadata.insert("gid".to_owned(), gid.to_string());
        }
        for (name, time) in [
            ("mtime", self.mtime),
            ("atime", self.atime),
            ("ctime", self.ctime),
        ] {
            if let Some(time) = time {
                metadata.insert(name.to_owned(), format_seconds(time));
            }
        }
    }
}

/// Whether a metadata name is one of the attributes this codec owns.
fn is_ours(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "mode" | "uid" | "gid" | "mtime" | "atime" | "ctime"
    )
}

/// `1700000000`, `1700000000.5` or `1700000000.123456789` (rclone drops trailing zeros).
pub(crate) fn parse_seconds(text: &str) -> Option<SystemTime> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    let seconds: i64 = whole.parse().ok()?;
    if !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(9)
        .collect();
    let nanos: u32 = digits.parse().ok()?;
    if seconds >= 0 {
        Some(UNIX_EPOCH + Duration::new(seconds as u64, nanos))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(seconds.unsigned_abs()))
    }
}

/// `sec.nnnnnnnnn`, which both s3fs-fuse and rclone read exactly.
pub(crate) fn format_seconds(time: SystemTime) -> String {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => format!("{}.{:09}", since.as_secs(), since.subsec_nanos()),
        Err(before) => format!("-{}", before.duration().as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_what_s3fs_writes() {
        let decoded = PosixMetadata::decode(&map(&[
            ("mode", "33188"),
            ("uid", "1000"),
            ("gid", "100"),
            ("mtime", "1700000000"),
        ]));
        assert_eq!(decoded.mode, Some(0o100644));
        assert_eq!(decoded.uid, Some(1000));
        assert_eq!(decoded.gid, Some(100));
        assert_eq!(
            decoded.mtime,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
    }

    #[test]
    fn reads_rclone_fractional_mtime_with_any_header_case() {
        let decoded = PosixMetadata::decode(&map(&[("Mtime", "1700000000.25")]));
        assert_eq!(
            decoded.mtime,
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 250_000_000))
        );
    }

    #[test]
    fn writes_nine_fraction_digits_and_round_trips() {
        let time = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(format_seconds(time), "1700000000.000000005");
        let original = PosixMetadata {
            mode: Some(0o100600),
            uid: Some(0),
            gid: Some(0),
            mtime: Some(time),
            atime: Some(time + Duration::from_secs(1)),
            ctime: Some(time + Duration::from_secs(2)),
        };
        let mut encoded = map(&[("other", "kept")]);
        original.encode_into(&mut encoded);
        assert_eq!(encoded["mode"], "33152");
        assert_eq!(encoded["other"], "kept");
        assert_eq!(PosixMetadata::decode(&encoded), original);
    }

    #[test]
    fn ignores_garbage_instead_of_failing() {
        let decoded = PosixMetadata::decode(&map(&[("mode", "rw-r--r--"), ("mtime", "1.x")]));
        assert_eq!(decoded, PosixMetadata::default());
    }
}
