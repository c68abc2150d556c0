//! Resume on a real mount over Garage: a copy whose daemon is killed at about 70% is
//! continued by the same copy after a remount, sending only what S3 lacks.

mod common;

use std::time::{Duration, Instant};

use common::fault_proxy::{Fault, FaultProxy, Op, When};
use common::{Mount, S3Server, make_temp_dir, run_cli, via_proxy, write_random_file};

const MIB: u64 = 1 << 20;

/// Copies a 512 MiB file onto the mount with `command` (a shell command; `$SRC` is the
/// source, `$MNT` the mount), SIGKILLs the daemon at about 70% of the parts, remounts
/// with the same state directory and runs `command` again: the second run must send at
/// most 40% of the bytes in UploadParts, into the parked upload, and leave exactly
/// `big.bin`, byte-identical, and no multipart upload. With `change_part_3`, one byte
/// of the source's part 3 changes before the second run: parts 1 and 3 onward are sent
/// again (only part 2 is reused) and the object is the new source.
fn resumes_after_a_kill_at_70_percent(command: &str, change_part_3: bool) {
    let server = S3Server::garage();
    let client = server.client();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let state = make_temp_dir("s3upfs-state-");
    let state_dir = state.path().to_str().expect("utf-8").to_owned();
    let source = make_temp_dir("s3upfs-resume-src-");
    let size = 512 * MIB;
    let file = source.path().join("big.bin");
    write_random_file(&file, size, 42);
    let parts = size / (8 * MIB);
    let run = |mount: &Mount| {
        std::process::Command::new("sh")
            .args(["-c", command])
            .env("SRC", &file)
            .env("MNT", mount.path())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the copy")
    };

    proxy.set_fault(
        Op::UploadPart,
        When::Always,
        Fault::Delay(Duration::from_millis(300)),
    );
    let mount = Mount::new(&through, &["--state-dir", &state_dir]);
    let mut first = run(&mount);
    let deadline = Instant::now() + Duration::from_secs(600);
    while proxy.successes(Op::UploadPart) < parts * 7 / 10 {
        assert!(Instant::now() < deadline, "the copy did not get to 70%");
        std::thread::sleep(Duration::from_millis(50));
    }
    mount.kill(libc::SIGKILL);
    let _ = first.wait();
    drop(mount);
    assert_eq!(
        client.list_multipart_uploads().len(),
        1,
        "left for the resume"
    );

    if change_part_3 {
        use std::os::unix::fs::FileExt;
        let source = std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .expect("source");
        source
            .write_all_at(b"\xff\x00changed", 2 * 8 * MIB + 4096)
            .expect("changing part 3");
    }
    proxy.clear();
    proxy.reset_counters();
    let mount = Mount::new(&through, &["--state-dir", &state_dir]);
    let (status, stdout, stderr) = run_cli(
        &["status", mount.path().to_str().expect("utf-8"), "--json"],
        &[],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("\"parked\"") && stdout.contains("big.bin"),
        "{stdout}"
    );
    let second = run(&mount).wait().expect("the copy again");
    assert!(second.success(), "the second run failed\n{}", mount.log());
    let resent: u64 = proxy
        .records_of(Op::UploadPart)
        .iter()
        .map(|r| r.body_len)
        .sum();
    let expected_max = if change_part_3 {
        size - 8 * MIB
    } else {
        size * 4 / 10
    };
    assert!(
        resent <= expected_max,
        "the second run sent {} MiB of {} MiB\n{}",
        resent / MIB,
        size / MIB,
        mount.log()
    );
    if change_part_3 {
        assert_eq!(
            resent,
            size - 8 * MIB,
            "everything but part 2 is sent again"
        );
    }
    assert_eq!(
        proxy.count(Op::CreateMultipartUpload),
        0,
        "the parked upload was used"
    );
    let stored = client.get("big.bin").expect("the object");
    assert!(
        stored == std::fs::read(&file).expect("source"),
        "byte-identical"
    );
    assert_eq!(
        client.list(""),
        vec!["big.bin".to_owned()],
        "nothing else left"
    );
    assert!(client.list_multipart_uploads().is_empty());
    mount.unmount();
}

#[test]
fn a_cp_killed_at_70_percent_resumes_after_a_remount_sending_at_most_40_percent_again() {
    resumes_after_a_kill_at_70_percent("cp \"$SRC\" \"$MNT/big.bin\"", false);
}

/// rsync writes a new temporary name (`.big.bin.XXXXXX`) each run: the parked upload
/// of the killed run's temporary name is continued under the new one.
#[test]
fn an_rsync_killed_at_70_percent_resumes_when_run_again() {
    resumes_after_a_kill_at_70_percent("rsync \"$SRC\" \"$MNT/\"", false);
}

/// The network stays down past the retry budget: the copy fails (EIO at close), the
/// upload is parked (`status` lists it), and the same copy once the network is back
/// continues it.
#[test]
fn an_outage_past_the_retry_budget_parks_the_upload_and_the_next_copy_resumes_it() {
    let server = S3Server::garage();
    let client = server.client();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let source = make_temp_dir("s3upfs-outage-src-");
    let size = 160 * MIB;
    let file = source.path().join("big.bin");
    write_random_file(&file, size, 43);
    proxy.set_fault(
        Op::UploadPart,
        When::Always,
        Fault::Delay(Duration::from_millis(200)),
    );
    let mount = Mount::new(&through, &["--retry-budget", "3s"]);
    let copy = format!("cp '{}' \"$MNT/big.bin\"", file.display());
    let first = std::process::Command::new("sh")
        .args(["-c", &copy])
        .env("MNT", mount.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cp");
    let deadline = Instant::now() + Duration::from_secs(300);
    while proxy.successes(Op::UploadPart) < 10 {
        assert!(
            Instant::now() < deadline,
            "the copy did not get to 10 parts"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy.refuse();
    let failed = first.wait_with_output().expect("cp");
    assert!(
        !failed.status.success(),
        "the copy must fail during the outage"
    );
    let (_, stdout, _) = run_cli(
        &["status", mount.path().to_str().expect("utf-8"), "--json"],
        &[],
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(report[0]["parked"][0]["key"], "big.bin", "{stdout}");
    assert_eq!(
        client.list_multipart_uploads().len(),
        1,
        "parked, not aborted"
    );

    proxy.accept();
    proxy.clear();
    proxy.reset_counters();
    mount.sh_ok(&copy);
    let resent: u64 = proxy
        .records_of(Op::UploadPart)
        .iter()
        .map(|r| r.body_len)
        .sum();
    // At least parts 2..=10 were in S3 when the outage began: none is sent again.
    assert!(
        resent <= size - 9 * 8 * MIB,
        "sent {} MiB again",
        resent / MIB
    );
    assert_eq!(proxy.count(Op::CreateMultipartUpload), 0);
    assert!(client.get("big.bin").expect("object") == std::fs::read(&file).expect("source"));
    assert!(client.list_multipart_uploads().is_empty());
    mount.unmount();
}

/// The source changed between the runs (one byte in part 3): part 2 is reused, part 1
/// and parts 3 onward are sent again, and the object is the new source.
#[test]
fn a_source_changed_in_part_3_reuses_only_part_2() {
    resumes_after_a_kill_at_70_percent("cp \"$SRC\" \"$MNT/big.bin\"", true);
}

/// A parked upload is aborted by the running mount once its `--resume-window` has
/// passed; one parked by another state directory's mount is never touched, even by a
/// mount whose window is zero.
#[test]
fn the_resume_window_aborts_only_this_journals_parked_uploads() {
    let server = S3Server::garage();
    let client = server.client();
    let proxy = FaultProxy::start(&server.endpoint());
    let (through, _env) = via_proxy(&server, &proxy);
    let source = make_temp_dir("s3upfs-window-src-");
    let file = source.path().join("big.bin");
    write_random_file(&file, 160 * MIB, 44);
    let park = |name: &str, args: &[&str]| {
        proxy.set_fault(
            Op::UploadPart,
            When::Always,
            Fault::Delay(Duration::from_millis(200)),
        );
        let mount = Mount::new(&through, args);
        let copy = std::process::Command::new("cp")
            .arg(&file)
            .arg(mount.join(name))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cp");
        proxy.reset_counters();
        let deadline = Instant::now() + Duration::from_secs(300);
        while proxy.successes(Op::UploadPart) < 10 {
            assert!(
                Instant::now() < deadline,
                "the copy did not get to 10 parts"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy.refuse();
        let failed = copy.wait_with_output().expect("cp");
        assert!(!failed.status.success());
        proxy.accept();
        proxy.clear();
        mount
    };
    // Another host's mount parks "theirs" in its own state directory and goes away.
    let theirs = park("theirs.bin", &["--retry-budget", "2s"]);
    theirs.unmount();
    assert_eq!(client.list_multipart_uploads().len(), 1);
    // Ours parks "mine" with a 2 s window: the running mount aborts it, not theirs.
    let mine = park(
        "mine.bin",
        &["--retry-budget", "2s", "--resume-window", "2s"],
    );
    assert_eq!(client.list_multipart_uploads().len(), 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.list_multipart_uploads().len() > 1 {
        assert!(
            Instant::now() < deadline,
            "the expired upload was not aborted\n{}",
            mine.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let left: Vec<String> = client
        .list_multipart_uploads()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(left, vec!["theirs.bin".to_owned()], "theirs untouched");
    mine.unmount();
    client.abort_all_multipart();
}
