//! Which processes still hold a file of the mount open, read from /proc.
//!
//! FUSE sends FLUSH for every close() and RELEASE after the last one, but an error
//! returned from RELEASE reaches no program. So the close that completes an upload must
//! be the last one, and FUSE does not say which that is. The opener's close is the last
//! one unless the opener handed the descriptor to a child (`Popen(stdout=fd)`, a shell's
//! `exec 3>f; cmd >&3 &`): only then, or for a close from another process, do we look
//! at who still holds the file. A `cp` (no children) never pays for the scan.

use std::path::Path;
use std::time::Duration;

/// The longest a close waits for the scan of who holds a file: a process in the middle
/// of execve blocks readers of its /proc entries, and its exec may be waiting for our
/// answer to its own close (descriptors closed at exec). Past this, the file counts as
/// held and the last close (RELEASE) completes it.
const SCAN_BOUND: Duration = Duration::from_secs(2);

/// How long a read of a caller's /proc entries may take before its answer is assumed.
pub(crate) const PROC_BOUND: Duration = Duration::from_millis(500);

/// Runs `read` (a read of some process's /proc entries) on a thread of its own and
/// waits for it at most `bound`, `otherwise` past that. Linux blocks readers of
/// `/proc/PID/stat`, `status` and `fd/*` while PID is in execve, and an execve that
/// closes a descriptor on the mount waits for our answer to that close: a FUSE thread
/// must never read them unbounded. A blocked reader ends by itself once the exec moves.
pub(crate) fn within<T: Send + 'static>(
    bound: Duration,
    otherwise: T,
    read: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (sender, receiver) = std::sync::mpsc::channel();
    let started = std::thread::Builder::new()
        .name("proc-read".into())
        .spawn(move || {
            let _ = sender.send(read());
        });
    if started.is_err() {
        return otherwise;
    }
    receiver.recv_timeout(bound).unwrap_or(otherwise)
}

/// Whether the thread `tid` belongs to the process `tgid` (bounded: see [`within`]).
pub(crate) fn in_thread_group(tid: u32, tgid: u32) -> bool {
    tid == tgid
        || within(PROC_BOUND, false, move || {
            Path::new(&format!("/proc/{tgid}/task/{tid}")).exists()
        })
}

/// Whether the process `tgid` has children (any of its threads); true when that is not
/// known within [`PROC_BOUND`] (a scan of holders follows).
pub(crate) fn has_children(tgid: u32) -> bool {
    within(PROC_BOUND, true, move || has_children_now(tgid))
}

fn has_children_now(tgid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{tgid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("children"))
            .is_ok_and(|children| !children.trim().is_empty())
    })
}

/// Whether any process has a descriptor open on `path` (an absolute path inside the
/// mount, as the kernel names it). The process of `closing` (the thread whose close
/// asks) is looked at last, and only if no other holds the file: when it closes at
/// exec, reading its entries waits for the exec, so a scan that gets there is bounded
/// by [`SCAN_BOUND`], past which the file counts as held.
pub(crate) fn held_open_by_any(path: &Path, closing: u32) -> bool {
    let path = path.to_owned();
    // The whole scan is bounded: another process may be in execve too.
    let known = within(SCAN_BOUND, None, move || {
        let own = Path::new("/proc").join(closing.to_string()).join("fd");
        Some(held_open(&path, Some(closing)) || holds(&own, &path))
    });
    known.unwrap_or_else(|| {
        log::warn!(
            "who holds the file closed by thread {closing} was not known within \
             {SCAN_BOUND:?} (a process in execve?): it counts as held and is completed at \
             its last close"
        );
        true
    })
}

/// Whether any process but `skip` has a descriptor open on `path`.
fn held_open(path: &Path, skip: Option<u32>) -> bool {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return false;
    };
    let skip = skip.map(|pid| pid.to_string()).unwrap_or_default();
    processes
        .flatten()
        .filter(|entry| {
            entry.file_name().to_str().is_some_and(|name| {
                name.bytes().all(|b| b.is_ascii_digit()) && name != skip.as_str()
            })
        })
        .any(|process| holds(&process.path().join("fd"), path))
}

/// Whether a descriptor in `fd_dir` (a /proc/PID/fd) is open on `path`.
fn holds(fd_dir: &Path, path: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(fd_dir) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_this_process_holds_is_found_and_a_closed_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().canonicalize().expect("canonical").join("held");
        let file = std::fs::File::create(&path).expect("create");
        let me = std::process::id();
        assert!(held_open(&path, None));
        assert!(!held_open(&path, Some(me)), "skipped");
        assert!(held_open_by_any(&path, me), "looked at last");
        drop(file);
        assert!(!held_open_by_any(&path, me));
        assert!(in_thread_group(std::process::id(), std::process::id()));
        assert!(!in_thread_group(1, std::process::id()));
    }

    #[test]
    fn a_spawned_child_counts_as_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        assert!(has_children(std::process::id()));
        let _ = child.kill();
        let _ = child.wait();
    }
}
