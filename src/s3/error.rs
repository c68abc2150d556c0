//! S3 errors as the rest of s3upfs sees them: a kind to decide on, a line to log.

use std::fmt;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum S3ErrorKind {
    /// The key or upload does not exist (404, NoSuchKey, NoSuchUpload).
    NotFound,
    NoSuchBucket,
    /// Credentials missing, unknown, wrong, or without permission.
    AccessDenied,
    /// The endpoint could not be reached or did not answer.
    Unreachable,
    /// The server answered something we could not use.
    Protocol,
    /// A 4xx the same request would get again (KeyTooLongError, EntityTooLarge,
    /// InvalidArgument, InvalidPart, …): never retried.
    Rejected,
    /// Any other error the server returned.
    Other,
}

#[derive(Clone, Debug)]
pub(crate) struct S3Error {
    pub(crate) kind: S3ErrorKind,
    pub(crate) operation: &'static str,
    pub(crate) key: String,
    /// S3 error code and message, or the transport's reason. Never holds credentials.
    pub(crate) detail: String,
}

impl S3Error {
    pub(crate) fn from_sdk<E>(
        operation: &'static str,
        key: &str,
        error: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + fmt::Debug,
    {
        let (kind, detail) = match &error {
            SdkError::DispatchFailure(failure) => {
                let detail = if failure.is_timeout() {
                    "timed out connecting".to_owned()
                } else if failure.is_io() {
                    "connection failed (is the endpoint right and the server up?)".to_owned()
                } else {
                    credential_hint(&format!("{failure:?}"))
                };
                (S3ErrorKind::Unreachable, detail)
            }
            SdkError::TimeoutError(_) => (S3ErrorKind::Unreachable, "timed out".to_owned()),
            SdkError::ConstructionFailure(failure) => (
                S3ErrorKind::AccessDenied,
                credential_hint(&format!("{failure:?}")),
            ),
            SdkError::ResponseError(response) => (
                S3ErrorKind::Protocol,
                format!(
                    "unreadable response (HTTP {})",
                    response.raw().status().as_u16()
                ),
            ),
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let inner = service.err();
                let code = inner.code().unwrap_or("");
                let message = inner.message().unwrap_or("");
                let kind = kind_of(code, status);
                let code = if code.is_empty() {
                    format!("HTTP {status}")
                } else {
                    code.to_owned()
                };
                let detail = if message.is_empty() {
                    code
                } else {
                    format!("{code}: {message}")
                };
                (kind, detail)
            }
            other => (S3ErrorKind::Other, format!("{other:?}")),
        };
        Self {
            kind,
            operation,
            key: key.to_owned(),
            detail,
        }
    }

    /// An error the server answered with `code` and HTTP `status`, as the SDK path
    /// would classify it (the in-memory store and its fault hooks build these).
    #[cfg(test)]
    pub(crate) fn service(
        operation: &'static str,
        key: &str,
        status: u16,
        code: &str,
        message: &str,
    ) -> Self {
        Self {
            kind: kind_of(code, status),
            operation,
            key: key.to_owned(),
            detail: format!("{code}: {message}"),
        }
    }

    pub(crate) fn protocol(operation: &'static str, key: &str, detail: &str) -> Self {
        Self {
            kind: S3ErrorKind::Protocol,
            operation,
            key: key.to_owned(),
            detail: detail.to_owned(),
        }
    }

    pub(crate) fn transfer(operation: &'static str, key: &str, detail: String) -> Self {
        Self {
            kind: S3ErrorKind::Unreachable,
            operation,
            key: key.to_owned(),
            detail,
        }
    }

    pub(crate) fn unreachable(operation: &'static str, key: &str, detail: String) -> Self {
        Self::transfer(operation, key, detail)
    }

    /// Whether trying again can help: not for missing buckets, keys or uploads, nor
    /// for refused credentials.
    pub(crate) fn is_retryable(&self) -> bool {
        !matches!(
            self.kind,
            S3ErrorKind::NotFound
                | S3ErrorKind::NoSuchBucket
                | S3ErrorKind::AccessDenied
                | S3ErrorKind::Rejected
        )
    }

    /// The errno a file operation that failed on this returns.
    pub(crate) fn errno(&self) -> i32 {
        match self.kind {
            S3ErrorKind::NotFound => libc::ENOENT,
            S3ErrorKind::AccessDenied => libc::EACCES,
            S3ErrorKind::Rejected if self.detail.starts_with("KeyTooLong") => libc::ENAMETOOLONG,
            S3ErrorKind::Rejected if self.detail.starts_with("EntityTooLarge") => libc::EFBIG,
            _ => libc::EIO,
        }
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} failed: {}",
            self.operation, self.key, self.detail
        )
    }
}

impl std::error::Error for S3Error {}

/// Missing credentials surface as a dispatch or construction failure whose debug text
/// names the credentials provider; say so plainly instead of dumping the chain.
fn credential_hint(debug: &str) -> String {
    if debug.contains("credentials") || debug.contains("Credentials") {
        "no usable AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or use --profile)"
            .to_owned()
    } else {
        let first_line: String = debug.chars().take(200).collect();
        format!("request failed: {first_line}")
    }
}

/// What an S3 error code and HTTP status mean for us.
fn kind_of(code: &str, status: u16) -> S3ErrorKind {
    match (code, status) {
        ("NoSuchBucket", _) => S3ErrorKind::NoSuchBucket,
        ("NoSuchKey" | "NoSuchUpload" | "NotFound", _) | (_, 404) => S3ErrorKind::NotFound,
        (
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "Forbidden",
            _,
        )
        | (_, 401 | 403) => S3ErrorKind::AccessDenied,
        // Worth another try: corrupted in transit, throttled, timed out.
        (
            "BadDigest"
            | "InvalidDigest"
            | "XAmzContentChecksumMismatch"
            | "IncompleteBody"
            | "SlowDown"
            | "RequestTimeout"
            | "RequestTimeTooSkewed",
            _,
        )
        | (_, 408 | 429) => S3ErrorKind::Other,
        (_, 400..=499) => S3ErrorKind::Rejected,
        _ => S3ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_rejections_are_not_retried_and_transient_faults_are() {
        for (code, status) in [
            ("KeyTooLongError", 400),
            ("InvalidArgument", 400),
            ("EntityTooLarge", 400),
            ("InvalidPart", 400),
            ("MalformedXML", 400),
            ("PreconditionFailed", 412),
        ] {
            assert_eq!(kind_of(code, status), S3ErrorKind::Rejected, "{code}");
        }
        for (code, status) in [
            ("BadDigest", 400),
            ("InvalidDigest", 400),
            ("SlowDown", 503),
            ("InternalError", 500),
            ("RequestTimeout", 400),
            ("", 429),
        ] {
            assert_eq!(kind_of(code, status), S3ErrorKind::Other, "{code}");
        }
        assert_eq!(kind_of("NoSuchUpload", 404), S3ErrorKind::NotFound);
        assert_eq!(kind_of("AccessDenied", 403), S3ErrorKind::AccessDenied);
    }

    #[test]
    fn a_too_long_key_is_enametoolong_and_a_too_large_entity_efbig() {
        let rejected = |detail: &str| S3Error {
            kind: S3ErrorKind::Rejected,
            operation: "PutObject",
            key: "k".to_owned(),
            detail: detail.to_owned(),
        };
        assert!(!rejected("KeyTooLongError: too long").is_retryable());
        assert_eq!(rejected("KeyTooLongError: x").errno(), libc::ENAMETOOLONG);
        assert_eq!(rejected("EntityTooLarge: x").errno(), libc::EFBIG);
        assert_eq!(rejected("InvalidArgument: x").errno(), libc::EIO);
    }
}
