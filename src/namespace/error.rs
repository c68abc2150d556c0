//! One error for every file operation: the errno the caller gets, built where the cause
//! is known, with the line to log and the S3 error behind it. The FUSE adapter logs it
//! once, when it replies ([`FsError::log`]).
//!
//! Three kinds of causes:
//! - an answer, not a fault (ENOENT from a lookup, EEXIST from mkdir): from an errno
//!   alone, logged at debug only;
//! - a refusal we explain (EBUSY, EOPNOTSUPP, ENAMETOOLONG, ...): [`FsError::new`],
//!   logged as a warning with its reason;
//! - a failed S3 request: from the [`S3Error`], whose kind picks the errno (EACCES for
//!   a refused request, EIO for a server that failed, ...);
//! - a failed upload: from the [`UploadError`], which the writer has logged already
//!   when the upload failed (close, fsync and a later write all return it).

use std::fmt;

use crate::s3::S3Error;
use crate::upload::UploadError;

#[derive(Debug)]
pub(crate) struct FsError {
    errno: i32,
    /// Why, for the log; None for an answer that needs no explanation (or one logged
    /// where it happened).
    message: Option<String>,
    source: Option<S3Error>,
}

pub(crate) type FsResult<T> = Result<T, FsError>;

impl FsError {
    /// A refusal with its reason, logged as a warning when it reaches the caller.
    pub(crate) fn new(errno: i32, message: impl Into<String>) -> Self {
        Self {
            errno,
            message: Some(message.into()),
            source: None,
        }
    }

    pub(crate) fn errno(&self) -> i32 {
        self.errno
    }

    /// Logs the error once, for `operation`: a warning when it has a reason, debug
    /// when it is an ordinary answer.
    pub(crate) fn log(&self, operation: &str) {
        match &self.message {
            Some(message) => log::warn!("{operation}: {message}"),
            None => log::debug!("{operation}: {}", errno_name(self.errno)),
        }
    }
}

/// An ordinary answer (ENOENT, EEXIST, ENOTEMPTY, ...): no reason to log.
impl From<i32> for FsError {
    fn from(errno: i32) -> Self {
        Self {
            errno,
            message: None,
            source: None,
        }
    }
}

impl From<S3Error> for FsError {
    fn from(error: S3Error) -> Self {
        Self {
            errno: error.errno(),
            message: Some(error.to_string()),
            source: Some(error),
        }
    }
}

impl From<UploadError> for FsError {
    fn from(error: UploadError) -> Self {
        Self {
            errno: error.errno(),
            // The writer logged the failure when it happened.
            message: None,
            source: None,
        }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(message) => write!(f, "{message} ({})", errno_name(self.errno)),
            None => f.write_str(errno_name(self.errno)),
        }
    }
}

impl std::error::Error for FsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The errno's symbolic name, for log lines.
pub(crate) fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EACCES => "EACCES",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EFBIG => "EFBIG",
        libc::EROFS => "EROFS",
        libc::EBUSY => "EBUSY",
        libc::EBADF => "EBADF",
        libc::EINTR => "EINTR",
        libc::EDQUOT => "EDQUOT",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EPERM => "EPERM",
        libc::ENODATA => "ENODATA",
        libc::E2BIG => "E2BIG",
        libc::ERANGE => "ERANGE",
        _ => "errno",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::S3ErrorKind;

    fn s3(kind: S3ErrorKind, detail: &str) -> S3Error {
        S3Error {
            kind,
            operation: "CompleteMultipartUpload",
            key: "k".to_owned(),
            detail: detail.to_owned(),
        }
    }

    #[test]
    fn a_refused_request_is_eacces_and_a_failed_server_eio() {
        let denied = FsError::from(s3(S3ErrorKind::AccessDenied, "AccessDenied: no"));
        assert_eq!(denied.errno(), libc::EACCES);
        assert!(
            std::error::Error::source(&denied).is_some(),
            "the S3 error is kept"
        );
        assert_eq!(
            FsError::from(s3(S3ErrorKind::Other, "InternalError")).errno(),
            libc::EIO
        );
    }

    #[test]
    fn a_refusal_says_why_and_an_answer_says_only_its_errno() {
        let busy = FsError::new(
            libc::EBUSY,
            "\"d\": files renamed out of it are still being deleted",
        );
        assert_eq!(
            busy.to_string(),
            "\"d\": files renamed out of it are still being deleted (EBUSY)"
        );
        assert_eq!(FsError::from(libc::ENOENT).to_string(), "ENOENT");
    }
}
