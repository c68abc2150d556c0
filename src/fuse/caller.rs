//! What the daemon can learn about the process behind a FUSE request.
//!
//! fuser answers FUSE_INTERRUPT with ENOSYS, so once a request has reached us the
//! kernel waits for our answer in uninterruptible sleep: a writer waiting for memory
//! could not be killed, not even by SIGKILL. The daemon therefore looks for itself:
//! a signal pending for the caller that it neither blocks nor ignores (SIGKILL, the
//! SIGTERM of `timeout`, Ctrl-C) ends the wait, and the request answers EINTR.

/// Whether the thread `tid` has gone or has a signal pending that it neither blocks
/// nor ignores.
pub(crate) fn interrupted(tid: u32) -> bool {
    // 0: a caller in a PID namespace we cannot see; the wait's own bound applies.
    if tid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{tid}/status")) {
        Ok(status) => deliverable_signal(&status),
        Err(_) => true,
    }
}

/// Whether the thread `tid` is exiting because a signal killed it (SIGKILL, Ctrl-C's
/// SIGINT, SIGTERM, SIGPIPE): its descriptors are being closed by the kernel, not by
/// the program, so what it wrote is unfinished.
pub(crate) fn killed(tid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{tid}/stat"))
        .ok()
        .is_some_and(|stat| killed_by_signal(&stat))
}

/// PF_EXITING in `/proc/PID/stat`'s flags (field 9), and a signal in the low bits of
/// its exit code (field 52, set before the kernel closes the files).
fn killed_by_signal(stat: &str) -> bool {
    const PF_EXITING: u64 = 0x4;
    // The command name (field 2) may hold spaces and parentheses: count after its end.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let (Some(flags), Some(exit_code)) = (field(9), field(52)) else {
        return false;
    };
    flags & PF_EXITING != 0 && exit_code & 0x7f != 0
}

/// Whether the thread `tid` may keep set-user-ID and set-group-ID bits on a file it
/// writes (CAP_FSETID in its effective capabilities, as root has): without it, Linux
/// clears them on write, and so do we.
pub(crate) fn keeps_setid_bits(tid: u32) -> bool {
    const CAP_FSETID: u32 = 4;
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("CapEff:"))
                .and_then(|value| u64::from_str_radix(value.trim(), 16).ok())
        })
        .is_some_and(|effective| effective & (1 << CAP_FSETID) != 0)
}

fn deliverable_signal(status: &str) -> bool {
    let mask = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| u64::from_str_radix(value.trim(), 16).ok())
            .unwrap_or(0)
    };
    let pending = mask("SigPnd:") | mask("ShdPnd:");
    let bit = |signal: i32| 1u64 << (signal - 1);
    // Signals whose default action is not to end the process: a write must not fail
    // with EINTR because a child exited or the terminal was resized.
    let harmless = [
        libc::SIGCHLD,
        libc::SIGCONT,
        libc::SIGSTOP,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGURG,
        libc::SIGWINCH,
    ]
    .into_iter()
    .fold(0, |mask, signal| mask | bit(signal));
    // A caught signal ends in a handler, not in death: FUSE cannot restart the write
    // (SA_RESTART does not apply to an EINTR we answer), so it waits on.
    let fatal = pending & !mask("SigBlk:") & !mask("SigIgn:") & !mask("SigCgt:") & !harmless;
    pending & bit(libc::SIGKILL) != 0 || fatal != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(pending: &str, shared: &str, blocked: &str, ignored: &str) -> String {
        format!(
            "Name:\tcp\nSigQ:\t0/1\nSigPnd:\t{pending}\nShdPnd:\t{shared}\nSigBlk:\t{blocked}\nSigIgn:\t{ignored}\nSigCgt:\t0\n"
        )
    }

    #[test]
    fn a_pending_kill_or_term_interrupts_and_a_blocked_or_ignored_one_does_not() {
        let none = "0000000000000000";
        // SIGTERM (15) is bit 14, SIGKILL (9) bit 8.
        let term = "0000000000004000";
        let kill = "0000000000000100";
        assert!(!deliverable_signal(&status(none, none, none, none)));
        assert!(deliverable_signal(&status(none, term, none, none)));
        assert!(deliverable_signal(&status(term, none, none, none)));
        assert!(!deliverable_signal(&status(none, term, term, none)));
        assert!(!deliverable_signal(&status(none, term, none, term)));
        assert!(deliverable_signal(&status(none, kill, kill, kill)));
        // SIGCHLD (17) is bit 16: a child's exit is no reason to fail a write.
        assert!(!deliverable_signal(&status(
            "0000000000010000",
            none,
            none,
            none
        )));
    }

    fn stat(flags: u64, exit_code: u64) -> String {
        let mut fields: Vec<String> = (3..=52).map(|_| "0".to_owned()).collect();
        fields[9 - 3] = flags.to_string();
        fields[52 - 3] = exit_code.to_string();
        format!("1234 (a (weird) name) {}", fields.join(" "))
    }

    #[test]
    fn only_an_exit_by_signal_counts_as_killed() {
        assert!(killed_by_signal(&stat(0x4, 9)), "SIGKILL");
        assert!(killed_by_signal(&stat(0x4 | 0x40, 2)), "Ctrl-C");
        assert!(!killed_by_signal(&stat(0x4, 0)), "exit(0) closes files too");
        assert!(!killed_by_signal(&stat(0x4, 1 << 8)), "exit(1)");
        assert!(!killed_by_signal(&stat(0, 9)), "not exiting");
        assert!(!killed(std::process::id()));
    }

    #[test]
    fn a_live_thread_without_signals_is_not_interrupted_and_a_gone_one_is() {
        assert!(!interrupted(std::process::id()));
        assert!(interrupted(u32::MAX - 1));
    }
}
