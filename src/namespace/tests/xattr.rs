//! Extended attributes: kept in s3fs's header, held like chmod, riding with an upload.

use super::*;

fn set(fx: &Fixture, ino: u64, name: &str, value: &[u8]) -> FsResult<()> {
    fx.ns.setxattr(ino, OsStr::new(name), value, 0)
}

#[test]
fn an_attribute_set_on_a_closed_file_lands_in_one_copy_in_s3fs_form_and_survives_a_remount() {
    let fx = Fixture::new();
    let ino = fx.put("f", b"data");
    set(&fx, ino, "user.origin", b"backup-7").unwrap();
    set(&fx, ino, "user.flag", b"").unwrap();
    assert_eq!(
        fx.ns.getxattr(ino, OsStr::new("user.origin")).unwrap(),
        b"backup-7"
    );
    assert_eq!(fx.ns.listxattr(ino).unwrap(), b"user.flag\0user.origin\0");
    assert_eq!(fx.store.count("CopyObject"), 0, "held like chmod");
    fx.ns.apply_pending_metadata(Duration::ZERO);
    assert_eq!(fx.store.count("CopyObject"), 1);
    let stored = fx.store.object("f").unwrap();
    assert!(stored.headers.metadata["xattr"].starts_with("%7B%22user.flag%22"));
    assert_eq!(&stored.body[..], b"data");
    let again = Fixture::on(Arc::clone(&fx.store), Options::default());
    let ino = again.ns.lookup(ROOT, OsStr::new("f")).unwrap().ino;
    assert_eq!(
        again.ns.getxattr(ino, OsStr::new("user.origin")).unwrap(),
        b"backup-7"
    );
}

#[test]
fn an_attribute_set_while_writing_rides_with_the_upload() {
    let fx = Fixture::new();
    let (ino, fh) = fx.create("f");
    fx.write(fh, 0, b"data").unwrap();
    set(&fx, ino, "user.k", b"v").unwrap();
    fx.close(fh).unwrap();
    fx.ns.apply_pending_metadata(Duration::ZERO);
    assert_eq!(fx.writes(), [("PutObject", "f".to_owned())]);
    assert!(
        fx.store
            .object("f")
            .unwrap()
            .headers
            .metadata
            .contains_key("xattr")
    );
}

#[test]
fn create_and_replace_flags_and_removal_answer_as_linux_does() {
    let fx = Fixture::new();
    let ino = fx.put("f", b"x");
    let missing = fx.ns.getxattr(ino, OsStr::new("user.none"));
    assert_eq!(missing.errno(), Some(libc::ENODATA));
    let replace = fx
        .ns
        .setxattr(ino, OsStr::new("user.k"), b"v", libc::XATTR_REPLACE);
    assert_eq!(replace.errno(), Some(libc::ENODATA));
    set(&fx, ino, "user.k", b"v").unwrap();
    let create = fx
        .ns
        .setxattr(ino, OsStr::new("user.k"), b"w", libc::XATTR_CREATE);
    assert_eq!(create.errno(), Some(libc::EEXIST));
    fx.ns.removexattr(ino, OsStr::new("user.k")).unwrap();
    assert_eq!(
        fx.ns.removexattr(ino, OsStr::new("user.k")).errno(),
        Some(libc::ENODATA)
    );
    assert!(fx.ns.listxattr(ino).unwrap().is_empty());
}

#[test]
fn attributes_beyond_s3s_metadata_limit_are_e2big() {
    let fx = Fixture::new();
    let ino = fx.put("f", b"x");
    let big = vec![b'x'; 2000];
    assert_eq!(set(&fx, ino, "user.big", &big).errno(), Some(libc::E2BIG));
}

#[test]
fn a_chmod_keeps_the_attributes_another_mount_set() {
    let fx = Fixture::new();
    let ino = fx.put("f", b"x");
    set(&fx, ino, "user.k", b"v").unwrap();
    fx.ns.apply_pending_metadata(Duration::ZERO);
    let other = Fixture::on(Arc::clone(&fx.store), Options::default());
    let theirs = other.ns.lookup(ROOT, OsStr::new("f")).unwrap().ino;
    other.chmod(theirs, 0o600).unwrap();
    other.ns.apply_pending_metadata(Duration::ZERO);
    assert_eq!(
        other.ns.getxattr(theirs, OsStr::new("user.k")).unwrap(),
        b"v"
    );
    assert!(
        fx.store
            .object("f")
            .unwrap()
            .headers
            .metadata
            .contains_key("xattr")
    );
}

#[test]
fn an_attribute_on_the_mount_root_is_refused_not_kept_only_in_memory() {
    let fx = Fixture::new();
    assert_eq!(
        set(&fx, ROOT, "user.k", b"v").errno(),
        Some(libc::EOPNOTSUPP)
    );
}
