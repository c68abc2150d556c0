//! A mount's life and death: SIGTERM with files open, a killed daemon's orphans and dead
//! mount, housekeeping commands, other clients changing the bucket, memory under load,
//! and what must never leak or escape (credentials, keys outside the prefix).

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Mount, S3Server, random_bytes, run_cli};

const MIB: usize = 1 << 20;

fn env_of(server: &S3Server) -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), server.access_key()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), server.secret_key()),
    ]
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn connection_args(server: &S3Server) -> Vec<String> {
    vec![
        "--endpoint-url".to_owned(),
        server.endpoint(),
        "--region".to_owned(),
        server.region(),
        "--force-path-style".to_owned(),
    ]
}

/// Stops the daemon with SIGTERM and returns its whole log (the last lines come at exit).
fn stop_and_log(mut mount: Mount) -> String {
    mount.kill(libc::SIGTERM);
    assert!(
        mount.wait_for_exit(Duration::from_secs(30)).is_some(),
        "daemon did not exit on SIGTERM"
    );
    mount.log()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sigterm_with_a_file_open_aborts_its_upload_and_the_writer_gets_an_error() {
    let server = S3Server::garage();
    let mut mount = Mount::new(&server, &[]);
    let mut file = std::fs::File::create(mount.join("open")).expect("create");
    file.write_all(&random_bytes(30 * MIB, 1)).expect("write");
    let client = server.client();
    wait_until("the upload has parts", Duration::from_secs(20), || {
        !client.list_multipart_uploads().is_empty()
    });
    mount.kill(libc::SIGTERM);
    assert!(
        mount.wait_for_log("aborting its upload", Duration::from_secs(20)),
        "the log must say the upload was aborted"
    );
    let later = file.write_all(&[1u8; 4096]).and_then(|_| file.sync_all());
    assert!(
        later.is_err(),
        "the writer must learn its file did not make it"
    );
    drop(file);
    assert!(
        mount.wait_for_exit(Duration::from_secs(30)).is_some(),
        "daemon did not exit"
    );
    assert!(client.list_multipart_uploads().is_empty());
    assert!(client.get("open").is_none());
}

#[test]
fn a_killed_daemon_leaves_orphans_that_cleanup_aborts_and_its_mountpoint_can_be_reused() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let mut file = std::fs::File::create(mount.join("orphan")).expect("create");
    file.write_all(&random_bytes(30 * MIB, 2)).expect("write");
    let client = server.client();
    wait_until("the upload has parts", Duration::from_secs(20), || {
        !client.list_multipart_uploads().is_empty()
    });
    mount.kill(libc::SIGKILL);
    drop(file);

    // The dead mount is detached by the next mount on the same mountpoint.
    let env = env_of(&server);
    let url = format!("s3://{}/", server.bucket());
    let target = mount.path().to_string_lossy().to_string();
    let mut args = vec!["mount".to_owned(), url.clone(), target.clone()];
    args.extend(connection_args(&server));
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _, stderr) = run_cli(&args_ref, &refs(&env));
    assert!(
        status.success(),
        "remount on a dead mountpoint failed: {stderr}"
    );
    std::fs::write(mount.join("after"), b"alive").expect("write after remount");
    assert_eq!(client.get("after").as_deref(), Some(&b"alive"[..]));

    let mut cleanup = vec![
        "cleanup".to_owned(),
        url.clone(),
        "--older-than".to_owned(),
        "0s".to_owned(),
    ];
    cleanup.extend(connection_args(&server));
    let mut dry = cleanup.clone();
    dry.push("--dry-run".to_owned());
    let dry_ref: Vec<&str> = dry.iter().map(String::as_str).collect();
    let (status, stdout, stderr) = run_cli(&dry_ref, &refs(&env));
    assert!(status.success(), "cleanup --dry-run: {stderr}");
    assert!(
        stdout.contains("orphan"),
        "dry run lists the orphan: {stdout}"
    );
    assert_eq!(
        client.list_multipart_uploads().len(),
        1,
        "dry run aborts nothing"
    );
    let cleanup_ref: Vec<&str> = cleanup.iter().map(String::as_str).collect();
    let (status, stdout, stderr) = run_cli(&cleanup_ref, &refs(&env));
    assert!(status.success(), "cleanup: {stderr}");
    assert!(stdout.contains("aborted 1"), "{stdout}");
    assert!(client.list_multipart_uploads().is_empty());
    drop(mount);
}

#[test]
fn the_lifecycle_command_installs_an_abort_incomplete_uploads_rule() {
    let server = S3Server::garage();
    let env = env_of(&server);
    let mut args = vec![
        "lifecycle".to_owned(),
        format!("s3://{}", server.bucket()),
        "--abort-incomplete-after".to_owned(),
        "7d".to_owned(),
    ];
    args.extend(connection_args(&server));
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, stdout, stderr) = run_cli(&args_ref, &refs(&env));
    assert!(status.success(), "lifecycle: {stderr}");
    assert!(stdout.contains("7 day"), "{stdout}");
    let client = server.client();
    let rules = client
        .block_on(
            client
                .sdk()
                .get_bucket_lifecycle_configuration()
                .bucket(server.bucket())
                .send(),
        )
        .expect("lifecycle configuration");
    let days: Vec<Option<i32>> = rules
        .rules()
        .iter()
        .map(|rule| {
            rule.abort_incomplete_multipart_upload()
                .and_then(|a| a.days_after_initiation())
        })
        .collect();
    assert_eq!(days, vec![Some(7)]);
}

#[test]
fn changes_by_another_client_are_seen_after_the_ttl_and_never_served_stale() {
    let server = S3Server::garage();
    let client = server.client();
    client.put("shared", b"version one".to_vec());
    let mount = Mount::new(&server, &[]);
    assert_eq!(
        std::fs::read(mount.join("shared")).expect("read"),
        b"version one"
    );
    let mut open = std::fs::File::open(mount.join("shared")).expect("open");
    let mut first = [0u8; 4];
    open.read_exact(&mut first).expect("read");
    client.put("shared", b"version two, longer".to_vec());
    wait_until("the new version shows", Duration::from_secs(10), || {
        std::fs::read(mount.join("shared")).ok().as_deref() == Some(&b"version two, longer"[..])
    });
    client.delete("shared");
    wait_until("the deletion shows", Duration::from_secs(10), || {
        !mount.join("shared").exists()
    });
    std::thread::sleep(Duration::from_secs(2));
    let mut rest = Vec::new();
    let read = std::fs::File::open(mount.join("shared"))
        .map(|_| ())
        .or_else(|_| {
            use std::io::Seek;
            open.seek(std::io::SeekFrom::Start(0))?;
            open.read_to_end(&mut rest).map(|_| ())
        });
    assert!(
        read.is_err() || rest.is_empty(),
        "a deleted object must not be read from stale buffers, got {rest:?}"
    );
}

#[test]
fn sixty_four_writers_stay_within_a_64_mib_budget() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &["--max-memory", "64MiB"]);
    let writers: Vec<_> = (0..64u64)
        .map(|index| {
            let path = mount.join(format!("w{index}"));
            std::thread::spawn(move || {
                let data = random_bytes(20 * MIB, 500 + index);
                let mut file = std::fs::File::create(&path).expect("create");
                for chunk in data.chunks(MIB) {
                    file.write_all(chunk).expect("write");
                }
                file.sync_all().expect("fsync completes the upload");
                data
            })
        })
        .collect();
    let client = server.client();
    for (index, writer) in writers.into_iter().enumerate() {
        let data = writer.join().expect("writer");
        assert!(
            client.get(&format!("w{index}")).as_deref() == Some(&data[..]),
            "w{index}"
        );
    }
    let log = stop_and_log(mount);
    let peak: u64 = log
        .lines()
        .find_map(|line| line.split("part buffers peaked at ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the daemon reports its part-buffer high-water mark at unmount");
    assert!(
        peak <= 64 * MIB as u64,
        "part buffers peaked at {peak} bytes"
    );
    assert!(peak > 0);
}

#[test]
fn credentials_never_reach_logs_or_error_messages() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &["--log-level", "trace"]);
    std::fs::write(mount.join("f"), random_bytes(9 * MIB, 3)).expect("write");
    let _ = std::fs::read(mount.join("f"));
    let log = stop_and_log(mount);
    assert!(
        !log.contains(&server.secret_key()),
        "secret key in the daemon log"
    );

    let mut env = env_of(&server);
    let wrong_secret = "f".repeat(64);
    env[1].1 = wrong_secret.clone();
    let mut args = vec![
        "mount".to_owned(),
        format!("s3://{}/", server.bucket()),
        "/nonexistent-but-checked-later".to_owned(),
    ];
    args.extend(connection_args(&server));
    args.push("--foreground".to_owned());
    let mountpoint = tempfile::tempdir().expect("tempdir");
    args[2] = mountpoint.path().to_string_lossy().to_string();
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, stdout, stderr) = run_cli(&args_ref, &refs(&env));
    assert!(!status.success());
    assert!(!stderr.contains(&wrong_secret) && !stdout.contains(&wrong_secret));
}

#[test]
fn nothing_from_the_mount_reaches_outside_its_prefix() {
    let server = S3Server::garage();
    let client = server.client();
    client.put("outside.txt", b"not yours".to_vec());
    client.put("inner/../sneaky", b"dot-dot key".to_vec());
    let mount = Mount::with_prefix(&server, "inner/", &[]);
    std::fs::create_dir(mount.join("a")).expect("mkdir");
    std::fs::write(mount.join("a/../b"), b"b").expect("write through ..");
    std::fs::rename(mount.join("b"), mount.join("a/b")).expect("rename");
    let names: Vec<String> = std::fs::read_dir(mount.path())
        .expect("readdir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        vec!["a".to_owned()],
        "keys named `..` or outside the prefix stay hidden"
    );
    // A new directory's marker is held for a second; fsync sends it now.
    std::fs::File::open(mount.join("a"))
        .and_then(|dir| dir.sync_all())
        .expect("fsync of a/");
    let mut keys = client.list("");
    keys.sort();
    assert_eq!(
        keys,
        vec!["inner/../sneaky", "inner/a/", "inner/a/b", "outside.txt"],
        "everything written stays below the prefix"
    );
    assert_eq!(
        client.get("outside.txt").as_deref(),
        Some(&b"not yours"[..])
    );
}

/// L1: the inode table forgets what the kernel forgets. After 300 files were created
/// and stat'ed, the kernel's caches are dropped (it sends FORGET): the table shrinks to
/// a handful of inodes (names only listed go a few seconds after their listing
/// expired), and every file is still found, listed and read.
#[test]
fn the_inode_table_forgets_what_the_kernel_forgets() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let dir = mount.join("many");
    std::fs::create_dir(&dir).expect("mkdir");
    for index in 0..300 {
        std::fs::write(dir.join(format!("f{index}")), index.to_string()).expect("write");
    }
    for index in 0..300 {
        std::fs::metadata(dir.join(format!("f{index}"))).expect("stat");
    }
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write("/proc/sys/vm/drop_caches", "2").expect("drop the dentry and inode caches");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        std::fs::read_to_string(dir.join("f123")).expect("read after the caches went"),
        "123"
    );
    assert_eq!(std::fs::read_dir(&dir).expect("ls").count(), 300);
    std::fs::write("/proc/sys/vm/drop_caches", "2").expect("drop again");
    // Names the listing showed and nobody looked up go once their listing expired.
    std::thread::sleep(Duration::from_secs(7));
    let log = stop_and_log(mount);
    let inodes: usize = log
        .lines()
        .find_map(|line| line.split("bytes; ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the daemon reports its inode count at unmount");
    assert!(
        inodes < 50,
        "{inodes} inodes left in the table after the kernel forgot them"
    );
}
