//! The embedded S3 server behind `s3upfs mount --local DIR`: s3s (real HTTP with SigV4 auth on a
//! random 127.0.0.1 port, on the caller's tokio runtime) over s3s-fs (objects as plain files under
//! DIR). Owns the listener task, the random credentials and `DIR/.s3upfs-local.env`, and
//! [`LocalFs`], a thin [`S3`] wrapper that bridges the s3s-fs 0.14.1 gaps the mount depends on.
//!
//! # On-disk layout
//!
//! `DIR` is the s3s-fs root. Objects of the bucket `s3upfs` are the files under `DIR/s3upfs/`
//! (key `a/b/c` is the file `DIR/s3upfs/a/b/c`). s3s-fs keeps its sidecars as dot-files directly in
//! `DIR` (`.bucket-<b64>.object-<b64>.metadata.json` for user metadata and content headers,
//! `….internal.json` for the ETag and checksums, `.upload-<id>.json` and `.upload_id-<id>.part-<n>`
//! for multipart uploads). This module adds, also as dot-files in `DIR`: `.s3upfs-local.env` (mode
//! 0600), `.s3upfs-local.lock` (an flock held while the server runs: one server per `DIR`),
//! `.s3upfs-part-<id>-<n>` (ETag and checksums of an uploaded part) and the directory
//! `.s3upfs-staging/` (uploads being verified). Files directly in `DIR` are never buckets (s3s-fs
//! lists only directories with valid bucket names) and never objects (objects live one level
//! down), so the env file cannot be read or overwritten through S3; keys with `.`/`..`/empty path
//! segments are refused, so no key escapes its bucket directory.
//!
//! # s3s-fs gaps bridged here
//!
//! - **Directory markers**: `PutObject` of an empty `a/b/` creates the directory `a/b` plus its
//!   metadata and internal sidecars; the internal sidecar is what makes it a marker (a directory
//!   that only exists because keys live under it is not one). Head/Get return it as a 0-byte
//!   object with its metadata and content type; `DeleteObject` removes it (and the directory if
//!   empty); `CopyObject` marker → marker copies or replaces its metadata (COPY and REPLACE).
//!   ListObjectsV2 is reimplemented here and lists markers: as the CommonPrefix `a/b/` when
//!   listing `a/` with delimiter `/`, as the key `a/b/` when listing with prefix `a/b/`. Markers
//!   survive restarts (they are directories plus sidecars on disk).
//! - **ListObjectsV2** (and v1 ListObjects): prefix, any delimiter, max-keys (capped at 1000),
//!   continuation tokens, start-after, `encoding-type=url`, ETags in listings. Only the directory
//!   named by the prefix is read when the delimiter is `/`.
//! - **Head/Get/Delete of a key that is a directory on disk** (`a/b` while `a/b/c` exists):
//!   404 / 404 / no-op instead of a 500.
//! - **Bad Content-MD5 or x-amz-checksum-\* on PutObject no longer replaces the object**: the body is
//!   written to `.s3upfs-staging/` and only renamed over the key (data, then sidecars) once s3s-fs
//!   has verified it. CopyObject to a different key is staged the same way (atomic replace, and a
//!   COPY-directive copy from a source without metadata no longer keeps the old target's metadata).
//! - **UploadPart checksums**: x-amz-checksum-{crc32,crc32c,crc64nvme,sha1,sha256} (header or
//!   aws-chunked trailer) and Content-MD5 are verified (the part is deleted and BadDigest returned on
//!   mismatch) and echoed in the response; part ETag and checksums are recorded.
//! - **CompleteMultipartUpload**: the part list is checked before anything is touched: unknown
//!   upload → NoSuchUpload (s3s-fs said AccessDenied), parts not ascending → InvalidPartOrder,
//!   missing part, ETag or checksum mismatch → InvalidPart, non-last part < 5 MiB → EntityTooSmall
//!   (s3s-fs deleted earlier parts before noticing). Any ascending subset of uploaded part numbers
//!   is accepted (renumbered to 1..N for s3s-fs; unlisted parts are discarded). The object gets a
//!   composite checksum (`<base64>-<N>`, as S3 computes it) for every algorithm all parts carried,
//!   returned by Complete and by Head/Get; stale checksums of a previous object under the key are
//!   dropped (s3s-fs kept them, so a full Get would fail the SDK's checksum validation).
//! - **ListMultipartUploads** (s3s-fs: NotImplemented): lists pending uploads with prefix,
//!   key-marker/upload-id-marker and max-uploads. **ListParts** returns ETags and checksums.
//!   AbortMultipartUpload/UploadPart of an unknown upload → NoSuchUpload.
//! - **`x` and `x/y` at once**: refused with a 400 InvalidRequest naming the conflict instead of a
//!   500 (an empty leftover directory `x` is removed silently when `x` is written).
//! - **DeleteBucket** refuses a non-empty bucket (s3s-fs deleted it recursively).
//!
//! # Remaining limitations (not bridged)
//!
//! - **Key length**: s3s-fs names a sidecar file after the base64 of bucket and key, and a file
//!   name has at most 255 bytes, so in the bucket `s3upfs` keys can have at most **162 bytes**, and
//!   keys written by multipart upload at most **129 bytes**. Longer keys are refused up front with
//!   `KeyTooLongError` (400).
//! - A key cannot be both an object and a prefix (`x` and `x/y`, or `x` and the marker `x/`);
//!   keys must not start with `/` or contain empty, `.` or `..` segments (400 InvalidArgument); a
//!   marker key must have an empty body, and a marker can only be copied onto a marker key.
//! - Conditional GET/HEAD (If-Match, If-None-Match, If-(Un)Modified-Since) and GET/HEAD by
//!   partNumber are ignored; PutObject If-Match/If-None-Match are honoured but not atomically.
//! - ListMultipartUploads ignores the delimiter; start-after in a delimited listing is compared
//!   with the listed entries (keys and common prefixes), not with the keys under a prefix.
//! - Multipart checksums are always COMPOSITE (`ChecksumType=FULL_OBJECT` is refused with
//!   NotImplemented); there is no composite CRC64NVME.
//! - Objects are not versioned; there are no ACLs, tagging, object lock, SSE, presigned POST or
//!   virtual-host addressing (path style only). Only the bucket `s3upfs` is created at start.
//! - Nothing is fsync'ed. Writes are atomic per file (data, then each sidecar), not as a group:
//!   a Head racing a PutObject can briefly pair new data with old metadata.
//! - An UploadPart that fails verification also discards an earlier successful upload of the same
//!   part number. A CompleteMultipartUpload that fails with an I/O error after its checks passed
//!   cannot be retried (s3s-fs has consumed the upload by then).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use s3s::auth::SimpleAuth;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use tokio::runtime::Handle;

const ENV_FILE: &str = ".s3upfs-local.env";
const LOCK_FILE: &str = ".s3upfs-local.lock";
/// s3s-fs "bucket" (a directory under the root) that uploads are written to before verification.
/// Not a valid bucket name, so no request can address it.
const STAGING: &str = ".s3upfs-staging";
const PART_RECORD_PREFIX: &str = ".s3upfs-part-";
/// Suffixes of the s3s-fs sidecar files.
const META: &str = ".metadata.json";
const INTERNAL: &str = ".internal.json";
/// MD5 of the empty string: the ETag of every directory marker.
const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_PART_NUMBER: i32 = 10_000;
const MAX_FILE_NAME: usize = 255;
const MAX_LIST: usize = 1000;

/// The running embedded server. Dropping it stops accepting connections and aborts the server
/// task together with every connection it serves.
pub struct LocalServer {
    endpoint: String,
    access_key: String,
    secret_key: String,
    env_file: PathBuf,
    task: tokio::task::JoinHandle<()>,
    /// Holds the flock on `DIR/.s3upfs-local.lock` for the server's lifetime.
    _lock: File,
}

impl LocalServer {
    /// The only bucket the mount uses; created at start if missing.
    pub const BUCKET: &'static str = "s3upfs";

    /// Starts the server on `runtime`, storing objects under `data_dir` (created if missing).
    /// Creates the bucket `LocalServer::BUCKET` if missing. Generates random credentials
    /// (read 16/32 random bytes from /dev/urandom, hex) and writes them with the endpoint to
    /// `data_dir/.s3upfs-local.env` with mode 0600, lines:
    /// S3UPFS_ENDPOINT=http://127.0.0.1:PORT
    /// S3UPFS_BUCKET=s3upfs
    /// AWS_ACCESS_KEY_ID=...
    /// AWS_SECRET_ACCESS_KEY=...
    /// AWS_REGION=us-east-1
    ///
    /// Fails if another server already uses `data_dir`. Can be called from inside or outside
    /// the runtime; it does not block on it.
    pub fn start(runtime: &Handle, data_dir: &Path) -> io::Result<LocalServer> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|e| {
                context(
                    e,
                    format!("cannot create data directory {}", data_dir.display()),
                )
            })?;
        let root = data_dir.canonicalize().map_err(|e| {
            context(
                e,
                format!("cannot resolve data directory {}", data_dir.display()),
            )
        })?;
        check_data_dir_owner(&root)?;
        let lock = lock_data_dir(&root)?;
        let store = Arc::new(Store::open(root.clone())?);
        let inner = s3s_fs::FileSystem::new(&root).map_err(|e| {
            io::Error::other(format!(
                "cannot open {} as an s3s-fs root: {e:?}",
                root.display()
            ))
        })?;

        let access_key = random_hex(16)?;
        let secret_key = random_hex(32)?;
        let service = {
            let mut builder = S3ServiceBuilder::new(LocalFs { inner, store });
            builder.set_auth(SimpleAuth::from_single(
                access_key.clone(),
                secret_key.clone(),
            ));
            builder.build()
        };

        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| context(e, "cannot bind 127.0.0.1 for the local S3 server".into()))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let task = runtime.spawn(serve(listener, service));

        let server = LocalServer {
            endpoint: format!("http://127.0.0.1:{port}"),
            access_key,
            secret_key,
            env_file: root.join(ENV_FILE),
            task,
            _lock: lock,
        };
        // On error `server` is dropped here, which stops the task again.
        write_env_file(&server)?;
        log::info!(
            "local S3 server listening on {}, data in {}",
            server.endpoint,
            root.display()
        );
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// `DIR/.s3upfs-local.env` (with `DIR` canonicalized).
    pub fn env_file(&self) -> &Path {
        &self.env_file
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        // The accept loop owns the listener and a JoinSet of the connection tasks: aborting it
        // closes the port and aborts every connection.
        self.task.abort();
    }
}

fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// The data directory holds the credentials file and every object: it must be ours
/// and closed to others, or another user could plant symlinks in it or read the keys.
fn check_data_dir_owner(root: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        fs::metadata(root).map_err(|e| context(e, format!("cannot stat {}", root.display())))?;
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to uid {}, not to us (uid {euid}): choose a directory of your own",
                root.display(),
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is writable by group or others (mode {:o}): chmod go-w it or choose another",
                root.display(),
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

fn lock_data_dir(root: &Path) -> io::Result<File> {
    let path = root.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| context(e, format!("cannot open {}", path.display())))?;
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is already used by another s3upfs --local server",
                    root.display()
                ),
            ));
        }
        return Err(context(e, format!("cannot lock {}", path.display())));
    }
    Ok(file)
}

fn random_hex(n: usize) -> io::Result<String> {
    let mut bytes = vec![0u8; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| context(e, "cannot read /dev/urandom".into()))?;
    Ok(hex(&bytes))
}

fn write_env_file(server: &LocalServer) -> io::Result<()> {
    let path = &server.env_file;
    let text = format!(
        "S3UPFS_ENDPOINT={}\nS3UPFS_BUCKET={}\nAWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_REGION=us-east-1\n",
        server.endpoint,
        LocalServer::BUCKET,
        server.access_key,
        server.secret_key
    );
    // Written to a fresh temp file (O_EXCL: never through a planted symlink) and renamed
    // over the old one, so a reader sees the old or the new file, whole.
    let temp = path.with_extension(format!("env.{}", std::process::id()));
    let write = || -> io::Result<()> {
        let _ = fs::remove_file(&temp);
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)?;
        file.write_all(text.as_bytes())?;
        fs::rename(&temp, path)
    };
    write().map_err(|e| context(e, format!("cannot write {}", path.display())))
}

/// Accept loop: one task per connection, all owned by a JoinSet so that aborting this task
/// (see [`LocalServer`]'s Drop) aborts them too.
async fn serve(listener: tokio::net::TcpListener, service: S3Service) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let service = service.clone();
                    connections.spawn(async move {
                        let builder = auto::Builder::new(TokioExecutor::new());
                        let result = builder.serve_connection(TokioIo::new(stream), service).await;
                        if let Err(e) = result {
                            log::debug!("local S3 server: connection closed with an error: {e}");
                        }
                    });
                }
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    log::warn!("local S3 server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors and small helpers
// ---------------------------------------------------------------------------------------------

fn s3_err(code: S3ErrorCode, msg: impl Into<String>) -> S3Error {
    S3Error::with_message(code, msg.into())
}

fn io_err(what: &str, e: io::Error) -> S3Error {
    let mut err = S3Error::with_message(S3ErrorCode::InternalError, format!("{what}: {e}"));
    err.set_source(Box::new(e));
    err
}

fn no_such_key(key: &str) -> S3Error {
    s3_err(
        S3ErrorCode::NoSuchKey,
        format!("the key `{key}` does not exist"),
    )
}

fn no_such_upload(id: &str) -> S3Error {
    s3_err(
        S3ErrorCode::NoSuchUpload,
        format!("the multipart upload `{id}` does not exist"),
    )
}

fn conflict(key: &str, detail: &str) -> S3Error {
    s3_err(
        S3ErrorCode::InvalidRequest,
        format!(
            "cannot store `{key}`: {detail}; the --local server keeps objects as files, so a key \
             cannot be both an object and a prefix of other keys"
        ),
    )
}

/// Runs blocking filesystem work off the runtime's worker threads.
async fn blocking<T, F>(f: F) -> S3Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> S3Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        s3_err(
            S3ErrorCode::InternalError,
            format!("storage task failed: {e}"),
        )
    })?
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if !is_not_found(&e) => Err(e),
        _ => Ok(()),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Base64, URL-safe alphabet, no padding: how s3s-fs encodes bucket and key in sidecar names.
fn b64url(s: &str) -> String {
    aws_smithy_types::base64::encode(s)
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

fn b64url_decode(s: &str) -> Option<String> {
    let mut std: String = s
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !std.len().is_multiple_of(4) {
        std.push('=');
    }
    String::from_utf8(aws_smithy_types::base64::decode(std).ok()?).ok()
}

fn b64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// Percent-encodes everything but unreserved characters and `/` (`encoding-type=url`).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(b));
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Value of a top-level string field in the compact JSON s3s-fs writes (no escapes in the
/// values we read: ETags and base64 checksums).
fn json_string_field(text: &str, field: &str) -> Option<String> {
    let pattern = format!("\"{field}\":\"");
    let start = text.find(&pattern)? + pattern.len();
    let len = text[start..].find('"')?;
    Some(text[start..start + len].to_owned())
}

fn unquote(etag: &str) -> &str {
    etag.trim_start_matches("W/").trim_matches('"')
}

/// Keys must map to a path inside the bucket directory, one path segment per `/`-separated
/// segment; a trailing `/` (directory marker) is allowed.
fn check_key(key: &str) -> S3Result<()> {
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
fn copy_source(source: &dto::CopySource) -> S3Result<(String, String)> {
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

/// s3s-fs names sidecar files `.bucket-<b64 bucket>.object-<b64 key>[.upload-<uuid>].metadata.json`;
/// they must fit in a file name.
fn check_key_len(bucket: &str, key: &str, multipart: bool) -> S3Result<()> {
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
fn normalize_upload_id(id: &str) -> S3Result<String> {
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

fn decode_content_md5(value: &str) -> S3Result<String> {
    match aws_smithy_types::base64::decode(value) {
        Ok(bytes) if bytes.len() == 16 => Ok(hex(&bytes)),
        _ => Err(s3_err(
            S3ErrorCode::InvalidDigest,
            "the Content-MD5 header is not a base64 MD5",
        )),
    }
}

fn expires_string(expires: Option<&dto::Timestamp>) -> Option<String> {
    let mut buf = Vec::new();
    expires?
        .format(dto::TimestampFormat::DateTime, &mut buf)
        .ok()?;
    String::from_utf8(buf).ok()
}

// ---------------------------------------------------------------------------------------------
// Checksums
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Alg {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

const ALGS: [Alg; 5] = [
    Alg::Crc32,
    Alg::Crc32c,
    Alg::Crc64Nvme,
    Alg::Sha1,
    Alg::Sha256,
];

impl Alg {
    /// Name in part records and (prefixed with `checksum_`) in s3s-fs internal sidecars.
    fn name(self) -> &'static str {
        match self {
            Alg::Crc32 => "crc32",
            Alg::Crc32c => "crc32c",
            Alg::Crc64Nvme => "crc64nvme",
            Alg::Sha1 => "sha1",
            Alg::Sha256 => "sha256",
        }
    }

    fn header(self) -> &'static str {
        match self {
            Alg::Crc32 => "x-amz-checksum-crc32",
            Alg::Crc32c => "x-amz-checksum-crc32c",
            Alg::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Alg::Sha1 => "x-amz-checksum-sha1",
            Alg::Sha256 => "x-amz-checksum-sha256",
        }
    }

    fn from_name(name: &str) -> Option<Alg> {
        let name = name.trim().to_ascii_lowercase();
        let name = name.strip_prefix("x-amz-checksum-").unwrap_or(&name);
        ALGS.into_iter().find(|alg| alg.name() == name)
    }

    fn get(self, sums: &dto::Checksum) -> Option<&String> {
        match self {
            Alg::Crc32 => sums.checksum_crc32.as_ref(),
            Alg::Crc32c => sums.checksum_crc32c.as_ref(),
            Alg::Crc64Nvme => sums.checksum_crc64nvme.as_ref(),
            Alg::Sha1 => sums.checksum_sha1.as_ref(),
            Alg::Sha256 => sums.checksum_sha256.as_ref(),
        }
    }

    fn slot(self, sums: &mut dto::Checksum) -> &mut Option<String> {
        match self {
            Alg::Crc32 => &mut sums.checksum_crc32,
            Alg::Crc32c => &mut sums.checksum_crc32c,
            Alg::Crc64Nvme => &mut sums.checksum_crc64nvme,
            Alg::Sha1 => &mut sums.checksum_sha1,
            Alg::Sha256 => &mut sums.checksum_sha256,
        }
    }

    fn enable(self, hasher: &mut ChecksumHasher) {
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

/// The checksums a request asks the server to verify or compute: values sent as headers, the
/// `x-amz-sdk-checksum-algorithm`/`x-amz-checksum-algorithm`, and names announced in
/// `x-amz-trailer` (values arrive after the body).
struct WantedChecksums {
    expected: dto::Checksum,
    algs: BTreeSet<Alg>,
    trailers: Option<s3s::TrailingHeaders>,
}

impl WantedChecksums {
    fn new<T>(
        req: &S3Request<T>,
        expected: dto::Checksum,
        algorithm: Option<&dto::ChecksumAlgorithm>,
    ) -> S3Result<Self> {
        let mut algs: BTreeSet<Alg> = ALGS
            .into_iter()
            .filter(|alg| alg.get(&expected).is_some())
            .collect();
        if let Some(algorithm) = algorithm {
            let alg = Alg::from_name(algorithm.as_str()).ok_or_else(|| {
                s3_err(
                    S3ErrorCode::InvalidArgument,
                    format!("unsupported checksum algorithm `{}`", algorithm.as_str()),
                )
            })?;
            algs.insert(alg);
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

    fn hasher(&self) -> ChecksumHasher {
        let mut hasher = ChecksumHasher::default();
        for alg in &self.algs {
            alg.enable(&mut hasher);
        }
        hasher
    }

    /// Compares `computed` with the header values, or the trailer values once the body has
    /// been read.
    fn verify(&self, computed: &dto::Checksum) -> S3Result<()> {
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

fn checksums_of_file(path: &Path, mut hasher: ChecksumHasher) -> io::Result<dto::Checksum> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

fn md5_of_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut md5 = s3s::crypto::Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(&md5.finalize()));
        }
        md5.update(&buf[..n]);
    }
}

/// The s3s-fs internal sidecar: `{"e_tag":…, "checksum_<alg>":…}`.
fn internal_json(etag: &str, sums: &dto::Checksum) -> String {
    let mut out = String::from("{\"e_tag\":");
    json_str(&mut out, etag);
    for alg in ALGS {
        if let Some(value) = alg.get(sums) {
            let _ = write!(out, ",\"checksum_{}\":", alg.name());
            json_str(&mut out, value);
        }
    }
    out.push('}');
    out
}

/// The s3s-fs metadata sidecar (its `ObjectAttributes`), for directory markers.
#[derive(Default)]
struct Attributes {
    metadata: Option<dto::Metadata>,
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<String>,
    website_redirect_location: Option<String>,
}

impl Attributes {
    fn to_json(&self) -> String {
        let mut out = String::from("{");
        let mut first = true;
        let mut field = |out: &mut String, name: &str| {
            if !first {
                out.push(',');
            }
            first = false;
            json_str(out, name);
            out.push(':');
        };
        if let Some(metadata) = &self.metadata {
            field(&mut out, "user_metadata");
            out.push('{');
            let sorted: BTreeMap<&String, &String> = metadata.iter().collect();
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_str(&mut out, k);
                out.push(':');
                json_str(&mut out, v);
            }
            out.push('}');
        }
        let strings = [
            ("content_encoding", &self.content_encoding),
            ("content_type", &self.content_type),
            ("content_disposition", &self.content_disposition),
            ("content_language", &self.content_language),
            ("cache_control", &self.cache_control),
            ("expires", &self.expires),
            ("website_redirect_location", &self.website_redirect_location),
        ];
        for (name, value) in strings {
            if let Some(value) = value {
                field(&mut out, name);
                json_str(&mut out, value);
            }
        }
        out.push('}');
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Store: synchronous filesystem work on the s3s-fs layout
// ---------------------------------------------------------------------------------------------

/// Where a marker's metadata sidecar comes from.
enum MetaSource {
    Json(String),
    CopyOf(PathBuf),
}

struct Listed {
    key: String,
    size: u64,
    modified: SystemTime,
    marker: bool,
}

enum Item {
    Object(Listed),
    Prefix(String),
}

impl Item {
    fn key(&self) -> &str {
        match self {
            Item::Object(o) => &o.key,
            Item::Prefix(p) => p,
        }
    }
}

struct Page {
    objects: Vec<dto::Object>,
    prefixes: Vec<String>,
    next: Option<String>,
}

struct PartInfo {
    number: i32,
    size: u64,
    modified: SystemTime,
    etag: String,
    sums: dto::Checksum,
}

struct Store {
    root: PathBuf,
    counter: AtomicU64,
    /// Serializes this module's namespace changes (marker writes, deletes, staged commits).
    ns_lock: Mutex<()>,
}

impl Store {
    fn open(root: PathBuf) -> io::Result<Store> {
        let store = Store {
            root,
            counter: AtomicU64::new(0),
            ns_lock: Mutex::new(()),
        };
        let bucket = store.root.join(LocalServer::BUCKET);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&bucket)
            .map_err(|e| {
                context(
                    e,
                    format!("cannot create bucket directory {}", bucket.display()),
                )
            })?;
        store.reset_staging().map_err(|e| {
            context(
                e,
                format!("cannot clean {}", store.root.join(STAGING).display()),
            )
        })?;
        store.clean_orphan_part_records().map_err(|e| {
            context(
                e,
                format!("cannot clean part records in {}", store.root.display()),
            )
        })?;
        Ok(store)
    }

    /// Drops whatever a previous run left half-written in staging.
    fn reset_staging(&self) -> io::Result<()> {
        let staging = self.root.join(STAGING);
        match fs::remove_dir_all(&staging) {
            Err(e) if !is_not_found(&e) => return Err(e),
            _ => {}
        }
        fs::create_dir(&staging)?;
        let sidecar_prefix = format!(".bucket-{}.object-", b64url(STAGING));
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(&sidecar_prefix))
            {
                remove_if_exists(&entry.path())?;
            }
        }
        Ok(())
    }

    fn clean_orphan_part_records(&self) -> io::Result<()> {
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(rest) = name
                .to_str()
                .and_then(|n| n.strip_prefix(PART_RECORD_PREFIX))
            else {
                continue;
            };
            let Some(id) = rest.get(..36) else { continue };
            if !self.upload_info(id).exists() {
                remove_if_exists(&entry.path())?;
            }
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.ns_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join(bucket)
    }

    /// The file (object) or directory (marker) of a validated key.
    fn data_path(&self, bucket: &str, key: &str) -> PathBuf {
        let rel = key.strip_suffix('/').unwrap_or(key);
        let mut path = self.bucket_dir(bucket);
        if !rel.is_empty() {
            path.push(rel);
        }
        path
    }

    fn sidecar(&self, bucket: &str, key: &str, kind: &str) -> PathBuf {
        self.root.join(format!(
            ".bucket-{}.object-{}{kind}",
            b64url(bucket),
            b64url(key)
        ))
    }

    fn upload_info(&self, id: &str) -> PathBuf {
        self.root.join(format!(".upload-{id}.json"))
    }

    fn part_path(&self, id: &str, n: i32) -> PathBuf {
        self.root.join(format!(".upload_id-{id}.part-{n}"))
    }

    fn part_record(&self, id: &str, n: i32) -> PathBuf {
        self.root.join(format!("{PART_RECORD_PREFIX}{id}-{n}"))
    }

    fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        if self.bucket_dir(bucket).is_dir() {
            Ok(())
        } else {
            Err(s3_err(
                S3ErrorCode::NoSuchBucket,
                format!("the bucket `{bucket}` does not exist"),
            ))
        }
    }

    fn require_upload(&self, id: &str) -> S3Result<()> {
        if self.upload_info(id).is_file() {
            Ok(())
        } else {
            Err(no_such_upload(id))
        }
    }

    /// A marker is a directory with an internal sidecar for its `…/` key.
    fn is_marker(&self, bucket: &str, key: &str) -> bool {
        key.ends_with('/')
            && self.sidecar(bucket, key, INTERNAL).is_file()
            && self.data_path(bucket, key).is_dir()
    }

    fn marker_modified(&self, bucket: &str, key: &str) -> S3Result<SystemTime> {
        self.require_bucket(bucket)?;
        if !self.data_path(bucket, key).is_dir() {
            return Err(no_such_key(key));
        }
        match fs::metadata(self.sidecar(bucket, key, INTERNAL)) {
            Ok(m) => m.modified().map_err(|e| io_err("cannot stat marker", e)),
            Err(e) if is_not_found(&e) => Err(no_such_key(key)),
            Err(e) => Err(io_err("cannot stat marker", e)),
        }
    }

    fn write_atomic(&self, dest: &Path, data: &[u8]) -> io::Result<()> {
        // `.tmp.*.internal.part` in the root: s3s-fs deletes leftovers of that shape at start.
        let tmp = self.root.join(format!(
            ".tmp.s3upfs-{}-{}.internal.part",
            std::process::id(),
            self.next_id()
        ));
        let result = File::create(&tmp)
            .and_then(|mut f| f.write_all(data))
            .and_then(|()| fs::rename(&tmp, dest));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_sidecar(&self, dest: &Path, data: &[u8]) -> S3Result<()> {
        self.write_atomic(dest, data)
            .map_err(|e| io_err(&format!("cannot write {}", dest.display()), e))
    }

    /// No ancestor of `key` may be an object (a file).
    fn check_no_file_ancestor(&self, bucket: &str, key: &str) -> S3Result<()> {
        let rel = key.strip_suffix('/').unwrap_or(key);
        let segments: Vec<&str> = rel.split('/').collect();
        let mut path = self.bucket_dir(bucket);
        for i in 0..segments.len().saturating_sub(1) {
            path.push(segments[i]);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    let ancestor = segments[..=i].join("/");
                    return Err(conflict(key, &format!("the object `{ancestor}` exists")));
                }
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    /// Checks that the object `key` can be written; with `clean`, removes an empty leftover
    /// directory (no keys under it) that occupies its path.
    fn prepare_object_path(&self, bucket: &str, key: &str, clean: bool) -> S3Result<()> {
        self.check_no_file_ancestor(bucket, key)?;
        let path = self.data_path(bucket, key);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                let dir_key = format!("{key}/");
                let used = self
                    .subtree_has_key(bucket, &dir_key, &path)
                    .map_err(|e| io_err("cannot read directory", e))?;
                if used {
                    return Err(conflict(
                        key,
                        &format!("`{dir_key}` is a directory marker or has keys under it"),
                    ));
                }
                if clean {
                    fs::remove_dir_all(&path)
                        .map_err(|e| io_err("cannot remove an empty leftover directory", e))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn stage_key(&self) -> String {
        format!("{}-{}", std::process::id(), self.next_id())
    }

    fn discard_staged(&self, stage: &str) {
        let _ = fs::remove_file(self.data_path(STAGING, stage));
        let _ = fs::remove_file(self.sidecar(STAGING, stage, META));
        let _ = fs::remove_file(self.sidecar(STAGING, stage, INTERNAL));
    }

    /// Moves a verified staged object (data, then sidecars) over `key`.
    fn commit_staged(&self, stage: &str, bucket: &str, key: &str) -> S3Result<()> {
        let result = self.commit_staged_inner(stage, bucket, key);
        if result.is_err() {
            self.discard_staged(stage);
        }
        result
    }

    fn commit_staged_inner(&self, stage: &str, bucket: &str, key: &str) -> S3Result<()> {
        let _guard = self.lock();
        self.require_bucket(bucket)?;
        self.prepare_object_path(bucket, key, true)?;
        let dest = self.data_path(bucket, key);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| io_err("cannot create directories", e))?;
        }
        fs::rename(self.data_path(STAGING, stage), &dest)
            .map_err(|e| io_err("cannot move the verified object into place", e))?;
        for kind in [META, INTERNAL] {
            let target = self.sidecar(bucket, key, kind);
            match fs::rename(self.sidecar(STAGING, stage, kind), &target) {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => remove_if_exists(&target)
                    .map_err(|e| io_err("cannot remove stale metadata", e))?,
                Err(e) => return Err(io_err("cannot move object metadata into place", e)),
            }
        }
        Ok(())
    }

    fn put_marker(
        &self,
        bucket: &str,
        key: &str,
        meta: MetaSource,
        internal: &str,
    ) -> S3Result<()> {
        let _guard = self.lock();
        self.require_bucket(bucket)?;
        self.check_no_file_ancestor(bucket, key)?;
        let dir = self.data_path(bucket, key);
        if let Ok(m) = fs::symlink_metadata(&dir)
            && !m.is_dir()
        {
            let object = key.trim_end_matches('/');
            return Err(conflict(key, &format!("the object `{object}` exists")));
        }
        fs::create_dir_all(&dir).map_err(|e| io_err("cannot create the marker directory", e))?;
        let meta_path = self.sidecar(bucket, key, META);
        match meta {
            MetaSource::Json(json) => self.write_sidecar(&meta_path, json.as_bytes())?,
            MetaSource::CopyOf(source) if source == meta_path => {}
            MetaSource::CopyOf(source) => match fs::read(&source) {
                Ok(bytes) => self.write_sidecar(&meta_path, &bytes)?,
                Err(e) if is_not_found(&e) => remove_if_exists(&meta_path)
                    .map_err(|e| io_err("cannot remove stale metadata", e))?,
                Err(e) => return Err(io_err("cannot read the source metadata", e)),
            },
        }
        // Written last: it is what makes the directory a marker.
        self.write_sidecar(&self.sidecar(bucket, key, INTERNAL), internal.as_bytes())
    }

    fn delete_key(&self, bucket: &str, key: &str) -> S3Result<()> {
        let _guard = self.lock();
        self.require_bucket(bucket)?;
        let path = self.data_path(bucket, key);
        let remove_sidecars = || -> S3Result<()> {
            for kind in [INTERNAL, META] {
                remove_if_exists(&self.sidecar(bucket, key, kind))
                    .map_err(|e| io_err("cannot remove object metadata", e))?;
            }
            Ok(())
        };
        if key.ends_with('/') {
            if self.is_marker(bucket, key) {
                remove_sidecars()?;
                // Keeps the directory if keys still live under it.
                let _ = fs::remove_dir(&path);
            }
            return Ok(());
        }
        match fs::symlink_metadata(&path) {
            Ok(m) if !m.is_dir() => {
                remove_if_exists(&path).map_err(|e| io_err("cannot delete the object", e))?;
                remove_sidecars()
            }
            // A directory is not an object; a missing key is deleted already.
            _ => Ok(()),
        }
    }

    /// Whether any object or marker lives at or under the directory `key_dir` (`a/b/`).
    fn subtree_has_key(&self, bucket: &str, key_dir: &str, path: &Path) -> io::Result<bool> {
        let mut stack = vec![(key_dir.to_owned(), path.to_owned())];
        while let Some((key_dir, dir)) = stack.pop() {
            if !key_dir.is_empty() && self.sidecar(bucket, &key_dir, INTERNAL).is_file() {
                return Ok(true);
            }
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let Ok(file_type) = entry.file_type() else {
                    continue;
                };
                if file_type.is_file() {
                    return Ok(true);
                }
                if file_type.is_dir() {
                    stack.push((format!("{key_dir}{name}/"), entry.path()));
                }
            }
        }
        Ok(false)
    }

    fn marker_entry(&self, bucket: &str, key_dir: &str) -> Option<Listed> {
        let meta = fs::metadata(self.sidecar(bucket, key_dir, INTERNAL)).ok()?;
        Some(Listed {
            key: key_dir.to_owned(),
            size: 0,
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            marker: true,
        })
    }

    /// Every object and marker under the directory `key_dir`, recursively.
    fn walk(
        &self,
        bucket: &str,
        key_dir: String,
        path: PathBuf,
        out: &mut Vec<Listed>,
    ) -> io::Result<()> {
        let mut stack = vec![(key_dir, path)];
        while let Some((key_dir, dir)) = stack.pop() {
            out.extend(self.marker_entry(bucket, &key_dir));
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let Ok(file_type) = entry.file_type() else {
                    continue;
                };
                if file_type.is_file() {
                    out.extend(file_entry(format!("{key_dir}{name}"), &entry)?);
                } else if file_type.is_dir() {
                    stack.push((format!("{key_dir}{name}/"), entry.path()));
                }
            }
        }
        Ok(())
    }

    /// Every key (object or marker) starting with `prefix`, grouped by `delimiter`, sorted.
    fn list(&self, bucket: &str, prefix: &str, delimiter: Option<&str>) -> S3Result<Vec<Item>> {
        self.require_bucket(bucket)?;
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let (dir_part, name_prefix) = match prefix.rfind('/') {
            Some(i) => prefix.split_at(i + 1),
            None => ("", prefix),
        };
        if !dir_part.is_empty() && check_key(dir_part).is_err() {
            return Ok(Vec::new()); // no stored key can start like this
        }
        let start = self.data_path(bucket, dir_part);
        let read = |e| io_err("cannot list the bucket directory", e);
        let entries = match fs::read_dir(&start) {
            Ok(entries) => entries,
            Err(e) if is_not_found(&e) || e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(read(e)),
        };

        let mut objects = Vec::new();
        let mut prefixes = BTreeSet::new();
        if !dir_part.is_empty() && name_prefix.is_empty() {
            objects.extend(self.marker_entry(bucket, dir_part));
        }
        for entry in entries {
            let entry = entry.map_err(read)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !name.starts_with(name_prefix) {
                continue;
            }
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_file() {
                objects.extend(file_entry(format!("{dir_part}{name}"), &entry).map_err(read)?);
            } else if file_type.is_dir() {
                let sub = format!("{dir_part}{name}/");
                if delimiter == Some("/") {
                    if self
                        .subtree_has_key(bucket, &sub, &entry.path())
                        .map_err(read)?
                    {
                        prefixes.insert(sub);
                    }
                } else {
                    self.walk(bucket, sub, entry.path(), &mut objects)
                        .map_err(read)?;
                }
            }
        }
        if let Some(d) = delimiter.filter(|d| *d != "/") {
            objects.retain(|o| match o.key[prefix.len()..].find(d) {
                Some(pos) => {
                    prefixes.insert(o.key[..prefix.len() + pos + d.len()].to_owned());
                    false
                }
                None => true,
            });
        }
        let mut items: Vec<Item> = objects.into_iter().map(Item::Object).collect();
        items.extend(prefixes.into_iter().map(Item::Prefix));
        items.sort_by(|a, b| a.key().cmp(b.key()));
        items.dedup_by(|a, b| a.key() == b.key());
        Ok(items)
    }

    fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max_keys: usize,
    ) -> S3Result<Page> {
        let items = self.list(bucket, prefix, delimiter)?;
        let mut remaining = items
            .into_iter()
            .filter(|item| after.is_none_or(|after| item.key() > after))
            .peekable();
        let mut page = Page {
            objects: Vec::new(),
            prefixes: Vec::new(),
            next: None,
        };
        let mut last = None;
        for item in remaining.by_ref().take(max_keys) {
            last = Some(item.key().to_owned());
            match item {
                Item::Object(o) => {
                    let etag = if o.marker {
                        Some(EMPTY_MD5.to_owned())
                    } else {
                        self.stored_etag(bucket, &o.key)
                    };
                    page.objects.push(dto::Object {
                        key: Some(o.key),
                        size: Some(i64::try_from(o.size).unwrap_or(i64::MAX)),
                        last_modified: Some(dto::Timestamp::from(o.modified)),
                        e_tag: etag.map(dto::ETag::Strong),
                        ..Default::default()
                    });
                }
                Item::Prefix(p) => page.prefixes.push(p),
            }
        }
        if max_keys > 0 && remaining.peek().is_some() {
            page.next = last;
        }
        Ok(page)
    }

    fn stored_etag(&self, bucket: &str, key: &str) -> Option<String> {
        let text = fs::read_to_string(self.sidecar(bucket, key, INTERNAL)).ok()?;
        json_string_field(&text, "e_tag")
    }

    /// The ETag of the object `key` (stored, else the MD5 of its data), None if it does not exist.
    fn current_etag(&self, bucket: &str, key: &str) -> S3Result<Option<String>> {
        let path = self.data_path(bucket, key);
        if !path.is_file() {
            return Ok(None);
        }
        if let Some(etag) = self.stored_etag(bucket, key) {
            return Ok(Some(etag));
        }
        md5_of_file(&path)
            .map(Some)
            .map_err(|e| io_err("cannot read the object", e))
    }

    fn write_part_record(
        &self,
        id: &str,
        n: i32,
        etag: &str,
        sums: &dto::Checksum,
    ) -> S3Result<()> {
        let mut text = format!("etag={etag}\n");
        for alg in ALGS {
            if let Some(value) = alg.get(sums) {
                let _ = writeln!(text, "{}={value}", alg.name());
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

    fn remove_part(&self, id: &str, n: i32) {
        let _ = fs::remove_file(self.part_path(id, n));
        let _ = fs::remove_file(self.part_record(id, n));
    }

    /// Part numbers of the uploaded parts of `id`, from the s3s-fs part files.
    fn part_numbers(&self, id: &str) -> io::Result<Vec<i32>> {
        let prefix = format!(".upload_id-{id}.part-");
        let mut numbers = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name();
            if let Some(n) = name
                .to_str()
                .and_then(|name| name.strip_prefix(&prefix))
                .and_then(|n| n.parse::<i32>().ok())
            {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    fn part_info(&self, id: &str, n: i32) -> io::Result<PartInfo> {
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

    fn remove_part_records(&self, id: &str) -> io::Result<()> {
        let prefix = format!("{PART_RECORD_PREFIX}{id}-");
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(&prefix))
            {
                remove_if_exists(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Checks a CompleteMultipartUpload part list against the uploaded parts, then renames the
    /// listed parts to 1..N (what s3s-fs accepts) and drops the unlisted ones. Returns the
    /// composite checksums of the object-to-be.
    fn prepare_complete(
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
        let mut numbers = Vec::with_capacity(parts.len());
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

        let mut infos = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let n = numbers[i];
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
            let listed = dto::Checksum {
                checksum_crc32: part.checksum_crc32.clone(),
                checksum_crc32c: part.checksum_crc32c.clone(),
                checksum_crc64nvme: part.checksum_crc64nvme.clone(),
                checksum_sha1: part.checksum_sha1.clone(),
                checksum_sha256: part.checksum_sha256.clone(),
                ..Default::default()
            };
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
            if i + 1 < parts.len() && info.size < MIN_PART_SIZE {
                return Err(s3_err(
                    S3ErrorCode::EntityTooSmall,
                    format!(
                        "part {n} has {} bytes; every part but the last needs at least {MIN_PART_SIZE}",
                        info.size
                    ),
                ));
            }
            infos.push(info);
        }
        self.prepare_object_path(bucket, key, false)?;

        let mut composite = dto::Checksum::default();
        for alg in ALGS {
            let mut raw = Vec::new();
            let complete = infos.iter().all(|info| {
                alg.get(&info.sums)
                    .and_then(|v| aws_smithy_types::base64::decode(v).ok())
                    .map(|bytes| raw.extend_from_slice(&bytes))
                    .is_some()
            });
            if complete && let Some(digest) = alg.digest(&raw) {
                *alg.slot(&mut composite) = Some(format!(
                    "{}-{}",
                    aws_smithy_types::base64::encode(digest),
                    infos.len()
                ));
            }
        }

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
        Ok(composite)
    }

    fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> S3Result<Vec<(String, String, SystemTime)>> {
        self.require_bucket(bucket)?;
        let head = format!(".bucket-{}.object-", b64url(bucket));
        let mut uploads = Vec::new();
        let entries =
            fs::read_dir(&self.root).map_err(|e| io_err("cannot read the data directory", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("cannot read the data directory", e))?;
            let name = entry.file_name();
            let Some((key_b64, id)) = name
                .to_str()
                .and_then(|n| n.strip_prefix(&head))
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

fn file_entry(key: String, entry: &fs::DirEntry) -> io::Result<Option<Listed>> {
    match entry.metadata() {
        Ok(meta) => Ok(Some(Listed {
            key,
            size: meta.len(),
            modified: meta.modified()?,
            marker: false,
        })),
        // Deleted while listing.
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// LocalFs: the S3 implementation
// ---------------------------------------------------------------------------------------------

/// s3s-fs plus the fixes described in the module documentation.
struct LocalFs {
    inner: s3s_fs::FileSystem,
    store: Arc<Store>,
}

type OpFuture<'a, T> = Pin<Box<dyn Future<Output = S3Result<S3Response<T>>> + Send + 'a>>;

/// Implements `S3` methods in the shape `#[async_trait]` gives them: `inner` forwards to
/// s3s-fs, anything else names an inherent async method of [`LocalFs`].
macro_rules! s3_ops {
    (@call $this:ident, $name:ident, $req:ident, inner) => {
        $this.inner.$name($req)
    };
    (@call $this:ident, $name:ident, $req:ident, $method:ident) => {
        Box::pin($this.$method($req))
    };
    ($($name:ident($input:ident) -> $output:ident = $how:ident;)*) => {
        $(
            fn $name<'life0, 'async_trait>(
                &'life0 self,
                req: S3Request<dto::$input>,
            ) -> OpFuture<'async_trait, dto::$output>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                s3_ops!(@call self, $name, req, $how)
            }
        )*
    };
}

impl S3 for LocalFs {
    s3_ops! {
        create_bucket(CreateBucketInput) -> CreateBucketOutput = inner;
        head_bucket(HeadBucketInput) -> HeadBucketOutput = inner;
        get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput = inner;
        list_buckets(ListBucketsInput) -> ListBucketsOutput = inner;
        delete_bucket(DeleteBucketInput) -> DeleteBucketOutput = delete_bucket_impl;
        put_object(PutObjectInput) -> PutObjectOutput = put_object_impl;
        get_object(GetObjectInput) -> GetObjectOutput = get_object_impl;
        head_object(HeadObjectInput) -> HeadObjectOutput = head_object_impl;
        delete_object(DeleteObjectInput) -> DeleteObjectOutput = delete_object_impl;
        delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput = delete_objects_impl;
        copy_object(CopyObjectInput) -> CopyObjectOutput = copy_object_impl;
        list_objects_v2(ListObjectsV2Input) -> ListObjectsV2Output = list_objects_v2_impl;
        list_objects(ListObjectsInput) -> ListObjectsOutput = list_objects_impl;
        create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput = create_multipart_upload_impl;
        upload_part(UploadPartInput) -> UploadPartOutput = upload_part_impl;
        upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput = upload_part_copy_impl;
        complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput = complete_multipart_upload_impl;
        abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput = abort_multipart_upload_impl;
        list_parts(ListPartsInput) -> ListPartsOutput = list_parts_impl;
        list_multipart_uploads(ListMultipartUploadsInput) -> ListMultipartUploadsOutput = list_multipart_uploads_impl;
    }
}

impl LocalFs {
    async fn delete_bucket_impl(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        let store = Arc::clone(&self.store);
        let bucket = req.input.bucket.clone();
        blocking(move || {
            store.require_bucket(&bucket)?;
            let used = store
                .subtree_has_key(&bucket, "", &store.bucket_dir(&bucket))
                .map_err(|e| io_err("cannot read the bucket", e))?;
            if used || !store.list_uploads(&bucket, "")?.is_empty() {
                return Err(s3_err(
                    S3ErrorCode::BucketNotEmpty,
                    format!("the bucket `{bucket}` is not empty"),
                ));
            }
            Ok(())
        })
        .await?;
        self.inner.delete_bucket(req).await
    }

    async fn put_object_impl(
        &self,
        mut req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let bucket = req.input.bucket.clone();
        let key = req.input.key.clone();
        check_key(&key)?;
        check_key_len(&bucket, &key, false)?;
        if key.ends_with('/') {
            return self.put_marker_impl(req).await;
        }

        // Preconditions and conflicts, before the body is read.
        let store = Arc::clone(&self.store);
        let if_match = req.input.if_match.take();
        let if_none_match = req.input.if_none_match.take();
        {
            let (bucket, key) = (bucket.clone(), key.clone());
            blocking(move || {
                store.require_bucket(&bucket)?;
                store.prepare_object_path(&bucket, &key, false)?;
                let needs_etag = if_match.is_some() || if_none_match.is_some();
                let current = if needs_etag {
                    store.current_etag(&bucket, &key)?
                } else {
                    None
                };
                if let Some(cond) = &if_none_match
                    && let Some(current) = &current
                    && (cond.is_any()
                        || cond
                            .as_etag()
                            .is_some_and(|e| unquote(e.value()) == current))
                {
                    return Err(s3_err(
                        S3ErrorCode::PreconditionFailed,
                        "If-None-Match: the object exists",
                    ));
                }
                if let Some(cond) = &if_match {
                    let matches = current.as_ref().is_some_and(|current| {
                        cond.is_any()
                            || cond
                                .as_etag()
                                .is_some_and(|e| unquote(e.value()) == current)
                    });
                    if !matches {
                        return Err(s3_err(
                            S3ErrorCode::PreconditionFailed,
                            "If-Match: the object does not exist or has another ETag",
                        ));
                    }
                }
                Ok(())
            })
            .await?;
        }

        // s3s-fs writes the object and verifies Content-MD5 and checksums afterwards: let it do
        // that in staging, then move the result over the key.
        let stage = self.store.stage_key();
        req.input.bucket = STAGING.to_owned();
        req.input.key = stage.clone();
        let result = self.inner.put_object(req).await;
        let store = Arc::clone(&self.store);
        match result {
            Ok(resp) => {
                blocking(move || store.commit_staged(&stage, &bucket, &key)).await?;
                Ok(resp)
            }
            Err(e) => {
                blocking(move || {
                    store.discard_staged(&stage);
                    Ok(())
                })
                .await?;
                Err(e)
            }
        }
    }

    async fn put_marker_impl(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let expected = dto::Checksum {
            checksum_crc32: req.input.checksum_crc32.clone(),
            checksum_crc32c: req.input.checksum_crc32c.clone(),
            checksum_crc64nvme: req.input.checksum_crc64nvme.clone(),
            checksum_sha1: req.input.checksum_sha1.clone(),
            checksum_sha256: req.input.checksum_sha256.clone(),
            ..Default::default()
        };
        let wanted = WantedChecksums::new(&req, expected, req.input.checksum_algorithm.as_ref())?;
        let input = req.input;
        if let Some(body) = input.body {
            // Reads the (empty) body, and with it any checksum trailers.
            let mut body = s3s::Body::from(body);
            if let Err(e) = body.store_all_limited(0).await {
                return Err(s3_err(
                    S3ErrorCode::UnexpectedContent,
                    format!(
                        "a directory marker (a key ending in `/`) must have an empty body: {e}"
                    ),
                ));
            }
        }
        if let Some(md5) = &input.content_md5
            && decode_content_md5(md5)? != EMPTY_MD5
        {
            return Err(s3_err(
                S3ErrorCode::BadDigest,
                "Content-MD5 does not match the empty body",
            ));
        }
        let sums = wanted.hasher().finalize();
        wanted.verify(&sums)?;

        let attributes = Attributes {
            metadata: input.metadata,
            content_type: input.content_type,
            content_encoding: input.content_encoding,
            content_disposition: input.content_disposition,
            content_language: input.content_language,
            cache_control: input.cache_control,
            expires: expires_string(input.expires.as_ref()),
            website_redirect_location: input.website_redirect_location,
        };
        let store = Arc::clone(&self.store);
        let (bucket, key) = (input.bucket, input.key);
        let internal = internal_json(EMPTY_MD5, &sums);
        let if_none_match = input.if_none_match;
        blocking(move || {
            if if_none_match.is_some() && store.is_marker(&bucket, &key) {
                return Err(s3_err(
                    S3ErrorCode::PreconditionFailed,
                    "If-None-Match: the object exists",
                ));
            }
            store.put_marker(
                &bucket,
                &key,
                MetaSource::Json(attributes.to_json()),
                &internal,
            )
        })
        .await?;
        Ok(S3Response::new(dto::PutObjectOutput {
            e_tag: Some(dto::ETag::Strong(EMPTY_MD5.to_owned())),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            size: Some(0),
            ..Default::default()
        }))
    }

    /// HeadObject of a marker: s3s-fs reads its sidecars; size and time are the marker's.
    async fn head_marker(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let store = Arc::clone(&self.store);
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let modified = blocking(move || store.marker_modified(&bucket, &key)).await?;
        let mut resp = self.inner.head_object(req).await?;
        resp.output.content_length = Some(0);
        resp.output.last_modified = Some(dto::Timestamp::from(modified));
        resp.output.e_tag = Some(dto::ETag::Strong(EMPTY_MD5.to_owned()));
        Ok(resp)
    }

    /// Whether the key names a directory on disk (not an object), and whether the bucket exists.
    async fn key_is_directory(&self, bucket: &str, key: &str) -> S3Result<bool> {
        let store = Arc::clone(&self.store);
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        blocking(move || {
            store.require_bucket(&bucket)?;
            Ok(store.data_path(&bucket, &key).is_dir())
        })
        .await
    }

    async fn head_object_impl(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let key = req.input.key.clone();
        check_key(&key)?;
        if key.ends_with('/') {
            return self.head_marker(req).await;
        }
        if self.key_is_directory(&req.input.bucket, &key).await? {
            return Err(no_such_key(&key));
        }
        self.inner.head_object(req).await
    }

    async fn get_object_impl(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let key = req.input.key.clone();
        check_key(&key)?;
        if !key.ends_with('/') {
            if self.key_is_directory(&req.input.bucket, &key).await? {
                return Err(no_such_key(&key));
            }
            return self.inner.get_object(req).await;
        }
        if req.input.range.is_some() {
            // A marker is empty: any range is unsatisfiable (as S3 answers for 0-byte objects).
            let store = Arc::clone(&self.store);
            let (bucket, key) = (req.input.bucket.clone(), key.clone());
            blocking(move || store.marker_modified(&bucket, &key)).await?;
            return Err(s3_err(
                S3ErrorCode::InvalidRange,
                "the requested range is not satisfiable: a directory marker is empty",
            ));
        }
        let head = self
            .head_marker(req.map_input(|input| dto::HeadObjectInput {
                bucket: input.bucket,
                key: input.key,
                ..Default::default()
            }))
            .await?;
        let h = head.output;
        Ok(S3Response::new(dto::GetObjectOutput {
            body: Some(dto::StreamingBlob::from(s3s::Body::empty())),
            content_length: Some(0),
            e_tag: h.e_tag,
            last_modified: h.last_modified,
            metadata: h.metadata,
            content_type: h.content_type,
            content_encoding: h.content_encoding,
            content_disposition: h.content_disposition,
            content_language: h.content_language,
            cache_control: h.cache_control,
            expires: h.expires,
            website_redirect_location: h.website_redirect_location,
            checksum_crc32: h.checksum_crc32,
            checksum_crc32c: h.checksum_crc32c,
            checksum_crc64nvme: h.checksum_crc64nvme,
            checksum_sha1: h.checksum_sha1,
            checksum_sha256: h.checksum_sha256,
            ..Default::default()
        }))
    }

    async fn delete_object_impl(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        check_key(&req.input.key)?;
        let store = Arc::clone(&self.store);
        let (bucket, key) = (req.input.bucket, req.input.key);
        blocking(move || store.delete_key(&bucket, &key)).await?;
        Ok(S3Response::new(dto::DeleteObjectOutput::default()))
    }

    async fn delete_objects_impl(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let store = Arc::clone(&self.store);
        let input = req.input;
        let quiet = input.delete.quiet.unwrap_or(false);
        let bucket = input.bucket;
        let objects = input.delete.objects;
        let (deleted, errors) = blocking(move || {
            store.require_bucket(&bucket)?;
            let mut deleted = Vec::new();
            let mut errors = Vec::new();
            for object in objects {
                match check_key(&object.key).and_then(|()| store.delete_key(&bucket, &object.key)) {
                    Ok(()) => deleted.push(dto::DeletedObject {
                        key: Some(object.key),
                        version_id: object.version_id,
                        ..Default::default()
                    }),
                    Err(e) => errors.push(dto::Error {
                        code: Some(e.code().as_str().to_owned()),
                        message: e.message().map(str::to_owned),
                        key: Some(object.key),
                        version_id: object.version_id,
                    }),
                }
            }
            Ok((deleted, errors))
        })
        .await?;
        Ok(S3Response::new(dto::DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object_impl(
        &self,
        mut req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        let (src_bucket, src_key) = copy_source(&req.input.copy_source)?;
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        check_key(&key)?;
        check_key_len(&bucket, &key, false)?;
        if src_key.ends_with('/') != key.ends_with('/') {
            return Err(s3_err(
                S3ErrorCode::InvalidRequest,
                "the --local server copies directory markers (keys ending in `/`) only onto \
                 directory markers, and objects only onto object keys",
            ));
        }
        let replace = req.input.metadata_directive.as_ref().is_some_and(|d| {
            d.as_str()
                .eq_ignore_ascii_case(dto::MetadataDirective::REPLACE)
        });
        let store = Arc::clone(&self.store);

        if key.ends_with('/') {
            let input = req.input;
            let meta = if replace {
                MetaSource::Json(
                    Attributes {
                        metadata: input.metadata,
                        content_type: input.content_type,
                        content_encoding: input.content_encoding,
                        content_disposition: input.content_disposition,
                        content_language: input.content_language,
                        cache_control: input.cache_control,
                        expires: expires_string(input.expires.as_ref()),
                        website_redirect_location: input.website_redirect_location,
                    }
                    .to_json(),
                )
            } else {
                MetaSource::CopyOf(store.sidecar(&src_bucket, &src_key, META))
            };
            blocking(move || {
                store.require_bucket(&src_bucket)?;
                if !store.is_marker(&src_bucket, &src_key) {
                    return Err(no_such_key(&src_key));
                }
                let internal = internal_json(EMPTY_MD5, &dto::Checksum::default());
                store.put_marker(&bucket, &key, meta, &internal)
            })
            .await?;
            return Ok(S3Response::new(dto::CopyObjectOutput {
                copy_object_result: Some(dto::CopyObjectResult {
                    e_tag: Some(dto::ETag::Strong(EMPTY_MD5.to_owned())),
                    last_modified: Some(dto::Timestamp::from(SystemTime::now())),
                    ..Default::default()
                }),
                ..Default::default()
            }));
        }

        {
            let store = Arc::clone(&store);
            let (src_bucket, src_key, bucket, key) = (
                src_bucket.clone(),
                src_key.clone(),
                bucket.clone(),
                key.clone(),
            );
            blocking(move || {
                store.require_bucket(&src_bucket)?;
                store.require_bucket(&bucket)?;
                if !store.data_path(&src_bucket, &src_key).is_file() {
                    return Err(no_such_key(&src_key));
                }
                store.prepare_object_path(&bucket, &key, false)
            })
            .await?;
        }
        if src_bucket == bucket && src_key == key {
            // s3s-fs updates a self-copy in place (only metadata and the time change).
            return self.inner.copy_object(req).await;
        }
        let stage = store.stage_key();
        req.input.bucket = STAGING.to_owned();
        req.input.key = stage.clone();
        match self.inner.copy_object(req).await {
            Ok(resp) => {
                blocking(move || store.commit_staged(&stage, &bucket, &key)).await?;
                Ok(resp)
            }
            Err(e) => {
                blocking(move || {
                    store.discard_staged(&stage);
                    Ok(())
                })
                .await?;
                Err(e)
            }
        }
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        delimiter: Option<&str>,
        after: Option<&str>,
        max_keys: Option<i32>,
    ) -> S3Result<(Page, i32)> {
        let max_keys = match max_keys {
            None => 1000,
            Some(n) if n < 0 => {
                return Err(s3_err(
                    S3ErrorCode::InvalidArgument,
                    "max-keys must not be negative",
                ));
            }
            Some(n) => n.min(1000),
        };
        let store = Arc::clone(&self.store);
        let bucket = bucket.to_owned();
        let prefix = prefix.unwrap_or("").to_owned();
        let delimiter = delimiter.map(str::to_owned);
        let after = after.map(str::to_owned);
        let limit = usize::try_from(max_keys).unwrap_or(MAX_LIST);
        let page = blocking(move || {
            store.list_page(
                &bucket,
                &prefix,
                delimiter.as_deref(),
                after.as_deref(),
                limit,
            )
        })
        .await?;
        Ok((page, max_keys))
    }

    async fn list_objects_v2_impl(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let input = req.input;
        let after = match (
            input.continuation_token.as_deref(),
            input.start_after.as_deref(),
        ) {
            (Some(token), Some(start)) => Some(token.max(start)),
            (token, start) => token.or(start),
        };
        let (page, max_keys) = self
            .list_page(
                &input.bucket,
                input.prefix.as_deref(),
                input.delimiter.as_deref(),
                after,
                input.max_keys,
            )
            .await?;
        let url = input
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == dto::EncodingType::URL);
        let enc = |s: String| if url { url_encode(&s) } else { s };
        let key_count = i32::try_from(page.objects.len() + page.prefixes.len()).unwrap_or(i32::MAX);
        let contents: Vec<dto::Object> = page
            .objects
            .into_iter()
            .map(|mut o| {
                o.key = o.key.map(enc);
                o
            })
            .collect();
        let prefixes: Vec<dto::CommonPrefix> = page
            .prefixes
            .into_iter()
            .map(|p| dto::CommonPrefix {
                prefix: Some(enc(p)),
            })
            .collect();
        Ok(S3Response::new(dto::ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(input.prefix.map(enc).unwrap_or_default()),
            delimiter: input.delimiter.map(enc),
            start_after: input.start_after.map(enc),
            max_keys: Some(max_keys),
            key_count: Some(key_count),
            is_truncated: Some(page.next.is_some()),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next,
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects_impl(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let input = req.input;
        let (page, max_keys) = self
            .list_page(
                &input.bucket,
                input.prefix.as_deref(),
                input.delimiter.as_deref(),
                input.marker.as_deref(),
                input.max_keys,
            )
            .await?;
        let url = input
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == dto::EncodingType::URL);
        let enc = |s: String| if url { url_encode(&s) } else { s };
        let contents: Vec<dto::Object> = page
            .objects
            .into_iter()
            .map(|mut o| {
                o.key = o.key.map(enc);
                o
            })
            .collect();
        let prefixes: Vec<dto::CommonPrefix> = page
            .prefixes
            .into_iter()
            .map(|p| dto::CommonPrefix {
                prefix: Some(enc(p)),
            })
            .collect();
        Ok(S3Response::new(dto::ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(input.prefix.map(enc).unwrap_or_default()),
            delimiter: input.delimiter.map(enc),
            marker: input.marker.map(enc),
            max_keys: Some(max_keys),
            is_truncated: Some(page.next.is_some()),
            next_marker: page.next.map(enc),
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload_impl(
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
        if let Some(algorithm) = &req.input.checksum_algorithm
            && Alg::from_name(algorithm.as_str()).is_none()
        {
            return Err(s3_err(
                S3ErrorCode::InvalidArgument,
                format!("unsupported checksum algorithm `{}`", algorithm.as_str()),
            ));
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
        let store = Arc::clone(&self.store);
        blocking(move || {
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

    async fn upload_part_impl(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        check_key(&req.input.key)?;
        let id = normalize_upload_id(&req.input.upload_id)?;
        let n = req.input.part_number;
        if !(1..=MAX_PART_NUMBER).contains(&n) {
            return Err(s3_err(
                S3ErrorCode::InvalidArgument,
                format!("part number {n} is not between 1 and {MAX_PART_NUMBER}"),
            ));
        }
        self.store.require_upload(&id)?;
        let md5 = req
            .input
            .content_md5
            .as_deref()
            .map(decode_content_md5)
            .transpose()?;
        let expected = dto::Checksum {
            checksum_crc32: req.input.checksum_crc32.clone(),
            checksum_crc32c: req.input.checksum_crc32c.clone(),
            checksum_crc64nvme: req.input.checksum_crc64nvme.clone(),
            checksum_sha1: req.input.checksum_sha1.clone(),
            checksum_sha256: req.input.checksum_sha256.clone(),
            ..Default::default()
        };
        let wanted = WantedChecksums::new(&req, expected, req.input.checksum_algorithm.as_ref())?;

        let mut resp = self.inner.upload_part(req).await?;
        let etag = resp
            .output
            .e_tag
            .as_ref()
            .map(|e| unquote(e.value()).to_owned())
            .unwrap_or_default();

        let store = Arc::clone(&self.store);
        let sums = blocking(move || {
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
                let sums = if wanted.algs.is_empty() {
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
        let out = &mut resp.output;
        out.checksum_crc32 = sums.checksum_crc32;
        out.checksum_crc32c = sums.checksum_crc32c;
        out.checksum_crc64nvme = sums.checksum_crc64nvme;
        out.checksum_sha1 = sums.checksum_sha1;
        out.checksum_sha256 = sums.checksum_sha256;
        Ok(resp)
    }

    async fn upload_part_copy_impl(
        &self,
        req: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        let (src_bucket, src_key) = copy_source(&req.input.copy_source)?;
        check_key(&req.input.key)?;
        let id = normalize_upload_id(&req.input.upload_id)?;
        let n = req.input.part_number;
        if !(1..=MAX_PART_NUMBER).contains(&n) {
            return Err(s3_err(
                S3ErrorCode::InvalidArgument,
                format!("part number {n} is not between 1 and {MAX_PART_NUMBER}"),
            ));
        }
        self.store.require_upload(&id)?;
        if !self.store.data_path(&src_bucket, &src_key).is_file() {
            return Err(no_such_key(&src_key));
        }
        let resp = self.inner.upload_part_copy(req).await?;
        let etag = resp
            .output
            .copy_part_result
            .as_ref()
            .and_then(|r| r.e_tag.as_ref())
            .map(|e| unquote(e.value()).to_owned())
            .unwrap_or_default();
        let store = Arc::clone(&self.store);
        blocking(move || store.write_part_record(&id, n, &etag, &dto::Checksum::default())).await?;
        Ok(resp)
    }

    async fn complete_multipart_upload_impl(
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

        let store = Arc::clone(&self.store);
        let composite = {
            let (bucket, key, id) = (bucket.clone(), key.clone(), id.clone());
            blocking(move || store.prepare_complete(&bucket, &key, &id, &parts)).await?
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
        let etag = resp
            .output
            .e_tag
            .as_ref()
            .map(|e| unquote(e.value()).to_owned())
            .unwrap_or_default();

        // Replace what s3s-fs kept from a previous object (its checksums) with the new ones.
        let store = Arc::clone(&self.store);
        let sums = composite.clone();
        blocking(move || {
            store.write_sidecar(
                &store.sidecar(&bucket, &key, INTERNAL),
                internal_json(&etag, &sums).as_bytes(),
            )?;
            store
                .remove_part_records(&id)
                .map_err(|e| io_err("cannot remove part records", e))
        })
        .await?;

        let out = &mut resp.output;
        out.checksum_crc32 = composite.checksum_crc32;
        out.checksum_crc32c = composite.checksum_crc32c;
        out.checksum_sha1 = composite.checksum_sha1;
        out.checksum_sha256 = composite.checksum_sha256;
        if out.checksum_crc32.is_some()
            || out.checksum_crc32c.is_some()
            || out.checksum_sha1.is_some()
            || out.checksum_sha256.is_some()
        {
            out.checksum_type = Some(dto::ChecksumType::from_static(dto::ChecksumType::COMPOSITE));
        }
        log::debug!(
            "local S3 server: completed {count}-part upload of {}",
            out.key.as_deref().unwrap_or("")
        );
        Ok(resp)
    }

    async fn abort_multipart_upload_impl(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        let id = normalize_upload_id(&req.input.upload_id)?;
        self.store.require_upload(&id)?;
        let resp = self.inner.abort_multipart_upload(req).await?;
        let store = Arc::clone(&self.store);
        blocking(move || {
            store
                .remove_part_records(&id)
                .map_err(|e| io_err("cannot remove part records", e))
        })
        .await?;
        Ok(resp)
    }

    async fn list_parts_impl(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        let input = req.input;
        let id = normalize_upload_id(&input.upload_id)?;
        let max_parts = match input.max_parts {
            None => 1000,
            Some(n) if n < 0 => {
                return Err(s3_err(
                    S3ErrorCode::InvalidArgument,
                    "max-parts must not be negative",
                ));
            }
            Some(n) => n.min(1000),
        };
        let marker = input.part_number_marker.unwrap_or(0);
        let store = Arc::clone(&self.store);
        let limit = usize::try_from(max_parts).unwrap_or(MAX_LIST);
        let (parts, truncated) = {
            let id = id.clone();
            blocking(move || {
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
            .await?
        };
        let next = if truncated {
            parts.last().map(|p| p.number)
        } else {
            None
        };
        let parts: Vec<dto::Part> = parts
            .into_iter()
            .map(|p| dto::Part {
                part_number: Some(p.number),
                size: Some(i64::try_from(p.size).unwrap_or(i64::MAX)),
                last_modified: Some(dto::Timestamp::from(p.modified)),
                e_tag: Some(dto::ETag::Strong(p.etag)),
                checksum_crc32: p.sums.checksum_crc32,
                checksum_crc32c: p.sums.checksum_crc32c,
                checksum_crc64nvme: p.sums.checksum_crc64nvme,
                checksum_sha1: p.sums.checksum_sha1,
                checksum_sha256: p.sums.checksum_sha256,
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

    async fn list_multipart_uploads_impl(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        let input = req.input;
        let max_uploads = match input.max_uploads {
            None => 1000,
            Some(n) if n < 0 => {
                return Err(s3_err(
                    S3ErrorCode::InvalidArgument,
                    "max-uploads must not be negative",
                ));
            }
            Some(n) => n.min(1000),
        };
        let store = Arc::clone(&self.store);
        let (bucket, prefix) = (
            input.bucket.clone(),
            input.prefix.clone().unwrap_or_default(),
        );
        let all = blocking(move || store.list_uploads(&bucket, &prefix)).await?;
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
        let limit = usize::try_from(max_uploads).unwrap_or(MAX_LIST);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    use aws_sdk_s3::Client;
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::{
        ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, MetadataDirective,
    };

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn client_with(endpoint: &str, ak: &str, sk: &str) -> Client {
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .force_path_style(true)
            .credentials_provider(Credentials::new(ak, sk, None, None, "test"))
            .build();
        Client::from_conf(config)
    }

    fn client(server: &LocalServer) -> Client {
        client_with(server.endpoint(), server.access_key(), server.secret_key())
    }

    const B: &str = LocalServer::BUCKET;

    fn status<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> u16 {
        e.raw_response().map_or(0, |r| r.status().as_u16())
    }

    fn crc32c(data: &[u8]) -> String {
        aws_smithy_types::base64::encode(s3s::crypto::Crc32c::checksum(data))
    }

    fn meta(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    async fn put(c: &Client, key: &str, body: &[u8]) {
        c.put_object()
            .bucket(B)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    }

    async fn get(c: &Client, key: &str) -> Vec<u8> {
        let out = c.get_object().bucket(B).key(key).send().await.unwrap();
        out.body.collect().await.unwrap().into_bytes().to_vec()
    }

    /// All pages of a listing: (keys, common prefixes).
    async fn list(
        c: &Client,
        prefix: &str,
        delimited: bool,
        page: Option<i32>,
    ) -> (Vec<String>, Vec<String>) {
        let (mut keys, mut prefixes, mut token) = (Vec::new(), Vec::new(), None);
        loop {
            let out = c
                .list_objects_v2()
                .bucket(B)
                .prefix(prefix)
                .set_delimiter(delimited.then(|| "/".to_owned()))
                .set_max_keys(page)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap();
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            prefixes.extend(
                out.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_owned)),
            );
            if !out.is_truncated().unwrap_or(false) {
                return (keys, prefixes);
            }
            token = out.next_continuation_token().map(str::to_owned);
            assert!(token.is_some(), "truncated listing without a token");
        }
    }

    #[test]
    fn env_file_lock_and_auth() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let server = LocalServer::start(rt.handle(), &data).unwrap();
        assert!(server.endpoint().starts_with("http://127.0.0.1:"));
        assert_eq!(server.access_key().len(), 32);
        assert_eq!(server.secret_key().len(), 64);

        let env = server.env_file();
        assert_eq!(env, data.canonicalize().unwrap().join(".s3upfs-local.env"));
        let mode = fs::metadata(env).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(env).unwrap();
        let expected = format!(
            "S3UPFS_ENDPOINT={}\nS3UPFS_BUCKET=s3upfs\nAWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_REGION=us-east-1\n",
            server.endpoint(),
            server.access_key(),
            server.secret_key()
        );
        assert_eq!(text, expected);

        // One server per data directory.
        let err = LocalServer::start(rt.handle(), &data).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");

        rt.block_on(async {
            let c = client(&server);
            // The env file is neither a bucket nor an object.
            let buckets = c.list_buckets().send().await.unwrap();
            let names: Vec<_> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
            assert_eq!(names, ["s3upfs"]);
            let (keys, prefixes) = list(&c, "", false, None).await;
            assert!(
                keys.is_empty() && prefixes.is_empty(),
                "{keys:?} {prefixes:?}"
            );
            let e = c
                .get_object()
                .bucket(B)
                .key("../.s3upfs-local.env")
                .send()
                .await
                .unwrap_err();
            assert_eq!(status(&e), 400, "{e:?}");

            // SigV4 is enforced.
            let wrong = client_with(server.endpoint(), server.access_key(), "0000");
            let e = wrong.list_objects_v2().bucket(B).send().await.unwrap_err();
            assert_eq!(status(&e), 403, "{e:?}");
        });

        let endpoint = server.endpoint().to_owned();
        drop(server);
        rt.block_on(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let c = client_with(&endpoint, "a", "b");
            let e = c.list_objects_v2().bucket(B).send().await.unwrap_err();
            assert!(
                e.raw_response().is_none(),
                "server still answers after drop: {e:?}"
            );
        });
        let again = LocalServer::start(rt.handle(), &data).unwrap();
        assert_ne!(fs::read_to_string(again.env_file()).unwrap(), text);
    }

    #[test]
    fn objects_metadata_range_copy_checksums() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let server = LocalServer::start(rt.handle(), dir.path()).unwrap();
        let c = client(&server);
        rt.block_on(async {
            let body = b"hello, local s3 world".to_vec();
            // As the mount sends it: unsigned payload with an explicit CRC32C.
            let out = c
                .put_object()
                .bucket(B)
                .key("docs/a.txt")
                .checksum_crc32_c(crc32c(&body))
                .metadata("mode", "100644")
                .metadata("uid", "1000")
                .content_type("text/plain")
                .body(ByteStream::from(body.clone()))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .unwrap();
            assert_eq!(out.checksum_crc32_c(), Some(crc32c(&body).as_str()));

            let head = c
                .head_object()
                .bucket(B)
                .key("docs/a.txt")
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .unwrap();
            assert_eq!(head.content_length(), Some(body.len() as i64));
            assert_eq!(
                head.metadata().unwrap(),
                &meta(&[("mode", "100644"), ("uid", "1000")])
            );
            assert_eq!(head.content_type(), Some("text/plain"));
            assert_eq!(head.checksum_crc32_c(), Some(crc32c(&body).as_str()));
            assert_eq!(get(&c, "docs/a.txt").await, body);

            let ranged = c
                .get_object()
                .bucket(B)
                .key("docs/a.txt")
                .range("bytes=7-11")
                .send()
                .await
                .unwrap();
            assert_eq!(ranged.content_range(), Some("bytes 7-11/21"));
            assert_eq!(
                &ranged.body.collect().await.unwrap().into_bytes()[..],
                b"local"
            );

            // Copy keeps the metadata; REPLACE replaces it.
            c.copy_object()
                .bucket(B)
                .key("docs/b.txt")
                .copy_source("s3upfs/docs/a.txt")
                .send()
                .await
                .unwrap();
            let head = c
                .head_object()
                .bucket(B)
                .key("docs/b.txt")
                .send()
                .await
                .unwrap();
            assert_eq!(
                head.metadata().unwrap(),
                &meta(&[("mode", "100644"), ("uid", "1000")])
            );
            c.copy_object()
                .bucket(B)
                .key("docs/b.txt")
                .copy_source("s3upfs/docs/a.txt")
                .metadata_directive(MetadataDirective::Replace)
                .metadata("mode", "100600")
                .content_type("application/octet-stream")
                .send()
                .await
                .unwrap();
            let head = c
                .head_object()
                .bucket(B)
                .key("docs/b.txt")
                .send()
                .await
                .unwrap();
            assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "100600")]));
            assert_eq!(head.content_type(), Some("application/octet-stream"));
            assert_eq!(get(&c, "docs/b.txt").await, body);
            // Self-copy with REPLACE: how the mount changes metadata in place.
            c.copy_object()
                .bucket(B)
                .key("docs/a.txt")
                .copy_source("s3upfs/docs/a.txt")
                .metadata_directive(MetadataDirective::Replace)
                .metadata("mode", "100755")
                .send()
                .await
                .unwrap();
            let head = c
                .head_object()
                .bucket(B)
                .key("docs/a.txt")
                .send()
                .await
                .unwrap();
            assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "100755")]));
            assert_eq!(get(&c, "docs/a.txt").await, body);
            // COPY from a source without metadata drops the target's old metadata.
            put(&c, "docs/plain", b"plain").await;
            c.copy_object()
                .bucket(B)
                .key("docs/b.txt")
                .copy_source("s3upfs/docs/plain")
                .send()
                .await
                .unwrap();
            let head = c
                .head_object()
                .bucket(B)
                .key("docs/b.txt")
                .send()
                .await
                .unwrap();
            assert!(
                head.metadata().is_none_or(|m| m.is_empty()),
                "{:?}",
                head.metadata()
            );
            assert_eq!(get(&c, "docs/b.txt").await, b"plain");

            // A bad checksum or Content-MD5 is refused and leaves the object alone.
            let e = c
                .put_object()
                .bucket(B)
                .key("docs/a.txt")
                .checksum_crc32_c(crc32c(b"something else"))
                .body(ByteStream::from(b"corrupted".to_vec()))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .unwrap_err();
            assert_eq!(e.code(), Some("BadDigest"), "{e:?}");
            let e = c
                .put_object()
                .bucket(B)
                .key("docs/a.txt")
                .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
                .body(ByteStream::from(b"corrupted".to_vec()))
                .send()
                .await
                .unwrap_err();
            assert_eq!(e.code(), Some("BadDigest"), "{e:?}");
            assert_eq!(get(&c, "docs/a.txt").await, body);
            let head = c
                .head_object()
                .bucket(B)
                .key("docs/a.txt")
                .send()
                .await
                .unwrap();
            assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "100755")]));

            // Overwrite, delete, and the 404s.
            put(&c, "docs/a.txt", b"v2").await;
            assert_eq!(get(&c, "docs/a.txt").await, b"v2");
            c.delete_object()
                .bucket(B)
                .key("docs/a.txt")
                .send()
                .await
                .unwrap();
            let e = c
                .head_object()
                .bucket(B)
                .key("docs/a.txt")
                .send()
                .await
                .unwrap_err();
            assert_eq!(status(&e), 404);
            let e = c
                .get_object()
                .bucket(B)
                .key("docs/a.txt")
                .send()
                .await
                .unwrap_err();
            assert_eq!(e.code(), Some("NoSuchKey"));
            c.delete_object()
                .bucket(B)
                .key("docs/a.txt")
                .send()
                .await
                .unwrap();
            let e = c
                .head_object()
                .bucket(B)
                .key("docs")
                .send()
                .await
                .unwrap_err();
            assert_eq!(status(&e), 404, "a directory is not an object: {e:?}");
            c.delete_object()
                .bucket(B)
                .key("docs")
                .send()
                .await
                .unwrap();
            assert_eq!(get(&c, "docs/plain").await, b"plain");

            // `x` and `x/y` cannot coexist: a clear 400, not a 500.
            let e = c
                .put_object()
                .bucket(B)
                .key("docs/plain/child")
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
                .unwrap_err();
            assert_eq!(
                (status(&e), e.code()),
                (400, Some("InvalidRequest")),
                "{e:?}"
            );
            let e = c
                .put_object()
                .bucket(B)
                .key("docs")
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
                .unwrap_err();
            assert_eq!(
                (status(&e), e.code()),
                (400, Some("InvalidRequest")),
                "{e:?}"
            );

            // Keys too long for s3s-fs's sidecar names are refused up front.
            let long = "k".repeat(163);
            let e = c
                .put_object()
                .bucket(B)
                .key(&long)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
                .unwrap_err();
            assert_eq!(e.code(), Some("KeyTooLongError"), "{e:?}");
            put(&c, &"k".repeat(162), b"ok").await;
        });
    }

    #[test]
    fn directory_markers_listing_and_remount() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let server = LocalServer::start(rt.handle(), dir.path()).unwrap();
        let c = client(&server);
        rt.block_on(async {
            // Empty directory markers, as the mount writes them.
            for key in ["a/", "a/b/", "a/empty/"] {
                c.put_object()
                    .bucket(B)
                    .key(key)
                    .content_type("application/x-directory")
                    .metadata("mode", "40755")
                    .body(ByteStream::from_static(b""))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
            }
            put(&c, "a/b/file", b"data").await;
            put(&c, "a/implicit/deep/file", b"data").await;
            put(&c, "a/top", b"top").await;

            assert_eq!(
                list(&c, "a/", true, None).await,
                (
                    vec!["a/".to_owned(), "a/top".to_owned()],
                    vec![
                        "a/b/".to_owned(),
                        "a/empty/".to_owned(),
                        "a/implicit/".to_owned()
                    ]
                )
            );
            assert_eq!(
                list(&c, "a/empty/", true, None).await,
                (vec!["a/empty/".to_owned()], vec![])
            );
            assert_eq!(
                list(&c, "", true, None).await,
                (vec![], vec!["a/".to_owned()])
            );
            assert_eq!(
                list(&c, "a/e", true, None).await,
                (vec![], vec!["a/empty/".to_owned()])
            );
            let all = vec![
                "a/",
                "a/b/",
                "a/b/file",
                "a/empty/",
                "a/implicit/deep/file",
                "a/top",
            ];
            assert_eq!(list(&c, "", false, None).await.0, all);
            // Pagination with continuation tokens.
            assert_eq!(list(&c, "", false, Some(2)).await.0, all);
            assert_eq!(
                list(&c, "a/", true, Some(1)).await,
                list(&c, "a/", true, None).await
            );

            // Head/Get of a marker: empty, with its metadata.
            let head = c
                .head_object()
                .bucket(B)
                .key("a/empty/")
                .send()
                .await
                .unwrap();
            assert_eq!(head.content_length(), Some(0));
            assert_eq!(head.content_type(), Some("application/x-directory"));
            assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "40755")]));
            assert_eq!(get(&c, "a/empty/").await, b"");
            // A directory that only holds keys is not a marker, nor is it an object.
            for key in ["a/implicit/", "a/implicit"] {
                let e = c.head_object().bucket(B).key(key).send().await.unwrap_err();
                assert_eq!(status(&e), 404, "{key}: {e:?}");
            }

            // Marker metadata can be replaced in place (chmod of a directory).
            c.copy_object()
                .bucket(B)
                .key("a/empty/")
                .copy_source("s3upfs/a/empty/")
                .metadata_directive(MetadataDirective::Replace)
                .content_type("application/x-directory")
                .metadata("mode", "40700")
                .send()
                .await
                .unwrap();
            let head = c
                .head_object()
                .bucket(B)
                .key("a/empty/")
                .send()
                .await
                .unwrap();
            assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "40700")]));
            // …and copied (rename of a directory).
            c.copy_object()
                .bucket(B)
                .key("a/moved/")
                .copy_source("s3upfs/a/empty/")
                .send()
                .await
                .unwrap();
            let head = c
                .head_object()
                .bucket(B)
                .key("a/moved/")
                .send()
                .await
                .unwrap();
            assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "40700")]));
            c.delete_object()
                .bucket(B)
                .key("a/moved/")
                .send()
                .await
                .unwrap();

            // Deleting a marker; the directory's other keys stay.
            c.delete_object()
                .bucket(B)
                .key("a/empty/")
                .send()
                .await
                .unwrap();
            c.delete_object()
                .bucket(B)
                .key("a/b/")
                .send()
                .await
                .unwrap();
            let e = c
                .head_object()
                .bucket(B)
                .key("a/empty/")
                .send()
                .await
                .unwrap_err();
            assert_eq!(status(&e), 404);
            assert_eq!(
                list(&c, "a/", true, None).await,
                (
                    vec!["a/".to_owned(), "a/top".to_owned()],
                    vec!["a/b/".to_owned(), "a/implicit/".to_owned()]
                )
            );
            // A directory left empty by deletes is no longer listed, and a file can take its name.
            c.delete_object()
                .bucket(B)
                .key("a/implicit/deep/file")
                .send()
                .await
                .unwrap();
            assert_eq!(list(&c, "a/", true, None).await.1, vec!["a/b/".to_owned()]);
            put(&c, "a/implicit", b"now a file").await;
            assert_eq!(get(&c, "a/implicit").await, b"now a file");
            // A marker cannot sit on an object.
            let e = c
                .put_object()
                .bucket(B)
                .key("a/implicit/")
                .body(ByteStream::from_static(b""))
                .send()
                .await
                .unwrap_err();
            assert_eq!(status(&e), 400, "{e:?}");

            // DeleteObjects, and ListMultipartUploads with nothing pending.
            put(&c, "a/x1", b"1").await;
            put(&c, "a/x2", b"2").await;
            let ids = ["a/x1", "a/x2"].map(|k| {
                aws_sdk_s3::types::ObjectIdentifier::builder()
                    .key(k)
                    .build()
                    .unwrap()
            });
            let out = c
                .delete_objects()
                .bucket(B)
                .delete(
                    aws_sdk_s3::types::Delete::builder()
                        .set_objects(Some(ids.to_vec()))
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(out.deleted().len(), 2);
            let uploads = c.list_multipart_uploads().bucket(B).send().await.unwrap();
            assert!(uploads.uploads().is_empty());

            c.put_object()
                .bucket(B)
                .key("kept/empty/")
                .metadata("mode", "40711")
                .body(ByteStream::from_static(b""))
                .send()
                .await
                .unwrap();
        });

        // Markers survive a restart (a remount).
        drop(server);
        let server = LocalServer::start(rt.handle(), dir.path()).unwrap();
        let c = client(&server);
        rt.block_on(async {
            assert_eq!(
                list(&c, "kept/", true, None).await,
                (vec![], vec!["kept/empty/".to_owned()])
            );
            assert_eq!(
                list(&c, "kept/empty/", true, None).await,
                (vec!["kept/empty/".to_owned()], vec![])
            );
            let head = c
                .head_object()
                .bucket(B)
                .key("kept/empty/")
                .send()
                .await
                .unwrap();
            assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "40711")]));
            assert_eq!(get(&c, "a/top").await, b"top");
        });
    }

    #[test]
    fn multipart_upload() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let server = LocalServer::start(rt.handle(), dir.path()).unwrap();
        let c = client(&server);
        rt.block_on(async {
            let part1: Vec<u8> = (0..5 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
            let part2: Vec<u8> = (0..5 * 1024 * 1024 + 3).map(|i| (i % 241) as u8).collect();
            let key = "big/file.bin";

            let upload = c
                .create_multipart_upload()
                .bucket(B)
                .key(key)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .metadata("mode", "100644")
                .content_type("application/octet-stream")
                .send()
                .await
                .unwrap();
            let id = upload.upload_id().unwrap().to_owned();

            let pending = c
                .list_multipart_uploads()
                .bucket(B)
                .prefix("big/")
                .send()
                .await
                .unwrap();
            let found: Vec<_> = pending
                .uploads()
                .iter()
                .map(|u| (u.key(), u.upload_id()))
                .collect();
            assert_eq!(found, [(Some(key), Some(id.as_str()))]);
            assert!(pending.uploads()[0].initiated().is_some());

            let mut completed = Vec::new();
            for (n, body) in [(1, &part1), (2, &part2)] {
                let out = c
                    .upload_part()
                    .bucket(B)
                    .key(key)
                    .upload_id(&id)
                    .part_number(n)
                    .checksum_crc32_c(crc32c(body))
                    .body(ByteStream::from(body.clone()))
                    .customize()
                    .disable_payload_signing()
                    .send()
                    .await
                    .unwrap();
                assert_eq!(out.checksum_crc32_c(), Some(crc32c(body).as_str()));
                completed.push(
                    CompletedPart::builder()
                        .part_number(n)
                        .e_tag(out.e_tag().unwrap())
                        .checksum_crc32_c(crc32c(body))
                        .build(),
                );
            }
            // A corrupted part is refused and not kept.
            let e = c
                .upload_part()
                .bucket(B)
                .key(key)
                .upload_id(&id)
                .part_number(3)
                .checksum_crc32_c(crc32c(b"other"))
                .body(ByteStream::from_static(b"tail"))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .unwrap_err();
            assert_eq!(e.code(), Some("BadDigest"), "{e:?}");

            let parts = c
                .list_parts()
                .bucket(B)
                .key(key)
                .upload_id(&id)
                .send()
                .await
                .unwrap();
            let listed: Vec<_> = parts
                .parts()
                .iter()
                .map(|p| {
                    (
                        p.part_number(),
                        p.e_tag().map(unquote),
                        p.checksum_crc32_c(),
                    )
                })
                .collect();
            let uploaded: Vec<_> = completed
                .iter()
                .map(|p| {
                    (
                        p.part_number(),
                        p.e_tag().map(unquote),
                        p.checksum_crc32_c(),
                    )
                })
                .collect();
            assert_eq!(listed, uploaded);

            // A wrong ETag is refused before anything is touched.
            let mut wrong = completed.clone();
            wrong[0] = CompletedPart::builder()
                .part_number(1)
                .e_tag("\"00\"")
                .build();
            let e = c
                .complete_multipart_upload()
                .bucket(B)
                .key(key)
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(wrong))
                        .build(),
                )
                .send()
                .await
                .unwrap_err();
            assert_eq!(e.code(), Some("InvalidPart"), "{e:?}");

            let done = c
                .complete_multipart_upload()
                .bucket(B)
                .key(key)
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(completed))
                        .build(),
                )
                .send()
                .await
                .unwrap();
            let raw = [
                s3s::crypto::Crc32c::checksum(&part1),
                s3s::crypto::Crc32c::checksum(&part2),
            ]
            .concat();
            let composite = format!("{}-2", crc32c(&raw));
            assert_eq!(done.checksum_crc32_c(), Some(composite.as_str()));
            assert!(
                done.e_tag().unwrap().ends_with("-2\""),
                "{:?}",
                done.e_tag()
            );

            let whole = [part1.clone(), part2.clone()].concat();
            assert_eq!(get(&c, key).await, whole);
            let head = c
                .head_object()
                .bucket(B)
                .key(key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .unwrap();
            assert_eq!(head.content_length(), Some(whole.len() as i64));
            assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "100644")]));
            assert_eq!(head.content_type(), Some("application/octet-stream"));
            assert_eq!(head.checksum_crc32_c(), Some(composite.as_str()));
            assert_eq!(head.e_tag(), done.e_tag());
            let ranged = c
                .get_object()
                .bucket(B)
                .key(key)
                .range(format!("bytes={}-{}", part1.len() - 2, part1.len() + 1))
                .send()
                .await
                .unwrap();
            let bytes = ranged.body.collect().await.unwrap().into_bytes();
            assert_eq!(&bytes[..], &whole[part1.len() - 2..part1.len() + 2]);
            let pending = c.list_multipart_uploads().bucket(B).send().await.unwrap();
            assert!(pending.uploads().is_empty());

            // Part numbers need not be 1..N; unknown uploads are NoSuchUpload.
            let id = c
                .create_multipart_upload()
                .bucket(B)
                .key("big/sparse")
                .send()
                .await
                .unwrap()
                .upload_id()
                .unwrap()
                .to_owned();
            let mut completed = Vec::new();
            for (n, body) in [
                (2, part1.clone()),
                (7, b"small tail".to_vec()),
                (9, b"unused".to_vec()),
            ] {
                let out = c
                    .upload_part()
                    .bucket(B)
                    .key("big/sparse")
                    .upload_id(&id)
                    .part_number(n)
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .unwrap();
                if n != 9 {
                    completed.push(
                        CompletedPart::builder()
                            .part_number(n)
                            .e_tag(out.e_tag().unwrap())
                            .build(),
                    );
                }
            }
            c.complete_multipart_upload()
                .bucket(B)
                .key("big/sparse")
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(completed))
                        .build(),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(
                get(&c, "big/sparse").await,
                [part1.as_slice(), b"small tail"].concat()
            );
            let leftovers: Vec<_> = fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.unwrap().file_name().into_string().ok())
                .filter(|n| n.contains(&id))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");

            let id = c
                .create_multipart_upload()
                .bucket(B)
                .key("big/aborted")
                .send()
                .await
                .unwrap()
                .upload_id()
                .unwrap()
                .to_owned();
            c.upload_part()
                .bucket(B)
                .key("big/aborted")
                .upload_id(&id)
                .part_number(1)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
                .unwrap();
            c.abort_multipart_upload()
                .bucket(B)
                .key("big/aborted")
                .upload_id(&id)
                .send()
                .await
                .unwrap();
            let e = c
                .abort_multipart_upload()
                .bucket(B)
                .key("big/aborted")
                .upload_id(&id)
                .send()
                .await
                .unwrap_err();
            assert_eq!(e.code(), Some("NoSuchUpload"), "{e:?}");
            let e = c
                .head_object()
                .bucket(B)
                .key("big/aborted")
                .send()
                .await
                .unwrap_err();
            assert_eq!(status(&e), 404);
        });
    }

    #[test]
    fn checksums_computed_by_the_sdk() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let server = LocalServer::start(rt.handle(), dir.path()).unwrap();
        let c = client(&server);
        rt.block_on(async {
            let body = vec![7u8; 100_000];
            // Algorithm only: the SDK computes the value (header or aws-chunked trailer).
            let out = c
                .put_object()
                .bucket(B)
                .key("t/sha")
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .unwrap();
            assert!(out.checksum_sha256().is_some());
            let id = c
                .create_multipart_upload()
                .bucket(B)
                .key("t/mp")
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .send()
                .await
                .unwrap()
                .upload_id()
                .unwrap()
                .to_owned();
            for unsigned in [false, true] {
                let mut req = c
                    .upload_part()
                    .bucket(B)
                    .key("t/mp")
                    .upload_id(&id)
                    .part_number(1)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                    .body(ByteStream::from(body.clone()))
                    .customize();
                if unsigned {
                    req = req.disable_payload_signing();
                }
                let out = req.send().await.unwrap();
                assert_eq!(out.checksum_crc32_c(), Some(crc32c(&body).as_str()));
            }
            // A streaming body: the checksum travels in an aws-chunked trailer.
            let file = dir.path().join("part.bin");
            fs::write(&file, &body).unwrap();
            let out = c
                .upload_part()
                .bucket(B)
                .key("t/mp")
                .upload_id(&id)
                .part_number(2)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .body(ByteStream::from_path(&file).await.unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(out.checksum_crc32_c(), Some(crc32c(&body).as_str()));
            let out = c
                .put_object()
                .bucket(B)
                .key("t/streamed")
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .body(ByteStream::from_path(&file).await.unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(out.checksum_crc32_c(), Some(crc32c(&body).as_str()));
            assert_eq!(get(&c, "t/streamed").await, body);
        });
    }
}
