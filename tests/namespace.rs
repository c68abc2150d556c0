//! The namespace through a real mount on Garage: browsing, reading, rename, delete,
//! POSIX metadata compatible with s3fs-fuse and rclone, and rsync backup jobs whose
//! second run sends nothing.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::{Mount, S3Server, random_bytes, sh};

fn writes(counts: &HashMap<String, u64>) -> u64 {
    [
        "PutObject",
        "UploadPart",
        "CopyObject",
        "CreateMultipartUpload",
        "CompleteMultipartUpload",
        "DeleteObject",
    ]
    .iter()
    .map(|op| counts.get(*op).copied().unwrap_or(0))
    .sum()
}

/// Whether `check` turns true within `timeout` (polled every 50 ms).
fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// fsync of a directory on the mount: sends held markers and attribute changes and waits
/// for the deletes of renamed-away keys.
fn sync_directory(dir: &Path) {
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .expect("fsync of a directory");
}

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, op: &str) -> u64 {
    after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0)
}

fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("docs/empty")).expect("mkdir");
    std::fs::create_dir_all(root.join("media")).expect("mkdir");
    std::fs::write(root.join("docs/readme.txt"), b"read me\n").expect("write");
    std::fs::write(root.join("docs/secret.txt"), b"hush").expect("write");
    std::fs::set_permissions(
        root.join("docs/secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    std::fs::write(root.join("media/big.bin"), random_bytes(9 << 20, 1)).expect("write");
    std::fs::write(root.join("media/empty.bin"), b"").expect("write");
    std::fs::write(root.join("run.sh"), b"#!/bin/sh\necho hi\n").expect("write");
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::os::unix::fs::symlink("docs/readme.txt", root.join("link")).expect("symlink");
    let status = sh(&format!(
        "touch -h -d '2021-03-04 05:06:07' {0}/docs/readme.txt {0}/media/big.bin {0}/link {0}/docs",
        root.display()
    ));
    assert!(status.status.success());
}

#[test]
fn rsync_a_backs_up_a_tree_and_a_second_run_sends_nothing() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let source = tempfile::tempdir().expect("tempdir");
    make_tree(source.path());
    let target = mount.join("backup");
    let first = sh(&format!(
        "rsync -a {}/ {}/",
        source.path().display(),
        target.display()
    ));
    assert!(first.status.success(), "first rsync: {first:?}");

    let diff = sh(&format!(
        "diff -r {} {}",
        source.path().display(),
        target.display()
    ));
    assert!(diff.status.success(), "diff -r: {diff:?}");
    for relative in [
        "docs/readme.txt",
        "docs/secret.txt",
        "media/big.bin",
        "run.sh",
        "docs",
    ] {
        let expected = std::fs::metadata(source.path().join(relative)).expect("stat source");
        let actual = std::fs::metadata(target.join(relative)).expect("stat mount");
        assert_eq!(actual.mode(), expected.mode(), "{relative}: mode");
        assert_eq!(actual.mtime(), expected.mtime(), "{relative}: mtime");
    }
    assert_eq!(
        std::fs::read_link(target.join("link")).expect("readlink"),
        Path::new("docs/readme.txt")
    );
    assert!(target.join("docs/empty").is_dir(), "empty directory kept");

    // Objects carry the metadata, in s3fs's form.
    let client = server.client();
    let head = client.head("backup/docs/secret.txt").expect("object");
    assert_eq!(head.metadata.get("mode").map(String::as_str), Some("33152"));
    let link = client.head("backup/link").expect("symlink object");
    assert_eq!(link.metadata.get("mode").map(String::as_str), Some("41471"));
    assert_eq!(
        client.get("backup/link").as_deref(),
        Some(&b"docs/readme.txt"[..])
    );
    assert!(
        eventually(Duration::from_secs(5), || client
            .exists("backup/docs/empty/")),
        "marker for the empty directory (held at most about a second)"
    );

    std::thread::sleep(Duration::from_secs(2));
    let before = server.s3_request_counts();
    let second = sh(&format!(
        "rsync -a --stats {}/ {}/",
        source.path().display(),
        target.display()
    ));
    assert!(second.status.success(), "second rsync: {second:?}");
    let stats = String::from_utf8_lossy(&second.stdout);
    assert!(
        stats.contains("Number of regular files transferred: 0"),
        "second run re-sent files:\n{stats}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let after = server.s3_request_counts();
    assert_eq!(
        writes(&after),
        writes(&before),
        "second run changed objects"
    );
}

/// `rsync --version`'s first line, for failure messages: rsync's stat pattern changes
/// between versions (3.2.7 → 3.5.0 added an open of every new directory), and the costs
/// asserted here must hold for all of them.
fn rsync_version() -> String {
    String::from_utf8_lossy(&sh("rsync --version").stdout)
        .lines()
        .next()
        .unwrap_or("rsync: version unknown")
        .to_owned()
}

/// What a backup job pays per new file, whatever rsync version runs it: one PutObject
/// (the temp file), one CopyObject (the rename, carrying the held chmod + utimes), one
/// DeleteObject (the temp name). Lookups of names rsync stats before creating them cost
/// nothing in directories the mount created or listed: at most one per directory.
#[test]
fn rsync_of_a_new_file_costs_one_put_one_copy_and_one_delete() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let source = tempfile::tempdir().expect("tempdir");
    let directories = ["a", "b"];
    let per_directory = 8;
    for dir in directories {
        std::fs::create_dir(source.path().join(dir)).expect("mkdir");
        for index in 0..per_directory {
            std::fs::write(
                source.path().join(format!("{dir}/f{index}")),
                random_bytes(16 << 10, index),
            )
            .expect("write");
        }
    }
    let files = (directories.len() * per_directory as usize) as u64;
    // dst itself plus the two below it.
    let new_directories = directories.len() as u64 + 1;
    let version = rsync_version();
    let before = server.s3_request_counts();
    let run = sh(&format!(
        "rsync -a {}/ {}/",
        source.path().display(),
        mount.join("dst").display()
    ));
    assert!(run.status.success(), "{version}: {run:?}");
    std::thread::sleep(Duration::from_secs(3));
    let after = server.s3_request_counts();
    let delta = |op: &str| delta(&before, &after, op);
    assert_eq!(
        delta("PutObject"),
        files + new_directories,
        "{version}: one PutObject per file, one marker per directory (mkdir + chmod + utimes held and folded): {after:?}"
    );
    assert_eq!(
        delta("CopyObject"),
        files,
        "{version}: chmod + utimes folded into the rename's one copy: {after:?}"
    );
    assert_eq!(
        delta("DeleteObject"),
        files,
        "{version}: one delete of the temp name per file: {after:?}"
    );
    let lookups = delta("HeadObject") + delta("ListObjectsV2");
    assert!(
        lookups <= new_directories,
        "{version}: lookups must be bounded per directory ({new_directories}), not per file ({files}); got {lookups}: {after:?}"
    );
    let client = server.client();
    let marker = client.head("dst/a/").expect("marker of dst/a");
    let expected = std::fs::metadata(source.path().join("a")).expect("stat");
    assert_eq!(
        marker.metadata.get("mode"),
        Some(&expected.mode().to_string())
    );
    let mtime = marker.metadata.get("mtime").expect("mtime on the marker");
    assert!(
        mtime.starts_with(&format!("{}", expected.mtime())),
        "marker mtime {mtime}, source {}",
        expected.mtime()
    );
}

#[test]
fn a_new_directory_is_one_marker_put_sent_within_a_second_or_at_fsync() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let client = server.client();
    let before = server.s3_request_counts();

    // mkdir + chmod + utimes: one PutObject, carrying the last mode and mtime.
    std::fs::create_dir(mount.join("held")).expect("mkdir");
    std::fs::set_permissions(mount.join("held"), std::fs::Permissions::from_mode(0o750))
        .expect("chmod");
    let touched = sh(&format!(
        "touch -d '2020-01-02 03:04:05 UTC' {}",
        mount.join("held").display()
    ));
    assert!(touched.status.success(), "touch: {touched:?}");
    assert_eq!(
        std::fs::metadata(mount.join("held")).expect("stat").mode() & 0o7777,
        0o750,
        "the held change is visible at once"
    );
    assert!(
        eventually(Duration::from_secs(5), || client.exists("held/")),
        "the held marker is sent"
    );
    let marker = client.head("held/").expect("marker");
    assert_eq!(
        marker.metadata.get("mode").map(String::as_str),
        Some(&*format!("{}", libc::S_IFDIR | 0o750))
    );
    assert!(
        marker
            .metadata
            .get("mtime")
            .is_some_and(|m| m.starts_with("1577934245")),
        "marker metadata {:?}",
        marker.metadata
    );

    // A directory whose only entry is a new (held) directory is not empty.
    std::fs::create_dir_all(mount.join("outer/inner")).expect("mkdir -p");
    let error = std::fs::remove_dir(mount.join("outer")).expect_err("rmdir of outer");
    assert_eq!(error.raw_os_error(), Some(libc::ENOTEMPTY));
    std::fs::remove_dir(mount.join("outer/inner")).expect("rmdir inner");
    std::fs::remove_dir(mount.join("outer")).expect("rmdir outer");

    // mkdir + rmdir at once: nothing to send.
    std::fs::create_dir(mount.join("brief")).expect("mkdir");
    std::fs::remove_dir(mount.join("brief")).expect("rmdir");

    // mkdir + rename: the marker appears at the new name only, with its mode.
    std::fs::create_dir(mount.join("old-name")).expect("mkdir");
    std::fs::set_permissions(
        mount.join("old-name"),
        std::fs::Permissions::from_mode(0o700),
    )
    .expect("chmod");
    std::fs::rename(mount.join("old-name"), mount.join("new-name")).expect("rename");
    assert_eq!(
        client
            .head("new-name/")
            .and_then(|h| h.metadata.get("mode").cloned()),
        Some(format!("{}", libc::S_IFDIR | 0o700)),
        "the rename writes the held marker at the new name"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!client.exists("old-name/"), "no marker at the old name");
    assert!(
        !client.exists("brief/"),
        "no marker for a removed directory"
    );
    assert!(mount.join("new-name").is_dir());
    let after = server.s3_request_counts();
    assert_eq!(
        delta(&before, &after, "PutObject"),
        2,
        "one marker for held/, one for new-name/: {after:?}"
    );

    // fsync of the directory sends its marker at once.
    std::fs::create_dir(mount.join("synced")).expect("mkdir");
    sync_directory(&mount.join("synced"));
    assert!(client.exists("synced/"), "fsync sent the marker");
}

#[test]
fn ls_find_du_cat_and_cmp_work_and_large_directories_list_completely() {
    let server = S3Server::garage();
    let client = server.client();
    for index in 0..2500 {
        client.put(
            &format!("many/item-{index:05}"),
            format!("{index}").into_bytes(),
        );
    }
    client.put("top.txt", b"top".to_vec());
    let mount = Mount::new(&server, &[]);
    let listing = sh(&format!("ls {} | wc -l", mount.join("many").display()));
    assert_eq!(String::from_utf8_lossy(&listing.stdout).trim(), "2500");
    let found = sh(&format!("find {} -type f | wc -l", mount.path().display()));
    assert_eq!(String::from_utf8_lossy(&found.stdout).trim(), "2501");
    let long = sh(&format!("ls -l {}", mount.path().display()));
    assert!(long.status.success() && String::from_utf8_lossy(&long.stdout).contains("top.txt"));
    let du = sh(&format!("du -s {}", mount.path().display()));
    assert!(du.status.success(), "du: {du:?}");
    assert_eq!(
        std::fs::read_to_string(mount.join("many/item-01234")).expect("cat"),
        "1234"
    );
    let df = sh(&format!("df {}", mount.path().display()));
    assert!(df.status.success(), "df: {df:?}");
}

#[test]
fn directories_markers_rmdir_and_shadowed_files() {
    let server = S3Server::garage();
    let client = server.client();
    client.put("both", b"file".to_vec());
    client.put("both/inner", b"x".to_vec());
    {
        let mount = Mount::new(&server, &[]);
        std::fs::create_dir(mount.join("kept")).expect("mkdir");
        std::fs::create_dir(mount.join("full")).expect("mkdir");
        std::fs::write(mount.join("full/f"), b"x").expect("write");
        let error = std::fs::remove_dir(mount.join("full")).expect_err("rmdir of a full directory");
        assert_eq!(error.raw_os_error(), Some(libc::ENOTEMPTY));
        assert!(
            mount.join("both").is_dir(),
            "a directory wins over a file of the same name"
        );
        std::fs::create_dir(mount.join("gone")).expect("mkdir");
        std::fs::remove_dir(mount.join("gone")).expect("rmdir");
        assert!(!client.exists("gone/"));
    }
    let mount = Mount::new(&server, &[]);
    assert!(
        mount.join("kept").is_dir(),
        "an empty directory survives a remount"
    );
    assert!(!mount.join("gone").exists());
}

#[test]
fn metadata_written_by_s3fs_and_rclone_is_read_and_ours_is_in_their_form() {
    let server = S3Server::garage();
    let client = server.client();
    client.put_with_metadata(
        "s3fs-file",
        b"x".to_vec(),
        &[
            ("mode", "33152"),
            ("uid", "1234"),
            ("gid", "5678"),
            ("mtime", "1600000000"),
        ],
    );
    client.put_with_metadata("rclone-file", b"y".to_vec(), &[("mtime", "1600000000.5")]);
    client.put("plain", b"z".to_vec());
    let mount = Mount::new(&server, &["--file-mode", "0640"]);
    let s3fs = std::fs::metadata(mount.join("s3fs-file")).expect("stat");
    assert_eq!(s3fs.mode(), 0o100600);
    assert_eq!((s3fs.uid(), s3fs.gid()), (1234, 5678));
    assert_eq!(s3fs.mtime(), 1_600_000_000);
    let rclone = std::fs::metadata(mount.join("rclone-file")).expect("stat");
    assert_eq!(
        (rclone.mtime(), rclone.mtime_nsec()),
        (1_600_000_000, 500_000_000)
    );
    assert_eq!(
        std::fs::metadata(mount.join("plain")).expect("stat").mode(),
        0o100640
    );

    std::fs::write(mount.join("ours"), b"ours").expect("write");
    let mtime = UNIX_EPOCH + Duration::new(1_500_000_000, 123_456_789);
    std::fs::File::options()
        .write(true)
        .open(mount.join("ours"))
        .and_then(|f| f.set_modified(mtime))
        .expect_err("re-opening a finished object for writing without O_TRUNC is refused");
    let status = sh(&format!(
        "chmod 0604 {0} && touch -m -d @1500000000.123456789 {0}",
        mount.join("ours").display()
    ));
    assert!(status.status.success(), "{status:?}");
    let local = std::fs::metadata(mount.join("ours")).expect("stat");
    assert_eq!(
        local.mode(),
        0o100604,
        "pending changes are visible at once"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let head = client.head("ours").expect("object");
        if head.metadata.get("mtime").map(String::as_str) == Some("1500000000.123456789") {
            assert_eq!(head.metadata.get("mode").map(String::as_str), Some("33156"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "attribute change never reached S3: {:?}",
            head.metadata
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rename_with_flags(from: &Path, to: &Path, flags: u32) -> std::process::Output {
    sh(&format!(
        "python3 -c 'import ctypes,os,sys; libc=ctypes.CDLL(None,use_errno=True); \
         r=libc.renameat2(-100,b\"{}\",-100,b\"{}\",{flags}); \
         sys.exit(ctypes.get_errno() if r else 0)'",
        from.display(),
        to.display()
    ))
}

#[test]
fn rename_moves_files_and_directories_and_honours_its_flags() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let client = server.client();
    std::fs::write(mount.join("a"), b"first").expect("write");
    std::fs::write(mount.join("b"), b"second").expect("write");
    std::fs::rename(mount.join("a"), mount.join("b")).expect("rename over an existing file");
    assert_eq!(std::fs::read(mount.join("b")).expect("read"), b"first");
    assert!(!mount.join("a").exists());
    // The old key's delete follows rename; fsync of the directory waits for it.
    sync_directory(mount.path());
    assert_eq!(client.list(""), vec!["b".to_owned()]);

    std::fs::create_dir_all(mount.join("dir/sub")).expect("mkdir");
    std::fs::write(mount.join("dir/sub/f"), b"deep").expect("write");
    std::fs::write(mount.join("dir/g"), b"shallow").expect("write");
    std::fs::rename(mount.join("dir"), mount.join("moved")).expect("rename directory");
    assert_eq!(
        std::fs::read(mount.join("moved/sub/f")).expect("read"),
        b"deep"
    );
    assert!(!mount.join("dir").exists());
    assert!(client.list("dir/").is_empty(), "originals deleted");
    assert!(client.exists("moved/g"));

    std::fs::write(mount.join("c"), b"c").expect("write");
    const RENAME_NOREPLACE: u32 = 1;
    const RENAME_EXCHANGE: u32 = 2;
    let noreplace = rename_with_flags(&mount.join("c"), &mount.join("b"), RENAME_NOREPLACE);
    assert_eq!(noreplace.status.code(), Some(libc::EEXIST));
    let exchange = rename_with_flags(&mount.join("c"), &mount.join("b"), RENAME_EXCHANGE);
    assert_eq!(exchange.status.code(), Some(libc::EINVAL));
    assert_eq!(std::fs::read(mount.join("b")).expect("read"), b"first");
}

#[test]
fn unlink_symlink_hard_link_truncate_and_odd_names() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let client = server.client();
    std::fs::write(mount.join("victim"), b"bye").expect("write");
    std::fs::remove_file(mount.join("victim")).expect("unlink");
    assert!(!client.exists("victim"));

    let error = std::fs::hard_link(mount.join("nothing"), mount.join("hard"))
        .expect_err("hard links are refused");
    assert!(matches!(
        error.raw_os_error(),
        Some(libc::EPERM) | Some(libc::ENOENT)
    ));
    std::fs::write(mount.join("target"), b"t").expect("write");
    let error = std::fs::hard_link(mount.join("target"), mount.join("hard")).expect_err("link");
    assert_eq!(error.raw_os_error(), Some(libc::EPERM));

    std::fs::write(mount.join("shrink"), b"0123456789").expect("write");
    let file = std::fs::File::options()
        .write(true)
        .open(mount.join("shrink"));
    assert!(file.is_err(), "in-place rewrite of an object is refused");
    std::fs::File::options()
        .write(true)
        .truncate(true)
        .open(mount.join("shrink"))
        .expect("O_TRUNC open");
    assert_eq!(client.get("shrink").as_deref(), Some(&b""[..]));
    std::fs::write(mount.join("partial"), b"0123456789").expect("write");
    let truncate = sh(&format!(
        "truncate -s 5 {}",
        mount.join("partial").display()
    ));
    assert!(
        !truncate.status.success(),
        "truncating a finished object to 5 bytes is refused"
    );

    let names = [
        "with space",
        "ünïcödé",
        "per%cent",
        "plus+sign",
        "hash#tag",
        "what?",
        "new\nline",
    ];
    for name in names {
        std::fs::write(mount.join(name), name.as_bytes()).expect("write odd name");
    }
    for name in names {
        assert_eq!(
            client.get(name).as_deref(),
            Some(name.as_bytes()),
            "{name:?}"
        );
        assert!(mount.join(name).exists(), "{name:?} listed back");
    }

    drop(mount);
    // Garage (LMDB) cannot store keys much over 500 bytes, so the limit is reached
    // through a long mount prefix instead of long objects.
    let long_prefix = format!("{}/", "p".repeat(800));
    let mount = Mount::with_prefix(&server, &long_prefix, &[]);
    let error = std::fs::write(mount.join("x".repeat(230)), b"x").expect_err("key over 1024 bytes");
    assert_eq!(error.raw_os_error(), Some(libc::ENAMETOOLONG));
}

#[test]
fn a_file_written_by_another_client_is_read_with_readahead_and_random_access() {
    let server = S3Server::garage();
    let data = random_bytes(40 << 20, 77);
    server.client().put("remote.bin", data.clone());
    let mount = Mount::new(&server, &[]);
    assert!(std::fs::read(mount.join("remote.bin")).expect("read") == data);
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(mount.join("remote.bin")).expect("open");
    for offset in [30 << 20, 123, 17 << 20] {
        let mut buffer = vec![0u8; 4096];
        file.seek(SeekFrom::Start(offset as u64)).expect("seek");
        file.read_exact(&mut buffer).expect("read");
        assert!(
            buffer == data[offset..offset + 4096],
            "random read at {offset}"
        );
    }
}

#[test]
fn renaming_an_object_over_the_copy_limit_copies_it_in_parallel_parts() {
    let server = S3Server::garage();
    // The 5 GiB CopyObject limit, lowered so a small object takes the UploadPartCopy path.
    let mount = Mount::new(&server, &["--copy-object-limit", "16MiB"]);
    let data = random_bytes(40 << 20, 21);
    std::fs::write(mount.join("large"), &data).expect("write");
    let chmod = sh(&format!("chmod 0600 {}", mount.join("large").display()));
    assert!(chmod.status.success());
    std::fs::rename(mount.join("large"), mount.join("renamed")).expect("rename");
    let client = server.client();
    let head = client.head("renamed").expect("renamed object");
    assert!(
        head.etag.ends_with("-3\"") || head.etag.ends_with("-3"),
        "etag {}",
        head.etag
    );
    assert_eq!(head.metadata.get("mode").map(String::as_str), Some("33152"));
    assert!(client.get("renamed").as_deref() == Some(&data[..]));
    sync_directory(mount.path());
    assert!(!client.exists("large"));
    assert!(client.list_multipart_uploads().is_empty());
}

#[test]
fn a_renamed_files_old_key_is_deleted_after_rename_returns_yet_never_seen_again() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let client = server.client();
    std::fs::create_dir(mount.join("d")).expect("mkdir");
    for round in 0..20 {
        std::fs::write(mount.join("d/a"), format!("old {round}")).expect("write a");
        std::fs::rename(mount.join("d/a"), mount.join("d/b")).expect("rename");
        let names: Vec<String> = std::fs::read_dir(mount.join("d"))
            .expect("readdir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["b".to_owned()],
            "round {round}: old name listed"
        );
        std::fs::write(mount.join("d/a"), format!("new {round}")).expect("write a again");
    }
    std::fs::rename(mount.join("d/a"), mount.join("d/c")).expect("rename a -> c");
    std::fs::rename(mount.join("d/c"), mount.join("d/a")).expect("rename c -> a");

    // A directory whose last file was just renamed out is empty at once.
    std::fs::create_dir(mount.join("e")).expect("mkdir");
    std::fs::write(mount.join("e/x"), b"x").expect("write");
    std::fs::rename(mount.join("e/x"), mount.join("x")).expect("rename out of e");
    std::fs::remove_dir(mount.join("e")).expect("rmdir right after the rename");

    // fsync of a directory returns once the old keys are deleted.
    sync_directory(mount.path());
    let mut keys = client.list("");
    keys.sort();
    assert_eq!(keys, vec!["d/", "d/a", "d/b", "x"]);
    assert_eq!(client.get("d/a").as_deref(), Some(&b"new 19"[..]));
    assert_eq!(client.get("d/b").as_deref(), Some(&b"old 19"[..]));
}

/// The table's size as the daemon last logged it ("N inodes in the table").
fn logged_table_size(mount: &Mount) -> Option<usize> {
    mount.log().lines().rev().find_map(|line| {
        line.split(" inodes in the table")
            .next()?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    })
}

#[test]
fn files_nobody_uses_leave_the_table_and_still_read_back() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let dir = mount.join("many");
    std::fs::create_dir(&dir).unwrap();
    let files = 300;
    for i in 0..files {
        std::fs::write(dir.join(format!("f{i}")), format!("body {i}")).unwrap();
        std::fs::metadata(dir.join(format!("f{i}"))).unwrap();
    }
    // The kernel keeps every written name until memory runs short; the mount asks it
    // to let go of those idle for 10 s past their attributes' expiry.
    assert!(
        eventually(Duration::from_secs(60), || {
            logged_table_size(&mount).is_some_and(|size| size < 20)
        }),
        "the table kept {:?} inodes for {files} idle files",
        logged_table_size(&mount)
    );
    for i in 0..files {
        let body = std::fs::read_to_string(dir.join(format!("f{i}"))).unwrap();
        assert_eq!(body, format!("body {i}"));
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), files);
    mount.unmount();
}

/// The audit's "rsync loses files under load", as a stress test: `rsync -a` of
/// /usr/share/doc (thousands of entries in fresh directories) into a new directory,
/// `S3UPFS_RSYNC_LOOPS` times (default 16), while two busy loops keep the CPUs loaded.
/// Every run must exit 0 and leave every file; ignored by default (minutes), run with
/// `cargo nextest run --test namespace --run-ignored only rsync_under`.
#[test]
#[ignore]
fn rsync_under_cpu_load_never_loses_a_file() {
    let loops: usize = std::env::var("S3UPFS_RSYNC_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    /// Busy loops, killed however the test ends.
    struct Load(Vec<std::process::Child>);
    impl Drop for Load {
        fn drop(&mut self) {
            for busy in &mut self.0 {
                let _ = busy.kill();
                let _ = busy.wait();
            }
        }
    }
    let load = Load(
        (0..2)
            .map(|_| {
                std::process::Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .expect("busy loop")
            })
            .collect(),
    );
    // Files and symbolic links alike: readdir reports an object whose type the mount has
    // not looked up (a symlink it let go of) as a regular file, so `-type f` would count
    // differently on each side without any file lost.
    let expected = sh("find /usr/share/doc ! -type d | wc -l");
    let expected = String::from_utf8_lossy(&expected.stdout).trim().to_owned();
    let mut failures = Vec::new();
    for run in 0..loops {
        let target = mount.join(format!("d{run}"));
        let out = sh(&format!("rsync -a /usr/share/doc/ {}/", target.display()));
        let count = sh(&format!("find {} ! -type d | wc -l", target.display()));
        let count = String::from_utf8_lossy(&count.stdout).trim().to_owned();
        eprintln!(
            "run {run}: rsync {:?}, {count} of {expected} files",
            out.status.code()
        );
        if !out.status.success() || count != expected {
            failures.push(format!(
                "run {run}: {:?} {count}/{expected}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    drop(load);
    assert!(failures.is_empty(), "{failures:#?}");
    mount.unmount();
}
