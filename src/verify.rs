//! `s3upfs verify LOCAL TARGET`: whether a backup in S3 holds what a local tree holds,
//! without downloading it (rsync --checksum reads every byte back).
//!
//! Each local file's CRC32C is computed here (hardware CRC32C). Each object's comes
//! from one HEAD: the full-object CRC32C the mount asks S3 to keep for everything it
//! writes. TARGET is `s3://BUCKET[/PREFIX/]` (one listing, then HEADs) or a mounted
//! directory (the `user.s3upfs.crc32c` attribute, which the daemon answers with a
//! HEAD). An object without a full-object CRC32C (another tool wrote it, or the server
//! keeps only composite checksums) is "unverifiable", never "ok". Files only: a
//! symbolic link (and its object) or an empty directory is not compared.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::s3::{Connection, ObjectStore, decode_crc32c, encode_crc32c};

/// Where the backup is.
pub(crate) enum Target {
    Bucket {
        connection: Connection,
        prefix: String,
    },
    Mount(PathBuf),
}

/// What `verify` found; paths are relative to LOCAL, with `/`.
#[derive(Serialize, Default, Debug)]
pub(crate) struct Report {
    pub(crate) matching: usize,
    pub(crate) differing: Vec<String>,
    pub(crate) missing: Vec<String>,
    pub(crate) extra: Vec<String>,
    pub(crate) unverifiable: Vec<String>,
    pub(crate) bytes_hashed: u64,
    /// CRC32C throughput of one core, hashing only (not reading).
    pub(crate) crc32c_gib_per_second: f64,
    pub(crate) seconds: f64,
}

impl Report {
    pub(crate) fn all_match(&self) -> bool {
        self.differing.is_empty()
            && self.missing.is_empty()
            && self.extra.is_empty()
            && self.unverifiable.is_empty()
    }

    fn print(&self) {
        for (word, paths) in [
            ("differs", &self.differing),
            ("missing", &self.missing),
            ("extra", &self.extra),
            ("unverifiable", &self.unverifiable),
        ] {
            for path in paths {
                println!("{word:<13}{path}");
            }
        }
        println!(
            "{} matching, {} differing, {} missing, {} extra, {} unverifiable; {} hashed in \
             {:.1} s (CRC32C {:.1} GiB/s per core)",
            self.matching,
            self.differing.len(),
            self.missing.len(),
            self.extra.len(),
            self.unverifiable.len(),
            crate::size::format_size(self.bytes_hashed),
            self.seconds,
            self.crc32c_gib_per_second
        );
    }
}

/// Runs `verify` and prints the report (as JSON with `json`); Ok(true) when every file
/// matches and nothing is extra.
pub(crate) fn run(local: &Path, target: Target, json: bool) -> Result<bool, String> {
    let report = verify(local, target)?;
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        report.print();
    }
    Ok(report.all_match())
}

/// Where an object's checksum comes from.
trait Remote: Sync {
    /// Relative path → size of every file the backup holds.
    fn files(&self) -> Result<BTreeMap<String, u64>, String>;
    /// The full-object CRC32C of `path`'s object, if it has one.
    fn checksum(&self, path: &str) -> Result<Option<u32>, String>;
}

struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl Remote for Bucket {
    fn files(&self) -> Result<BTreeMap<String, u64>, String> {
        let listing = self
            .store
            .list_all(&self.prefix, false)
            .map_err(|e| format!("listing {}: {e}", self.prefix))?;
        Ok(listing
            .objects
            .into_iter()
            .filter_map(|object| {
                let path = object.key.strip_prefix(&self.prefix)?;
                // Directory markers are not files.
                (!path.is_empty() && !path.ends_with('/')).then(|| (path.to_owned(), object.size))
            })
            .collect())
    }

    fn checksum(&self, path: &str) -> Result<Option<u32>, String> {
        let key = format!("{}{path}", self.prefix);
        let info = self
            .store
            .head_object(&key)
            .map_err(|e| format!("HEAD {key}: {e}"))?;
        Ok(info
            .and_then(|info| info.checksum_crc32c)
            .and_then(|crc| decode_crc32c(&crc)))
    }
}

struct Mount(PathBuf);

impl Remote for Mount {
    fn files(&self) -> Result<BTreeMap<String, u64>, String> {
        Ok(walk(&self.0)?.files.into_iter().collect())
    }

    fn checksum(&self, path: &str) -> Result<Option<u32>, String> {
        let full = self.0.join(path);
        match xattr(&full, crate::namespace::CHECKSUM) {
            Ok(Some(value)) => Ok(std::str::from_utf8(&value).ok().and_then(decode_crc32c)),
            Ok(None) => Ok(None),
            Err(e) => Err(format!("{}: {e}", full.display())),
        }
    }
}

/// The value of extended attribute `name`, None when the file has none.
fn xattr(path: &Path, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    let to_c = |bytes: &[u8]| {
        std::ffi::CString::new(bytes).map_err(|e| std::io::Error::other(e.to_string()))
    };
    let (path, name) = (to_c(path.as_os_str().as_bytes())?, to_c(name.as_bytes())?);
    let mut value = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and `value` has the length given.
    let got = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    if got < 0 {
        let error = std::io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::ENODATA) => Ok(None),
            _ => Err(error),
        };
    }
    value.truncate(got as usize);
    Ok(Some(value))
}

/// What [`walk`] finds under a root: regular files (relative path with `/`, size) and
/// symbolic links (not compared, so not "extra" either).
#[derive(Default)]
struct Tree {
    files: Vec<(String, u64)>,
    links: Vec<String>,
}

/// Every regular file and symbolic link under `root`; links are not followed. Types come
/// from lstat, not from readdir: a mount may type an object it has not looked up yet
/// (a symlink among them) as a regular file in a listing.
fn walk(root: &Path) -> Result<Tree, String> {
    let mut tree = Tree::default();
    let mut folders = vec![PathBuf::new()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(root.join(&folder))
            .map_err(|e| format!("{}: {e}", root.join(&folder).display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", root.join(&folder).display()))?;
            let relative = folder.join(entry.file_name());
            let metadata = entry
                .metadata()
                .map_err(|e| format!("{}: {e}", root.join(&relative).display()))?;
            let kind = metadata.file_type();
            if kind.is_dir() {
                folders.push(relative);
                continue;
            }
            let Some(text) = relative.to_str() else {
                return Err(format!("{}: not UTF-8", relative.display()));
            };
            if kind.is_file() {
                tree.files.push((text.to_owned(), metadata.len()));
            } else if kind.is_symlink() {
                tree.links.push(text.to_owned());
            }
        }
    }
    Ok(tree)
}

/// CRC32C of a local file, and the time spent in the CRC itself.
fn file_crc32c(path: &Path) -> Result<(u32, Duration), String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buffer = vec![0u8; 1 << 20];
    let (mut crc, mut hashing) = (0u32, Duration::ZERO);
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if read == 0 {
            return Ok((crc, hashing));
        }
        let started = Instant::now();
        crc = crc32c::crc32c_append(crc, &buffer[..read]);
        hashing += started.elapsed();
    }
}

enum Outcome {
    Matching,
    Differing,
    Unverifiable,
}

fn verify(local: &Path, target: Target) -> Result<Report, String> {
    let started = Instant::now();
    if !local.is_dir() {
        return Err(format!("{}: not a directory", local.display()));
    }
    // The runtime must outlive every request of the store.
    let (_runtime, remote): (Option<tokio::runtime::Runtime>, Box<dyn Remote>) = match target {
        Target::Bucket { connection, prefix } => {
            let (runtime, store) = crate::admin::connect_checked(&connection, &prefix)?;
            (Some(runtime), Box::new(Bucket { store, prefix }))
        }
        Target::Mount(path) => {
            if !path.is_dir() {
                return Err(format!("{}: not a directory", path.display()));
            }
            (None, Box::new(Mount(path)))
        }
    };
    let mut remote_files = remote.files()?;
    let mut report = Report::default();
    let mut both = Vec::new();
    let tree = walk(local)?;
    for link in &tree.links {
        // The backup's copy of a symbolic link is an object too: not compared, not extra.
        remote_files.remove(link);
    }
    for (path, size) in tree.files {
        match remote_files.remove(&path) {
            None => report.missing.push(path),
            Some(remote_size) if remote_size != size => report.differing.push(path),
            Some(_) => both.push((path, size)),
        }
    }
    report.extra = remote_files.into_keys().collect();
    let total: u64 = both.iter().map(|(_, size)| size).sum();
    let progress = progress_bar(total);
    let next = AtomicUsize::new(0);
    let hashed = AtomicU64::new(0);
    let hashing_nanos = AtomicU64::new(0);
    let outcomes: Vec<Result<Outcome, String>> = {
        let results = std::sync::Mutex::new(Vec::new());
        // HEADs wait on the network and CRCs on a core: more workers than cores.
        std::thread::scope(|scope| {
            for _ in 0..16 {
                scope.spawn(|| {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some((path, size)) = both.get(index) else {
                            return;
                        };
                        let outcome = compare(local, remote.as_ref(), path).map(|(o, t)| {
                            hashing_nanos.fetch_add(t.as_nanos() as u64, Ordering::Relaxed);
                            o
                        });
                        hashed.fetch_add(*size, Ordering::Relaxed);
                        progress.set_position(hashed.load(Ordering::Relaxed));
                        results
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((index, outcome));
                    }
                });
            }
        });
        let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
        results.sort_by_key(|(index, _)| *index);
        results.into_iter().map(|(_, outcome)| outcome).collect()
    };
    progress.finish_and_clear();
    for ((path, _), outcome) in both.into_iter().zip(outcomes) {
        match outcome? {
            Outcome::Matching => report.matching += 1,
            Outcome::Differing => report.differing.push(path),
            Outcome::Unverifiable => report.unverifiable.push(path),
        }
    }
    for list in [
        &mut report.differing,
        &mut report.missing,
        &mut report.unverifiable,
    ] {
        list.sort();
    }
    report.bytes_hashed = total;
    let seconds = hashing_nanos.load(Ordering::Relaxed) as f64 / 1e9;
    report.crc32c_gib_per_second = if seconds > 0.0 {
        total as f64 / seconds / (1u64 << 30) as f64
    } else {
        0.0
    };
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// One file: its object's checksum first (no CRC to compute when there is none).
fn compare(local: &Path, remote: &dyn Remote, path: &str) -> Result<(Outcome, Duration), String> {
    let Some(theirs) = remote.checksum(path)? else {
        return Ok((Outcome::Unverifiable, Duration::ZERO));
    };
    let (ours, hashing) = file_crc32c(&local.join(path))?;
    log::debug!(
        "{path}: local {} remote {}",
        encode_crc32c(ours),
        encode_crc32c(theirs)
    );
    let outcome = match ours == theirs {
        true => Outcome::Matching,
        false => Outcome::Differing,
    };
    Ok((outcome, hashing))
}

/// Bytes compared so far, on stderr when it is a terminal.
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "verifying {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}
