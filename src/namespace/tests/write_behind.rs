//! Held changes: attribute changes on finished files wait briefly so they fold into
//! one request; changes on a file being written ride with its upload.

use super::*;

#[test]
fn a_chmod_on_a_closed_file_is_held_then_sent_as_one_self_copy() {
    let fx = Fixture::new();
    let ino = fx.put("f", b"data");
    fx.chmod(ino, 0o600).unwrap();
    fx.chmod(ino, 0o640).unwrap();
    assert_eq!(fx.store.count("CopyObject"), 0, "held, not sent at once");
    fx.ns.apply_pending_metadata(Duration::ZERO);
    assert_eq!(fx.writes().last(), Some(&("CopyObject", "f".to_owned())));
    assert_eq!(fx.store.count("CopyObject"), 1, "two changes, one copy");
    let object = fx.store.object("f").unwrap();
    assert_eq!(object.headers.metadata["mode"], (0o100640).to_string());
    assert_eq!(&object.body[..], b"data");
}

#[test]
fn a_held_change_younger_than_the_delay_is_not_sent_by_the_flusher() {
    let fx = Fixture::new();
    let ino = fx.put("f", b"data");
    fx.chmod(ino, 0o600).unwrap();
    fx.ns
        .apply_pending_metadata(super::super::write_behind::PENDING_METADATA_DELAY);
    assert_eq!(fx.store.count("CopyObject"), 0);
}

#[test]
fn a_chmod_while_writing_rides_with_the_upload() {
    let fx = Fixture::new();
    let (ino, fh) = fx.create("f");
    fx.write(fh, 0, b"data").unwrap();
    fx.chmod(ino, 0o600).unwrap();
    fx.close(fh).unwrap();
    fx.ns.apply_pending_metadata(Duration::ZERO);
    assert_eq!(fx.writes(), [("PutObject", "f".to_owned())]);
    let object = fx.store.object("f").unwrap();
    assert_eq!(object.headers.metadata["mode"], (0o100600).to_string());
}

#[test]
fn a_chmod_after_a_multipart_upload_was_created_is_applied_by_one_copy_at_completion() {
    let fx = Fixture::new();
    let (ino, fh) = fx.create("big");
    fx.write(fh, 0, &bytes(12 * MIB, 6)).unwrap();
    eventually("the upload was created", || !fx.store.uploads().is_empty());
    fx.chmod(ino, 0o600).unwrap();
    fx.close(fh).unwrap();
    let object = fx.store.object("big").unwrap();
    assert_eq!(object.headers.metadata["mode"], (0o100600).to_string());
    assert_eq!(fx.store.count("CopyObject"), 1);
}

#[test]
fn mkdir_writes_a_marker_and_rmdir_removes_it() {
    let fx = Fixture::new();
    fx.ns
        .mkdir(ROOT, OsStr::new("dir"), (0o755, 0), 0, 0)
        .expect("mkdir");
    fx.ns.sync_namespace_changes();
    assert!(
        fx.store.object("dir/").is_some(),
        "marker: {:?}",
        fx.store.keys()
    );
    fx.ns.rmdir(ROOT, OsStr::new("dir")).unwrap();
    assert!(fx.store.object("dir/").is_none());
}
