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

/// Linux's xattr form of an ACL: version 2, then (tag, perm, id) entries.
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut value = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        value.extend_from_slice(&tag.to_le_bytes());
        value.extend_from_slice(&perm.to_le_bytes());
        value.extend_from_slice(&id.to_le_bytes());
    }
    value
}

const ANY: u32 = u32::MAX;
/// user::rw- user:1000:rwx group::r-- mask::rwx other::---
fn named_user_acl() -> Vec<u8> {
    acl(&[
        (0x01, 6, ANY),
        (0x02, 7, 1000),
        (0x04, 4, ANY),
        (0x10, 7, ANY),
        (0x20, 0, ANY),
    ])
}

#[test]
fn an_access_acl_sets_the_mode_and_a_chmod_rewrites_its_mask_both_surviving_a_remount() {
    let fx = Fixture::new();
    let ino = fx.put("f", b"data");
    set(&fx, ino, "system.posix_acl_access", &named_user_acl()).unwrap();
    assert_eq!(
        fx.ns.getattr(ino).unwrap().perm,
        0o670,
        "the mask is the group bits"
    );
    fx.chmod(ino, 0o640).unwrap();
    let stored = fx
        .ns
        .getxattr(ino, OsStr::new("system.posix_acl_access"))
        .unwrap();
    let mask = acl(&[(0x10, 4, ANY)]);
    assert!(
        stored.windows(8).any(|e| e == &mask[4..]),
        "mask::r-- after chmod 640"
    );
    assert!(
        stored
            .windows(8)
            .any(|e| e == &acl(&[(0x02, 7, 1000)])[4..])
    );
    fx.ns.apply_pending_metadata(Duration::ZERO);
    let again = Fixture::on(Arc::clone(&fx.store), Options::default());
    let ino = again.ns.lookup(ROOT, OsStr::new("f")).unwrap().ino;
    assert_eq!(again.ns.getattr(ino).unwrap().perm, 0o640);
    assert_eq!(
        again
            .ns
            .getxattr(ino, OsStr::new("system.posix_acl_access"))
            .unwrap(),
        stored
    );
}

#[test]
fn an_access_acl_the_mode_can_say_is_a_chmod_and_not_stored() {
    let fx = Fixture::new();
    let ino = fx.put("f", b"data");
    let minimal = acl(&[(0x01, 6, ANY), (0x04, 0, ANY), (0x20, 0, ANY)]);
    set(&fx, ino, "system.posix_acl_access", &minimal).unwrap();
    assert_eq!(fx.ns.getattr(ino).unwrap().perm, 0o600);
    assert_eq!(
        fx.ns
            .getxattr(ino, OsStr::new("system.posix_acl_access"))
            .errno(),
        Some(libc::ENODATA)
    );
}

#[test]
fn a_new_name_inherits_the_directorys_default_acl_instead_of_the_umask() {
    let fx = Fixture::new();
    let dir = fx
        .ns
        .mkdir(ROOT, OsStr::new("d"), (0o755, 0), me(), me())
        .unwrap();
    set(&fx, dir.ino, "system.posix_acl_default", &named_user_acl()).unwrap();
    let (file, fh) = fx
        .ns
        .create(dir.ino, OsStr::new("f"), (0o666, 0o022), me(), me(), me())
        .unwrap();
    fx.close(fh).unwrap();
    // Each class keeps what both the default ACL and the mode allow; no umask.
    assert_eq!(file.perm, 0o660);
    let inherited = fx
        .ns
        .getxattr(file.ino, OsStr::new("system.posix_acl_access"));
    assert!(
        inherited
            .unwrap()
            .windows(8)
            .any(|e| e == &acl(&[(0x02, 7, 1000)])[4..])
    );
    let stored = fx.store.object("d/f").unwrap().headers.metadata;
    assert!(
        stored.contains_key("xattr"),
        "the ACL went up with the object"
    );
    let sub = fx
        .ns
        .mkdir(dir.ino, OsStr::new("e"), (0o777, 0o022), me(), me())
        .unwrap();
    assert_eq!(
        fx.ns
            .getxattr(sub.ino, OsStr::new("system.posix_acl_default"))
            .unwrap(),
        named_user_acl()
    );
    // Without a default ACL the umask applies as ever.
    let (plain, fh) = fx
        .ns
        .create(ROOT, OsStr::new("g"), (0o666, 0o022), me(), me(), me())
        .unwrap();
    fx.close(fh).unwrap();
    assert_eq!(plain.perm, 0o644);
}

#[test]
fn a_default_acl_on_a_file_is_eacces_and_a_malformed_acl_einval() {
    let fx = Fixture::new();
    let ino = fx.put("f", b"data");
    let default = set(&fx, ino, "system.posix_acl_default", &named_user_acl());
    assert_eq!(default.errno(), Some(libc::EACCES));
    let malformed = set(&fx, ino, "system.posix_acl_access", &[2, 0, 0, 0, 1]);
    assert_eq!(malformed.errno(), Some(libc::EINVAL));
}

#[test]
fn the_checksum_attribute_is_the_objects_crc32c_whatever_its_parts_and_is_read_only() {
    let fx = Fixture::new();
    let name = OsStr::new(crate::namespace::CHECKSUM);
    let small = fx.put("small", b"data");
    assert_eq!(
        fx.ns.getxattr(small, name).unwrap(),
        crate::s3::crc32c_base64(b"data").into_bytes()
    );
    let data = bytes(12 * MIB, 3);
    let big = fx.put("big", &data);
    assert_eq!(
        fx.ns.getxattr(big, name).unwrap(),
        crate::s3::crc32c_base64(&data).into_bytes(),
        "the full-object CRC32C, not the composite of 2 parts"
    );
    assert_eq!(fx.ns.listxattr(big).unwrap(), b"", "not listed");
    assert_eq!(
        set(&fx, big, crate::namespace::CHECKSUM, b"x").errno(),
        Some(libc::EPERM)
    );
    let (writing, fh) = fx.create("writing");
    fx.write(fh, 0, b"partial").unwrap();
    assert_eq!(fx.ns.getxattr(writing, name).errno(), Some(libc::ENODATA));
    fx.close(fh).unwrap();
    // A server that keeps only composite checksums: nothing comparable to show.
    fx.store.keep_composite_checksums();
    let composite = fx.put("composite", &data);
    assert_eq!(fx.ns.getxattr(composite, name).errno(), Some(libc::ENODATA));
}
