//! What the daemon can learn about the process behind a FUSE request.
//!
//! fuser answers FUSE_INTERRUPT with ENOSYS, so once a request has reached us the
//! kernel waits for our answer in uninterruptible sleep: a writer waiting for memory
//! could not be killed, not even by SIGKILL. The daemon therefore looks for itself:
//! a signal pending for the caller that it neither blocks nor ignores (SIGKILL, the
//! SIGTERM of `timeout`, Ctrl-C) ends the wait, and the request answers EINTR.
//!
//! Every read here is bounded ([`proc_within`]): Linux blocks readers of a process's
//! /proc entries while it is in execve, and an execve closing a descriptor on the
//! mount waits for our answer to that close.

use std::time::Duration;

use crate::namespace::{PROC_BOUND, proc_within};

/// How long a close waits to learn whether its process was killed: what every child
/// that closes an inherited descriptor at exec pays, so short.
const KILLED_BOUND: Duration = Duration::from_millis(100);

/// Whether the thread `tid` has gone or is being killed: a signal that ends the
/// process (SIGKILL, or one it neither blocks, ignores nor catches, such as the SIGTERM
/// of `timeout` or Ctrl-C's SIGINT) is turned by the kernel into a SIGKILL pending for
/// every thread, which `/proc/TID/stat` shows. Read from `stat`, never `status`: a
/// reader of `status` waits while the process is in execve, which may itself wait for
/// one of our answers (a child closing its inherited descriptors at exec).
///
/// A read that takes longer than [`PROC_BOUND`] counts as not interrupted (a loaded
/// machine must not fail a write); the wait's own bound applies.
pub(crate) fn interrupted(tid: u32) -> bool {
    // 0: a caller in a PID namespace we cannot see; the wait's own bound applies.
    if tid == 0 {
        return false;
    }
    proc_within(PROC_BOUND, false, move || {
        match std::fs::read_to_string(format!("/proc/{tid}/stat")) {
            Ok(stat) => kill_pending(&stat),
            Err(_) => true,
        }
    })
}

/// Whether the thread `tid` is exiting because a signal killed it (SIGKILL, Ctrl-C's
/// SIGINT, SIGTERM, SIGPIPE): its descriptors are being closed by the kernel, not by
/// the program, so what it wrote is unfinished.
///
/// Bounded by [`KILLED_BOUND`] (false past it, and the close completes as any other):
/// a close may come from a process in execve (a child closing what it inherited),
/// whose /proc entries block readers until that close is answered.
pub(crate) fn killed(tid: u32) -> bool {
    proc_within(KILLED_BOUND, false, move || {
        std::fs::read_to_string(format!("/proc/{tid}/stat"))
            .ok()
            .is_some_and(|stat| killed_by_signal(&stat))
    })
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
    proc_within(PROC_BOUND, false, move || keeps_setid_bits_now(tid))
}

fn keeps_setid_bits_now(tid: u32) -> bool {
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

/// SIGKILL among the thread's pending signals (`/proc/TID/stat` field 31).
fn kill_pending(stat: &str) -> bool {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    // `rest` starts at field 3.
    rest.split_whitespace()
        .nth(31 - 3)
        .and_then(|pending| pending.parse::<u64>().ok())
        .is_some_and(|pending| pending & (1 << (libc::SIGKILL - 1)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(flags: u64, exit_code: u64) -> String {
        stat_with(flags, exit_code, 0)
    }

    fn stat_with(flags: u64, exit_code: u64, pending: u64) -> String {
        let mut fields: Vec<String> = (3..=52).map(|_| "0".to_owned()).collect();
        fields[9 - 3] = flags.to_string();
        fields[31 - 3] = pending.to_string();
        fields[52 - 3] = exit_code.to_string();
        format!("1234 (a (weird) name) {}", fields.join(" "))
    }

    #[test]
    fn only_a_pending_kill_interrupts() {
        // SIGKILL (9) is bit 8; SIGCHLD (17) bit 16, SIGTERM (15) bit 14: a signal the
        // process handles or that does not end it stays in the shared set, not here.
        assert!(kill_pending(&stat_with(0, 0, 1 << 8)));
        assert!(kill_pending(&stat_with(0, 0, (1 << 8) | (1 << 16))));
        assert!(!kill_pending(&stat_with(0, 0, 1 << 16)));
        assert!(!kill_pending(&stat_with(0, 0, 1 << 14)));
        assert!(!kill_pending("garbage"));
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
