//! The raw aws-sdk-s3 baseline of `scripts/bench.sh`, and the benchmark's S3 probe.
//!
//! `put` uploads local files the way s3upfs does, without FUSE in between: multipart with
//! 8 MiB parts and 8 part uploads in flight (shared by all files of one call, like the
//! mount-wide pool), every part carrying a CRC32C the server verifies, payload signing
//! disabled (UNSIGNED-PAYLOAD). A file that fits in one part goes up as one PutObject.
//! Whatever the FUSE layer costs shows up as the distance to this ceiling.
//!
//! The other commands let the bench script look at the bucket without the aws CLI:
//! `head`, `wait` (poll HEAD until objects exist with their full size: where the clock
//! stops), `count` (list a prefix, optionally until N objects are there), `get` (object to
//! stdout, for `| md5sum`).
//!
//! ```text
//! raw_upload put [--part-size 8MiB] [--concurrency 8] FILE KEY [FILE KEY ...]
//! raw_upload put-dir [--concurrency 8] DIR PREFIX     # one PutObject per file, small-file ceiling
//! raw_upload head KEY                                 # prints the size; exit 1 if missing
//! raw_upload wait [--timeout 120] KEY SIZE [KEY SIZE ...]
//! raw_upload count [--expect N] [--timeout 120] PREFIX
//! raw_upload get KEY > file
//! ```
//!
//! Connection settings come from the environment: `S3_ENDPOINT` (e.g.
//! `http://127.0.0.1:3900`), `S3_BUCKET`, `AWS_REGION` (default `garage`),
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`; the options `--endpoint-url`, `--bucket`
//! and `--region` before the command override them. Addressing is path-style.
//!
//! Every command prints one line of `name=value` pairs on stderr (stdout for all but `get`):
//! `bytes`, `seconds`, `requests` (S3 requests this process sent, so the bench can subtract
//! them from the server's counters), `cpu_seconds` and `max_rss_kib` (of this process).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const USAGE: &str = "usage: raw_upload [--endpoint-url URL] [--bucket B] [--region R] COMMAND ...
  put [--part-size 8MiB] [--concurrency 8] FILE KEY [FILE KEY ...]
  put-dir [--concurrency 8] DIR PREFIX
  head KEY
  wait [--timeout SECONDS] KEY SIZE [KEY SIZE ...]
  count [--expect N] [--timeout SECONDS] PREFIX
  get KEY
environment: S3_ENDPOINT, S3_BUCKET, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY";

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

/// The client, the bucket, and a count of the requests sent through them.
#[derive(Clone)]
struct S3 {
    client: Client,
    bucket: String,
    requests: Arc<AtomicU64>,
}

impl S3 {
    /// Counts one request (retries inside the SDK are not seen, and none are expected here).
    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("raw_upload: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(std::env::args().skip(1).collect())) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("raw_upload: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Vec<String>) -> Result<ExitCode> {
    let mut args = Args::new(args);
    let mut endpoint = std::env::var("S3_ENDPOINT").ok();
    let mut bucket = std::env::var("S3_BUCKET").ok();
    let mut region = std::env::var("AWS_REGION").unwrap_or_else(|_| "garage".to_owned());
    while let Some(flag) = args.flag() {
        match flag.as_str() {
            "--endpoint-url" => endpoint = Some(args.value(&flag)?),
            "--bucket" => bucket = Some(args.value(&flag)?),
            "--region" => region = args.value(&flag)?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}").into()),
        }
    }
    let command = args.positional().ok_or(USAGE)?;
    let endpoint = endpoint.ok_or("no endpoint: set S3_ENDPOINT or pass --endpoint-url")?;
    let bucket = bucket.ok_or("no bucket: set S3_BUCKET or pass --bucket")?;
    let s3 = S3 {
        client: client(&endpoint, &region)?,
        bucket,
        requests: Arc::new(AtomicU64::new(0)),
    };
    let start = Instant::now();
    let bytes = match command.as_str() {
        "put" => {
            let (part_size, concurrency) = put_options(&mut args, true)?;
            let pairs = args.pairs()?;
            put_files(&s3, pairs, part_size, concurrency).await?
        }
        "put-dir" => {
            let (_, concurrency) = put_options(&mut args, false)?;
            let [dir, prefix] = args.exactly::<2>()?;
            put_dir(&s3, Path::new(&dir), &prefix, concurrency).await?
        }
        "head" => {
            let [key] = args.exactly::<1>()?;
            match head(&s3, &key).await? {
                Some(size) => size,
                None => {
                    eprintln!("raw_upload: {key}: no such object");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        "wait" => {
            let timeout = timeout_option(&mut args)?;
            let pairs = args.pairs()?;
            let mut wanted = Vec::new();
            for (key, size) in pairs {
                let size: u64 = size.parse().map_err(|_| format!("bad size {size}"))?;
                wanted.push((key, size));
            }
            wait_for(&s3, &wanted, timeout).await?
        }
        "count" => {
            let mut expect = None;
            let mut timeout = Duration::from_secs(120);
            while let Some(flag) = args.flag() {
                match flag.as_str() {
                    "--expect" => expect = Some(args.value(&flag)?.parse::<u64>()?),
                    "--timeout" => timeout = Duration::from_secs_f64(args.value(&flag)?.parse()?),
                    _ => return Err(format!("unknown option {flag}").into()),
                }
            }
            let [prefix] = args.exactly::<1>()?;
            let (objects, bytes) = count(&s3, &prefix, expect, timeout).await?;
            print_stats(&s3, start, bytes, &format!("objects={objects} "), false);
            return Ok(ExitCode::SUCCESS);
        }
        "get" => {
            let [key] = args.exactly::<1>()?;
            let bytes = get(&s3, &key).await?;
            print_stats(&s3, start, bytes, "", true);
            return Ok(ExitCode::SUCCESS);
        }
        other => return Err(format!("unknown command {other}\n{USAGE}").into()),
    };
    print_stats(&s3, start, bytes, "", false);
    Ok(ExitCode::SUCCESS)
}

/// A client configured like s3upfs's: path-style, our own CRC32C only, no response
/// checksum validation work, a few retries.
fn client(endpoint: &str, region: &str) -> Result<Client> {
    let key = std::env::var("AWS_ACCESS_KEY_ID").map_err(|_| "AWS_ACCESS_KEY_ID is not set")?;
    let secret =
        std::env::var("AWS_SECRET_ACCESS_KEY").map_err(|_| "AWS_SECRET_ACCESS_KEY is not set")?;
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(key, secret, None, None, "raw_upload"))
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Ok(Client::from_conf(config))
}

/// One `name=value` line: on stdout, or on stderr when stdout carries an object's bytes.
fn print_stats(s3: &S3, start: Instant, bytes: u64, extra: &str, to_stderr: bool) {
    let (cpu_seconds, max_rss_kib) = own_usage();
    let line = format!(
        "{extra}bytes={bytes} seconds={:.3} requests={} cpu_seconds={cpu_seconds:.3} \
         max_rss_kib={max_rss_kib}",
        start.elapsed().as_secs_f64(),
        s3.requests.load(Ordering::Relaxed),
    );
    if to_stderr {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// user+system CPU seconds and peak RSS (KiB) of this process so far.
fn own_usage() -> (f64, i64) {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0.0, 0);
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        seconds(usage.ru_utime) + seconds(usage.ru_stime),
        usage.ru_maxrss,
    )
}

/// The base64 CRC32C S3 expects in `x-amz-checksum-crc32c`.
fn crc32c_base64(data: &[u8]) -> String {
    base64(&crc32c::crc32c(data).to_be_bytes())
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn put_options(args: &mut Args, part_size_allowed: bool) -> Result<(usize, usize)> {
    let mut part_size = 8 << 20;
    let mut concurrency = 8;
    while let Some(flag) = args.flag() {
        match flag.as_str() {
            "--part-size" if part_size_allowed => part_size = parse_size(&args.value(&flag)?)?,
            "--concurrency" => concurrency = args.value(&flag)?.parse()?,
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }
    if part_size < 5 << 20 || concurrency == 0 {
        return Err("--part-size must be at least 5MiB and --concurrency at least 1".into());
    }
    Ok((part_size, concurrency))
}

fn timeout_option(args: &mut Args) -> Result<Duration> {
    let mut timeout = Duration::from_secs(120);
    while let Some(flag) = args.flag() {
        match flag.as_str() {
            "--timeout" => timeout = Duration::from_secs_f64(args.value(&flag)?.parse()?),
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }
    Ok(timeout)
}

/// `8MiB`, `512k`, `1GiB` or plain bytes.
fn parse_size(text: &str) -> Result<usize> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("bad size {text}").into()),
    };
    Ok(digits
        .parse::<usize>()
        .map_err(|_| format!("bad size {text}"))?
        << shift)
}

/// Uploads every (file, key) pair concurrently; all parts of all files share one pool of
/// `concurrency` uploads, and a part's buffer exists only while it holds a pool slot, so
/// memory stays at `concurrency × part_size` like the mount's budget.
async fn put_files(
    s3: &S3,
    pairs: Vec<(String, String)>,
    part_size: usize,
    concurrency: usize,
) -> Result<u64> {
    let pool = Arc::new(Semaphore::new(concurrency));
    let mut files = JoinSet::new();
    for (path, key) in pairs {
        let (s3, pool) = (s3.clone(), Arc::clone(&pool));
        files.spawn(async move {
            put_file(&s3, Path::new(&path), &key, part_size, pool)
                .await
                .map_err(|e| -> Error { format!("{path} -> {key}: {e}").into() })
        });
    }
    let mut total = 0;
    let mut first_error = None;
    while let Some(result) = files.join_next().await {
        match result? {
            Ok(bytes) => total += bytes,
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// Reads up to `size` bytes: fewer only at the end of the file.
fn read_chunk(file: &mut File, size: usize) -> io::Result<Vec<u8>> {
    let mut buffer = Vec::with_capacity(size);
    file.take(size as u64).read_to_end(&mut buffer)?;
    Ok(buffer)
}

async fn put_file(
    s3: &S3,
    path: &Path,
    key: &str,
    part_size: usize,
    pool: Arc<Semaphore>,
) -> Result<u64> {
    let mut file = File::open(path)?;
    let permit = Arc::clone(&pool).acquire_owned().await?;
    // Reads from the page cache are short; block_in_place keeps them off the other tasks.
    let first = tokio::task::block_in_place(|| read_chunk(&mut file, part_size))?;
    if first.len() < part_size {
        // Fits in one part: one PutObject, as s3upfs does at close.
        let len = put_small(s3, key, Bytes::from(first)).await?;
        drop(permit);
        return Ok(len);
    }
    s3.count();
    let upload_id = s3
        .client
        .create_multipart_upload()
        .bucket(&s3.bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .send()
        .await
        .map_err(|e| format!("CreateMultipartUpload: {}", DisplayErrorContext(e)))?
        .upload_id()
        .ok_or("CreateMultipartUpload: no upload id")?
        .to_owned();
    match upload_parts(
        s3, &mut file, key, &upload_id, part_size, pool, first, permit,
    )
    .await
    {
        Ok((bytes, parts)) => {
            s3.count();
            s3.client
                .complete_multipart_upload()
                .bucket(&s3.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| format!("CompleteMultipartUpload: {}", DisplayErrorContext(e)))?;
            Ok(bytes)
        }
        Err(e) => {
            // Leave no orphaned upload behind in the bench bucket.
            s3.count();
            let _ = s3
                .client
                .abort_multipart_upload()
                .bucket(&s3.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            Err(e)
        }
    }
}

/// One PutObject with the CRC32C and unsigned payload s3upfs sends for a small file.
async fn put_small(s3: &S3, key: &str, body: Bytes) -> Result<u64> {
    let len = body.len() as u64;
    s3.count();
    s3.client
        .put_object()
        .bucket(&s3.bucket)
        .key(key)
        .checksum_crc32_c(crc32c_base64(&body))
        .body(ByteStream::from(body))
        .customize()
        .disable_payload_signing()
        .send()
        .await
        .map_err(|e| format!("PutObject {key}: {}", DisplayErrorContext(e)))?;
    Ok(len)
}

#[allow(clippy::too_many_arguments)]
async fn upload_parts(
    s3: &S3,
    file: &mut File,
    key: &str,
    upload_id: &str,
    part_size: usize,
    pool: Arc<Semaphore>,
    first: Vec<u8>,
    first_permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<(u64, Vec<CompletedPart>)> {
    let mut uploads = JoinSet::new();
    let mut parts = Vec::new();
    let mut next = Some((first, first_permit));
    let mut part_number = 0;
    let mut bytes = 0u64;
    while let Some((chunk, permit)) = next.take() {
        if chunk.is_empty() {
            break;
        }
        part_number += 1;
        bytes += chunk.len() as u64;
        let full = chunk.len() == part_size;
        let (s3, key, upload_id) = (s3.clone(), key.to_owned(), upload_id.to_owned());
        uploads.spawn(async move {
            let body = Bytes::from(chunk);
            let checksum = crc32c_base64(&body);
            s3.count();
            let output = s3
                .client
                .upload_part()
                .bucket(&s3.bucket)
                .key(&key)
                .upload_id(&upload_id)
                .part_number(part_number)
                .checksum_crc32_c(&checksum)
                .body(ByteStream::from(body))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| format!("UploadPart {part_number}: {}", DisplayErrorContext(e)))?;
            drop(permit);
            let etag = output
                .e_tag()
                .ok_or_else(|| format!("UploadPart {part_number}: no ETag"))?;
            Ok::<_, Error>(
                CompletedPart::builder()
                    .part_number(part_number)
                    .e_tag(etag)
                    .checksum_crc32_c(checksum)
                    .build(),
            )
        });
        // Fail fast: stop reading once a part upload has failed.
        while let Some(done) = uploads.try_join_next() {
            parts.push(done??);
        }
        if full {
            let permit = Arc::clone(&pool).acquire_owned().await?;
            let chunk = tokio::task::block_in_place(|| read_chunk(file, part_size))?;
            next = Some((chunk, permit));
        }
    }
    while let Some(done) = uploads.join_next().await {
        parts.push(done??);
    }
    parts.sort_by_key(|p| p.part_number());
    Ok((bytes, parts))
}

/// Uploads every regular file under `dir` as `prefix/relative/path`, one PutObject each.
async fn put_dir(s3: &S3, dir: &Path, prefix: &str, concurrency: usize) -> Result<u64> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    let pool = Arc::new(Semaphore::new(concurrency));
    let mut uploads = JoinSet::new();
    for path in files {
        let relative = path.strip_prefix(dir)?.to_string_lossy().into_owned();
        let key = format!("{}/{relative}", prefix.trim_end_matches('/'));
        let permit = Arc::clone(&pool).acquire_owned().await?;
        let body = Bytes::from(tokio::task::block_in_place(|| std::fs::read(&path))?);
        let s3 = s3.clone();
        uploads.spawn(async move {
            let len = put_small(&s3, &key, body).await?;
            drop(permit);
            Ok::<_, Error>(len)
        });
    }
    let mut total = 0;
    while let Some(done) = uploads.join_next().await {
        total += done??;
    }
    Ok(total)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), files)?;
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    Ok(())
}

/// The object's size, or `None` when it does not exist.
async fn head(s3: &S3, key: &str) -> Result<Option<u64>> {
    s3.count();
    match s3
        .client
        .head_object()
        .bucket(&s3.bucket)
        .key(key)
        .send()
        .await
    {
        Ok(output) => Ok(Some(output.content_length().unwrap_or(0) as u64)),
        Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => Ok(None),
        Err(e) => Err(format!("HeadObject {key}: {}", DisplayErrorContext(e)).into()),
    }
}

/// Polls HEAD until every key exists with its size; a write-back cache that returned from
/// close early is still uploading until then. Returns the bytes seen.
async fn wait_for(s3: &S3, wanted: &[(String, u64)], timeout: Duration) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<&(String, u64)> = wanted.iter().collect();
    let mut last = Vec::new();
    while !pending.is_empty() {
        last.clear();
        let mut still = Vec::new();
        for item in pending {
            let size = head(s3, &item.0).await?;
            if size != Some(item.1) {
                last.push(format!("{}: {:?} (want {})", item.0, size, item.1));
                still.push(item);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out waiting for {}", last.join(", ")).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(wanted.iter().map(|w| w.1).sum())
}

/// Lists `prefix` (recursively); with `expect`, repeats until at least that many objects
/// are there or the timeout passes. Returns (objects, bytes) of the last listing.
async fn count(
    s3: &S3,
    prefix: &str,
    expect: Option<u64>,
    timeout: Duration,
) -> Result<(u64, u64)> {
    let deadline = Instant::now() + timeout;
    loop {
        let (mut objects, mut bytes) = (0u64, 0u64);
        let mut token = None;
        loop {
            s3.count();
            let page = s3
                .client
                .list_objects_v2()
                .bucket(&s3.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| format!("ListObjectsV2 {prefix}: {}", DisplayErrorContext(e)))?;
            for object in page.contents() {
                // Directory markers (`dir/`) are not files.
                if !object.key().unwrap_or_default().ends_with('/') {
                    objects += 1;
                    bytes += object.size().unwrap_or(0) as u64;
                }
            }
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        match expect {
            Some(n) if objects < n && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some(n) if objects < n => {
                return Err(format!("timed out: {objects} of {n} objects under {prefix}").into());
            }
            _ => return Ok((objects, bytes)),
        }
    }
}

/// Streams the object to stdout.
async fn get(s3: &S3, key: &str) -> Result<u64> {
    s3.count();
    let mut body = s3
        .client
        .get_object()
        .bucket(&s3.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("GetObject {key}: {}", DisplayErrorContext(e)))?
        .body;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut bytes = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        out.write_all(&chunk)?;
    }
    out.flush()?;
    Ok(bytes)
}

/// A tiny argument cursor: options come before positionals within each command.
struct Args {
    items: std::collections::VecDeque<String>,
}

impl Args {
    fn new(items: Vec<String>) -> Self {
        Self {
            items: items.into(),
        }
    }
    /// The next item if it is an option (`-x`/`--xyz`).
    fn flag(&mut self) -> Option<String> {
        if self.items.front()?.starts_with('-') {
            self.items.pop_front()
        } else {
            None
        }
    }
    fn value(&mut self, flag: &str) -> Result<String> {
        self.items
            .pop_front()
            .ok_or_else(|| format!("{flag} needs a value").into())
    }
    fn positional(&mut self) -> Option<String> {
        self.items.pop_front()
    }
    fn exactly<const N: usize>(&mut self) -> Result<[String; N]> {
        if self.items.len() != N {
            return Err(format!("expected {N} argument(s), got {:?}\n{USAGE}", self.items).into());
        }
        Ok(std::array::from_fn(|_| self.items.pop_front().unwrap()))
    }
    fn pairs(&mut self) -> Result<Vec<(String, String)>> {
        if self.items.is_empty() || !self.items.len().is_multiple_of(2) {
            return Err(format!("expected pairs of arguments, got {:?}", self.items).into());
        }
        let mut pairs = Vec::new();
        while let (Some(a), Some(b)) = (self.items.pop_front(), self.items.pop_front()) {
            pairs.push((a, b));
        }
        Ok(pairs)
    }
}
