//! POSIX behaviour that real programs rely on, on a real mount over Garage: other
//! clients' metadata and Content-Type survive our copies, new files get a
//! Content-Type, the three times, mknod, fstat of an unlinked file, and s3fs's
//! directory objects.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::{Mount, S3Server};

/// The mount's listing and attribute TTL is 1 s: wait it out to see the server's view.
fn past_the_ttl() {
    std::thread::sleep(Duration::from_millis(2100));
}

#[test]
fn chmod_touch_and_mv_keep_another_clients_metadata_and_content_type() {
    let server = S3Server::garage();
    let client = server.client();
    client.put_with_headers(
        "theirs",
        b"x".to_vec(),
        &[("owner-note", "keep me")],
        Some("application/x-custom"),
    );
    let mount = Mount::new(&server, &[]);
    let path = mount.join("theirs");
    mount.sh_ok(&format!(
        "chmod 600 '{}' && touch '{}' && sync",
        path.display(),
        path.display()
    ));
    past_the_ttl();
    let head = client.head("theirs").expect("object");
    assert_eq!(
        head.metadata.get("owner-note").map(String::as_str),
        Some("keep me"),
        "{:?}",
        head.metadata
    );
    assert_eq!(head.content_type.as_deref(), Some("application/x-custom"));
    assert_eq!(
        head.metadata.get("mode").map(String::as_str),
        Some(&*(libc::S_IFREG | 0o600).to_string())
    );
    std::fs::rename(&path, mount.join("theirs.txt")).expect("mv");
    let head = client.head("theirs.txt").expect("renamed object");
    assert_eq!(
        head.metadata.get("owner-note").map(String::as_str),
        Some("keep me")
    );
    assert_eq!(
        head.content_type.as_deref(),
        Some("application/x-custom"),
        "a deliberate type stays"
    );
}

#[test]
fn new_files_get_a_content_type_from_their_name_also_through_rsyncs_temporary_name() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let source = tempfile::tempdir().expect("tempdir");
    std::fs::write(source.path().join("page.html"), "<p>hi</p>").expect("write");
    std::fs::write(source.path().join("data.json"), "{}").expect("write");
    mount.sh_ok(&format!(
        "cp '{}/page.html' \"$MNT/\"",
        source.path().display()
    ));
    mount.sh_ok(&format!(
        "rsync -a '{}/data.json' \"$MNT/\"",
        source.path().display()
    ));
    let client = server.client();
    assert_eq!(
        client
            .head("page.html")
            .expect("cp")
            .content_type
            .as_deref(),
        Some("text/html")
    );
    assert_eq!(
        client
            .head("data.json")
            .expect("rsync")
            .content_type
            .as_deref(),
        Some("application/json")
    );
}

#[test]
fn chmod_changes_ctime_not_mtime_touch_a_sets_atime_and_both_survive_a_remount() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let path = mount.join("f");
    std::fs::write(&path, "x").expect("write");
    let before = std::fs::metadata(&path).expect("stat");
    std::thread::sleep(Duration::from_millis(1100));
    mount.sh_ok(&format!(
        "chmod 600 '{}' && touch -a -d @1600000000 '{}'",
        path.display(),
        path.display()
    ));
    let after = std::fs::metadata(&path).expect("stat");
    assert_eq!(after.mtime(), before.mtime(), "chmod does not change mtime");
    assert!(
        after.ctime() > before.ctime(),
        "chmod changes ctime: {} !> {}",
        after.ctime(),
        before.ctime()
    );
    assert_eq!(after.atime(), 1_600_000_000);
    mount.sh_ok("sync -f \"$MNT\"");
    drop(mount);
    let again = Mount::new(&server, &[]);
    let remounted = std::fs::metadata(again.join("f")).expect("stat after remount");
    assert_eq!(remounted.atime(), 1_600_000_000);
    assert_eq!(remounted.ctime(), after.ctime());
    assert_eq!(remounted.mtime(), before.mtime());
}

#[test]
fn mknod_makes_a_regular_file_and_fstat_of_an_unlinked_open_file_shows_nlink_0() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let out = mount.sh(r#"python3 - <<'PY'
import os, stat
m = os.environ['MNT']
os.mknod(f'{m}/node', 0o640 | stat.S_IFREG)
print(oct(os.stat(f'{m}/node').st_mode))
fd = os.open(f'{m}/doomed', os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b'abc')
os.unlink(f'{m}/doomed')
st = os.fstat(fd)
print(st.st_nlink, st.st_size)
os.close(fd)
try:
    os.mkfifo(f'{m}/fifo')
    print('fifo made')
except PermissionError:
    print('fifo refused')
PY"#);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}\n{}", mount.log());
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        ["0o100640", "0 3", "fifo refused"]
    );
    let client = server.client();
    assert_eq!(client.get("node").as_deref(), Some(&b""[..]));
    assert!(
        client.head("doomed").is_none(),
        "the unlinked file is not uploaded"
    );
}

#[test]
fn an_s3fs_directory_object_without_a_slash_is_a_directory() {
    let server = S3Server::garage();
    server
        .client()
        .put_with_headers("olddir", Vec::new(), &[], Some("application/x-directory"));
    let mount = Mount::new(&server, &[]);
    let metadata = std::fs::metadata(mount.join("olddir")).expect("stat");
    assert!(metadata.is_dir(), "{metadata:?}");
    assert_eq!(
        std::fs::read_dir(mount.join("olddir")).expect("ls").count(),
        0
    );
}

/// Extended attributes through the kernel (os.setxattr as setfattr does, and
/// `cp --preserve=xattr`), stored in s3fs's `x-amz-meta-xattr` header, read back after
/// a remount.
#[test]
fn extended_attributes_are_kept_in_s3fs_form_and_survive_a_remount() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &[]);
    let out = mount.sh(r#"python3 - <<'PY'
import os
m = os.environ['MNT']
with open(f'{m}/f', 'w') as f:
    f.write('x')
os.setxattr(f'{m}/f', 'user.origin', b'backup-7')
print(os.getxattr(f'{m}/f', 'user.origin').decode(), sorted(os.listxattr(f'{m}/f')))
try:
    os.getxattr(f'{m}/f', 'user.none')
except OSError as e:
    print(e.errno == 61)
PY"#);
    assert!(out.status.success(), "{out:?}\n{}", mount.log());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        ["backup-7 ['user.origin']", "True"]
    );
    mount.sh_ok("sync -f \"$MNT\"");
    drop(mount);
    let head = server.client().head("f").expect("object");
    assert!(
        head.metadata
            .get("xattr")
            .is_some_and(|x| x.starts_with("%7B%22user.origin%22")),
        "{:?}",
        head.metadata
    );
    let again = Mount::new(&server, &[]);
    let out = again.sh(
        r#"python3 -c "import os; print(os.getxattr(os.environ['MNT'] + '/f', 'user.origin').decode())""#,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "backup-7",
        "{out:?}"
    );
}

/// A write by a user other than the owner clears S_ISUID/S_ISGID, as on a local disk
/// (the kernel asks for it with a setattr when the writer lacks CAP_FSETID).
#[test]
fn a_write_by_another_user_clears_setuid_and_setgid() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &["--allow-other"]);
    let path = mount.join("tool");
    std::fs::write(&path, "v1").expect("write");
    mount.sh_ok(&format!("chmod 6777 '{}'", path.display()));
    let out = mount.sh(&format!(
        "setpriv --reuid 65534 --regid 65534 --clear-groups sh -c 'echo v2 > \"{}\"'",
        path.display()
    ));
    assert!(out.status.success(), "{out:?}\n{}", mount.log());
    let mode = std::fs::metadata(&path).expect("stat").mode();
    assert_eq!(mode & 0o7777, 0o777, "mode {mode:o}\n{}", mount.log());
}

/// POSIX ACLs (with --allow-other, where the kernel checks permissions): setfacl's
/// entries are enforced, kept as s3fs keeps them (in `x-amz-meta-xattr`), survive a
/// remount, and a directory's default ACL is inherited by a new file.
#[test]
fn setfacl_grants_another_user_access_survives_a_remount_and_is_inherited() {
    let server = S3Server::garage();
    let mount = Mount::new(&server, &["--allow-other"]);
    let m = mount.path().display().to_string();
    mount.sh_ok(&format!(
        "echo secret > '{m}/f' && chmod 600 '{m}/f' && mkdir '{m}/d'"
    ));
    assert!(
        !as_nobody_on(&mount, &format!("cat {m}/f")).status.success(),
        "0600: refused"
    );
    mount.sh_ok(&format!(
        "setfacl -m u:65534:r '{m}/f' && setfacl -d -m u:65534:rw '{m}/d' && touch '{m}/d/new'"
    ));
    let read = as_nobody_on(&mount, &format!("cat {m}/f"));
    assert_eq!(
        String::from_utf8_lossy(&read.stdout),
        "secret\n",
        "{read:?}\n{}",
        mount.log()
    );
    let mode = std::fs::metadata(mount.join("f")).expect("stat").mode();
    assert_eq!(mode & 0o777, 0o640, "the mask shows as the group bits");
    let inherited = mount.sh_ok(&format!("getfacl -pn '{m}/d/new'"));
    assert!(inherited.contains("user:65534:rw-"), "{inherited}");
    mount.sh_ok(&format!("sync '{m}/f' '{m}/d' '{m}/d/new'"));
    past_the_ttl();
    drop(mount);
    let mount = Mount::new(&server, &["--allow-other"]);
    let m = mount.path().display().to_string();
    let acl = mount.sh_ok(&format!("getfacl -pn '{m}/f'"));
    assert!(acl.contains("user:65534:r--"), "{acl}");
    let stored = server.client().head("f").expect("object");
    assert!(
        stored.metadata.contains_key("xattr"),
        "{:?}",
        stored.metadata
    );
    let read = as_nobody_on(&mount, &format!("cat {m}/f"));
    assert!(read.status.success(), "{read:?}");
}

fn as_nobody_on(mount: &Mount, cmd: &str) -> std::process::Output {
    mount.sh(&format!(
        "setpriv --reuid 65534 --regid 65534 --clear-groups sh -c '{cmd}'"
    ))
}
