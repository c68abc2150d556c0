//! The mount as a user meets it first: mounting Garage and the embedded `--local`
//! server, writing a file, and clear one-line failures for every bad input.

mod common;

use std::path::Path;

use common::{Mount, S3Server, run_cli};

fn credentials(server: &S3Server) -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), server.access_key()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), server.secret_key()),
    ]
}

fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn is_mounted(path: &Path) -> bool {
    let target = path.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(target.as_str()))
}

#[test]
fn a_small_file_written_on_garage_becomes_an_object_with_the_same_bytes() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    std::fs::write(mount.join("hello.txt"), b"hello, s3\n").expect("write through the mount");
    let status = mount.unmount();
    assert!(status.success(), "daemon exit status {status:?}");
    assert_eq!(
        server.client().get("hello.txt").as_deref(),
        Some(&b"hello, s3\n"[..])
    );
}

#[test]
fn a_mount_with_a_prefix_writes_below_it_only() {
    let server = S3Server::garage();
    let mount = Mount::with_prefix(&server, "team/backups/", &[]);
    std::fs::write(mount.join("a.txt"), b"a").expect("write");
    drop(mount);
    assert_eq!(
        server.client().list(""),
        vec!["team/backups/a.txt".to_owned()]
    );
}

#[test]
fn a_small_file_written_on_the_local_server_becomes_an_object() {
    let (mount, server) = Mount::local(&[]);
    std::fs::write(mount.join("hello.txt"), b"local bytes").expect("write through the mount");
    std::fs::create_dir(mount.join("empty-dir")).expect("mkdir");
    assert_eq!(
        server.client().get("hello.txt").as_deref(),
        Some(&b"local bytes"[..])
    );
    // A multipart upload too: the embedded server refuses a full-object checksum, and
    // the mount goes on with composite ones (no whole-object CRC32C to show).
    let big = common::random_bytes(20 << 20, 7);
    std::fs::write(mount.join("big.bin"), &big).expect("write a multipart file");
    assert!(
        server.client().get("big.bin") == Some(big),
        "big.bin is whole"
    );
    let shown = mount.sh("getfattr --only-values -n user.s3upfs.crc32c \"$MNT/big.bin\"");
    assert!(
        !shown.status.success()
            && String::from_utf8_lossy(&shown.stderr).contains("No such attribute"),
        "{shown:?}"
    );
    assert!(mount.log().contains("refused a full-object checksum"));
    let status = mount.unmount();
    assert!(status.success(), "daemon exit status {status:?}");
}

#[test]
fn without_foreground_the_command_returns_once_mounted_and_umount_ends_the_daemon() {
    let server = S3Server::garage();
    let mountpoint = tempfile::tempdir().expect("tempdir");
    let target = mountpoint.path().to_string_lossy().to_string();
    let url = format!("s3://{}/", server.bucket());
    let endpoint = server.endpoint();
    let region = server.region();
    let env = credentials(&server);
    let (status, _, stderr) = run_cli(
        &[
            "mount",
            &url,
            &target,
            "--endpoint-url",
            &endpoint,
            "--region",
            &region,
            "--force-path-style",
        ],
        &as_refs(&env),
    );
    assert!(status.success(), "mount failed: {stderr}");
    assert!(
        is_mounted(mountpoint.path()),
        "not mounted after the command returned"
    );
    std::fs::write(mountpoint.path().join("x"), b"daemon").expect("write");
    let unmounted = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(mountpoint.path())
        .status()
        .expect("fusermount3");
    assert!(unmounted.success());
    assert!(!is_mounted(mountpoint.path()));
    assert_eq!(server.client().get("x").as_deref(), Some(&b"daemon"[..]));
}

/// Runs a mount that must fail; checks the single stderr line and the exit status.
fn assert_mount_fails(args: &[&str], env: &[(String, String)], expected: &str) {
    let (status, _, stderr) = run_cli(args, &as_refs(env));
    assert!(!status.success(), "{args:?} unexpectedly succeeded");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(
        lines[0].contains(expected),
        "{:?} does not mention {expected:?}",
        lines[0]
    );
}

#[test]
fn bad_input_fails_at_once_with_one_line_and_mounts_nothing() {
    let server = S3Server::garage();
    let mountpoint = tempfile::tempdir().expect("tempdir");
    let target = mountpoint.path().to_string_lossy().to_string();
    let endpoint = server.endpoint();
    let good_url = format!("s3://{}/", server.bucket());
    let env = credentials(&server);
    let with = |url: &str, target: &str, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "mount",
            url,
            target,
            "--endpoint-url",
            &endpoint,
            "--region",
            "garage",
            "--force-path-style",
            "--foreground",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |args: Vec<String>, env: &[(String, String)], expected: &str| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_mount_fails(&refs, env, expected);
        assert!(!is_mounted(mountpoint.path()));
    };

    run(
        with("s3://no-such-bucket-here/", &target, &[]),
        &env,
        "does not exist",
    );
    let bad_secret: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| {
            if k == "AWS_SECRET_ACCESS_KEY" {
                (k.clone(), "0".repeat(64))
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    run(with(&good_url, &target, &[]), &bad_secret, "denied");
    let mut unreachable = with(&good_url, &target, &[]);
    unreachable[4] = "http://127.0.0.1:9".to_owned();
    run(unreachable, &env, "cannot reach");
    run(
        with(&good_url, "/nonexistent/s3upfs-mountpoint", &[]),
        &env,
        "does not exist",
    );
    run(
        with(&good_url, &target, &["--part-size", "8XB"]),
        &env,
        "--part-size",
    );
    run(
        with(&good_url, &target, &["--part-size", "1MiB"]),
        &env,
        "minimum",
    );
    run(with("bucket-without-scheme", &target, &[]), &env, "s3://");
    std::fs::write(mountpoint.path().join("keep.txt"), b"mine").expect("write");
    run(with(&good_url, &target, &[]), &env, "not empty");
    assert_eq!(
        std::fs::read(mountpoint.path().join("keep.txt")).expect("read"),
        b"mine",
        "the mountpoint's own files must be untouched"
    );
}

#[test]
fn sigterm_unmounts_cleanly() {
    let server = S3Server::garage();
    let mut mount = Mount::new(&server, &[]);
    std::fs::write(mount.join("before-term"), b"x").expect("write");
    mount.kill(libc::SIGTERM);
    assert!(
        mount
            .wait_for_exit(std::time::Duration::from_secs(30))
            .is_some(),
        "the daemon exits on SIGTERM"
    );
    let log = mount.log();
    assert!(log.contains("exited"), "the whole log was read:\n{log}");
    // Our own lines, and fuser's unmount warning that ended every clean exit. (fuser
    // may still log a failed reply to a request the kernel dropped while unmounting:
    // a race in its session, seen once in about ten runs, left for now.)
    let alarming: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.contains("Failed to umount")
                || ((line.contains(" WARN ") || line.contains(" ERROR "))
                    && line.contains("s3upfs"))
        })
        .collect();
    assert!(
        alarming.is_empty(),
        "a clean exit logs nothing alarming: {alarming:?}\n{log}"
    );
    let status = mount.unmount();
    assert!(
        status.success(),
        "daemon exit status after SIGTERM: {status:?}"
    );
    assert_eq!(
        server.client().get("before-term").as_deref(),
        Some(&b"x"[..])
    );
}
