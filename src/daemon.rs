//! Running a mount: checks the mountpoint, builds the S3 client (or starts the embedded
//! `--local` server), proves the bucket usable, mounts, detaches once the mount is
//! ready, and unmounts cleanly on SIGINT/SIGTERM, aborting unfinished uploads.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::Credentials;
use log::{info, warn};
use s3upfs_local::LocalServer;

use crate::config::{MountConfig, Source};
use crate::fuse::FuseAdapter;
use crate::namespace::{Namespace, NamespaceConfig};
use crate::s3::{Connection, ObjectStore, SdkStore, connect};
use crate::upload::UploadContext;
use crate::upload::journal::Journal;
use crate::upload::resume::Resume;

/// Set in the environment of the detached child: it reports readiness on stdout.
const DAEMON_CHILD_ENV: &str = "S3UPFS_DAEMON_CHILD";
const FUSE_THREADS: usize = 8;
const ATTR_TTL: Duration = Duration::from_secs(1);

/// The SDK and HTTP stack stay at warn: their debug output is noise, and signing
/// details have no place in a log.
const QUIET_MODULES: &[&str] = &[
    "aws_config",
    "aws_sdk_s3",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_runtime",
    "aws_sigv4",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "s3s",
    "s3s_fs",
];

/// The level a record of `target` is logged at, at most.
fn level_for(target: &str, level: log::LevelFilter) -> log::LevelFilter {
    let module = target.split("::").next().unwrap_or(target);
    if QUIET_MODULES.contains(&module) {
        level.min(log::LevelFilter::Warn)
    } else if target.starts_with("fuser::session") {
        // fuser warns "Failed to umount filesystem: Invalid argument" at every clean
        // exit (the kernel unmounted already); its real failures are errors.
        level.min(log::LevelFilter::Error)
    } else if module == "fuser" {
        level.min(log::LevelFilter::Info)
    } else {
        level
    }
}

/// Logs to syslog (journald reads it), for a daemon started by mount(8), fstab or
/// systemd: it has no terminal, and its stderr goes nowhere once mount returns.
struct SyslogLogger {
    level: log::LevelFilter,
    inner: syslog::BasicLogger,
}

impl log::Log for SyslogLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= level_for(metadata.target(), self.level)
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

fn init_logging(level: log::LevelFilter) {
    // SAFETY: isatty only inspects the descriptor.
    let terminal = unsafe { libc::isatty(2) } == 1;
    if std::env::var_os(DAEMON_CHILD_ENV).is_some() && !terminal {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "s3upfs".into(),
            pid: std::process::id(),
        };
        if let Ok(logger) = syslog::unix(formatter) {
            let logger = SyslogLogger {
                level,
                inner: syslog::BasicLogger::new(logger),
            };
            if log::set_boxed_logger(Box::new(logger)).is_ok() {
                log::set_max_level(level);
                return;
            }
        }
    }
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level);
    for module in QUIET_MODULES {
        builder.filter_module(module, level_for(module, level));
    }
    let _ = builder
        .filter_module("fuser", level_for("fuser", level))
        .filter_module("fuser::session", level_for("fuser::session", level))
        .format_timestamp_millis()
        .try_init();
}

/// The mountpoint must be an existing, empty directory. A dead mount left by a killed
/// daemon (ENOTCONN) is detached first, so remounting needs no manual step.
fn check_mountpoint(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            warn!(
                "{} is a dead mount left by an earlier s3upfs; detaching it",
                path.display()
            );
            detach(path).map_err(|e| {
                format!(
                    "mountpoint {} is a dead mount and detaching it failed ({e}); run: fusermount3 -u {}",
                    path.display(),
                    path.display()
                )
            })?;
            check_mountpoint_once(path)
        }
        _ => check_mountpoint_once(path),
    }
}

fn check_mountpoint_once(path: &Path) -> Result<(), String> {
    let metadata = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("mountpoint {} does not exist", path.display())
        } else {
            format!("mountpoint {}: {e}", path.display())
        }
    })?;
    if !metadata.is_dir() {
        return Err(format!("mountpoint {} is not a directory", path.display()));
    }
    let mut entries =
        std::fs::read_dir(path).map_err(|e| format!("mountpoint {}: {e}", path.display()))?;
    if entries.next().is_some() {
        return Err(format!(
            "mountpoint {} is not empty (mounting would hide its files)",
            path.display()
        ));
    }
    Ok(())
}

/// Lazily detaches a mount (as root directly, otherwise through fusermount3).
fn detach(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: c_path is a valid NUL-terminated string for the duration of the call.
    if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let status = Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "fusermount3 exited with {status}"
        )))
    }
}

/// Starts the same command in the foreground, detached, and waits until it reports the
/// mount ready (exit 0) or failed (its one-line reason, exit 1).
fn detach_and_wait(config: &MountConfig) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let mut args: Vec<std::ffi::OsString> = config.args.iter().skip(1).cloned().collect();
    args.push("--foreground".into());
    let mut command = Command::new(exe);
    command
        .args(args)
        .env(DAEMON_CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    // SAFETY: setsid is async-signal-safe and only detaches from the terminal's session.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| "cannot talk to the daemon".to_owned())?;
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    match line.trim_end().strip_prefix("ready") {
        Some(_) => Ok(()),
        None => {
            let _ = child.wait();
            let reason = line.trim_end().strip_prefix("error: ").unwrap_or("");
            if reason.is_empty() {
                Err("the daemon exited before the mount was ready (see its log)".to_owned())
            } else {
                Err(reason.to_owned())
            }
        }
    }
}

/// Tells the waiting parent (if any) how mounting went.
fn report_to_parent(result: &Result<(), String>) {
    if std::env::var_os(DAEMON_CHILD_ENV).is_none() {
        return;
    }
    let mut stdout = std::io::stdout();
    let _ = match result {
        Ok(()) => writeln!(stdout, "ready"),
        Err(reason) => writeln!(stdout, "error: {reason}"),
    };
    let _ = stdout.flush();
    // From now on nobody reads stdout: point it at /dev/null.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: both descriptors are open; dup2 replaces fd 1 atomically.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
}

/// Part buffers (megabytes each, allocated and freed all the time) must go back to the
/// system when freed. glibc otherwise raises its mmap threshold after the first free and
/// serves later buffers from heap arenas that keep their memory: resident memory then
/// grows with the file size instead of staying within the budget.
fn return_large_buffers_to_the_system() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

pub(crate) fn run(config: MountConfig) -> Result<(), String> {
    return_large_buffers_to_the_system();
    init_logging(config.log_level);
    if !config.foreground {
        check_mountpoint(&config.mountpoint)?;
        return detach_and_wait(&config);
    }
    let mut session = None;
    let prepared = prepare(&config).and_then(|prepared| {
        let adapter = FuseAdapter::new(Arc::clone(&prepared.namespace), config.allow_other);
        mount(&config, adapter, &prepared.label).map(|mounted| {
            session = Some(mounted);
            prepared
        })
    });
    let is_daemon_child = std::env::var_os(DAEMON_CHILD_ENV).is_some();
    report_to_parent(&prepared.as_ref().map(|_| ()).map_err(Clone::clone));
    let Prepared {
        runtime,
        local,
        namespace,
        label,
        ..
    } = match prepared {
        Ok(prepared) => prepared,
        // The parent prints the reason; printing it here too would say it twice.
        Err(_) if is_daemon_child => std::process::exit(1),
        Err(reason) => return Err(reason),
    };
    let Some(session) = session else {
        return Err("mount failed".to_owned());
    };
    let notifier = session.notifier();
    namespace.set_invalidator(Box::new(move |parent, name| {
        notifier.inval_entry(fuser::INodeNo(parent), name)
    }));
    let reporter = status_reporter(&config, &namespace, label);
    // Kept until the session ends: dropping it removes the socket.
    let _status_socket = match crate::status::server::StatusSocket::start(Arc::clone(&reporter)) {
        Ok(socket) => Some(socket),
        Err(e) => {
            warn!("no status socket ({e}): `s3upfs status` will not see this mount");
            None
        }
    };
    // The mount is up and reported so: a port in use costs the metrics, not the mount.
    if let Some(addr) = config.metrics_addr {
        match crate::status::server::serve_metrics(addr, reporter) {
            Ok(()) => info!("Prometheus metrics on http://{addr}/metrics"),
            Err(e) => log::error!("{e}; the mount goes on without metrics"),
        }
    }
    info!("mounted on {}", config.mountpoint.display());
    let mountpoint = config.mountpoint.clone();
    runtime.spawn(async move {
        unmount_on_signal(mountpoint, namespace).await;
    });
    let result = session
        .run()
        .map_err(|e| format!("FUSE session ended with an error: {e}"));
    drop(local);
    runtime.shutdown_timeout(Duration::from_secs(5));
    info!("exited");
    result
}

/// What `s3upfs status` and the metrics endpoint are answered with.
fn status_reporter(
    config: &MountConfig,
    namespace: &Arc<Namespace>,
    label: String,
) -> crate::status::server::Reporter {
    let mountpoint = std::path::absolute(&config.mountpoint)
        .unwrap_or_else(|_| config.mountpoint.clone())
        .to_string_lossy()
        .into_owned();
    let namespace = Arc::clone(namespace);
    Arc::new(move || crate::status::Report {
        mountpoint: mountpoint.clone(),
        source: label.clone(),
        pid: std::process::id(),
        status: namespace.status(),
    })
}

/// The kernel's id of the FUSE connection serving `mountpoint` (its device minor), read
/// from /proc/self/mountinfo: a stat of the mountpoint would be a request to ourselves.
fn fuse_connection_of(mountpoint: &Path) -> Option<u32> {
    // Resolve the parent only: resolving the mountpoint itself would stat the mount.
    let parent = match mountpoint.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let target = std::fs::canonicalize(parent)
        .ok()?
        .join(mountpoint.file_name()?);
    let target = target.to_str()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo
        .lines()
        .rev()
        .filter(|line| line.split(' ').nth(4) == Some(target))
        .find_map(|line| line.split(' ').nth(2)?.split(':').nth(1)?.parse().ok())
}

/// SIGINT/SIGTERM: abort unfinished uploads (their writers get EIO), detach the mount,
/// and if open files keep the connection alive, abort the connection so the daemon ends.
async fn unmount_on_signal(mountpoint: PathBuf, namespace: Arc<Namespace>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        warn!("cannot listen for signals; unmount with: fusermount3 -u MOUNTPOINT");
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => info!("SIGINT: unmounting"),
        _ = terminate.recv() => info!("SIGTERM: unmounting"),
    }
    let connection = fuse_connection_of(&mountpoint);
    let aborting = tokio::task::spawn_blocking(move || namespace.abort_all());
    let _ = aborting.await;
    if let Err(e) = detach(&mountpoint) {
        warn!("unmounting {} failed: {e}", mountpoint.display());
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    if let Some(connection) = connection {
        let abort = format!("/sys/fs/fuse/connections/{connection}/abort");
        if !Path::new(&abort).exists() {
            mount_fusectl();
        }
        if std::fs::write(&abort, "1").is_ok() {
            warn!("files were still open 5 s after unmounting; aborted the FUSE connection");
        }
    }
}

/// Mounts the FUSE control filesystem where systemd would have (root only; harmless
/// when it is already there): it is how a connection held open by a process is ended.
fn mount_fusectl() {
    let (Ok(source), Ok(target)) = (
        std::ffi::CString::new("fusectl"),
        std::ffi::CString::new("/sys/fs/fuse/connections"),
    ) else {
        return;
    };
    // SAFETY: all pointers are valid NUL-terminated strings or null for no data.
    unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            0,
            std::ptr::null(),
        );
    }
}

/// What `prepare` sets up before mounting.
struct Prepared {
    /// Drives every S3 request of the mount.
    runtime: tokio::runtime::Runtime,
    /// The embedded server, for `--local`.
    local: Option<LocalServer>,
    namespace: Arc<Namespace>,
    /// What `mount` shows as the filesystem's source.
    label: String,
}

/// Everything up to the mount itself: any failure here leaves nothing mounted.
fn prepare(config: &MountConfig) -> Result<Prepared, String> {
    check_mountpoint(&config.mountpoint)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("s3upfs-io")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the I/O runtime: {e}"))?;

    let mut local = None;
    let (bucket, prefix, endpoint, region, credentials, path_style) = match &config.source {
        Source::Bucket { bucket, prefix } => (
            bucket.clone(),
            prefix.clone(),
            config.endpoint_url.clone(),
            config.region.clone(),
            None,
            config.force_path_style,
        ),
        Source::Local(dir) => {
            let server = LocalServer::start(runtime.handle(), dir).map_err(|e| {
                format!("cannot start the local S3 server in {}: {e}", dir.display())
            })?;
            let credentials = Credentials::new(
                server.access_key(),
                server.secret_key(),
                None,
                None,
                "s3upfs-local",
            );
            let endpoint = server.endpoint().to_owned();
            info!(
                "local S3 server at {endpoint}, bucket {}, credentials in {}",
                LocalServer::BUCKET,
                server.env_file().display()
            );
            local = Some(server);
            (
                LocalServer::BUCKET.to_owned(),
                String::new(),
                Some(endpoint),
                Some("us-east-1".to_owned()),
                Some(credentials),
                true,
            )
        }
    };

    let client = connect(
        runtime.handle(),
        &Connection {
            bucket: bucket.clone(),
            endpoint,
            region,
            profile: config.profile.clone(),
            path_style,
            request_timeout: config.request_timeout,
            copy_object_limit: config.copy_object_limit,
            credentials,
        },
    )?;
    client.check_bucket(&prefix)?;
    // A read-only mount changes nothing in the bucket, not even other clients' uploads.
    if !config.read_only {
        sweep_orphans(&client, &prefix, config.sweep_orphans_after);
    }

    let resume = match config.resume_window {
        Some(window) if !config.read_only => {
            // What the journal belongs to: the same bucket through another endpoint
            // (or another --local directory) is another source.
            let source = match &config.source {
                Source::Bucket { .. } => format!(
                    "{}|{bucket}|{prefix}",
                    config.endpoint_url.as_deref().unwrap_or("aws")
                ),
                Source::Local(dir) => format!("local|{}", dir.display()),
            };
            match Journal::open(
                &config.state_dir,
                &source,
                &bucket,
                config.schedule.part_size(1),
            ) {
                Ok(journal) => Some(Resume::load(
                    journal,
                    window,
                    Arc::clone(&client) as Arc<dyn ObjectStore>,
                )),
                Err(e) => {
                    warn!(
                        "no resume journal in {} ({e}): interrupted uploads are aborted, not parked",
                        config.state_dir.display()
                    );
                    None
                }
            }
        }
        _ => None,
    };
    let uploads = UploadContext::new(
        Arc::clone(&client) as Arc<dyn ObjectStore>,
        config.schedule,
        config.max_memory,
        config.max_concurrency,
        config.retry_budget,
        resume,
    )
    .map_err(|e| format!("cannot start the upload pool: {e}"))?;
    let namespace = Arc::new(
        Namespace::new(
            NamespaceConfig {
                prefix: prefix.clone(),
                uid: config.uid,
                gid: config.gid,
                file_mode: config.file_mode,
                dir_mode: config.dir_mode,
                attr_ttl: ATTR_TTL,
                read_only: config.read_only,
                mountpoint: std::fs::canonicalize(&config.mountpoint).ok(),
            },
            uploads,
        )
        .map_err(|e| format!("cannot start the namespace's threads: {e}"))?,
    );
    Namespace::start_metadata_flusher(&namespace)
        .map_err(|e| format!("cannot start the metadata thread: {e}"))?;
    let label = format!("s3upfs:{bucket}/{prefix}");
    Ok(Prepared {
        runtime,
        local,
        namespace,
        label,
    })
}

/// Aborts multipart uploads under the prefix older than `age`: what an earlier daemon
/// left when it was killed. Only old ones: a younger upload may belong to a live writer.
fn sweep_orphans(client: &SdkStore, prefix: &str, age: Option<Duration>) {
    let Some(age) = age else {
        return;
    };
    match crate::admin::abort_orphans(client, prefix, age, false) {
        Ok(aborted) if aborted.is_empty() => {}
        Ok(aborted) => info!(
            "aborted {} multipart upload(s) older than {} s left under the prefix",
            aborted.len(),
            age.as_secs()
        ),
        Err(e) => warn!("could not sweep orphaned multipart uploads: {e}"),
    }
}

fn mount(
    config: &MountConfig,
    adapter: FuseAdapter,
    label: &str,
) -> Result<fuser::Session<FuseAdapter>, String> {
    use fuser::{MountOption, SessionACL};
    let mut fuse_config = fuser::Config::default();
    fuse_config.mount_options = vec![
        MountOption::FSName(label.to_owned()),
        MountOption::Subtype("s3upfs".to_owned()),
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if config.read_only {
        fuse_config.mount_options.push(MountOption::RO);
    }
    if config.allow_other {
        fuse_config.acl = SessionACL::All;
        fuse_config
            .mount_options
            .push(MountOption::DefaultPermissions);
    }
    fuse_config.n_threads = Some(FUSE_THREADS);
    fuse_config.clone_fd = true;
    fuser::Session::new(adapter, &config.mountpoint, &fuse_config)
        .map_err(|e| format!("cannot mount on {}: {e}", config.mountpoint.display()))
}
