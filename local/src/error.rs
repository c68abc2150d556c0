//! The errors the bridge answers with: S3 errors with a message that says what the --local
//! server cannot do and why, and I/O errors with the context of what was being done. One place,
//! so that the same refusal reads the same from every operation.

use std::io;

use s3s::{S3Error, S3ErrorCode};

pub(crate) fn s3_err(code: S3ErrorCode, msg: impl Into<String>) -> S3Error {
    S3Error::with_message(code, msg.into())
}

/// An InternalError that keeps the I/O error as its source.
pub(crate) fn io_err(what: &str, e: io::Error) -> S3Error {
    let mut err = S3Error::with_message(S3ErrorCode::InternalError, format!("{what}: {e}"));
    err.set_source(Box::new(e));
    err
}

/// An I/O error (for [`crate::LocalServer::start`]) prefixed with what was being done.
pub(crate) fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

pub(crate) fn no_such_key(key: &str) -> S3Error {
    s3_err(
        S3ErrorCode::NoSuchKey,
        format!("the key `{key}` does not exist"),
    )
}

pub(crate) fn no_such_upload(id: &str) -> S3Error {
    s3_err(
        S3ErrorCode::NoSuchUpload,
        format!("the multipart upload `{id}` does not exist"),
    )
}

/// `key` cannot be stored because a file and a directory would need the same path.
pub(crate) fn conflict(key: &str, detail: &str) -> S3Error {
    s3_err(
        S3ErrorCode::InvalidRequest,
        format!(
            "cannot store `{key}`: {detail}; the --local server keeps objects as files, so a key \
             cannot be both an object and a prefix of other keys"
        ),
    )
}
