//! Defects of the 2026-12 audit, each reproduced through a real mount on Garage and
//! guarded here: no silent data loss, no hang, no write from a read-only mount.

mod common;

use std::time::{Duration, Instant};

use common::{Mount, S3Server};

const MIB: usize = 1 << 20;

fn python(mount: &Mount, script: &str) -> std::process::Output {
    mount.sh(&format!("python3 - <<'PY'\n{script}\nPY"))
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// H1: `rename(a, b)` while `b` is open for writing. POSIX: the old `b` is unlinked, its
/// later writes and close succeed and go nowhere; `b` holds `a`'s bytes for good.
#[test]
fn rename_over_a_file_open_for_writing_keeps_the_renamed_data() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    for (name, old_size) in [("small", 4usize), ("multipart", 20 * MIB)] {
        let out = python(
            &mount,
            &format!(
                r#"
import os
m = os.environ['MNT']
fd = os.open(f'{{m}}/{name}-b', os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
os.write(fd, b'O' * {old_size})
with open(f'{{m}}/{name}-a', 'w') as f:
    f.write('NEW\n')
os.rename(f'{{m}}/{name}-a', f'{{m}}/{name}-b')
os.write(fd, b'more bytes after the rename')
os.close(fd)
print(open(f'{{m}}/{name}-b').read(), end='')
"#
            ),
        );
        assert!(out.status.success(), "{name}: {out:?}\n{}", mount.log());
        assert_eq!(stdout(&out), "NEW\n", "{name}: read through the mount");
        let client = server.client();
        assert_eq!(
            client.get(&format!("{name}-b")).as_deref(),
            Some(&b"NEW\n"[..]),
            "{name}: the object under the final name is the renamed file"
        );
        assert!(
            !mount.join(format!("{name}-a")).exists(),
            "{name}: the source name is gone"
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        server.client().list_multipart_uploads().is_empty(),
        "the replaced writer's multipart upload was aborted"
    );
}

/// M5: one process keeps many files open, each past its first part. Once the files'
/// parts hold the whole memory budget and nothing is uploading, the next write fails
/// with EDQUOT within seconds instead of hanging forever, and the files written before
/// still complete.
#[test]
fn one_process_holding_the_memory_budget_in_idle_files_gets_edquot_not_a_hang() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &["--max-memory", "48MiB"]);
    let started = Instant::now();
    let out = python(
        &mount,
        r#"
import os, errno
m = os.environ['MNT']
files = []
try:
    for i in range(12):
        f = open(f'{m}/o{i}', 'wb', buffering=0)
        files.append(f)
        f.write(b'\0' * (9 << 20))
    print('no error')
except OSError as e:
    print('refused', len(files), errno.errorcode.get(e.errno))
for f in files[:-1]:
    f.close()
try:
    files[-1].close()
except OSError:
    pass
"#,
    );
    let elapsed = started.elapsed();
    let text = stdout(&out);
    assert!(out.status.success(), "{out:?}\n{}", mount.log());
    assert!(
        text.starts_with("refused") && text.trim_end().ends_with("EDQUOT"),
        "the writer past the budget gets EDQUOT: {text}"
    );
    assert!(
        elapsed < Duration::from_secs(60),
        "refused after {elapsed:?}, not after a bounded wait"
    );
    assert!(
        mount.log().contains("EDQUOT"),
        "the daemon log says why the write was refused"
    );
    // The files written before the refusal are complete objects.
    let count: usize = text
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("count of files opened");
    let client = server.client();
    for i in 0..count - 1 {
        assert_eq!(
            client.head(&format!("o{i}")).map(|h| h.size),
            Some(9 * MIB as u64),
            "o{i}"
        );
    }
}

/// M5/M6 and "every writer can be killed": a writer waiting for memory behind uploads
/// that do not progress (the server is frozen) dies at once on SIGKILL, although the
/// kernel waits for the daemon's answer in uninterruptible sleep.
#[test]
fn a_writer_waiting_for_memory_dies_at_once_when_killed() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &["--max-memory", "16MiB"]);
    let mut writer = std::process::Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", mount.join("stuck").display()),
            "bs=1M",
            "count=64",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dd");
    // Let dd fill the budget, then freeze the server: the parts in flight never finish.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.client().list_multipart_uploads().is_empty() {
        assert!(Instant::now() < deadline, "no multipart upload started");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.freeze();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        writer.try_wait().expect("try_wait").is_none(),
        "dd should be waiting for memory"
    );
    let killed = Instant::now();
    writer.kill().expect("SIGKILL");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = writer.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            server.thaw();
            panic!("dd still alive 5 s after SIGKILL\n{}", mount.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    server.thaw();
    assert!(!status.success());
    assert!(killed.elapsed() < Duration::from_secs(5));
    // M8: as on a local disk, the killed writer's file keeps what it wrote (zeros, at
    // least the parts that filled the budget), and no upload is left.
    let client = server.client();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client.list_multipart_uploads().is_empty() || client.head("stuck").is_none() {
        assert!(
            Instant::now() < deadline,
            "the killed writer's file did not complete\n{}",
            mount.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let size = client.head("stuck").map_or(0, |h| h.size);
    assert!(
        (8 * MIB as u64..64 * MIB as u64).contains(&size),
        "the killed writer's file should hold what it wrote: {size} bytes\n{}",
        mount.log()
    );
    let body = client.get("stuck").expect("object");
    assert!(body.iter().all(|b| *b == 0), "dd wrote zeros");
}

/// M8: Ctrl-C on `cp` (SIGINT) in the middle of a file: as on a local disk, the file
/// keeps what cp wrote (a prefix of the source), and no upload is left.
#[test]
fn an_interrupted_cp_leaves_the_prefix_it_wrote_as_a_local_disk_does() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &["--max-memory", "16MiB"]);
    let source = tempfile::tempdir().expect("tempdir");
    let big = source.path().join("big");
    common::write_random_file(&big, 200 * MIB as u64, 3);
    let mut cp = std::process::Command::new("cp")
        .arg(&big)
        .arg(mount.join("big"))
        .spawn()
        .expect("cp");
    let client = server.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.list_multipart_uploads().is_empty() {
        assert!(Instant::now() < deadline, "no multipart upload started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(cp.id() as i32, libc::SIGINT) };
    let status = cp.wait().expect("wait");
    assert!(!status.success(), "cp was interrupted");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.list_multipart_uploads().is_empty() {
        assert!(Instant::now() < deadline, "the interrupted upload is left");
        std::thread::sleep(Duration::from_millis(200));
    }
    let written = client.get("big").expect("the file keeps what cp wrote");
    let source = std::fs::read(&big).expect("source");
    assert!(
        !written.is_empty() && written.len() < source.len(),
        "cp was interrupted midway: {} of {} bytes",
        written.len(),
        source.len()
    );
    assert!(
        written[..] == source[..written.len()],
        "the file holds a prefix of what cp copied\n{}",
        mount.log()
    );
}

/// M6: SIGTERM while one writer waits for memory and two writers of the same file hold
/// it (the second open replaced the first in the inode): the daemon aborts every upload
/// and unmounts, and no multipart upload is left.
#[test]
fn sigterm_with_a_writer_waiting_for_memory_unmounts_and_leaves_no_upload() {
    let server = S3Server::garage();
    let mut mount = Mount::new(&server, &["--part-size", "8MiB", "--max-memory", "16MiB"]);
    let script = format!(
        r#"
import os, threading, time
p = '{}'
a = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC); os.write(a, b'1')
b = os.open(p, os.O_WRONLY | os.O_TRUNC); os.write(b, b'2')
c = os.open(p, os.O_WRONLY | os.O_TRUNC)
threading.Thread(target=lambda: os.write(c, b'3' * (9 << 20)), daemon=True).start()
print('waiting', flush=True)
time.sleep(60)
"#,
        mount.join("f").display()
    );
    let mut holder = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read");
    assert_eq!(line.trim(), "waiting");
    std::thread::sleep(Duration::from_secs(1));
    mount.kill(libc::SIGTERM);
    let status = mount.wait_for_exit(Duration::from_secs(30));
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        status.is_some(),
        "the daemon did not exit within 30 s of SIGTERM\n{}",
        mount.log()
    );
    let client = server.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.list_multipart_uploads().is_empty() {
        assert!(
            Instant::now() < deadline,
            "uploads left behind: {:?}",
            client.list_multipart_uploads()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(client.get("f").is_none(), "nothing half-written appears");
}

/// H3: a server that accepts requests and never answers (SIGSTOPped). close() fails
/// with EIO within the request timeout and retry budget, and the next lookup does
/// not hang either.
#[test]
fn a_hung_server_fails_close_within_the_request_timeout_and_retry_budget() {
    let server = S3Server::garage();
    let mount = Mount::new(
        &server,
        &["--request-timeout", "2s", "--retry-budget", "3s"],
    );
    let path = mount.join("x");
    let mut file = std::fs::File::create(&path).expect("create");
    std::io::Write::write_all(&mut file, b"hello").expect("write");
    server.freeze();
    let started = Instant::now();
    let closed = common::close_checked(file);
    let stat = std::fs::metadata(mount.join("never-seen"));
    let elapsed = started.elapsed();
    server.thaw();
    assert_eq!(
        closed.err().and_then(|e| e.raw_os_error()),
        Some(libc::EIO),
        "close on a hung server\n{}",
        mount.log()
    );
    assert!(stat.is_err(), "a lookup on a hung server fails");
    assert!(
        elapsed < Duration::from_secs(40),
        "close and lookup took {elapsed:?}"
    );
}

/// L5: `--read-only` changes nothing in the bucket, not even by the orphan sweep.
#[test]
fn a_read_only_mount_does_not_abort_other_clients_uploads() {
    let server = S3Server::garage();
    let client = server.client();
    let upload_id = client.create_multipart("someone-elses");
    std::thread::sleep(Duration::from_secs(2));
    let mount = Mount::new(
        &server,
        &["--read-only", "--sweep-orphans-older-than", "1s"],
    );
    assert!(mount.join(".").exists());
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        client
            .list_multipart_uploads()
            .iter()
            .any(|(key, id)| key == "someone-elses" && *id == upload_id),
        "the read-only mount aborted an upload\n{}",
        mount.log()
    );
    // A writable mount with the same setting does sweep it (so the test sees the sweep).
    drop(mount);
    let _writable = Mount::new(&server, &["--sweep-orphans-older-than", "1s"]);
    assert!(client.list_multipart_uploads().is_empty());
}

/// L2: dd with `seek=` into a new file (dd closes a duplicate first, then truncates).
#[test]
fn dd_with_seek_into_a_new_file_writes_a_sparse_object() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let out = mount.sh("dd if=/dev/zero of=\"$MNT/n\" bs=1M count=1 seek=2 status=none");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        server.client().head("n").map(|h| h.size),
        Some(3 * MIB as u64)
    );
}

/// H5: a file re-opened with O_TRUNC and renamed before anything was uploaded: the old
/// name is gone for good, its old object with it.
#[test]
fn renaming_a_file_reopened_with_o_trunc_leaves_nothing_under_the_old_name() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let out = python(
        &mount,
        r#"
import os, time
m = os.environ['MNT']
open(f'{m}/f', 'w').write('old contents\n')
fd = os.open(f'{m}/f', os.O_WRONLY | os.O_TRUNC); os.write(fd, b'new\n')
os.rename(f'{m}/f', f'{m}/g'); os.close(fd)
time.sleep(1.5)
print(sorted(os.listdir(m)))
print(open(f'{m}/g').read(), end='')
"#,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "['g']\nnew\n");
    std::thread::sleep(Duration::from_secs(1));
    let client = server.client();
    assert!(client.get("f").is_none(), "the old object is gone");
    assert_eq!(client.get("g").as_deref(), Some(&b"new\n"[..]));
}

/// M3: a listing right after a held chmod (within the 1 s hold) must not put the
/// object's old metadata back, nor send an object without POSIX metadata.
#[test]
fn a_listing_during_a_held_chmod_keeps_the_change_and_the_metadata() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    mount.sh_ok("echo hi > \"$MNT/a\"");
    std::thread::sleep(Duration::from_secs(2));
    let listed = mount.sh_ok("mv \"$MNT/a\" \"$MNT/b\" && chmod 600 \"$MNT/b\" && ls -l \"$MNT/\"");
    let line = listed
        .lines()
        .find(|l| l.ends_with(" b"))
        .unwrap_or_else(|| panic!("b not listed: {listed}"));
    assert!(line.starts_with("-rw-------"), "ls shows {line}");
    std::thread::sleep(Duration::from_secs(3));
    let head = server.client().head("b").expect("object b");
    assert_eq!(
        head.metadata.get("mode").map(String::as_str),
        Some(&*format!("{}", libc::S_IFREG | 0o600)),
        "metadata of b: {:?}",
        head.metadata
    );
    assert!(head.metadata.contains_key("mtime"), "{:?}", head.metadata);
}

/// M4: `s3upfs lifecycle` that cannot read the bucket's rules refuses, instead of
/// replacing them with its own rule alone.
#[test]
fn lifecycle_refuses_when_it_cannot_read_the_existing_rules() {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
        LifecycleRuleFilter,
    };
    use common::fault_proxy::{Fault, FaultProxy, Op, Rule, When};
    let server = S3Server::garage();
    let client = server.client();
    let theirs = LifecycleRule::builder()
        .id("expire-logs")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
        .expiration(LifecycleExpiration::builder().days(30).build())
        .build()
        .expect("rule");
    client
        .block_on(
            client
                .sdk()
                .put_bucket_lifecycle_configuration()
                .bucket(server.bucket())
                .lifecycle_configuration(
                    BucketLifecycleConfiguration::builder()
                        .rules(theirs)
                        .build()
                        .expect("configuration"),
                )
                .send(),
        )
        .expect("their rule installed");
    let proxy = FaultProxy::start(&server.endpoint());
    // Every attempt of the GET fails (the SDK makes 6); a PUT after it would succeed.
    proxy.add_rule(Rule::new(Op::Other, When::Always, Fault::InternalError).limit(6));
    let endpoint = proxy.endpoint();
    let bucket = format!("s3://{}", server.bucket());
    let region = server.region();
    let (status, _, stderr) = common::run_cli(
        &[
            "lifecycle",
            &bucket,
            "--abort-incomplete-after",
            "7d",
            "--endpoint-url",
            &endpoint,
            "--region",
            &region,
            "--force-path-style",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", &server.access_key()),
            ("AWS_SECRET_ACCESS_KEY", &server.secret_key()),
        ],
    );
    assert!(!status.success(), "lifecycle must fail: {stderr}");
    let rules = client
        .block_on(
            client
                .sdk()
                .get_bucket_lifecycle_configuration()
                .bucket(server.bucket())
                .send(),
        )
        .expect("configuration");
    let ids: Vec<Option<&str>> = rules.rules().iter().map(|r| r.id()).collect();
    assert_eq!(ids, vec![Some("expire-logs")], "their rule is kept");
}

/// M10: `--local` refuses a data directory another user owns or others may write, and
/// never writes its credentials through a symlink planted in it.
#[test]
fn local_refuses_a_shared_data_directory_and_never_writes_through_a_symlink() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().expect("tempdir");
    let mountpoint = root.path().join("mnt");
    std::fs::create_dir(&mountpoint).expect("mkdir");
    let mount = |data: &std::path::Path| {
        common::run_cli(
            &[
                "mount",
                "--local",
                data.to_str().expect("utf-8"),
                mountpoint.to_str().expect("utf-8"),
            ],
            &[],
        )
    };
    let open = root.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let (status, _, stderr) = mount(&open);
    let _guard = common::Unmount(mountpoint.clone());
    assert!(
        !status.success(),
        "a world-writable data directory is refused"
    );
    assert!(stderr.contains("writable by group or others"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    let foreign = root.path().join("foreign");
    std::fs::create_dir(&foreign).expect("mkdir");
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).expect("chown");
    let (status, _, stderr) = mount(&foreign);
    assert!(
        !status.success(),
        "another user's data directory is refused"
    );
    assert!(stderr.contains("belongs to uid 65534"), "{stderr}");

    let own = root.path().join("own");
    std::fs::create_dir(&own).expect("mkdir");
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let victim = root.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("write");
    std::os::unix::fs::symlink(&victim, own.join(".s3upfs-local.env")).expect("symlink");
    std::os::unix::fs::symlink(&victim, own.join(".s3upfs-local.lock")).expect("symlink");
    let (status, _, stderr) = mount(&own);
    // The lock file is refused (O_NOFOLLOW): the mount fails, and nothing was written.
    assert!(
        !status.success(),
        "a planted lock symlink is refused: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&victim).expect("read"),
        "precious\n"
    );
    std::fs::remove_file(own.join(".s3upfs-local.lock")).expect("rm");
    let (status, _, stderr) = mount(&own);
    assert!(status.success(), "mount: {stderr}");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("read"),
        "precious\n",
        "the planted symlink's target is untouched"
    );
    let env = std::fs::symlink_metadata(own.join(".s3upfs-local.env")).expect("env file");
    assert!(
        env.file_type().is_file(),
        "the env file replaced the symlink"
    );
    assert_eq!(env.permissions().mode() & 0o777, 0o600);
}

/// M9: opening a file for reading while its close is completing the upload on a hung
/// server answers at once (EBUSY: still being written) instead of waiting for the
/// writer's lock on a FUSE dispatch thread.
#[test]
fn opening_a_file_whose_upload_is_completing_answers_at_once() {
    use std::io::Write;
    let server = S3Server::garage();
    let mount = Mount::new(
        &server,
        &["--request-timeout", "5s", "--retry-budget", "5s"],
    );
    let path = mount.join("big");
    let mut file = std::fs::File::create(&path).expect("create");
    file.write_all(&vec![7u8; 20 * MIB]).expect("write");
    server.freeze();
    let closing = std::thread::spawn(move || common::close_checked(file));
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let opened = std::fs::File::open(&path);
    let elapsed = started.elapsed();
    server.thaw();
    let _ = closing.join();
    assert_eq!(
        opened.err().and_then(|e| e.raw_os_error()),
        Some(libc::EBUSY),
        "open for reading of a file still being completed"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "open took {elapsed:?} while a close was completing"
    );
}

/// H4: the opener hands the descriptor to a child and closes its own first
/// (`Popen(stdout=fd)`). The child's close is the last one: it completes the upload and
/// returns its result, so once the child is reaped the object is complete in S3.
#[test]
fn a_child_that_closes_last_completes_the_upload_at_its_close() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let out = python(
        &mount,
        r#"
import os, subprocess
m = os.environ['MNT']
fd = os.open(f'{m}/out', os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
p = subprocess.Popen(['head', '-c', '30M', '/dev/zero'], stdout=fd)
os.close(fd)
print(p.wait())
print(os.stat(f'{m}/out').st_size)
print(len(open(f'{m}/out', 'rb').read()))
"#,
    );
    assert!(out.status.success(), "{out:?}\n{}", mount.log());
    let size = 30 * MIB;
    assert_eq!(stdout(&out), format!("0\n{size}\n{size}\n"));
    assert_eq!(
        server.client().head("out").map(|h| h.size),
        Some(size as u64),
        "complete in S3 once the child's close returned"
    );
}

/// L9: a file open for reading survives a rename (POSIX): reads after `mv` continue
/// from the object's new key.
#[test]
fn a_file_open_for_reading_is_still_readable_after_a_rename() {
    use std::io::{Read, Seek, SeekFrom};
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let data = common::random_bytes(40 * MIB, 9);
    std::fs::write(mount.join("v"), &data).expect("write");
    let mut reader = std::fs::File::open(mount.join("v")).expect("open");
    let mut head = vec![0u8; MIB];
    reader.read_exact(&mut head).expect("first read");
    std::fs::rename(mount.join("v"), mount.join("w")).expect("mv");
    std::thread::sleep(Duration::from_secs(2));
    // Past the readahead window and the cache TTL: these bytes come from S3 again.
    reader.seek(SeekFrom::Start(35 * MIB as u64)).expect("seek");
    let mut tail = Vec::new();
    reader
        .read_to_end(&mut tail)
        .expect("read after the rename");
    assert_eq!(head, data[..MIB]);
    assert_eq!(tail, data[35 * MIB..]);
}

/// M1 (POSIX): `mv` of a log file whose multipart upload has started, then a new file
/// under the old name, as log rotation does. The writer goes on; its close completes
/// every byte under the new name, the new file stays as written, and no upload is left.
#[test]
fn log_rotation_with_mv_while_the_upload_streams_keeps_every_byte_of_both_files() {
    use std::io::Write;
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let data = common::random_bytes(40 * MIB, 4);
    let mut file = std::fs::File::create(mount.join("app.log")).expect("create");
    file.write_all(&data[..20 * MIB]).expect("first half");
    std::fs::rename(mount.join("app.log"), mount.join("app.log.1")).expect("mv while writing");
    std::fs::write(mount.join("app.log"), "fresh").expect("the new log");
    file.write_all(&data[20 * MIB..])
        .expect("the writer goes on");
    common::close_checked(file).expect("close completes the whole file");
    let client = server.client();
    assert_eq!(client.get("app.log.1").as_deref(), Some(&data[..]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get("app.log").as_deref() != Some(&b"fresh"[..]) {
        assert!(
            Instant::now() < deadline,
            "the new app.log was lost\n{}",
            mount.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(client.list_multipart_uploads().is_empty());
    assert_eq!(
        std::fs::read(mount.join("app.log.1"))
            .expect("read back")
            .len(),
        data.len()
    );
}

/// A chmod between dd's first (duplicate) close, which put an empty object, and its
/// last close, with nothing written: the mode reaches the object.
#[test]
fn a_chmod_after_an_empty_first_close_reaches_the_object() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let out = python(
        &mount,
        r#"
import os
m = os.environ['MNT']
fd = os.open(f'{m}/e', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.close(os.dup(fd))
os.fchmod(fd, 0o600)
os.close(fd)
"#,
    );
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_secs(2));
    let head = server.client().head("e").expect("object e");
    assert_eq!(head.size, 0);
    assert_eq!(
        head.metadata.get("mode").map(String::as_str),
        Some(&*format!("{}", libc::S_IFREG | 0o600)),
        "{:?}",
        head.metadata
    );
}
