//! Failures on the way to S3: what is retried, what a close returns, and that a failed
//! upload is aborted, never published.

use super::*;
use crate::s3::memory::{Phase, access_denied, internal_error};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A hook failing `operation` (before it takes effect) its first `times` calls.
fn fail_first(
    times: usize,
    operation: &'static str,
) -> impl Fn(Phase, &'static str, &str) -> Option<crate::s3::S3Error> {
    let seen = AtomicUsize::new(0);
    move |phase, op, key| {
        (phase == Phase::Before && op == operation && seen.fetch_add(1, Ordering::Relaxed) < times)
            .then(|| internal_error(op, key))
    }
}

#[test]
fn a_part_failing_twice_is_retried_and_the_file_completes() {
    let fx = Fixture::new();
    fx.store.set_hook(fail_first(2, "UploadPart"));
    let data = bytes(12 * MIB, 7);
    fx.put("retried", &data);
    assert_eq!(fx.body("retried").unwrap(), data);
    assert!(
        fx.store.count("UploadPart") >= 5,
        "3 parts + 2 failed tries"
    );
}

#[test]
fn a_small_object_failing_past_the_retry_budget_fails_close_with_eio_and_leaves_nothing() {
    let fx = Fixture::with(Options {
        retry_budget: Duration::from_millis(600),
        ..Options::default()
    });
    fx.store.set_hook(fail_first(usize::MAX, "PutObject"));
    let (_, fh) = fx.create("lost");
    fx.write(fh, 0, b"data").unwrap();
    assert_eq!(fx.close(fh).errno(), Some(libc::EIO));
    assert!(fx.store.object("lost").is_none());
}

#[test]
fn a_part_failing_past_the_retry_budget_fails_close_with_eio_and_aborts_the_upload() {
    let fx = Fixture::with(Options {
        retry_budget: Duration::from_millis(600),
        ..Options::default()
    });
    fx.store.set_hook(fail_first(usize::MAX, "UploadPart"));
    let (_, fh) = fx.create("lost");
    fx.write(fh, 0, &bytes(12 * MIB, 8)).unwrap();
    assert_eq!(fx.close(fh).errno(), Some(libc::EIO));
    eventually("the upload aborted", || fx.store.uploads().is_empty());
    assert!(fx.store.object("lost").is_none());
    assert_eq!(fx.store.count("CompleteMultipartUpload"), 0);
}

#[test]
fn a_refused_part_is_not_retried() {
    let fx = Fixture::new();
    fx.store.set_hook(|phase, op, key| {
        (phase == Phase::Before && op == "UploadPart").then(|| access_denied(op, key))
    });
    let (_, fh) = fx.create("denied");
    fx.write(fh, 0, &bytes(12 * MIB, 9)).unwrap();
    assert!(fx.close(fh).is_err());
    // Each part tried once at most (the first refusal may stop the rest): final.
    let mut tried: Vec<String> = fx
        .store
        .calls()
        .into_iter()
        .filter(|(op, _)| *op == "UploadPart")
        .map(|(_, key)| key)
        .collect();
    let count = tried.len();
    tried.sort();
    tried.dedup();
    assert_eq!(tried.len(), count, "a part was tried twice: {tried:?}");
    eventually("the upload aborted", || fx.store.uploads().is_empty());
}

#[test]
fn a_create_multipart_upload_failing_a_few_times_is_ridden_out() {
    let fx = Fixture::new();
    fx.store.set_hook(fail_first(2, "CreateMultipartUpload"));
    let data = bytes(12 * MIB, 10);
    fx.put("slow-start", &data);
    assert_eq!(fx.body("slow-start").unwrap(), data);
}

#[test]
fn a_complete_whose_answer_was_lost_succeeds_when_the_object_is_ours() {
    let fx = Fixture::new();
    let lost = AtomicUsize::new(0);
    fx.store.set_hook(move |phase, op, key| {
        (phase == Phase::After
            && op == "CompleteMultipartUpload"
            && lost.fetch_add(1, Ordering::Relaxed) == 0)
            .then(|| internal_error(op, key))
    });
    let data = bytes(12 * MIB, 11);
    fx.put("completed-twice", &data);
    assert_eq!(fx.body("completed-twice").unwrap(), data);
    assert_eq!(
        fx.store.count("CompleteMultipartUpload"),
        2,
        "retried, got NoSuchUpload"
    );
}

#[test]
fn an_upload_aborted_by_someone_else_fails_close_and_publishes_nothing() {
    let fx = Fixture::new();
    let store = Arc::clone(&fx.store);
    let (_, fh) = fx.create("raced");
    fx.write(fh, 0, &bytes(12 * MIB, 12)).unwrap();
    eventually("the upload was created", || !fx.store.uploads().is_empty());
    for (key, id) in store.uploads() {
        store.abort_multipart_upload(&key, &id).unwrap();
    }
    assert_eq!(fx.close(fh).errno(), Some(libc::EIO));
    assert!(fx.store.object("raced").is_none());
}

#[test]
fn a_full_object_or_composite_checksum_at_complete_is_checked_against_the_parts() {
    let fx = Fixture::new();
    let data = bytes(12 * MIB, 13);
    fx.put("full", &data);
    assert_eq!(fx.body("full").unwrap(), data, "the object must stay");
    fx.store.keep_composite_checksums();
    fx.put("composite", &data);
    assert_eq!(fx.body("composite").unwrap(), data, "the object must stay");
}

#[test]
fn an_abort_is_repeated_after_the_last_part_in_flight_ends() {
    let fx = Fixture::new();
    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = Arc::clone(&open);
    fx.store.set_hook(move |phase, op, _| {
        while phase == Phase::Before && op == "UploadPart" && !gate.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    });
    let (_, fh) = fx.create("interrupted");
    fx.write(fh, 0, &bytes(12 * MIB, 14)).unwrap();
    eventually("a part is in flight", || fx.store.count("UploadPart") == 1);
    fx.ns.unlink(ROOT, OsStr::new("interrupted")).unwrap();
    eventually("the first abort", || {
        fx.store.count("AbortMultipartUpload") >= 1
    });
    open.store(true, Ordering::Relaxed);
    fx.ns.release(fh).unwrap();
    eventually("the abort repeated after the part ended", || {
        let calls = fx.store.calls();
        calls
            .iter()
            .filter(|(op, _)| *op == "AbortMultipartUpload")
            .count()
            >= 2
            && calls
                .last()
                .is_some_and(|(op, _)| *op == "AbortMultipartUpload")
    });
    assert!(fx.store.uploads().is_empty());
    assert!(fx.store.object("interrupted").is_none());
}

#[test]
fn access_denied_at_complete_reaches_close_as_eacces_and_the_upload_is_aborted() {
    let fx = Fixture::new();
    fx.store.set_hook(|phase, op, key| {
        (phase == Phase::Before && op == "CompleteMultipartUpload").then(|| access_denied(op, key))
    });
    let (_, fh) = fx.create("denied");
    fx.write(fh, 0, &bytes(12 * MIB, 15)).unwrap();
    assert_eq!(fx.close(fh).errno(), Some(libc::EACCES));
    eventually("the upload aborted", || fx.store.uploads().is_empty());
    assert!(fx.store.object("denied").is_none());
}

#[test]
fn access_denied_for_a_small_file_reaches_close_as_eacces() {
    let fx = Fixture::new();
    fx.store.set_hook(|phase, op, key| {
        (phase == Phase::Before && op == "PutObject").then(|| access_denied(op, key))
    });
    let (_, fh) = fx.create("denied");
    fx.write(fh, 0, b"x").unwrap();
    assert_eq!(fx.close(fh).errno(), Some(libc::EACCES));
}
