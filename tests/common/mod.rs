//! Shared integration-test harness (every test file does `mod common;`).
//!
//! - [`S3Server`]: a Garage 2.5.0 process with a fresh key and bucket (stopped on drop), or the
//!   daemon's embedded `--local` server described by its `.s3upfs-local.env` file.
//! - [`S3Check`]: a blocking aws-sdk-s3 client to look at what really landed in the bucket.
//! - [`Mount`]: the real `s3upfs` binary mounted on a fresh temp dir (unmounted on drop, also
//!   after the daemon was killed).
//! - [`run_cli`], [`sh`], [`random_bytes`] and friends.
//!
//! Nothing here panics inside `Drop`. When a test panics, the drops print the tail of the
//! daemon's / Garage's log so the failure shows its cause.
//!
//! Environment knobs: `S3UPFS_GARAGE_BIN` (Garage binary), `S3UPFS_CACHE` (where
//! scripts/install-garage.sh put it), `S3UPFS_TEST_TMPDIR` (parent of all temp dirs),
//! `S3UPFS_KEEP_TEST_DIRS=1` (keep temp dirs and logs), `S3UPFS_GARAGE_LOG` (Garage's
//! RUST_LOG, default `garage=info`).
#![allow(dead_code)]

pub mod fault_proxy;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tempfile::TempDir;

pub const GARAGE_VERSION: &str = "2.5.0";
/// How long Garage may take to answer a ListObjectsV2 after being (re)started.
pub const GARAGE_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the daemon may take until its mountpoint shows up in /proc/self/mountinfo.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the daemon may take to exit after its filesystem was unmounted.
pub const DAEMON_EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// [`run_cli`] kills the binary after this long.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// [`sh`] kills the command after this long.
pub const SH_TIMEOUT: Duration = Duration::from_secs(600);
/// Name of the file the daemon writes into the `--local` directory.
pub const LOCAL_ENV_FILE: &str = ".s3upfs-local.env";

// ---------------------------------------------------------------------------------------------
// S3Server
// ---------------------------------------------------------------------------------------------

/// An S3 endpoint with a bucket the tests may use freely.
///
/// `S3Server::garage()` owns a Garage process (killed and reaped on drop, data deleted);
/// `S3Server::local_from_env_file()` only describes the daemon's embedded server.
pub struct S3Server {
    endpoint: String,
    bucket: String,
    access_key: String,
    secret_key: String,
    region: String,
    garage: Option<Garage>,
}

struct Garage {
    bin: PathBuf,
    /// `None` only while dropping with `S3UPFS_KEEP_TEST_DIRS`.
    dir: Option<TempDir>,
    root: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    rpc_port: u16,
    s3_port: u16,
    admin_port: u16,
    rpc_secret: String,
    admin_token: String,
    child: Option<Child>,
}

impl S3Server {
    /// Starts a single-node Garage on free 127.0.0.1 ports with a fresh key and bucket, and
    /// waits until ListObjectsV2 on the bucket succeeds. Panics (with Garage's log) otherwise.
    pub fn garage() -> S3Server {
        let bin = garage_bin();
        let dir = make_temp_dir("s3upfs-garage-");
        let root = canonical(dir.path());
        let mut server = S3Server {
            endpoint: String::new(),
            bucket: format!("s3upfs-test-{}", random_hex(6)),
            access_key: format!("GK{}", random_hex(12)),
            secret_key: random_hex(32),
            region: "garage".to_string(),
            garage: Some(Garage {
                bin,
                config_path: root.join("garage.toml"),
                log_path: root.join("garage.log"),
                root,
                dir: Some(dir),
                rpc_port: 0,
                s3_port: 0,
                admin_port: 0,
                rpc_secret: random_hex(32),
                admin_token: random_hex(32),
                child: None,
            }),
        };
        // Free ports are found by binding port 0 and releasing it, so another process may grab
        // one before Garage binds it: retry with fresh ports (and fresh dirs) when that happens.
        let attempts = 3;
        for attempt in 1..=attempts {
            let [rpc, s3, admin] = free_ports::<3>();
            {
                let g = server.garage_mut();
                g.rpc_port = rpc;
                g.s3_port = s3;
                g.admin_port = admin;
                for sub in ["meta", "data"] {
                    let d = g.root.join(sub);
                    if d.exists() {
                        fs::remove_dir_all(&d)
                            .unwrap_or_else(|e| panic!("removing {}: {e}", d.display()));
                    }
                }
                g.write_config();
            }
            server.endpoint = format!("http://127.0.0.1:{s3}");
            match server.try_start() {
                Ok(()) => return server,
                Err(msg) if attempt < attempts && msg.contains("in use") => {
                    eprintln!("garage: port conflict on attempt {attempt}, retrying: {msg}");
                }
                Err(msg) => panic!("starting Garage failed: {msg}"),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// Describes the daemon's embedded `--local` server from the env file it writes
    /// (`path` is the file itself or the `--local` directory holding `.s3upfs-local.env`).
    /// Lines are `KEY=VALUE`; `#` comments, blank lines, `export ` and quotes are tolerated.
    pub fn local_from_env_file(path: impl AsRef<Path>) -> S3Server {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join(LOCAL_ENV_FILE);
        }
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading the --local env file {}: {e}", path.display()));
        let vars = parse_env_file(&text);
        let get = |k: &str| -> String {
            vars.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("{} lacks {k}=...; its content:\n{text}", path.display()))
        };
        S3Server {
            endpoint: get("S3UPFS_ENDPOINT"),
            bucket: get("S3UPFS_BUCKET"),
            access_key: get("AWS_ACCESS_KEY_ID"),
            secret_key: get("AWS_SECRET_ACCESS_KEY"),
            region: get("AWS_REGION"),
            garage: None,
        }
    }

    /// `http://127.0.0.1:PORT` of the S3 API.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }
    pub fn bucket(&self) -> String {
        self.bucket.clone()
    }
    pub fn access_key(&self) -> String {
        self.access_key.clone()
    }
    pub fn secret_key(&self) -> String {
        self.secret_key.clone()
    }
    /// `garage` for Garage; whatever the env file says for `--local`.
    pub fn region(&self) -> String {
        self.region.clone()
    }
    /// True for `S3Server::garage()`, false for the embedded `--local` server.
    pub fn is_garage(&self) -> bool {
        self.garage.is_some()
    }
    /// `http://127.0.0.1:PORT` of Garage's admin API (`/metrics`, `/health`, `/v2/...`);
    /// `None` for `--local`.
    pub fn admin_endpoint(&self) -> Option<String> {
        self.garage
            .as_ref()
            .map(|g| format!("http://127.0.0.1:{}", g.admin_port))
    }
    /// Bearer token for Garage's admin API (`/v2/...` endpoints).
    pub fn admin_token(&self) -> Option<String> {
        self.garage.as_ref().map(|g| g.admin_token.clone())
    }
    /// Garage's stdout+stderr (appended across restarts); `None` for `--local`.
    pub fn log_path(&self) -> Option<PathBuf> {
        self.garage.as_ref().map(|g| g.log_path.clone())
    }
    /// Garage's log so far (empty for `--local`).
    pub fn log(&self) -> String {
        self.log_path().map(|p| read_lossy(&p)).unwrap_or_default()
    }
    /// Garage's config file and data live under this dir; `None` for `--local`.
    pub fn dir(&self) -> Option<PathBuf> {
        self.garage.as_ref().map(|g| g.root.clone())
    }
    /// The Garage process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.garage
            .as_ref()
            .and_then(|g| g.child.as_ref())
            .map(|c| c.id())
    }
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// A fresh blocking client for this server's bucket (standard retries).
    pub fn client(&self) -> S3Check {
        S3Check::new(
            &self.endpoint,
            &self.region,
            &self.access_key,
            &self.secret_key,
            &self.bucket,
            true,
        )
    }

    /// A blocking client that does not retry and gives up quickly: for probing a server that
    /// may be down or frozen.
    pub fn client_no_retry(&self) -> S3Check {
        S3Check::new(
            &self.endpoint,
            &self.region,
            &self.access_key,
            &self.secret_key,
            &self.bucket,
            false,
        )
    }

    /// Whether one ListObjectsV2 on the bucket succeeds right now (no retries, ~5 s bound).
    pub fn is_reachable(&self) -> bool {
        self.client_no_retry().try_list_page("", 1).is_ok()
    }

    /// Kills Garage (SIGKILL, so it is gone at once: connections are refused from now on) and
    /// reaps it. Ports, data and key stay, for [`S3Server::start`]. No-op when stopped.
    pub fn stop(&mut self) {
        let g = self.garage_mut();
        if let Some(mut child) = g.child.take() {
            let _ = child.kill();
            child.wait().expect("waiting for the killed Garage process");
        }
    }

    /// Restarts a stopped Garage on the same ports and data dir and waits until the bucket
    /// answers again. Panics with the log on failure. No-op when running.
    pub fn start(&mut self) {
        if self.garage_mut().child.is_some() {
            return;
        }
        if let Err(msg) = self.try_start() {
            panic!("restarting Garage failed: {msg}");
        }
    }

    /// Alias of [`S3Server::stop`].
    pub fn pause(&mut self) {
        self.stop();
    }
    /// Alias of [`S3Server::start`].
    pub fn resume(&mut self) {
        self.start();
    }

    /// SIGSTOP: the process stays, its ports keep accepting TCP connections but nothing
    /// answers (a hung server, as opposed to `stop()`'s refused connections).
    pub fn freeze(&self) {
        self.signal_garage(libc::SIGSTOP);
    }
    /// SIGCONT after [`S3Server::freeze`].
    pub fn thaw(&self) {
        self.signal_garage(libc::SIGCONT);
    }

    /// The Prometheus text of Garage's admin `/metrics`.
    pub fn metrics(&self) -> String {
        let g = self
            .garage
            .as_ref()
            .expect("metrics() needs a Garage server, not --local");
        let (status, body) = http_get(g.admin_port, "/metrics", Some(&g.admin_token))
            .unwrap_or_else(|e| panic!("GET /metrics from Garage's admin API: {e}"));
        assert_eq!(status, 200, "GET /metrics answered {status}: {body}");
        body
    }

    /// S3 requests Garage counted so far, by API endpoint (`PutObject`, `UploadPart`,
    /// `CompleteMultipartUpload`, ...), from `api_s3_request_counter` in `/metrics`.
    pub fn s3_request_counts(&self) -> HashMap<String, u64> {
        parse_request_counter(&self.metrics(), "api_s3_request_counter")
    }

    fn garage_mut(&mut self) -> &mut Garage {
        self.garage
            .as_mut()
            .expect("this needs a Garage server (S3Server::garage()), not --local")
    }

    fn signal_garage(&self, sig: libc::c_int) {
        let pid = self.pid().expect("Garage is not running");
        send_signal(pid, sig).unwrap_or_else(|e| panic!("signal {sig} to Garage {pid}: {e}"));
    }

    /// Spawns Garage and waits until ListObjectsV2 on the bucket works. On failure the process
    /// is killed and the error carries the log's tail.
    fn try_start(&mut self) -> Result<(), String> {
        let (access_key, secret_key, bucket) = (
            self.access_key.clone(),
            self.secret_key.clone(),
            self.bucket.clone(),
        );
        let probe = self.client_no_retry();
        let g = self.garage_mut();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&g.log_path)
            .map_err(|e| format!("opening {}: {e}", g.log_path.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cloning the log fd: {e}"))?;
        let child = Command::new(&g.bin)
            .arg("-c")
            .arg(&g.config_path)
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &access_key)
            .env("GARAGE_DEFAULT_SECRET_KEY", &secret_key)
            .env("GARAGE_DEFAULT_BUCKET", &bucket)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("S3UPFS_GARAGE_LOG").unwrap_or_else(|_| "garage=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: a Ctrl-C meant for the test runner is handled by us.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", g.bin.display()))?;
        g.child = Some(child);

        let started = Instant::now();
        loop {
            let g = self.garage_mut();
            let child = g.child.as_mut().expect("child was just stored");
            match child.try_wait() {
                Ok(Some(status)) => {
                    g.child = None;
                    return Err(format!(
                        "garage exited with {status} before answering; log {}:\n{}",
                        g.log_path.display(),
                        tail(&read_lossy(&g.log_path), 60)
                    ));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("try_wait on garage: {e}")),
            }
            let last_err = match probe.try_list_page("", 1) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if started.elapsed() > GARAGE_START_TIMEOUT {
                let log_path = g.log_path.clone();
                self.stop();
                return Err(format!(
                    "garage did not answer ListObjectsV2 on {} within {:?} (last error: \
                     {last_err}); log {}:\n{}",
                    self.endpoint,
                    GARAGE_START_TIMEOUT,
                    log_path.display(),
                    tail(&read_lossy(&log_path), 60)
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Garage {
    fn write_config(&self) {
        let config = format!(
            r#"metadata_dir = "{root}/meta"
data_dir = "{root}/data"
db_engine = "lmdb"
metadata_fsync = false
data_fsync = false
compression_level = "none"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{token}"
"#,
            root = self.root.display(),
            rpc = self.rpc_port,
            s3 = self.s3_port,
            admin = self.admin_port,
            secret = self.rpc_secret,
            token = self.admin_token,
        );
        fs::write(&self.config_path, config)
            .unwrap_or_else(|e| panic!("writing {}: {e}", self.config_path.display()));
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let Some(g) = self.garage.as_mut() else {
            return;
        };
        if let Some(mut child) = g.child.take() {
            let _ = child.kill();
            if let Err(e) = child.wait() {
                eprintln!("harness: waiting for Garage (pid {}): {e}", child.id());
            }
        }
        if thread::panicking() {
            eprintln!(
                "---- Garage log {} (tail) ----\n{}",
                g.log_path.display(),
                tail(&read_lossy(&g.log_path), 40)
            );
        }
        if keep_test_dirs()
            && let Some(dir) = g.dir.take()
        {
            eprintln!("harness: keeping Garage dir {}", dir.keep().display());
        }
    }
}

/// The Garage binary: `$S3UPFS_GARAGE_BIN`, else the cache of scripts/install-garage.sh.
pub fn garage_bin() -> PathBuf {
    cached_tool(
        "S3UPFS_GARAGE_BIN",
        &format!("garage-{GARAGE_VERSION}/bin/garage"),
        "scripts/install-garage.sh (about 17 min, once)",
    )
}

/// A tool an install script put in `~/.cache/s3upfs` (or `$S3UPFS_CACHE`): `$env_var`
/// when set, else `path` below the cache; a clear panic naming the script when missing.
pub fn cached_tool(env_var: &str, path: &str, install: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{env_var}={} does not exist; unset it or run {install}",
            p.display()
        );
        return p;
    }
    let cache = match std::env::var_os("S3UPFS_CACHE") {
        Some(c) => PathBuf::from(c),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is not set")).join(".cache/s3upfs")
        }
    };
    let p = cache.join(path);
    assert!(
        p.is_file(),
        "{} not found: run {install} or set {env_var}",
        p.display()
    );
    p
}

fn parse_env_file(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        vars.insert(k.trim().to_string(), v.to_string());
    }
    vars
}

/// Sums a Prometheus counter by its `api_endpoint` label.
fn parse_request_counter(metrics: &str, name: &str) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some(labels_end) = rest.find('}') else {
            continue;
        };
        if !rest.starts_with('{') {
            continue;
        }
        let labels = &rest[1..labels_end];
        let value = rest[labels_end + 1..].trim();
        let Some(endpoint) = labels.split(',').find_map(|l| {
            l.trim()
                .strip_prefix("api_endpoint=\"")
                .and_then(|v| v.strip_suffix('"'))
        }) else {
            continue;
        };
        let n = value.parse::<f64>().unwrap_or(0.0) as u64;
        *counts.entry(endpoint.to_string()).or_insert(0) += n;
    }
    counts
}

/// A minimal HTTP/1.0 GET on 127.0.0.1:port: (status, body).
fn http_get(port: u16, path: &str, bearer: Option<&str>) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad HTTP response: {head}")))?;
    Ok((status, body.to_string()))
}

// ---------------------------------------------------------------------------------------------
// S3Check
// ---------------------------------------------------------------------------------------------

/// What HeadObject says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadInfo {
    pub size: u64,
    /// As the server sent it, quotes included (multipart ETags end in `-N`).
    pub etag: String,
    /// User metadata (`x-amz-meta-*`), keys without the prefix.
    pub metadata: HashMap<String, String>,
    pub content_type: Option<String>,
}

/// Blocking wrapper around an aws-sdk-s3 client bound to one bucket (own tokio runtime,
/// path-style, static credentials, checksums only when required). Failures other than
/// "not found" panic with the SDK's full error context.
pub struct S3Check {
    client: Client,
    bucket: String,
    rt: tokio::runtime::Runtime,
}

impl S3Check {
    pub fn new(
        endpoint: &str,
        region: &str,
        access_key: &str,
        secret_key: &str,
        bucket: &str,
        retries: bool,
    ) -> S3Check {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("building the S3Check tokio runtime");
        let (retry, timeouts) = if retries {
            (
                RetryConfig::standard().with_max_attempts(3),
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(120))
                    .build(),
            )
        } else {
            (
                RetryConfig::disabled(),
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_timeout(Duration::from_secs(5))
                    .build(),
            )
        };
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                access_key,
                secret_key,
                None,
                None,
                "s3upfs-tests",
            ))
            .retry_config(retry)
            .timeout_config(timeouts)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        S3Check {
            client: Client::from_conf(config),
            bucket: bucket.to_string(),
            rt,
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
    /// The underlying client, for calls not wrapped here (use with [`S3Check::block_on`]).
    pub fn sdk(&self) -> &Client {
        &self.client
    }
    /// Runs a future on this client's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The object's bytes, `None` if there is no such key.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.try_get(key)
            .unwrap_or_else(|e| panic!("GetObject {}/{key}: {e}", self.bucket))
    }

    /// Like [`S3Check::get`], errors returned instead of panicking.
    pub fn try_get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.rt.block_on(async {
            let resp = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await;
            match resp {
                Ok(out) => {
                    let body =
                        out.body.collect().await.map_err(|e| {
                            format!("reading the body: {}", DisplayErrorContext(&e))
                        })?;
                    Ok(Some(body.into_bytes().to_vec()))
                }
                Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => Ok(None),
                Err(e) => Err(DisplayErrorContext(&e).to_string()),
            }
        })
    }

    /// Bytes `start..end` (end exclusive) of the object.
    pub fn get_range(&self, key: &str, start: u64, end: u64) -> Vec<u8> {
        assert!(end > start, "get_range({key}, {start}, {end}): empty range");
        self.rt.block_on(async {
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .range(format!("bytes={start}-{}", end - 1))
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "GetObject {}/{key} range {start}..{end}: {}",
                        self.bucket,
                        DisplayErrorContext(&e)
                    )
                });
            out.body
                .collect()
                .await
                .unwrap_or_else(|e| panic!("reading {key}: {}", DisplayErrorContext(&e)))
                .into_bytes()
                .to_vec()
        })
    }

    /// HeadObject, `None` if there is no such key.
    pub fn head(&self, key: &str) -> Option<HeadInfo> {
        self.rt.block_on(async {
            let resp = self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await;
            match resp {
                Ok(out) => Some(HeadInfo {
                    size: out.content_length().unwrap_or(0).max(0) as u64,
                    etag: out.e_tag().unwrap_or_default().to_string(),
                    metadata: out.metadata().cloned().unwrap_or_default(),
                    content_type: out.content_type().map(str::to_string),
                }),
                Err(SdkError::ServiceError(e)) if e.err().is_not_found() => None,
                Err(e) => panic!(
                    "HeadObject {}/{key}: {}",
                    self.bucket,
                    DisplayErrorContext(&e)
                ),
            }
        })
    }

    pub fn exists(&self, key: &str) -> bool {
        self.head(key).is_some()
    }

    /// The object's CRC32C as the server reports it (HEAD with checksum mode), if any.
    pub fn checksum_crc32c(&self, key: &str) -> Option<String> {
        self.rt.block_on(async {
            let out = self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                .send()
                .await
                .unwrap_or_else(|e| panic!("HeadObject {key}: {}", DisplayErrorContext(&e)));
            out.checksum_crc32_c().map(str::to_owned)
        })
    }

    /// PutObject with a CRC32C checksum, as a tool that keeps one writes it.
    pub fn put_crc32c(&self, key: &str, bytes: impl Into<Vec<u8>>) {
        let bytes: Vec<u8> = bytes.into();
        self.rt.block_on(async {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .checksum_crc32_c(aws_smithy_types::base64::encode(
                    crc32c::crc32c(&bytes).to_be_bytes(),
                ))
                .body(ByteStream::from(bytes))
                .send()
                .await
                .unwrap_or_else(|e| panic!("PutObject {key}: {}", DisplayErrorContext(&e)));
        });
    }

    pub fn put(&self, key: &str, bytes: impl Into<Vec<u8>>) {
        self.put_with_metadata(key, bytes, &[]);
    }

    /// PutObject with user metadata (`x-amz-meta-NAME: VALUE` for each pair).
    pub fn put_with_metadata(&self, key: &str, bytes: impl Into<Vec<u8>>, meta: &[(&str, &str)]) {
        self.put_with_headers(key, bytes, meta, None);
    }

    /// PutObject with user metadata and a Content-Type, as another S3 client writes.
    pub fn put_with_headers(
        &self,
        key: &str,
        bytes: impl Into<Vec<u8>>,
        meta: &[(&str, &str)],
        content_type: Option<&str>,
    ) {
        let bytes: Vec<u8> = bytes.into();
        self.rt.block_on(async {
            let mut req = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .set_content_type(content_type.map(str::to_owned))
                .body(ByteStream::from(bytes));
            for (k, v) in meta {
                req = req.metadata(*k, *v);
            }
            req.send().await.unwrap_or_else(|e| {
                panic!(
                    "PutObject {}/{key}: {}",
                    self.bucket,
                    DisplayErrorContext(&e)
                )
            });
        });
    }

    /// DeleteObject (succeeds for a missing key too, as S3 does).
    pub fn delete(&self, key: &str) {
        self.rt.block_on(async {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "DeleteObject {}/{key}: {}",
                        self.bucket,
                        DisplayErrorContext(&e)
                    )
                });
        });
    }

    /// Every key under `prefix` (all pages), in the server's (lexicographic) order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.list_with_sizes(prefix)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// Every (key, size) under `prefix` (all pages).
    pub fn list_with_sizes(&self, prefix: &str) -> Vec<(String, u64)> {
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let resp = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "ListObjectsV2 {} prefix {prefix:?}: {}",
                            self.bucket,
                            DisplayErrorContext(&e)
                        )
                    });
                for o in resp.contents() {
                    out.push((
                        o.key().unwrap_or_default().to_string(),
                        o.size().unwrap_or(0).max(0) as u64,
                    ));
                }
                match resp.next_continuation_token() {
                    Some(t) if resp.is_truncated().unwrap_or(false) => token = Some(t.into()),
                    _ => break,
                }
            }
            out
        })
    }

    /// One ListObjectsV2 page of at most `max_keys` keys, errors returned.
    pub fn try_list_page(&self, prefix: &str, max_keys: i32) -> Result<Vec<String>, String> {
        self.rt.block_on(async {
            let resp = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .max_keys(max_keys)
                .send()
                .await
                .map_err(|e| DisplayErrorContext(&e).to_string())?;
            Ok(resp
                .contents()
                .iter()
                .map(|o| o.key().unwrap_or_default().to_string())
                .collect())
        })
    }

    /// Every in-progress multipart upload in the bucket: (key, upload id), all pages.
    pub fn list_multipart_uploads(&self) -> Vec<(String, String)> {
        self.rt.block_on(async {
            let mut out = Vec::new();
            let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
            loop {
                let resp = self
                    .client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .set_key_marker(key_marker.take())
                    .set_upload_id_marker(id_marker.take())
                    .send()
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "ListMultipartUploads {}: {}",
                            self.bucket,
                            DisplayErrorContext(&e)
                        )
                    });
                for u in resp.uploads() {
                    out.push((
                        u.key().unwrap_or_default().to_string(),
                        u.upload_id().unwrap_or_default().to_string(),
                    ));
                }
                if !resp.is_truncated().unwrap_or(false) {
                    break;
                }
                key_marker = resp.next_key_marker().map(str::to_string);
                id_marker = resp.next_upload_id_marker().map(str::to_string);
                if key_marker.is_none() && id_marker.is_none() {
                    break;
                }
            }
            out
        })
    }

    /// The parts uploaded so far: (part number, size), all pages.
    pub fn list_parts(&self, key: &str, upload_id: &str) -> Vec<(i32, u64)> {
        self.list_parts_with_etags(key, upload_id)
            .into_iter()
            .map(|(n, size, _)| (n, size))
            .collect()
    }

    /// The parts uploaded so far: (part number, size, etag), all pages.
    pub fn list_parts_with_etags(&self, key: &str, upload_id: &str) -> Vec<(i32, u64, String)> {
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut marker: Option<String> = None;
            loop {
                let resp = self
                    .client
                    .list_parts()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .set_part_number_marker(marker.take())
                    .send()
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "ListParts {}/{key} upload {upload_id}: {}",
                            self.bucket,
                            DisplayErrorContext(&e)
                        )
                    });
                for p in resp.parts() {
                    out.push((
                        p.part_number().unwrap_or(0),
                        p.size().unwrap_or(0).max(0) as u64,
                        p.e_tag().unwrap_or_default().to_string(),
                    ));
                }
                match resp.next_part_number_marker() {
                    Some(m) if resp.is_truncated().unwrap_or(false) => marker = Some(m.into()),
                    _ => break,
                }
            }
            out
        })
    }

    /// CreateMultipartUpload: the upload id.
    pub fn create_multipart(&self, key: &str) -> String {
        self.rt.block_on(async {
            let out = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "CreateMultipartUpload {}/{key}: {}",
                        self.bucket,
                        DisplayErrorContext(&e)
                    )
                });
            out.upload_id()
                .unwrap_or_else(|| panic!("CreateMultipartUpload {key}: no upload id"))
                .to_string()
        })
    }

    /// UploadPart: the part's ETag.
    pub fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        bytes: impl Into<Vec<u8>>,
    ) -> String {
        let bytes: Vec<u8> = bytes.into();
        self.rt.block_on(async {
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "UploadPart {}/{key} upload {upload_id} part {part_number}: {}",
                        self.bucket,
                        DisplayErrorContext(&e)
                    )
                });
            out.e_tag().unwrap_or_default().to_string()
        })
    }

    /// CompleteMultipartUpload with (part number, etag) pairs: the object's ETag.
    pub fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> String {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(etag).build())
                    .collect(),
            ))
            .build();
        self.rt.block_on(async {
            let out = self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(completed)
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "CompleteMultipartUpload {}/{key} upload {upload_id}: {}",
                        self.bucket,
                        DisplayErrorContext(&e)
                    )
                });
            out.e_tag().unwrap_or_default().to_string()
        })
    }

    /// AbortMultipartUpload.
    pub fn abort(&self, key: &str, upload_id: &str) {
        self.rt.block_on(async {
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "AbortMultipartUpload {}/{key} upload {upload_id}: {}",
                        self.bucket,
                        DisplayErrorContext(&e)
                    )
                });
        });
    }

    /// Aborts every in-progress multipart upload; returns how many there were.
    pub fn abort_all_multipart(&self) -> usize {
        let uploads = self.list_multipart_uploads();
        for (key, id) in &uploads {
            self.abort(key, id);
        }
        uploads.len()
    }
}

// ---------------------------------------------------------------------------------------------
// Mount
// ---------------------------------------------------------------------------------------------

/// The real `s3upfs` binary mounted (in `--foreground`) on a fresh temp dir.
///
/// Temp dir layout: `mnt/` (the mountpoint), `daemon.log` (stdout+stderr), `local/` (data of
/// `Mount::local`). Dropping (or [`Mount::unmount`]) unmounts — `fusermount3 -u`, falling back
/// to lazy unmounts, so a killed daemon's dead mount goes too — waits for the daemon (killing
/// it after [`DAEMON_EXIT_TIMEOUT`]) and removes the temp dir (kept if still mounted).
pub struct Mount {
    dir: Option<TempDir>,
    root: PathBuf,
    mountpoint: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    pid: u32,
    status: Option<ExitStatus>,
    /// The last signal sent with [`Mount::kill`] (0: none).
    last_signal: AtomicI32,
    cleaned_up: bool,
}

impl Mount {
    /// `s3upfs mount s3://BUCKET/ MNT --endpoint-url .. --region .. --force-path-style
    /// --foreground --log-level debug EXTRA...` with the server's credentials in the env.
    pub fn new(server: &S3Server, extra_args: &[&str]) -> Mount {
        Mount::with_env(server, "", extra_args, &[])
    }

    /// Like [`Mount::new`] on `s3://BUCKET/PREFIX` (e.g. `"some/prefix/"`).
    pub fn with_prefix(server: &S3Server, prefix: &str, extra_args: &[&str]) -> Mount {
        Mount::with_env(server, prefix, extra_args, &[])
    }

    /// Like [`Mount::with_prefix`], plus environment variables for the daemon (applied last;
    /// a value of `""` removes the variable, e.g. `("AWS_ACCESS_KEY_ID", "")`).
    pub fn with_env(
        server: &S3Server,
        prefix: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Mount {
        Mount::try_with_env(server, prefix, extra_args, env)
            .unwrap_or_else(|e| panic!("mounting s3upfs failed: {e}"))
    }

    /// Like [`Mount::with_env`], but a daemon that exits (or never mounts) is an `Err` with
    /// its exit status and log, for tests that expect the mount to be refused.
    pub fn try_with_env(
        server: &S3Server,
        prefix: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Mount, String> {
        let pending = PendingMount::new();
        let uri = format!(
            "s3://{}/{}",
            server.bucket(),
            prefix.trim_start_matches('/')
        );
        let mut cmd = pending.command();
        cmd.arg("mount")
            .arg(&uri)
            .arg(&pending.mountpoint)
            .args(["--endpoint-url", &server.endpoint()])
            .args(["--region", &server.region()])
            .args(["--force-path-style", "--foreground", "--log-level", "debug"])
            // The resume journal in the test's own directory (a test that remounts
            // with the same journal passes its own --state-dir, which wins).
            .arg("--state-dir")
            .arg(pending.root.join("state"))
            .args(extra_args)
            .env("AWS_ACCESS_KEY_ID", server.access_key())
            .env("AWS_SECRET_ACCESS_KEY", server.secret_key());
        apply_env(&mut cmd, env);
        pending.spawn_and_wait(cmd)
    }

    /// `s3upfs mount --local DIR MNT --foreground --log-level debug EXTRA...`, then the
    /// embedded server's coordinates from `DIR/.s3upfs-local.env`.
    pub fn local(extra_args: &[&str]) -> (Mount, S3Server) {
        Mount::try_local(extra_args, &[])
            .unwrap_or_else(|e| panic!("mounting s3upfs --local failed: {e}"))
    }

    /// Like [`Mount::local`], with extra env and the failure returned.
    pub fn try_local(
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<(Mount, S3Server), String> {
        let pending = PendingMount::new();
        let local_dir = pending.root.join("local");
        fs::create_dir(&local_dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", local_dir.display()));
        let mut cmd = pending.command();
        cmd.arg("mount")
            .arg("--local")
            .arg(&local_dir)
            .arg(&pending.mountpoint)
            .args(["--foreground", "--log-level", "debug"])
            .arg("--state-dir")
            .arg(pending.root.join("state"))
            .args(extra_args);
        apply_env(&mut cmd, env);
        let mount = pending.spawn_and_wait(cmd)?;
        // The env file should exist once mounted; allow a moment in case it is written after.
        let env_file = local_dir.join(LOCAL_ENV_FILE);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !env_file.is_file() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not appear after mounting; daemon log:\n{}",
                    env_file.display(),
                    mount.log()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        let server = S3Server::local_from_env_file(&env_file);
        Ok((mount, server))
    }

    /// The mountpoint (canonical path).
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }
    /// `mountpoint/rel`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mountpoint.join(rel)
    }
    /// The temp dir holding `mnt/`, `daemon.log` and (for `--local`) `local/`.
    pub fn dir(&self) -> &Path {
        &self.root
    }
    /// The `--local` data dir (exists only for [`Mount::local`]).
    pub fn local_dir(&self) -> PathBuf {
        self.root.join("local")
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    /// The daemon's stdout+stderr so far.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }
    /// Waits (polling) until the log contains `needle`; false on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Sends `signal` (e.g. `libc::SIGKILL`, `libc::SIGTERM`) to the daemon. A killed
    /// daemon's dead mount is still unmounted by `unmount()`/drop.
    pub fn kill(&self, signal: libc::c_int) {
        if self.status.is_some() {
            panic!(
                "kill({signal}): the daemon (pid {}) was already reaped",
                self.pid
            );
        }
        send_signal(self.pid, signal)
            .unwrap_or_else(|e| panic!("kill({signal}) on the daemon pid {}: {e}", self.pid));
        self.last_signal.store(signal, Ordering::SeqCst);
    }
    /// Whether the mountpoint is currently a FUSE mount (a dead one counts too).
    pub fn is_mounted(&self) -> bool {
        is_fuse_mounted(&self.mountpoint)
    }
    /// The daemon's exit status if it has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(child) = self.child.as_mut()
            && let Ok(Some(st)) = child.try_wait()
        {
            self.status = Some(st);
            self.child = None;
        }
        self.status
    }
    /// Waits up to `timeout` for the daemon to exit on its own (e.g. after SIGTERM).
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    /// `bash -c CMD` with `$MNT` set to the mountpoint (see [`sh`]).
    pub fn sh(&self, cmd: &str) -> Output {
        sh_env(cmd, &[("MNT", self.mountpoint.as_os_str())], SH_TIMEOUT)
    }
    /// [`Mount::sh`] that must succeed: its stdout.
    pub fn sh_ok(&self, cmd: &str) -> String {
        let out = self.sh(cmd);
        check_output(cmd, &out, Some(&self.log_path))
    }

    /// Unmounts (`fusermount3 -u`, then lazy fallbacks), waits for the daemon to exit (killing
    /// it after [`DAEMON_EXIT_TIMEOUT`]) and returns its exit status. Panics if the mountpoint
    /// could not be unmounted.
    pub fn unmount(mut self) -> ExitStatus {
        match self.cleanup() {
            Ok(st) => st,
            Err(e) => panic!("unmounting {} failed: {e}", self.mountpoint.display()),
        }
    }

    /// Never panics. Err describes what could not be cleaned up (the temp dir is then kept).
    fn cleanup(&mut self) -> Result<ExitStatus, String> {
        if self.cleaned_up {
            return self.status.ok_or_else(|| "already cleaned up".to_string());
        }
        self.cleaned_up = true;
        let mut notes = Vec::new();
        let signal = self.last_signal.load(Ordering::SeqCst);
        if matches!(
            signal,
            libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT | libc::SIGKILL
        ) {
            // A daemon told to stop unmounts itself: let it, rather than racing it (its own
            // unmount would fail if ours came first).
            if self.wait_for_exit(DAEMON_EXIT_TIMEOUT).is_none() {
                notes.push(format!(
                    "daemon pid {} still running {DAEMON_EXIT_TIMEOUT:?} after signal {signal}",
                    self.pid
                ));
            }
        } else if matches!(
            signal,
            libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
        ) {
            let _ = send_signal(self.pid, libc::SIGCONT);
        }
        let mut clean_unmount = true;
        if is_fuse_mounted(&self.mountpoint) {
            let mp = self.mountpoint.as_os_str();
            let attempts: [(&str, &[&str]); 3] = [
                ("fusermount3", &["-u"]),
                ("fusermount3", &["-u", "-z"]),
                ("umount", &["-l"]),
            ];
            for (i, (prog, args)) in attempts.iter().enumerate() {
                let mut c = Command::new(prog);
                c.args(*args).arg(mp);
                match output_with_timeout(c, Duration::from_secs(30)) {
                    Ok((out, timed_out)) => {
                        if !out.status.success() || timed_out {
                            notes.push(format!(
                                "{prog} {}: {}{} {}",
                                args.join(" "),
                                out.status,
                                if timed_out { " (timed out)" } else { "" },
                                String::from_utf8_lossy(&out.stderr).trim()
                            ));
                        }
                    }
                    Err(e) => notes.push(format!("{prog}: {e}")),
                }
                if !is_fuse_mounted(&self.mountpoint) {
                    break;
                }
                if i == 0 {
                    clean_unmount = false;
                }
            }
            if is_fuse_mounted(&self.mountpoint) {
                let c = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes());
                if let Ok(c) = c {
                    // SAFETY: a valid NUL-terminated path.
                    let r = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                    if r != 0 {
                        notes.push(format!(
                            "umount2(MNT_DETACH): {}",
                            io::Error::last_os_error()
                        ));
                    }
                }
            }
        }
        // The daemon exits once its FUSE session ends; give it less time if the mount had to be
        // detached lazily (something still holds it open).
        let wait = if clean_unmount {
            DAEMON_EXIT_TIMEOUT
        } else {
            Duration::from_secs(5)
        };
        let status = match self.child.take() {
            Some(mut child) => {
                let deadline = Instant::now() + wait;
                loop {
                    match child.try_wait() {
                        Ok(Some(st)) => break Some(st),
                        Ok(None) if Instant::now() < deadline => {
                            thread::sleep(Duration::from_millis(20))
                        }
                        Ok(None) => {
                            notes.push(format!(
                                "daemon pid {} still running {wait:?} after unmount: killed",
                                self.pid
                            ));
                            let _ = child.kill();
                            break child.wait().ok();
                        }
                        Err(e) => {
                            notes.push(format!("try_wait on the daemon: {e}"));
                            let _ = child.kill();
                            break child.wait().ok();
                        }
                    }
                }
            }
            None => self.status,
        };
        self.status = status;
        let still_mounted = is_fuse_mounted(&self.mountpoint);
        if still_mounted {
            notes.push("still mounted: keeping the temp dir".into());
        }
        if (still_mounted || keep_test_dirs())
            && let Some(dir) = self.dir.take()
        {
            eprintln!("harness: keeping mount dir {}", dir.keep().display());
        }
        match status {
            Some(st) if !still_mounted => {
                if !notes.is_empty() {
                    eprintln!(
                        "harness: unmount {}: {}",
                        self.mountpoint.display(),
                        notes.join("; ")
                    );
                }
                Ok(st)
            }
            _ => Err(format!(
                "{}; daemon log {}:\n{}",
                notes.join("; "),
                self.log_path.display(),
                tail(&self.log(), 40)
            )),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        if !self.cleaned_up
            && let Err(e) = self.cleanup()
        {
            eprintln!(
                "harness: cleaning up the mount {}: {e}",
                self.mountpoint.display()
            );
        }
        if panicking {
            eprintln!(
                "---- s3upfs daemon log {} (tail) ----\n{}",
                self.log_path.display(),
                tail(&self.log(), 80)
            );
        }
    }
}

/// A temp dir with an empty mountpoint, before the daemon runs.
struct PendingMount {
    dir: TempDir,
    root: PathBuf,
    mountpoint: PathBuf,
    log_path: PathBuf,
}

impl PendingMount {
    fn new() -> PendingMount {
        let dir = make_temp_dir("s3upfs-mount-");
        let root = canonical(dir.path());
        let mountpoint = root.join("mnt");
        fs::create_dir(&mountpoint)
            .unwrap_or_else(|e| panic!("creating {}: {e}", mountpoint.display()));
        PendingMount {
            log_path: root.join("daemon.log"),
            mountpoint,
            root,
            dir,
        }
    }

    /// The binary with an environment that cannot see the machine's AWS profile.
    fn command(&self) -> Command {
        let mut cmd = Command::new(s3upfs_bin());
        isolate_aws_env(&mut cmd, &self.root);
        cmd.env("RUST_BACKTRACE", "1");
        cmd
    }

    fn spawn_and_wait(self, mut cmd: Command) -> Result<Mount, String> {
        let log = File::create(&self.log_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", self.log_path.display()));
        let log2 = log.try_clone().expect("cloning the daemon log fd");
        cmd.stdin(Stdio::null()).stdout(log2).stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {:?}: {e}", cmd.get_program()));
        let mut mount = Mount {
            pid: child.id(),
            child: Some(child),
            dir: Some(self.dir),
            root: self.root,
            mountpoint: self.mountpoint,
            log_path: self.log_path,
            status: None,
            last_signal: AtomicI32::new(0),
            cleaned_up: false,
        };
        let started = Instant::now();
        loop {
            if mount.is_mounted() {
                return Ok(mount);
            }
            if let Some(st) = mount.try_wait() {
                // `mount` drops here: nothing mounted, the temp dir goes.
                return Err(format!(
                    "the daemon exited with {st} before mounting; command {cmd:?}; log:\n{}",
                    mount.log()
                ));
            }
            if started.elapsed() > MOUNT_TIMEOUT {
                let log = mount.log();
                let (pid, mp) = (mount.pid, mount.mountpoint.clone());
                drop(mount); // kills the daemon (and unmounts if it mounted meanwhile)
                return Err(format!(
                    "{} not mounted within {MOUNT_TIMEOUT:?} (daemon pid {pid} killed); \
                     command {cmd:?}; log:\n{log}",
                    mp.display()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The `s3upfs` binary cargo built for these tests.
pub fn s3upfs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_s3upfs"))
}

/// Removes every inherited `AWS_*` variable and points the SDK's config/credentials files at
/// nonexistent paths under `dir`, so the machine's own AWS profile never interferes.
fn isolate_aws_env(cmd: &mut Command, dir: &Path) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("AWS_CONFIG_FILE", dir.join("nonexistent-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("nonexistent-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

fn apply_env(cmd: &mut Command, env: &[(&str, &str)]) {
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
}

/// The filesystem type of the mount at `path` ("fuse", "fuse.s3upfs", ...), if any
/// (the last one when mounts are stacked).
pub fn mount_fstype(path: &Path) -> Option<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let target = path.to_string_lossy();
    let mut found = None;
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mp) = left.split(' ').nth(4) else {
            continue;
        };
        if unescape_mountinfo(mp) == target {
            found = right.split(' ').next().map(str::to_string);
        }
    }
    found
}

/// Whether `path` is a FUSE mount right now (alive or dead).
pub fn is_fuse_mounted(path: &Path) -> bool {
    mount_fstype(path).is_some_and(|t| t == "fuse" || t.starts_with("fuse.") || t == "fuseblk")
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------------------------

/// Runs the `s3upfs` binary with `args` (AWS profile isolated as for [`Mount`], then `env`
/// applied; `""` removes a variable), killing it after [`CLI_TIMEOUT`] (the stderr then ends
/// with a `[harness: killed ...]` line). For tests of bad input: it must not mount anything.
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    run_cli_with_timeout(args, env, CLI_TIMEOUT)
}

pub fn run_cli_with_timeout(
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let scratch = make_temp_dir("s3upfs-cli-");
    let mut cmd = Command::new(s3upfs_bin());
    cmd.args(args);
    isolate_aws_env(&mut cmd, scratch.path());
    apply_env(&mut cmd, env);
    let (out, timed_out) = output_with_timeout(cmd, timeout)
        .unwrap_or_else(|e| panic!("running s3upfs {args:?}: {e}"));
    let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if timed_out {
        stderr.push_str(&format!("\n[harness: killed after {timeout:?} timeout]\n"));
    }
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

/// `bash -c CMD` (stdin /dev/null, output captured), killed after [`SH_TIMEOUT`].
pub fn sh(cmd: &str) -> Output {
    sh_env(cmd, &[], SH_TIMEOUT)
}

/// `bash -c CMD` with extra env and a timeout; a timed-out command is killed (its whole
/// process group) and its stderr ends with a `[harness: killed ...]` line.
pub fn sh_env(cmd: &str, env: &[(&str, &std::ffi::OsStr)], timeout: Duration) -> Output {
    let mut c = Command::new("bash");
    c.arg("-c").arg(cmd);
    for (k, v) in env {
        c.env(k, v);
    }
    let (mut out, timed_out) =
        output_with_timeout(c, timeout).unwrap_or_else(|e| panic!("running bash -c {cmd:?}: {e}"));
    if timed_out {
        out.stderr.extend_from_slice(
            format!("\n[harness: killed after {timeout:?} timeout]\n").as_bytes(),
        );
    }
    out
}

/// [`sh`] that must succeed: its stdout (panics with status, stdout and stderr otherwise).
pub fn sh_ok(cmd: &str) -> String {
    let out = sh(cmd);
    check_output(cmd, &out, None)
}

fn check_output(cmd: &str, out: &Output, daemon_log: Option<&Path>) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let log = daemon_log
            .map(|p| format!("\ndaemon log tail:\n{}", tail(&read_lossy(p), 40)))
            .unwrap_or_default();
        panic!(
            "`{cmd}` failed with {}\nstdout:\n{stdout}\nstderr:\n{}{log}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
}

/// After a command exits, how long its output pipes may stay open (held by background
/// processes it left behind, e.g. a daemonized mount) before the output read so far is
/// returned. Such processes are left running; their output keeps being drained.
pub const PIPE_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Spawns `cmd` in its own process group with stdin null and stdout/stderr captured; kills the
/// whole group after `timeout`. Returns the output and whether it timed out. Background
/// processes the command leaves behind are not killed (unless it timed out), and do not block
/// the return for more than [`PIPE_DRAIN_TIMEOUT`].
pub fn output_with_timeout(mut cmd: Command, timeout: Duration) -> io::Result<(Output, bool)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let stdout = spawn_pipe_reader(child.stdout.take().expect("stdout was piped"), tx.clone());
    let stderr = spawn_pipe_reader(child.stderr.take().expect("stderr was piped"), tx);
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() > deadline {
            timed_out = true;
            // SAFETY: plain syscall; the group id is the child's pid (process_group(0)).
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
            break child.wait()?;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let drain_deadline = Instant::now() + PIPE_DRAIN_TIMEOUT;
    for _ in 0..2 {
        let left = drain_deadline.saturating_duration_since(Instant::now());
        if rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let snapshot = |b: &Arc<Mutex<Vec<u8>>>| b.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok((
        Output {
            status,
            stdout: snapshot(&stdout),
            stderr: snapshot(&stderr),
        },
        timed_out,
    ))
}

/// Reads `r` to EOF on its own thread into the returned buffer, then signals `done`.
fn spawn_pipe_reader(
    mut r: impl Read + Send + 'static,
    done: mpsc::Sender<()>,
) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&buf);
    thread::spawn(move || {
        let mut chunk = [0u8; 16384];
        loop {
            match r.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => out
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = done.send(());
    });
    buf
}

/// An `ExitStatus` as `sh`-style text: `exit 3` or `signal 9`.
pub fn describe_status(st: &ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => format!("{st}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Random data
// ---------------------------------------------------------------------------------------------

/// Deterministic, fast pseudo-random bytes (xorshift64*). `random_bytes(m, s)` is a prefix of
/// `random_bytes(n, s)` for m <= n, and [`RandomReader`] streams the same bytes.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    RandomStream::new(seed).fill(&mut v);
    v
}

/// The byte stream behind [`random_bytes`].
pub struct RandomStream {
    state: u64,
    word: [u8; 8],
    used: usize,
}

impl RandomStream {
    pub fn new(seed: u64) -> RandomStream {
        // splitmix64 of the seed: any seed (0 included) gives a nonzero, well-mixed state.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        RandomStream {
            state: if z == 0 { 0x2545_F491_4F6C_DD1D } else { z },
            word: [0; 8],
            used: 8,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn fill(&mut self, mut out: &mut [u8]) {
        if self.used < 8 {
            let n = (8 - self.used).min(out.len());
            out[..n].copy_from_slice(&self.word[self.used..self.used + n]);
            self.used += n;
            out = &mut out[n..];
        }
        let mut chunks = out.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            self.word = self.next_u64().to_le_bytes();
            let n = rest.len();
            rest.copy_from_slice(&self.word[..n]);
            self.used = n;
        }
    }
}

/// `len` bytes of [`random_bytes`]`(len, seed)` as a `Read`, for big files without holding
/// them in memory (`io::copy(&mut RandomReader::new(len, seed), &mut file)`).
pub struct RandomReader {
    stream: RandomStream,
    remaining: u64,
}

impl RandomReader {
    pub fn new(len: u64, seed: u64) -> RandomReader {
        RandomReader {
            stream: RandomStream::new(seed),
            remaining: len,
        }
    }
}

impl Read for RandomReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.remaining) as usize;
        self.stream.fill(&mut buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Writes `random_bytes(len, seed)` to `path` (streaming), returning nothing but panicking
/// with context on failure.
pub fn write_random_file(path: &Path, len: u64, seed: u64) {
    let mut f = File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    let mut r = RandomReader::new(len, seed);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).expect("RandomReader never fails");
        if n == 0 {
            break;
        }
        f.write_all(&buf[..n])
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

/// `n` random bytes from /dev/urandom as lowercase hex (2n chars).
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("reading /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// `N` distinct free TCP ports on 127.0.0.1 (bound to port 0 together, then released).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0"))
        .collect();
    let mut ports = [0u16; N];
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l
            .local_addr()
            .expect("local_addr of a bound listener")
            .port();
    }
    ports
}

/// A temp dir under `$S3UPFS_TEST_TMPDIR` (default: the system temp dir).
pub fn make_temp_dir(prefix: &str) -> TempDir {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    match std::env::var_os("S3UPFS_TEST_TMPDIR") {
        Some(parent) => b.tempdir_in(&parent).unwrap_or_else(|e| {
            panic!(
                "creating a temp dir in {}: {e}",
                Path::new(&parent).display()
            )
        }),
        None => b.tempdir().expect("creating a temp dir"),
    }
}

fn keep_test_dirs() -> bool {
    std::env::var_os("S3UPFS_KEEP_TEST_DIRS").is_some_and(|v| !v.is_empty() && v != "0")
}

fn canonical(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|e| panic!("canonicalizing {}: {e}", p.display()))
}

/// A file's content as text (lossy), or a note saying why it could not be read.
pub fn read_lossy(p: &Path) -> String {
    match fs::read(p) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => format!("<cannot read {}: {e}>", p.display()),
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether a process with this pid exists (a zombie counts).
pub fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn send_signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a pid we spawned.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unmounts (lazily if it must) on drop, so a failed assertion leaves no mount behind.
pub struct Unmount(pub std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if is_fuse_mounted(&self.0) {
            let _ = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg(&self.0)
                .status();
        }
        if is_fuse_mounted(&self.0) {
            let _ = std::process::Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.0)
                .status();
        }
    }
}

/// close(2) with its result (std's File drop ignores it).
pub fn close_checked(file: fs::File) -> io::Result<()> {
    use std::os::fd::IntoRawFd;
    let fd = file.into_raw_fd();
    // SAFETY: fd is owned and closed exactly once.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An `S3Server` that describes Garage's bucket and credentials but the proxy's endpoint, for
/// `Mount` (which passes `--endpoint-url` itself; a second one is refused by clap). The temp
/// dir holds the env file and must outlive the returned value's use.
pub fn via_proxy(
    server: &S3Server,
    proxy: &fault_proxy::FaultProxy,
) -> (S3Server, tempfile::TempDir) {
    let dir = make_temp_dir("s3upfs-proxy-env-");
    let path = dir.path().join("proxy.env");
    fs::write(
        &path,
        format!(
            "S3UPFS_ENDPOINT={}\nS3UPFS_BUCKET={}\nAWS_ACCESS_KEY_ID={}\n\
             AWS_SECRET_ACCESS_KEY={}\nAWS_REGION={}\n",
            proxy.endpoint(),
            server.bucket(),
            server.access_key(),
            server.secret_key(),
            server.region()
        ),
    )
    .expect("writing the proxy env file");
    (S3Server::local_from_env_file(&path), dir)
}
