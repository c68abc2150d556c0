//! Entries as POSIX programs expect them: mknod of a regular file, nlink of an
//! unlinked open file, and s3fs's directory objects without a slash.

use super::*;
use crate::s3::ObjectHeaders;

#[test]
fn mknod_of_a_regular_file_makes_an_empty_object_and_refuses_a_taken_name() {
    let fx = Fixture::new();
    let attributes = fx
        .ns
        .mknod_file(ROOT, OsStr::new("node"), (0o640, 0), 0, 0, me())
        .expect("mknod");
    assert_eq!(attributes.size, 0);
    assert_eq!(attributes.perm, 0o640);
    assert_eq!(fx.body("node").unwrap(), b"");
    let again = fx
        .ns
        .mknod_file(ROOT, OsStr::new("node"), (0o640, 0), 0, 0, me());
    assert_eq!(again.errno(), Some(libc::EEXIST));
}

#[test]
fn an_unlinked_file_still_open_shows_nlink_0_and_keeps_its_attributes() {
    let fx = Fixture::new();
    let (ino, fh) = fx.create("doomed");
    fx.write(fh, 0, b"abc").unwrap();
    assert_eq!(fx.ns.getattr(ino).unwrap().nlink, 1);
    fx.ns.unlink(ROOT, OsStr::new("doomed")).unwrap();
    let attributes = fx.ns.getattr(ino).expect("fstat of an unlinked open file");
    assert_eq!(attributes.nlink, 0);
    assert_eq!(attributes.size, 3);
    fx.close(fh).unwrap();
}

#[test]
fn a_file_replaced_by_a_rename_while_open_shows_nlink_0() {
    let fx = Fixture::new();
    let (ino, fh) = fx.create("target");
    fx.put("source", b"new");
    fx.rename("source", "target").unwrap();
    assert_eq!(fx.ns.getattr(ino).unwrap().nlink, 0);
    fx.close(fh).unwrap();
}

#[test]
fn an_s3fs_directory_object_without_a_slash_shows_as_a_directory() {
    let fx = Fixture::new();
    let headers = ObjectHeaders {
        content_type: Some("application/x-directory".to_owned()),
        ..ObjectHeaders::default()
    };
    fx.store.insert_with("olddir", b"", headers);
    let attributes = fx.ns.lookup(ROOT, OsStr::new("olddir")).expect("lookup");
    assert_eq!(attributes.kind, Kind::Directory);
    assert_eq!(attributes.nlink, 2);
    let listed = fx.ns.list_directory(ROOT).unwrap();
    let entry = listed.iter().find(|e| e.name == "olddir").expect("listed");
    assert_eq!(
        entry.kind,
        Kind::Directory,
        "a listing does not turn it back into a file"
    );
    assert!(fx.ns.list_directory(attributes.ino).unwrap().is_empty());
}

#[test]
fn a_writer_without_cap_fsetid_clears_setuid_and_setgid_with_group_execute() {
    let fx = Fixture::new();
    let ino = fx.put("tool", b"v1");
    fx.chmod(ino, 0o6775).unwrap();
    fx.ns.apply_pending_metadata(Duration::ZERO);
    let fh = fx
        .ns
        .open(ino, libc::O_WRONLY | libc::O_TRUNC, me(), &|| true)
        .unwrap();
    fx.write(fh, 0, b"v2").unwrap();
    fx.close(fh).unwrap();
    assert_eq!(fx.ns.getattr(ino).unwrap().perm, 0o775);
    let stored = fx.store.object("tool").unwrap().headers.metadata;
    assert_eq!(stored["mode"], (libc::S_IFREG | 0o775).to_string());
    // Root (CAP_FSETID) keeps them.
    fx.chmod(ino, 0o6775).unwrap();
    let fh = fx
        .ns
        .open(ino, libc::O_WRONLY | libc::O_TRUNC, me(), &|| false)
        .unwrap();
    fx.close(fh).unwrap();
    assert_eq!(fx.ns.getattr(ino).unwrap().perm, 0o6775);
}

#[test]
fn a_name_over_255_bytes_is_enametoolong_and_255_is_fine() {
    let fx = Fixture::new();
    let long = "n".repeat(256);
    let created = fx
        .ns
        .create(ROOT, OsStr::new(&long), (0o644, 0), 0, 0, me());
    assert_eq!(created.errno(), Some(libc::ENAMETOOLONG));
    fx.put(&"n".repeat(255), b"x");
}
