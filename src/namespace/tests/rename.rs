//! Rename: of a file being written, of a finished file with held changes, and onto a
//! file open for writing.

use super::*;

#[test]
fn rename_before_the_upload_starts_moves_the_writer_to_the_new_key() {
    let fx = Fixture::new();
    let (_, fh) = fx.create("draft");
    fx.write(fh, 0, b"content").unwrap();
    fx.rename("draft", "final").unwrap();
    fx.close(fh).unwrap();
    assert_eq!(fx.body("final").unwrap(), b"content");
    assert!(fx.store.object("draft").is_none());
    assert_eq!(
        fx.store.count("CopyObject"),
        0,
        "nothing to copy: nothing was sent yet"
    );
}

#[test]
fn renaming_a_file_while_its_upload_streams_moves_every_byte_to_the_new_name() {
    let fx = Fixture::new();
    let data = bytes(17 * MIB, 5);
    let (_, fh) = fx.create("streaming");
    fx.write(fh, 0, &data[..12 * MIB]).unwrap();
    eventually("the upload started", || !fx.store.uploads().is_empty());
    fx.rename("streaming", "elsewhere").unwrap();
    fx.write(fh, 12 * MIB as u64, &data[12 * MIB..]).unwrap();
    fx.close(fh).unwrap();
    fx.ns.sync_namespace_changes();
    assert_eq!(fx.body("elsewhere").unwrap(), data);
    assert!(
        fx.store.object("streaming").is_none(),
        "{:?}",
        fx.store.keys()
    );
    assert!(fx.store.uploads().is_empty());
}

#[test]
fn log_rotation_while_writing_keeps_both_the_rotated_and_the_new_file() {
    let fx = Fixture::new();
    let old = bytes(12 * MIB, 6);
    let (_, fh) = fx.create("app.log");
    fx.write(fh, 0, &old).unwrap();
    eventually("the upload started", || !fx.store.uploads().is_empty());
    fx.rename("app.log", "app.log.1").unwrap();
    // The new log is written and closed while the rotated one is still open.
    fx.put("app.log", b"fresh");
    fx.write(fh, old.len() as u64, b"last words").unwrap();
    fx.close(fh).unwrap();
    fx.ns.sync_namespace_changes();
    let mut rotated = old.clone();
    rotated.extend_from_slice(b"last words");
    assert_eq!(fx.body("app.log.1").unwrap(), rotated);
    assert_eq!(fx.body("app.log").unwrap(), b"fresh");
}

#[test]
fn a_failed_move_of_a_streaming_upload_fails_the_rename_and_leaves_no_partial_object() {
    let fx = Fixture::with(Options {
        retry_budget: Duration::from_millis(300),
        ..Options::default()
    });
    let (_, fh) = fx.create("streaming");
    fx.write(fh, 0, &bytes(12 * MIB, 7)).unwrap();
    eventually("the upload started", || !fx.store.uploads().is_empty());
    fx.store.set_hook(|phase, op, key| {
        (phase == crate::s3::memory::Phase::Before && op == "UploadPartCopy")
            .then(|| crate::s3::memory::access_denied(op, key))
    });
    // Refused (AccessDenied), not a disk error: EACCES, for the rename and the close.
    assert_eq!(
        fx.rename("streaming", "elsewhere").errno(),
        Some(libc::EACCES)
    );
    assert_eq!(fx.close(fh).errno(), Some(libc::EACCES));
    eventually("no upload left", || fx.store.uploads().is_empty());
    assert!(fx.store.keys().is_empty(), "{:?}", fx.store.keys());
}

#[test]
fn a_held_chmod_folds_into_the_rename_copy_and_is_not_sent_on_its_own() {
    let fx = Fixture::new();
    let ino = fx.put("a", b"body");
    fx.chmod(ino, 0o600).unwrap();
    fx.rename("a", "b").unwrap();
    fx.ns.sync_namespace_changes();
    let copies: Vec<_> = fx
        .writes()
        .into_iter()
        .filter(|(op, _)| *op == "CopyObject")
        .collect();
    assert_eq!(
        copies,
        [("CopyObject", "b".to_owned())],
        "one copy, to the new name"
    );
    let moved = fx.store.object("b").expect("renamed");
    assert_eq!(
        moved.headers.metadata.get("mode").map(String::as_str),
        Some("33152")
    );
    assert!(fx.store.object("a").is_none(), "the old key is deleted");
}

#[test]
fn the_old_key_of_a_renamed_file_is_deleted_after_the_rename_returns() {
    let fx = Fixture::new();
    fx.put("old", b"x");
    let entered = std::sync::Arc::new(std::sync::Barrier::new(2));
    let gate = std::sync::Arc::clone(&entered);
    fx.store.set_hook(move |phase, operation, _| {
        if phase == crate::s3::memory::Phase::Before && operation == "DeleteObject" {
            gate.wait();
        }
        None
    });
    // The delete is held at the store, yet rename has returned.
    fx.rename("old", "new").unwrap();
    assert_eq!(fx.body("new").unwrap(), b"x");
    entered.wait();
    fx.ns.sync_namespace_changes();
    assert!(fx.store.object("old").is_none());
}

#[test]
fn rename_onto_a_file_open_for_writing_detaches_that_writer() {
    let fx = Fixture::new();
    let (_, fh) = fx.create("target");
    fx.write(fh, 0, b"being written").unwrap();
    fx.put("source", b"renamed over it");
    fx.rename("source", "target").unwrap();
    fx.close(fh).unwrap();
    fx.ns.sync_namespace_changes();
    assert_eq!(fx.body("target").unwrap(), b"renamed over it");
    assert!(fx.store.object("source").is_none());
}

#[test]
fn a_new_file_under_a_renamed_away_name_is_not_hit_by_the_queued_delete() {
    let fx = Fixture::new();
    fx.put("log", b"yesterday");
    let held = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hold = std::sync::Arc::clone(&held);
    fx.store.set_hook(move |phase, operation, _| {
        while phase == crate::s3::memory::Phase::Before
            && operation == "DeleteObject"
            && hold.load(std::sync::atomic::Ordering::Relaxed)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    });
    fx.rename("log", "log.1").unwrap();
    eventually("the delete is in flight", || {
        fx.store.count("DeleteObject") == 1
    });
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        held.store(false, std::sync::atomic::Ordering::Relaxed);
    });
    // Waits for the delete in flight (bounded), then takes the name.
    let (_, fh) = fx.create("log");
    release.join().unwrap();
    fx.write(fh, 0, b"today").unwrap();
    fx.close(fh).unwrap();
    fx.ns.sync_namespace_changes();
    assert_eq!(fx.body("log").unwrap(), b"today");
    assert_eq!(fx.body("log.1").unwrap(), b"yesterday");
    let calls = fx.writes();
    let delete = calls
        .iter()
        .position(|c| *c == ("DeleteObject", "log".to_owned()));
    let put = calls
        .iter()
        .rposition(|c| *c == ("PutObject", "log".to_owned()));
    assert!(
        delete < put,
        "the old delete goes before the new object: {calls:?}"
    );
}

#[test]
fn a_directory_rename_that_would_make_a_key_too_long_for_s3_copies_nothing() {
    let fx = Fixture::new();
    let long = format!("d/{}", "x".repeat(1020));
    fx.store.insert(&long, b"x", &[]);
    fx.store.insert("d/short", b"y", &[]);
    fx.ns.lookup(ROOT, OsStr::new("d")).expect("lookup d");
    let renamed = fx.rename("d", "a-longer-name");
    assert_eq!(renamed.errno(), Some(libc::ENAMETOOLONG));
    assert_eq!(
        fx.store.count("CopyObject"),
        0,
        "checked before anything is copied"
    );
    assert_eq!(fx.store.keys(), ["d/short".to_owned(), long]);
}
