//! The open file's life: when bytes leave, which close completes the upload, and what
//! a close returns.

use super::*;

#[test]
fn a_small_file_is_one_put_object_at_close_and_nothing_before() {
    let fx = Fixture::new();
    let (_, fh) = fx.create("small");
    fx.write(fh, 0, b"hello").unwrap();
    assert!(
        fx.writes().is_empty(),
        "nothing may leave before close: {:?}",
        fx.writes()
    );
    fx.close(fh).unwrap();
    assert_eq!(fx.writes(), [("PutObject", "small".to_owned())]);
    assert_eq!(fx.body("small").unwrap(), b"hello");
}

#[test]
fn parts_after_the_first_stream_out_while_writing_and_the_first_is_held_until_close() {
    let fx = Fixture::new();
    let data = bytes(12 * MIB, 1);
    let (_, fh) = fx.create("big");
    fx.write(fh, 0, &data).unwrap();
    // Part 2 is full once part 3 starts: it goes out before close.
    eventually("part 2 uploaded while the file is open", || {
        fx.store.uploads().first().is_some_and(|(key, id)| {
            fx.store
                .list_parts(key, id)
                .is_ok_and(|parts| parts.iter().map(|p| p.part_number).collect::<Vec<_>>() == [2])
        })
    });
    assert!(fx.store.object("big").is_none());
    fx.close(fh).unwrap();
    let object = fx.store.object("big").expect("completed");
    assert_eq!(&object.body[..], &data[..]);
    assert!(
        object.etag.ends_with("-3\""),
        "three parts: {}",
        object.etag
    );
    assert_eq!(fx.store.count("CompleteMultipartUpload"), 1);
    assert!(fx.store.uploads().is_empty());
}

#[test]
fn dd_s_empty_first_close_does_not_end_the_file_and_later_writes_complete_it() {
    let fx = Fixture::new();
    let (_, fh) = fx.create("dd");
    // dd's shell opens the file, dd dups it and closes one descriptor before writing.
    fx.ns.flush(fh, me(), false).unwrap();
    fx.write(fh, 0, b"written after the first close").unwrap();
    fx.close(fh).unwrap();
    assert_eq!(fx.body("dd").unwrap(), b"written after the first close");
}

#[test]
fn a_close_by_another_process_leaves_completion_to_the_last_close() {
    let fx = Fixture::new();
    let (_, fh) = fx.create("shared");
    fx.write(fh, 0, b"abc").unwrap();
    // A child that inherited the descriptor closes it first.
    fx.ns.flush(fh, OTHER, false).unwrap();
    assert!(
        fx.store.object("shared").is_none(),
        "a child's close must not complete"
    );
    fx.write(fh, 3, b"def").unwrap();
    fx.ns.release(fh).unwrap();
    assert_eq!(fx.body("shared").unwrap(), b"abcdef");
}

#[test]
fn repeated_closes_by_the_opener_complete_once() {
    let fx = Fixture::new();
    let (_, fh) = fx.create("twice");
    fx.write(fh, 0, b"x").unwrap();
    fx.ns.flush(fh, me(), false).unwrap();
    fx.ns.flush(fh, me(), false).unwrap();
    fx.ns.release(fh).unwrap();
    assert_eq!(fx.store.count("PutObject"), 1);
}

#[test]
fn fsync_completes_the_object_and_a_write_after_it_is_eio() {
    let fx = Fixture::new();
    let (_, fh) = fx.create("synced");
    fx.write(fh, 0, b"durable").unwrap();
    fx.ns.fsync(fh).unwrap();
    assert_eq!(fx.body("synced").unwrap(), b"durable");
    assert_eq!(fx.ns.write(fh, 7, b"more").errno(), Some(libc::EIO));
    fx.close(fh).unwrap();
    assert_eq!(fx.store.count("PutObject"), 1);
}

#[test]
fn a_killed_writer_s_file_keeps_what_it_wrote_as_on_a_local_disk() {
    let fx = Fixture::new();
    let data = bytes(12 * MIB, 2);
    let (_, fh) = fx.create("killed");
    fx.write(fh, 0, &data).unwrap();
    eventually("the upload started", || !fx.store.uploads().is_empty());
    fx.ns.flush(fh, me(), true).unwrap();
    fx.ns.release(fh).unwrap();
    assert_eq!(fx.body("killed").unwrap(), data);
    assert!(fx.store.uploads().is_empty());
}

#[test]
fn unlink_while_open_discards_the_upload_and_the_close_succeeds() {
    let fx = Fixture::new();
    let (_, fh) = fx.create("gone");
    fx.write(fh, 0, &bytes(12 * MIB, 3)).unwrap();
    fx.ns.unlink(ROOT, OsStr::new("gone")).unwrap();
    fx.write(fh, 12 * MIB as u64, b"still accepted").unwrap();
    fx.close(fh).unwrap();
    eventually("the upload aborted", || fx.store.uploads().is_empty());
    assert!(fx.store.object("gone").is_none());
}

#[test]
fn a_write_into_bytes_already_uploaded_is_einval_and_the_file_still_completes() {
    let fx = Fixture::new();
    let data = bytes(12 * MIB, 4);
    let (_, fh) = fx.create("rewind");
    fx.write(fh, 0, &data).unwrap();
    // Part 2 (5..10 MiB) has gone to the pool; part 1 is held and may still change.
    assert_eq!(
        fx.ns.write(fh, 6 * MIB as u64, b"x").errno(),
        Some(libc::EINVAL)
    );
    fx.write(fh, 0, b"HEADER").unwrap();
    fx.close(fh).unwrap();
    let mut expected = data.clone();
    expected[..6].copy_from_slice(b"HEADER");
    assert_eq!(fx.body("rewind").unwrap(), expected);
}

#[test]
fn a_read_only_mount_refuses_create_with_erofs() {
    let fx = Fixture::with(Options {
        read_only: true,
        ..Options::default()
    });
    let created = fx.ns.create(ROOT, OsStr::new("f"), (0o644, 0), 0, 0, me());
    assert_eq!(created.errno(), Some(libc::EROFS));
}

#[test]
fn an_upload_failing_after_the_last_close_is_reported_to_the_next_open_once() {
    let fx = Fixture::with(Options {
        retry_budget: Duration::from_millis(300),
        ..Options::default()
    });
    let (ino, fh) = fx.create("late");
    fx.write(fh, 0, b"data").unwrap();
    // A child closes last: the release completes, and nobody can be told it failed.
    fx.ns.flush(fh, OTHER, false).unwrap();
    fx.store.set_hook(|phase, op, key| {
        (phase == crate::s3::memory::Phase::Before && op == "PutObject")
            .then(|| crate::s3::memory::internal_error(op, key))
    });
    assert!(fx.ns.release(fh).is_err());
    fx.store.set_hook(|_, _, _| None);
    assert_eq!(
        fx.ns.open(ino, libc::O_RDONLY, me(), &|| false).errno(),
        Some(libc::EIO)
    );
    let (_, again) = fx.create("late");
    fx.write(again, 0, b"data").unwrap();
    fx.close(again)
        .expect("told once: the next writer starts clean");
    assert_eq!(fx.body("late").unwrap(), b"data");
}

#[test]
fn a_failure_a_close_reported_is_not_reported_again_at_the_next_open() {
    let fx = Fixture::with(Options {
        retry_budget: Duration::from_millis(300),
        ..Options::default()
    });
    fx.store.set_hook(|phase, op, key| {
        (phase == crate::s3::memory::Phase::Before && op == "PutObject")
            .then(|| crate::s3::memory::internal_error(op, key))
    });
    let (_, fh) = fx.create("told");
    fx.write(fh, 0, b"data").unwrap();
    assert_eq!(fx.close(fh).errno(), Some(libc::EIO));
    fx.store.set_hook(|_, _, _| None);
    let (_, again) = fx.create("told");
    fx.close(again).expect("the close was told already");
}
