//! Mounting the way boot and backup jobs do: an fstab line read by `mount -a`, and
//! `mount -t fuse.s3upfs` (mount.fuse3 runs `s3upfs SOURCE DIR -o OPTIONS`), with the
//! generic options fstab lines carry. Credentials come from the environment, as from a
//! systemd unit's `Environment=`/`EnvironmentFile=`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{S3Server, Unmount, is_fuse_mounted, s3upfs_bin};

/// mount(8) runs helpers with the standard PATH only (/usr/local/sbin first): while a
/// test runs, /usr/local/sbin/s3upfs is a link to the binary under test. Tests taking it
/// hold a lock, so they take turns; the link goes when the last guard drops.
struct OnStandardPath {
    _lock: std::fs::File,
}

const LINK: &str = "/usr/local/sbin/s3upfs";

impl OnStandardPath {
    fn new() -> OnStandardPath {
        use std::os::fd::AsRawFd;
        let lock = std::fs::File::create("/tmp/s3upfs-boot-tests.lock").expect("lock file");
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        match std::fs::symlink_metadata(LINK) {
            Ok(meta) if meta.file_type().is_symlink() => {
                std::fs::remove_file(LINK).expect("stale test link")
            }
            Ok(_) => panic!("{LINK} is an installed s3upfs: the boot tests would replace it"),
            Err(_) => {}
        }
        std::fs::create_dir_all("/usr/local/sbin").expect("/usr/local/sbin");
        std::os::unix::fs::symlink(s3upfs_bin(), LINK).expect("link the binary under test");
        OnStandardPath { _lock: lock }
    }
}

impl Drop for OnStandardPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(LINK);
    }
}

/// `mount ARGS` with the server's keys in the environment.
fn mount_command(server: &S3Server, args: &[&str]) -> std::process::Output {
    let mut command = Command::new("mount");
    command
        .args(args)
        .env("AWS_ACCESS_KEY_ID", server.access_key())
        .env("AWS_SECRET_ACCESS_KEY", server.secret_key());
    common::output_with_timeout(command, Duration::from_secs(60))
        .expect("running mount")
        .0
}

fn daemon_running_on(mountpoint: &Path) -> bool {
    let needle = mountpoint.to_string_lossy().into_owned();
    common::sh(&format!("pgrep -f -- 's3upfs.*{needle}'"))
        .status
        .success()
}

#[test]
fn an_fstab_line_mounts_with_mount_a_and_umount_ends_the_daemon() {
    let server = S3Server::garage();
    let dir = tempfile::tempdir().expect("tempdir");
    let mountpoint = dir.path().canonicalize().expect("canonical").join("backup");
    std::fs::create_dir(&mountpoint).expect("mkdir");
    let fstab = dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# a backup target\ns3://{}/nightly/ {} fuse.s3upfs \
             _netdev,nofail,x-systemd.automount,x-systemd.mount-timeout=30,rw,nosuid,nodev,\
             endpoint_url={},region={},force_path_style 0 0\n",
            server.bucket(),
            mountpoint.display(),
            server.endpoint(),
            server.region()
        ),
    )
    .expect("fstab");
    let _on_path = OnStandardPath::new();
    let _guard = Unmount(mountpoint.clone());
    let mounted = mount_command(&server, &["-T", fstab.to_str().expect("utf-8"), "-a"]);
    assert!(mounted.status.success(), "mount -a: {mounted:?}");
    assert!(is_fuse_mounted(&mountpoint), "mounted by mount -a");
    let copied = common::sh(&format!("cp /etc/os-release {}/", mountpoint.display()));
    assert!(copied.status.success(), "cp: {copied:?}");
    assert_eq!(
        server.client().get("nightly/os-release"),
        Some(std::fs::read("/etc/os-release").expect("source"))
    );
    let unmounted = Command::new("umount")
        .arg(&mountpoint)
        .status()
        .expect("umount");
    assert!(unmounted.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    while daemon_running_on(&mountpoint) {
        assert!(Instant::now() < deadline, "the daemon outlived umount");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!is_fuse_mounted(&mountpoint));
}

#[test]
fn mount_t_fuse_s3upfs_with_a_bad_option_fails_with_one_line_and_mounts_nothing() {
    let server = S3Server::garage();
    let dir = tempfile::tempdir().expect("tempdir");
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).expect("mkdir");
    let _on_path = OnStandardPath::new();
    let _guard = Unmount(mountpoint.clone());
    let source = format!("s3://{}/", server.bucket());
    let options = format!(
        "endpoint_url={},region={},force_path_style,no_such_option",
        server.endpoint(),
        server.region()
    );
    let out = mount_command(
        &server,
        &[
            "-t",
            "fuse.s3upfs",
            &source,
            mountpoint.to_str().expect("utf-8"),
            "-o",
            &options,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad option must fail the mount");
    assert!(
        stderr.contains("unknown mount option -o no_such_option"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!is_fuse_mounted(&mountpoint));
}

/// The example units in contrib/systemd pass `systemd-analyze verify` (with the path of
/// the binary under test in place of /usr/local/bin/s3upfs), without a warning.
#[test]
fn the_example_systemd_units_verify_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let units = [
        "s3upfs-backup.service",
        "mnt-backup.mount",
        "mnt-backup.automount",
    ];
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd");
    for unit in units {
        let text = std::fs::read_to_string(source.join(unit)).expect("unit file");
        let text = text.replace("/usr/local/bin/s3upfs", &s3upfs_bin().display().to_string());
        std::fs::write(dir.path().join(unit), text).expect("copy");
    }
    let mut command = Command::new("systemd-analyze");
    command.arg("verify");
    for unit in units {
        command.arg(dir.path().join(unit));
    }
    let (out, _) =
        common::output_with_timeout(command, Duration::from_secs(60)).expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(stderr.trim().is_empty(), "warnings: {stderr}");
}
