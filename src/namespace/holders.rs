//! Which processes still hold a file of the mount open, read from /proc.
//!
//! FUSE sends FLUSH for every close() and RELEASE after the last one, but an error
//! returned from RELEASE reaches no program. So the close that completes an upload must
//! be the last one, and FUSE does not say which that is. The opener's close is the last
//! one unless the opener handed the descriptor to a child (`Popen(stdout=fd)`, a shell's
//! `exec 3>f; cmd >&3 &`): only then, or for a close from another process, do we look
//! at who still holds the file. A `cp` (no children) never pays for the scan.

use std::path::Path;

/// Whether the process `tgid` has children (any of its threads).
pub(crate) fn has_children(tgid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{tgid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("children"))
            .is_ok_and(|children| !children.trim().is_empty())
    })
}

/// Whether any process has a descriptor open on `path` (an absolute path inside the
/// mount, as the kernel names it).
pub(crate) fn held_open(path: &Path) -> bool {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return false;
    };
    processes
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()))
        })
        .any(|process| {
            let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
                return false;
            };
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_this_process_holds_is_found_and_a_closed_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().canonicalize().expect("canonical").join("held");
        let file = std::fs::File::create(&path).expect("create");
        assert!(held_open(&path));
        drop(file);
        assert!(!held_open(&path));
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
