//! `s3upfs status [MOUNTPOINT] [--json] [--watch]`: asks every mount of this user (or
//! the one at MOUNTPOINT) for its [`Report`] and prints it for people, as JSON for
//! scripts, or as live progress bars (indicatif) redrawn twice a second.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, SystemTime};

use indicatif::{HumanBytes, HumanDuration, MultiProgress, ProgressBar, ProgressStyle};

use super::{Report, socket_dir};

/// How long one mount may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

pub(crate) fn run(mountpoint: Option<&Path>, json: bool, watch: bool) -> Result<(), String> {
    let wanted = match mountpoint {
        Some(path) => Some(
            std::path::absolute(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .to_string_lossy()
                .into_owned(),
        ),
        None => None,
    };
    if watch {
        return watch_reports(wanted.as_deref());
    }
    let reports = reports(wanted.as_deref())?;
    if json {
        let text = serde_json::to_string_pretty(&reports)
            .map_err(|e| format!("cannot encode the status: {e}"))?;
        println!("{text}");
    } else {
        for report in &reports {
            print!("{}", describe(report));
        }
    }
    Ok(())
}

/// Every answer of this user's mounts (the one at `wanted` only, when given).
fn reports(wanted: Option<&str>) -> Result<Vec<Report>, String> {
    let dir = socket_dir();
    let entries = std::fs::read_dir(&dir).map_err(|_| no_mount(wanted))?;
    let mut reports = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "sock") {
            continue;
        }
        match ask(&path) {
            Ok(report) => {
                if wanted.is_none_or(|w| w == report.mountpoint) {
                    reports.push(report);
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionRefused) => {
                // Its daemon is gone (killed): the socket is left over.
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => eprintln!("s3upfs: {}: no answer ({e})", path.display()),
        }
    }
    if reports.is_empty() {
        return Err(no_mount(wanted));
    }
    reports.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
    Ok(reports)
}

fn no_mount(wanted: Option<&str>) -> String {
    match wanted {
        Some(path) => format!("no s3upfs mount of this user at {path}"),
        None => "no s3upfs mount of this user is running".to_owned(),
    }
}

fn ask(socket: &Path) -> std::io::Result<Report> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    serde_json::from_slice(&answer).map_err(std::io::Error::other)
}

/// The report as text for people.
fn describe(report: &Report) -> String {
    let status = &report.status;
    let totals = &status.totals;
    let mut text = format!(
        "{} ({}, pid {}, up {})\n  uploaded {} in {} objects ({}/s since mount), {} retries, {} failures\n  memory {} of {} in part buffers, {} names in the table\n",
        report.mountpoint,
        report.source,
        report.pid,
        HumanDuration(Duration::try_from_secs_f64(totals.seconds).unwrap_or_default()),
        HumanBytes(totals.bytes_uploaded),
        totals.objects_uploaded,
        HumanBytes(totals.bytes_per_second),
        totals.retries,
        totals.failures,
        HumanBytes(status.memory_in_use),
        HumanBytes(status.memory_limit),
        status.inodes,
    );
    if status.writing.is_empty() {
        text.push_str("  no file is being written\n");
    }
    for file in &status.writing {
        text.push_str(&format!(
            "  {:?} {:?}: {} written, {} in S3, parts {} done / {} in flight / {} retrying, {}/s{}\n",
            file.key,
            file.state,
            HumanBytes(file.bytes_written),
            HumanBytes(file.bytes_acknowledged),
            file.parts_done,
            file.parts_in_flight,
            file.parts_retrying,
            HumanBytes(file.bytes_per_second),
            file.failure
                .as_ref()
                .map(|f| format!(" — {f}"))
                .unwrap_or_default(),
        ));
    }
    for parked in &status.parked {
        text.push_str(&format!(
            "  parked {:?} (upload {}): writing it again resumes it; aborted in {}\n",
            parked.key,
            parked.upload_id,
            HumanDuration(Duration::from_secs(parked.expires_in))
        ));
    }
    if !totals.recent_failures.is_empty() {
        text.push_str("  recent failures:\n");
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for failure in &totals.recent_failures {
        text.push_str(&format!(
            "    {} ago {:?}: {}\n",
            HumanDuration(Duration::from_secs(now.saturating_sub(failure.at))),
            failure.key,
            failure.error
        ));
    }
    text
}

/// Live bars: one line per mount with its totals, one bar per file being written
/// (acknowledged of written bytes). Ends when no mount answers any more (or Ctrl-C).
fn watch_reports(wanted: Option<&str>) -> Result<(), String> {
    let bars = MultiProgress::new();
    let file_style =
        ProgressStyle::with_template("{prefix:30!} [{bar:30}] {bytes}/{total_bytes} {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> ");
    let mount_style = ProgressStyle::with_template("{msg}").map_err(|e| e.to_string())?;
    let mut mount_lines: HashMap<String, ProgressBar> = HashMap::new();
    let mut file_bars: HashMap<(String, String), ProgressBar> = HashMap::new();
    loop {
        let reports = match reports(wanted) {
            Ok(reports) => reports,
            Err(_) if !mount_lines.is_empty() => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut seen = Vec::new();
        for report in &reports {
            let totals = &report.status.totals;
            let line = mount_lines
                .entry(report.mountpoint.clone())
                .or_insert_with(|| bars.add(ProgressBar::new(0).with_style(mount_style.clone())));
            line.set_message(format!(
                "{}: {} uploaded in {} objects, {} retries, {} failures, memory {} of {}",
                report.mountpoint,
                HumanBytes(totals.bytes_uploaded),
                totals.objects_uploaded,
                totals.retries,
                totals.failures,
                HumanBytes(report.status.memory_in_use),
                HumanBytes(report.status.memory_limit),
            ));
            for file in &report.status.writing {
                let id = (report.mountpoint.clone(), file.key.clone());
                let bar = file_bars.entry(id.clone()).or_insert_with(|| {
                    let bar = bars.add(ProgressBar::new(0).with_style(file_style.clone()));
                    bar.set_prefix(file.key.clone());
                    bar
                });
                bar.set_length(file.bytes_written);
                bar.set_position(file.bytes_acknowledged);
                bar.set_message(format!(
                    "{:?}, {} parts done, {} in flight, {} retrying, {}/s",
                    file.state,
                    file.parts_done,
                    file.parts_in_flight,
                    file.parts_retrying,
                    HumanBytes(file.bytes_per_second)
                ));
                seen.push(id);
            }
        }
        file_bars.retain(|id, bar| {
            let keep = seen.contains(id);
            if !keep {
                bar.finish_and_clear();
                bars.remove(bar);
            }
            keep
        });
        std::thread::sleep(WATCH_INTERVAL);
    }
}
