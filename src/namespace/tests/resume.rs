//! Resume: an interrupted upload of 8 parts or more is parked in the journal, and
//! writing the same file again sends only what S3 does not hold, into the same upload.

use super::*;

const PART: usize = 5 * MIB;

/// The journal entries under a state directory (each source has its own folder).
fn journal_entries(state: &std::path::Path) -> usize {
    let Ok(sources) = std::fs::read_dir(state.join("uploads")) else {
        return 0;
    };
    sources
        .flatten()
        .filter_map(|source| std::fs::read_dir(source.path()).ok())
        .flatten()
        .flatten()
        .filter(|file| file.path().extension().is_some_and(|e| e == "json"))
        .count()
}

fn with_journal(dir: &std::path::Path) -> Options {
    Options {
        state_dir: Some(dir.to_path_buf()),
        ..Options::default()
    }
}

/// Writes `data` to a new file and stops (unlinks it) once `parts` parts are in S3.
fn interrupt_after(fx: &Fixture, name: &str, data: &[u8], parts: usize) {
    let (_, fh) = fx.create(name);
    fx.write(fh, 0, &data[..(parts + 1) * PART + 1]).unwrap();
    eventually("the parts are in S3", || {
        fx.ns
            .status()
            .writing
            .first()
            .is_some_and(|file| file.parts_done as usize >= parts)
    });
    fx.ns.unlink(ROOT, OsStr::new(name)).unwrap();
    let _ = fx.close(fh);
}

#[test]
fn a_rewrite_after_an_interruption_sends_only_what_s3_lacks_and_completes_the_same_upload() {
    let state = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let data = bytes(11 * PART + MIB, 3);
    {
        let fx = Fixture::on(Arc::clone(&store), with_journal(state.path()));
        interrupt_after(&fx, "big", &data, 9);
        // Parked, not aborted.
        assert_eq!(fx.store.uploads().len(), 1);
        assert_eq!(fx.store.count("AbortMultipartUpload"), 0);
    }
    // A remount finds it in the journal; the same bytes again.
    let fx = Fixture::on(Arc::clone(&store), with_journal(state.path()));
    let before = fx.store.count("UploadPart");
    fx.put("big", &data);
    let sent = fx.store.count("UploadPart") - before;
    // Part 1 (kept in memory until completion, so never sent before), part 11 (not
    // reached) and the last partial part 12: 2..=10 are reused.
    assert_eq!(sent, 3, "{:?}", fx.store.calls());
    assert_eq!(fx.body("big").unwrap(), data);
    assert_eq!(
        fx.store.count("CreateMultipartUpload"),
        1,
        "the same upload"
    );
    assert!(fx.store.uploads().is_empty());
    assert_eq!(
        journal_entries(state.path()),
        0,
        "the journal entry goes at Complete"
    );
}

#[test]
fn a_changed_part_is_sent_again_from_there_on_and_the_object_is_the_new_data() {
    let state = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let data = bytes(11 * PART + MIB, 4);
    {
        let fx = Fixture::on(Arc::clone(&store), with_journal(state.path()));
        interrupt_after(&fx, "big", &data, 9);
    }
    let mut changed = data.clone();
    changed[2 * PART + 10] ^= 0xff; // in part 3
    let fx = Fixture::on(Arc::clone(&store), with_journal(state.path()));
    let before = fx.store.count("UploadPart");
    fx.put("big", &changed);
    // Part 2 reused; parts 1 and 3..=12 sent.
    assert_eq!(fx.store.count("UploadPart") - before, 11);
    assert_eq!(fx.body("big").unwrap(), changed);
    assert!(fx.store.uploads().is_empty());
}

#[test]
fn an_upload_of_fewer_than_8_parts_is_aborted_not_parked() {
    let state = tempfile::tempdir().unwrap();
    let fx = Fixture::with(with_journal(state.path()));
    let data = bytes(5 * PART + MIB, 5);
    interrupt_after(&fx, "small", &data, 3);
    eventually("the upload is aborted", || fx.store.uploads().is_empty());
    assert_eq!(journal_entries(state.path()), 0);
}

#[test]
fn a_parked_upload_past_its_window_is_aborted_at_the_next_mount() {
    let state = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let data = bytes(11 * PART, 6);
    {
        let fx = Fixture::on(Arc::clone(&store), with_journal(state.path()));
        interrupt_after(&fx, "big", &data, 9);
    }
    assert_eq!(store.uploads().len(), 1);
    let journal = Journal::open(state.path(), "bucket", "bucket", PART as u64).unwrap();
    let resume = Resume::load(
        journal,
        Duration::ZERO,
        Arc::clone(&store) as Arc<dyn ObjectStore>,
    );
    // Created this second: a zero window has passed only once a second has gone by.
    std::thread::sleep(Duration::from_millis(1100));
    resume.expire();
    drop(resume);
    let journal = Journal::open(state.path(), "bucket", "bucket", PART as u64).unwrap();
    let _ = Resume::load(
        journal,
        Duration::ZERO,
        Arc::clone(&store) as Arc<dyn ObjectStore>,
    );
    assert!(store.uploads().is_empty(), "aborted");
    assert_eq!(journal_entries(state.path()), 0);
}

#[test]
fn an_rsync_rerun_writing_another_temporary_name_resumes_the_parked_upload() {
    let state = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let data = bytes(11 * PART + MIB, 7);
    {
        let fx = Fixture::on(Arc::clone(&store), with_journal(state.path()));
        interrupt_after(&fx, ".big.bin.Ab12Cd", &data, 9);
    }
    let fx = Fixture::on(Arc::clone(&store), with_journal(state.path()));
    let before = fx.store.count("UploadPart");
    fx.put(".big.bin.Zy98Xw", &data);
    assert_eq!(
        fx.store.count("UploadPart") - before,
        3,
        "parts 2..=10 reused"
    );
    fx.rename(".big.bin.Zy98Xw", "big.bin").unwrap();
    assert_eq!(fx.body("big.bin").unwrap(), data);
    fx.ns.sync_namespace_changes();
    assert_eq!(
        fx.store.keys(),
        vec!["big.bin".to_owned()],
        "no temporary left"
    );
    assert!(fx.store.uploads().is_empty());
}

#[test]
fn an_upload_parked_in_another_state_directory_is_never_touched() {
    let mine = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let data = bytes(11 * PART, 8);
    {
        let fx = Fixture::on(Arc::clone(&store), with_journal(theirs.path()));
        interrupt_after(&fx, "big", &data, 9);
    }
    let fx = Fixture::on(Arc::clone(&store), with_journal(mine.path()));
    fx.put("big", &data);
    assert_eq!(fx.store.count("CreateMultipartUpload"), 2, "a new upload");
    assert_eq!(fx.store.uploads().len(), 1, "theirs is still there");
    assert_eq!(fx.body("big").unwrap(), data);
}

#[test]
fn an_empty_file_written_under_a_parked_key_is_put_and_the_parked_upload_aborted() {
    let state = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let data = bytes(11 * PART, 9);
    {
        let fx = Fixture::on(Arc::clone(&store), with_journal(state.path()));
        interrupt_after(&fx, "big", &data, 9);
    }
    let fx = Fixture::on(Arc::clone(&store), with_journal(state.path()));
    // touch, or dd's first close of a duplicate: nothing written.
    let (_, fh) = fx.create("big");
    fx.close(fh).unwrap();
    assert_eq!(fx.body("big").unwrap(), b"");
    eventually("the parked upload is aborted", || {
        fx.store.uploads().is_empty()
    });
}
