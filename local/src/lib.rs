//! The embedded S3 server behind `s3upfs mount --local DIR`: s3s (real HTTP with SigV4 auth on a
//! random 127.0.0.1 port, on the caller's tokio runtime) over s3s-fs (objects as plain files under
//! DIR). This file owns [`LocalServer`]: the data-directory checks, the flock that allows one
//! server per DIR, the random credentials and `DIR/.s3upfs-local.env`. The modules below bridge
//! the s3s-fs 0.14.1 gaps the mount depends on:
//!
//! | module | owns |
//! | --- | --- |
//! | `serve` | the listener and the accept loop |
//! | `service` | `LocalFs`: which S3 operations go to s3s-fs as they are, which are bridged |
//! | `store` | the on-disk layout, staging and atomic writes |
//! | `sidecars` | the JSON sidecar files s3s-fs keeps beside each object |
//! | `args` | which keys, upload ids, part numbers and page sizes a request may name |
//! | `error` | the S3 and I/O errors the bridge answers with |
//! | `objects` | Put/Get/Head/Copy/Delete of objects, DeleteBucket |
//! | `markers` | directory markers (`a/b/`) |
//! | `list` | ListObjects v1 and v2 (one implementation) |
//! | `parts`, `multipart` | uploaded parts on disk; the multipart operations |
//! | `checksums` | checksum algorithms, verification, composite checksums |
//!
//! # On-disk layout
//!
//! `DIR` is the s3s-fs root. Objects of the bucket `s3upfs` are the files under `DIR/s3upfs/`
//! (key `a/b/c` is the file `DIR/s3upfs/a/b/c`). s3s-fs keeps its sidecars as dot-files directly in
//! `DIR` (`.bucket-<b64>.object-<b64>.metadata.json` for user metadata and content headers,
//! `….internal.json` for the ETag and checksums, `.upload-<id>.json` and `.upload_id-<id>.part-<n>`
//! for multipart uploads). This crate adds, also as dot-files in `DIR`: `.s3upfs-local.env` (mode
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

mod args;
mod checksums;
mod error;
mod list;
mod markers;
mod multipart;
mod objects;
mod parts;
mod serve;
mod service;
mod sidecars;
mod store;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::runtime::Handle;

use crate::error::context;
use crate::service::LocalFs;
use crate::store::Store;

const ENV_FILE: &str = ".s3upfs-local.env";
const LOCK_FILE: &str = ".s3upfs-local.lock";

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
        let (port, task) = serve::spawn(runtime, service)?;

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
    Ok(hex::encode(bytes))
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
