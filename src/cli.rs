//! The command line: `s3upfs mount …`, its `-o` (fstab) form, and turning both into a
//! checked [`MountConfig`]. Every mistake becomes one readable line and exit status 2.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::config::{MountConfig, Source};
use crate::size::parse_size;
use crate::upload::schedule::PartSchedule;

pub(crate) const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// Two 1 GiB parts: what the part schedule needs to reach 5 TiB files. Memory is only
/// taken as writes fill parts, so small and moderate writes use far less.
pub(crate) const DEFAULT_MAX_MEMORY: u64 = 2 << 30;
/// Part uploads in flight across the mount (see README: measured on Garage, 2 cores).
pub(crate) const DEFAULT_MAX_CONCURRENCY: usize = 8;
/// A part is retried for this long: longer than a server restart or a network blip,
/// short enough that a writer learns of a real outage while it still waits on close().
pub(crate) const DEFAULT_RETRY_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);
/// Orphan sweep at mount: a week. No live writer keeps one upload open that long (5 TiB
/// at 50 MiB/s takes 29 hours), so sweeping cannot hurt another mount's upload in flight.
/// How long a parked upload waits for a rewrite to resume it.
pub(crate) const DEFAULT_RESUME_WINDOW: std::time::Duration =
    std::time::Duration::from_secs(86_400);
pub(crate) const DEFAULT_SWEEP_AGE: std::time::Duration =
    std::time::Duration::from_secs(7 * 86_400);

#[derive(Parser, Debug)]
#[command(
    name = "s3upfs",
    version,
    // A later option wins, as in fstab and `mount -o`.
    args_override_self = true,
    about = "Mount an S3 bucket; files upload while they are being written"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mount s3://BUCKET[/PREFIX/] (or --local DIR) on MOUNTPOINT.
    Mount(Box<MountArgs>),
    /// List and abort multipart uploads orphaned under s3://BUCKET[/PREFIX/] (e.g. by a killed daemon).
    Cleanup(CleanupArgs),
    /// Install a bucket lifecycle rule that makes S3 abort incomplete multipart uploads itself.
    Lifecycle(LifecycleArgs),
    /// Show what this user's mounts (or the one at MOUNTPOINT) are uploading.
    Status(StatusArgs),
    /// Compare a local tree with its backup (s3://BUCKET[/PREFIX/] or a mount) by
    /// checksums, with HEADs only; exit status 1 unless every file matches.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
struct VerifyArgs {
    #[arg(value_name = "LOCAL")]
    local: PathBuf,
    /// s3://BUCKET[/PREFIX/], or the directory in a mount that holds the backup.
    #[arg(value_name = "TARGET")]
    target: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(Args, Debug)]
struct StatusArgs {
    #[arg(value_name = "MOUNTPOINT")]
    mountpoint: Option<PathBuf>,
    /// Print the status as JSON (an array, one object per mount).
    #[arg(long)]
    json: bool,
    /// Redraw live progress bars until the mounts go away (or Ctrl-C).
    #[arg(long, conflicts_with = "json")]
    watch: bool,
}

/// Where the bucket is and how to sign in; shared by every subcommand.
#[derive(Args, Debug, Default, Clone)]
struct ConnectionArgs {
    /// S3 endpoint, e.g. http://127.0.0.1:3900 for Garage or MinIO.
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    #[arg(long, value_name = "R")]
    region: Option<String>,
    /// AWS profile from ~/.aws/config and ~/.aws/credentials.
    #[arg(long, value_name = "P")]
    profile: Option<String>,
    /// Address the bucket as ENDPOINT/BUCKET instead of BUCKET.ENDPOINT.
    #[arg(long)]
    force_path_style: bool,
    /// How long one S3 request may go unanswered, plus 1 s per MiB it carries, before it
    /// counts as failed (and is retried within the retry budget). Default 30s.
    #[arg(long, value_name = "DURATION")]
    request_timeout: Option<String>,
    /// Largest object copied with one CopyObject (default S3's 5 GiB); larger ones are
    /// copied in parallel UploadPartCopy ranges. For tests and S3-compatible servers
    /// with a lower limit.
    #[arg(long, value_name = "SIZE", hide = true)]
    copy_object_limit: Option<String>,
}

impl ConnectionArgs {
    fn connection(&self, bucket: &str) -> Result<crate::s3::Connection, String> {
        let request_timeout = match self.request_timeout.as_deref() {
            Some(text) => {
                crate::size::parse_duration(text).map_err(|e| format!("--request-timeout: {e}"))?
            }
            None => crate::s3::DEFAULT_REQUEST_TIMEOUT,
        };
        let copy_object_limit = match self.copy_object_limit.as_deref() {
            Some(text) => crate::size::parse_size(text)
                .ok()
                .filter(|limit| *limit > 0)
                .ok_or_else(|| format!("--copy-object-limit: '{text}' is not a positive size"))?,
            None => crate::s3::COPY_OBJECT_LIMIT,
        };
        Ok(crate::s3::Connection {
            bucket: bucket.to_owned(),
            endpoint: self.endpoint_url.clone(),
            region: self.region.clone(),
            profile: self.profile.clone(),
            path_style: self.force_path_style,
            credentials: None,
            request_timeout,
            copy_object_limit,
        })
    }
}

#[derive(Args, Debug)]
struct CleanupArgs {
    /// s3://BUCKET[/PREFIX/]
    #[arg(value_name = "SOURCE")]
    source: String,
    /// Only uploads started at least this long ago (e.g. 90m, 24h, 7d).
    #[arg(long, value_name = "AGE", default_value = "24h")]
    older_than: String,
    /// List what would be aborted, abort nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(Args, Debug)]
struct LifecycleArgs {
    /// s3://BUCKET
    #[arg(value_name = "SOURCE")]
    source: String,
    /// Abort multipart uploads this long after they started (whole days, e.g. 7d).
    #[arg(long, value_name = "AGE")]
    abort_incomplete_after: String,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(Args, Debug, Default)]
struct MountArgs {
    /// s3://BUCKET[/PREFIX/] then MOUNTPOINT; with --local only MOUNTPOINT.
    #[arg(value_name = "SOURCE MOUNTPOINT", num_args = 1..=2, required = true)]
    positional: Vec<String>,
    /// Serve DIR with the embedded S3 server and mount its bucket (try s3upfs without an account).
    #[arg(long, value_name = "DIR")]
    local: Option<PathBuf>,
    #[command(flatten)]
    connection: ConnectionArgs,
    /// At mount, abort multipart uploads under the prefix older than this ("off" to keep them).
    #[arg(long, value_name = "AGE")]
    sweep_orphans_older_than: Option<String>,
    /// How long a part keeps being retried (outage, corruption in transit) before its
    /// file's upload fails and close() returns EIO.
    #[arg(long, value_name = "DURATION")]
    retry_budget: Option<String>,
    /// Stay in the foreground (logs to stderr; SIGINT/SIGTERM unmount).
    #[arg(long, short = 'f')]
    foreground: bool,
    /// Let other users use the mount (modes are then enforced).
    #[arg(long)]
    allow_other: bool,
    #[arg(long)]
    read_only: bool,
    /// Owner of objects without uid metadata (default: the mounting user).
    #[arg(long, value_name = "N")]
    uid: Option<u32>,
    #[arg(long, value_name = "N")]
    gid: Option<u32>,
    /// Mode of files without mode metadata, octal.
    #[arg(long, value_name = "0644")]
    file_mode: Option<String>,
    #[arg(long, value_name = "0755")]
    dir_mode: Option<String>,
    /// Size of the first parts of a multipart upload (min 5MiB; later parts grow).
    #[arg(long, value_name = "SIZE")]
    part_size: Option<String>,
    /// Parts per tier of equal size before the part size doubles (default 500); for
    /// tests that need a grown part in a small file.
    #[arg(long, value_name = "N", hide = true)]
    parts_per_tier: Option<u32>,
    /// Part uploads in flight at once, for the whole mount.
    #[arg(long, value_name = "N")]
    max_concurrency: Option<usize>,
    /// Memory for part buffers, for the whole mount; writers wait when it is used up.
    #[arg(long, value_name = "SIZE")]
    max_memory: Option<String>,
    /// error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Where the resume journal is kept (default /var/lib/s3upfs for root,
    /// $XDG_STATE_HOME/s3upfs or ~/.local/state/s3upfs otherwise).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// How long an interrupted upload of 8 parts or more is kept for writing the file
    /// again to resume it (default 24h; `off` aborts at once).
    #[arg(long, value_name = "DURATION")]
    resume_window: Option<String>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9100): GET /metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// Options in fstab form: -o endpoint_url=URL,allow_other,part_size=16MiB
    #[arg(short = 'o', value_name = "opt[,opt...]")]
    options: Vec<String>,
}

/// Parses `s3://BUCKET[/PREFIX/]`; the prefix always ends in `/` when present.
pub(crate) fn parse_s3_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("'{url}' is not an s3://BUCKET[/PREFIX/] address"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("'{url}' names no bucket"));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|part| part == "." || part == "..") {
        return Err(format!(
            "prefix of '{url}' may not contain . or .. segments"
        ));
    }
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket.to_owned(), prefix))
}

fn parse_mode(text: &str, what: &str) -> Result<u16, String> {
    u16::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("invalid {what} '{text}': expected an octal mode such as 0644"))
}

/// Applies `-o` options to the arguments; options given as flags win.
fn apply_options(args: &mut MountArgs) -> Result<(), String> {
    let options: Vec<String> = args
        .options
        .iter()
        .flat_map(|group| group.split(','))
        .map(str::trim)
        .filter(|option| !option.is_empty())
        .map(str::to_owned)
        .collect();
    for option in options {
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name.replace('-', "_"), Some(value.to_owned())),
            None => (option.replace('-', "_"), None),
        };
        let need = |value: Option<String>| {
            value.ok_or_else(|| format!("option -o {name} needs a value ({name}=...)"))
        };
        match name.as_str() {
            "endpoint_url" => {
                args.connection.endpoint_url =
                    args.connection.endpoint_url.take().or(Some(need(value)?))
            }
            "region" => {
                args.connection.region = args.connection.region.take().or(Some(need(value)?))
            }
            "profile" => {
                args.connection.profile = args.connection.profile.take().or(Some(need(value)?))
            }
            "retry_budget" => args.retry_budget = args.retry_budget.take().or(Some(need(value)?)),
            "request_timeout" => {
                args.connection.request_timeout = args
                    .connection
                    .request_timeout
                    .take()
                    .or(Some(need(value)?))
            }
            "sweep_orphans_older_than" => {
                args.sweep_orphans_older_than =
                    args.sweep_orphans_older_than.take().or(Some(need(value)?))
            }
            "uid" => {
                let text = need(value)?;
                let uid = text.parse().map_err(|_| format!("invalid uid '{text}'"))?;
                args.uid = args.uid.or(Some(uid));
            }
            "gid" => {
                let text = need(value)?;
                let gid = text.parse().map_err(|_| format!("invalid gid '{text}'"))?;
                args.gid = args.gid.or(Some(gid));
            }
            "file_mode" => args.file_mode = args.file_mode.take().or(Some(need(value)?)),
            "dir_mode" => args.dir_mode = args.dir_mode.take().or(Some(need(value)?)),
            "part_size" => args.part_size = args.part_size.take().or(Some(need(value)?)),
            "max_memory" => args.max_memory = args.max_memory.take().or(Some(need(value)?)),
            "max_concurrency" => {
                let text = need(value)?;
                let count = text
                    .parse()
                    .map_err(|_| format!("invalid max_concurrency '{text}'"))?;
                args.max_concurrency = args.max_concurrency.or(Some(count));
            }
            "log_level" => args.log_level = args.log_level.take().or(Some(need(value)?)),
            "state_dir" => {
                args.state_dir = args.state_dir.take().or(Some(PathBuf::from(need(value)?)));
            }
            "resume_window" => {
                args.resume_window = args.resume_window.take().or(Some(need(value)?));
            }
            "metrics_addr" => {
                args.metrics_addr = args.metrics_addr.take().or(Some(need(value)?));
            }
            "local" => args.local = args.local.take().or(Some(PathBuf::from(need(value)?))),
            "force_path_style" => args.connection.force_path_style = true,
            "foreground" => args.foreground = true,
            "allow_other" => args.allow_other = true,
            "read_only" | "ro" => args.read_only = true,
            // Generic mount(8)/fstab words that mean nothing more here.
            "rw" | "defaults" | "auto" | "noauto" | "user" | "nouser" | "users" | "owner"
            | "group" | "_netdev" | "nofail" | "exec" | "noexec" | "suid" | "nosuid" | "dev"
            | "nodev" | "atime" | "noatime" | "relatime" | "strictatime" | "diratime"
            | "nodiratime" | "lazytime" | "nolazytime" | "sync" | "async" | "silent" | "loud"
            | "nosymfollow" | "comment" => {}
            // systemd's and other tools' own options (x-systemd.automount, x-gvfs-hide).
            other if other.starts_with("x_") => {}
            _ => return Err(format!("unknown mount option -o {option}")),
        }
    }
    Ok(())
}

fn resolve(mut args: MountArgs) -> Result<MountConfig, String> {
    apply_options(&mut args)?;
    let (source, mountpoint) = match (&args.local, args.positional.as_slice()) {
        (Some(dir), [mountpoint]) => (Source::Local(dir.clone()), mountpoint.clone()),
        (Some(_), _) => {
            return Err("with --local DIR, give only the MOUNTPOINT".to_owned());
        }
        (None, [url, mountpoint]) => {
            let (bucket, prefix) = parse_s3_url(url)?;
            (Source::Bucket { bucket, prefix }, mountpoint.clone())
        }
        (None, _) => {
            return Err(
                "usage: s3upfs mount s3://BUCKET[/PREFIX/] MOUNTPOINT (or --local DIR MOUNTPOINT)"
                    .to_owned(),
            );
        }
    };
    let part_size = args
        .part_size
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(|e| format!("--part-size: {e}"))?
        .unwrap_or(DEFAULT_PART_SIZE);
    let max_memory = args
        .max_memory
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(|e| format!("--max-memory: {e}"))?
        .unwrap_or(DEFAULT_MAX_MEMORY);
    let mut schedule = PartSchedule::new(part_size, max_memory)?;
    if let Some(parts) = args.parts_per_tier {
        schedule = schedule.with_parts_per_tier(parts);
    }
    let max_concurrency = args.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY);
    if max_concurrency == 0 || max_concurrency > 1024 {
        return Err(format!(
            "--max-concurrency {max_concurrency} is out of range (1 to 1024)"
        ));
    }
    let log_level = match args.log_level.as_deref() {
        None => log::LevelFilter::Info,
        Some(level) => level.parse().map_err(|_| {
            format!("invalid --log-level '{level}': use error, warn, info, debug or trace")
        })?,
    };
    let sweep_orphans_after = match args.sweep_orphans_older_than.as_deref() {
        Some("off" | "0") => None,
        Some(text) => Some(
            crate::size::parse_duration(text)
                .map_err(|e| format!("--sweep-orphans-older-than: {e}"))?,
        ),
        None => Some(DEFAULT_SWEEP_AGE),
    };
    let retry_budget = match args.retry_budget.as_deref() {
        Some(text) => {
            crate::size::parse_duration(text).map_err(|e| format!("--retry-budget: {e}"))?
        }
        None => DEFAULT_RETRY_BUDGET,
    };
    let connection = args.connection.connection("")?;
    let (request_timeout, copy_object_limit) =
        (connection.request_timeout, connection.copy_object_limit);
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    Ok(MountConfig {
        args: effective_args(),
        request_timeout,
        copy_object_limit,
        source,
        mountpoint: PathBuf::from(mountpoint),
        endpoint_url: args.connection.endpoint_url,
        region: args.connection.region,
        profile: args.connection.profile,
        force_path_style: args.connection.force_path_style,
        sweep_orphans_after,
        retry_budget,
        foreground: args.foreground,
        allow_other: args.allow_other,
        read_only: args.read_only,
        uid: args.uid.unwrap_or(uid),
        gid: args.gid.unwrap_or(gid),
        file_mode: parse_mode(args.file_mode.as_deref().unwrap_or("0644"), "--file-mode")?,
        dir_mode: parse_mode(args.dir_mode.as_deref().unwrap_or("0755"), "--dir-mode")?,
        schedule,
        max_concurrency,
        max_memory,
        log_level,
        state_dir: args.state_dir.unwrap_or_else(default_state_dir),
        resume_window: match args.resume_window.as_deref() {
            Some("off") => None,
            Some(text) => Some(
                crate::size::parse_duration(text).map_err(|e| format!("--resume-window: {e}"))?,
            ),
            None => Some(DEFAULT_RESUME_WINDOW),
        },
        metrics_addr: match args.metrics_addr.as_deref() {
            Some(text) => Some(text.parse().map_err(|_| {
                format!("--metrics-addr: '{text}' is not an address like 127.0.0.1:9100")
            })?),
            None => None,
        },
    })
}

/// Where the resume journal goes unless `--state-dir` says otherwise.
fn default_state_dir() -> PathBuf {
    // SAFETY: getuid cannot fail and touches no memory.
    if unsafe { libc::getuid() } == 0 {
        return PathBuf::from("/var/lib/s3upfs");
    }
    match (std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME")) {
        (Some(state), _) if !state.is_empty() => PathBuf::from(state).join("s3upfs"),
        (_, Some(home)) => PathBuf::from(home).join(".local/state/s3upfs"),
        _ => PathBuf::from("/tmp/s3upfs-state"),
    }
}

/// The arguments this process runs with, after [`as_mount_helper`].
static ARGS: std::sync::OnceLock<Vec<std::ffi::OsString>> = std::sync::OnceLock::new();

/// The arguments as understood (what a detached daemon is started with again).
fn effective_args() -> Vec<std::ffi::OsString> {
    ARGS.get()
        .cloned()
        .unwrap_or_else(|| std::env::args_os().collect())
}

/// mount(8) runs filesystem helpers as `HELPER SOURCE DIR [-sfnv] [-o OPTIONS]`:
/// `mount -t fuse.s3upfs` goes through mount.fuse3, which runs `s3upfs SOURCE DIR -o
/// OPTIONS`, and `mount -t s3upfs` runs a `mount.s3upfs` link. Both mean
/// `s3upfs mount SOURCE DIR -o OPTIONS`. None when mount(8) only fakes the mount (-f).
fn as_mount_helper(args: Vec<std::ffi::OsString>) -> Option<Vec<std::ffi::OsString>> {
    let called_as_helper = args
        .first()
        .and_then(|arg0| Path::new(arg0).file_name())
        .is_some_and(|name| name.to_string_lossy().starts_with("mount."));
    let first = args.get(1).map(|arg| arg.to_string_lossy().into_owned());
    let subcommand = first.as_deref().is_some_and(|arg| {
        arg.starts_with('-')
            || ["mount", "cleanup", "lifecycle", "status", "verify", "help"].contains(&arg)
    });
    if !called_as_helper && (subcommand || first.is_none()) {
        return Some(args);
    }
    let mut rewritten = vec![args[0].clone(), "mount".into()];
    for arg in args.into_iter().skip(1) {
        match arg.to_str() {
            // mount(8)'s own flags: no mtab, sloppy, verbose; fake means do nothing.
            Some("-n" | "-s" | "-v") if called_as_helper => {}
            Some("-f") if called_as_helper => return None,
            _ => rewritten.push(arg),
        }
    }
    Some(rewritten)
}

/// Entry point of the binary; returns the process exit status.
pub fn main() -> i32 {
    let Some(args) = as_mount_helper(std::env::args_os().collect()) else {
        return 0;
    };
    let args = ARGS.get_or_init(|| args).clone();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = error.print();
                return if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    2
                } else {
                    0
                };
            }
            let rendered = error.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("s3upfs: {}", first.trim_start_matches("error: "));
            return 2;
        }
    };
    match cli.command {
        Command::Cleanup(args) => report(run_cleanup(&args)),
        Command::Verify(args) => match run_verify(&args) {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(message) => {
                eprintln!("s3upfs: {message}");
                2
            }
        },
        Command::Lifecycle(args) => report(run_lifecycle(&args)),
        Command::Status(args) => report(crate::status::client::run(
            args.mountpoint.as_deref(),
            args.json,
            args.watch,
        )),
        Command::Mount(args) => match resolve(*args) {
            Ok(config) => match crate::daemon::run(config) {
                Ok(()) => 0,
                Err(message) => {
                    eprintln!("s3upfs: {message}");
                    1
                }
            },
            Err(message) => {
                eprintln!("s3upfs: {message}");
                2
            }
        },
    }
}

fn report(result: Result<(), String>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("s3upfs: {message}");
            1
        }
    }
}

fn run_cleanup(args: &CleanupArgs) -> Result<(), String> {
    let older_than =
        crate::size::parse_duration(&args.older_than).map_err(|e| format!("--older-than: {e}"))?;
    let (bucket, prefix) = parse_s3_url(&args.source)?;
    let connection = args.connection.connection(&bucket)?;
    crate::admin::cleanup(&connection, &prefix, older_than, args.dry_run)
}

fn run_verify(args: &VerifyArgs) -> Result<bool, String> {
    let target = match args.target.starts_with("s3://") {
        true => {
            let (bucket, prefix) = parse_s3_url(&args.target)?;
            crate::verify::Target::Bucket {
                connection: args.connection.connection(&bucket)?,
                prefix,
            }
        }
        false => crate::verify::Target::Mount(PathBuf::from(&args.target)),
    };
    crate::verify::run(&args.local, target, args.json)
}

fn run_lifecycle(args: &LifecycleArgs) -> Result<(), String> {
    let age = crate::size::parse_duration(&args.abort_incomplete_after)
        .map_err(|e| format!("--abort-incomplete-after: {e}"))?;
    let days = age.as_secs().div_ceil(86_400).max(1);
    let (bucket, _) = parse_s3_url(&args.source)?;
    crate::admin::lifecycle(&args.connection.connection(&bucket)?, days as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(positional: &[&str]) -> MountArgs {
        MountArgs {
            positional: positional.iter().map(|s| s.to_string()).collect(),
            ..MountArgs::default()
        }
    }

    #[test]
    fn s3_urls_split_into_bucket_and_slash_terminated_prefix() {
        assert_eq!(parse_s3_url("s3://b"), Ok(("b".into(), "".into())));
        assert_eq!(parse_s3_url("s3://b/"), Ok(("b".into(), "".into())));
        assert_eq!(parse_s3_url("s3://b/x/y"), Ok(("b".into(), "x/y/".into())));
        assert!(parse_s3_url("b/x").is_err());
        assert!(parse_s3_url("s3:///x").is_err());
        assert!(parse_s3_url("s3://b/../x").is_err());
    }

    #[test]
    fn fstab_options_fill_in_what_flags_did_not_set() {
        let mut given = args(&["s3://b", "/mnt"]);
        given.connection.region = Some("flag-wins".into());
        given.options = vec![
            "endpoint_url=http://127.0.0.1:9000,region=opt,allow_other".into(),
            "part_size=16MiB,rw,_netdev".into(),
        ];
        let config = resolve(given).expect("valid");
        assert_eq!(
            config.endpoint_url.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(config.region.as_deref(), Some("flag-wins"));
        assert!(config.allow_other);
        assert_eq!(config.schedule.part_size(1), 16 << 20);
    }

    #[test]
    fn bad_values_name_their_option() {
        let mut given = args(&["s3://b", "/mnt"]);
        given.part_size = Some("lots".into());
        assert!(resolve(given).unwrap_err().starts_with("--part-size"));
        let mut given = args(&["s3://b", "/mnt"]);
        given.options = vec!["frobnicate".into()];
        assert!(resolve(given).unwrap_err().contains("unknown mount option"));
        let mut given = args(&["s3://b", "/mnt"]);
        given.file_mode = Some("999".into());
        assert!(resolve(given).unwrap_err().contains("octal"));
        let mut given = args(&["s3://b", "/mnt"]);
        given.part_size = Some("1MiB".into());
        assert!(resolve(given).unwrap_err().contains("minimum"));
    }

    #[test]
    fn local_takes_only_the_mountpoint() {
        let mut given = args(&["/mnt"]);
        given.local = Some("/data".into());
        assert_eq!(
            resolve(given).expect("valid").source,
            Source::Local("/data".into())
        );
        let mut given = args(&["s3://b", "/mnt"]);
        given.local = Some("/data".into());
        assert!(resolve(given).is_err());
    }
}
