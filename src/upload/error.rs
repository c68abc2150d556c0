//! Why an upload failed, and the errno its writer gets for it.

use std::fmt;

use crate::s3::{S3Error, S3ErrorKind};

/// The reason an upload failed (the writer logs it once, when it fails) and the errno
/// that close, fsync and later writes return: EACCES when S3 refused the request
/// (AccessDenied at Complete is not a disk error), EFBIG or ENAMETOOLONG for those
/// rejections, EIO for everything else.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct UploadError {
    reason: String,
    errno: i32,
}

impl UploadError {
    pub(crate) fn errno(&self) -> i32 {
        self.errno
    }

    /// The same failure, its reason prefixed with what was being done.
    pub(crate) fn context(self, what: &str) -> Self {
        Self {
            reason: format!("{what}: {}", self.reason),
            ..self
        }
    }
}

/// A failure of our own making (a check, a shutdown): EIO.
impl From<String> for UploadError {
    fn from(reason: String) -> Self {
        Self {
            reason,
            errno: libc::EIO,
        }
    }
}

impl From<S3Error> for UploadError {
    fn from(error: S3Error) -> Self {
        let errno = match error.kind {
            S3ErrorKind::AccessDenied | S3ErrorKind::Rejected => error.errno(),
            _ => libc::EIO,
        };
        Self {
            reason: error.to_string(),
            errno,
        }
    }
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// `UploadError` from a `format!` message.
macro_rules! upload_error {
    ($($arg:tt)*) => {
        $crate::upload::UploadError::from(format!($($arg)*))
    };
}
pub(crate) use upload_error;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_is_eacces_and_a_server_failure_eio() {
        let s3 = |kind, detail: &str| S3Error {
            kind,
            operation: "CompleteMultipartUpload",
            key: "k".to_owned(),
            detail: detail.to_owned(),
        };
        let denied = UploadError::from(s3(S3ErrorKind::AccessDenied, "AccessDenied: no"));
        assert_eq!(denied.errno(), libc::EACCES);
        assert_eq!(
            UploadError::from(s3(S3ErrorKind::NotFound, "NoSuchUpload")).errno(),
            libc::EIO
        );
        assert_eq!(
            UploadError::from(s3(S3ErrorKind::Other, "InternalError")).errno(),
            libc::EIO
        );
        assert_eq!(
            UploadError::from(s3(S3ErrorKind::Rejected, "EntityTooLarge: x")).errno(),
            libc::EFBIG
        );
    }
}
