//! The in-memory store refuses what S3 refuses, so the fast tier cannot pass on a
//! request the server would reject.

use bytes::Bytes;

use super::*;
use crate::s3::S3ErrorKind;

fn part(number: u32, etag: String, body: &[u8]) -> UploadedPart {
    UploadedPart {
        part_number: number,
        etag,
        checksum_crc32c: Some(crc32c_base64(body)),
        size: body.len() as u64,
    }
}

fn upload(store: &MemoryStore, key: &str, number: u32, body: &[u8]) -> UploadedPart {
    let id = store.uploads()[0].1.clone();
    let etag = store
        .upload_part(
            key,
            &id,
            number,
            Bytes::copy_from_slice(body),
            &crc32c_base64(body),
        )
        .expect("upload part");
    part(number, etag, body)
}

#[test]
fn a_put_with_a_wrong_crc32c_is_refused_as_bad_digest_and_stores_nothing() {
    let store = MemoryStore::new();
    let error = store
        .put_object(
            "k",
            Bytes::from_static(b"data"),
            &crc32c_base64(b"other"),
            &ObjectHeaders::default(),
        )
        .expect_err("a wrong checksum must be refused");
    assert!(error.detail.starts_with("BadDigest"), "{error}");
    assert!(error.is_retryable(), "BadDigest is worth sending again");
    assert!(store.object("k").is_none());
}

#[test]
fn a_multipart_object_is_its_parts_in_order_with_a_full_object_or_composite_checksum() {
    let store = MemoryStore::new();
    let first = vec![1u8; MIN_PART_SIZE];
    let id = store
        .create_multipart_upload("full", &ObjectHeaders::default(), true)
        .unwrap();
    let parts = vec![
        upload(&store, "full", 1, &first),
        upload(&store, "full", 2, b"tail"),
    ];
    let reported = store
        .complete_multipart_upload("full", &id, &parts)
        .unwrap();
    assert_eq!(
        reported,
        Some(crc32c_base64(&[first.as_slice(), b"tail"].concat()))
    );
    store.keep_composite_checksums();
    let id = store
        .create_multipart_upload("big", &ObjectHeaders::default(), true)
        .unwrap();
    let parts = vec![
        upload(&store, "big", 1, &first),
        upload(&store, "big", 2, b"tail"),
    ];
    let reported = store.complete_multipart_upload("big", &id, &parts).unwrap();
    assert_eq!(
        reported.as_deref(),
        Some(composite_checksum(&parts).as_str())
    );
    let object = store.object("big").unwrap();
    assert_eq!(object.body.len(), MIN_PART_SIZE + 4);
    assert!(object.etag.ends_with("-2\""), "{}", object.etag);
    assert!(store.uploads().is_empty());
}

#[test]
fn a_part_under_5_mib_that_is_not_the_last_is_refused_at_complete() {
    let store = MemoryStore::new();
    let id = store
        .create_multipart_upload("k", &ObjectHeaders::default(), true)
        .unwrap();
    let parts = vec![
        upload(&store, "k", 1, b"small"),
        upload(&store, "k", 2, b"tail"),
    ];
    let error = store
        .complete_multipart_upload("k", &id, &parts)
        .unwrap_err();
    assert!(error.detail.starts_with("EntityTooSmall"), "{error}");
    assert!(!error.is_retryable());
}

#[test]
fn a_part_never_uploaded_or_with_another_etag_is_an_invalid_part() {
    let store = MemoryStore::new();
    let id = store
        .create_multipart_upload("k", &ObjectHeaders::default(), true)
        .unwrap();
    let mut named = upload(&store, "k", 1, b"only");
    named.etag = "\"other\"".to_owned();
    let error = store
        .complete_multipart_upload("k", &id, &[named])
        .unwrap_err();
    assert!(error.detail.starts_with("InvalidPart"), "{error}");
    let missing = part(2, "\"x\"".to_owned(), b"x");
    let error = store
        .complete_multipart_upload("k", &id, &[missing])
        .unwrap_err();
    assert!(error.detail.starts_with("InvalidPart"), "{error}");
}

#[test]
fn an_aborted_upload_is_no_such_upload_and_aborting_again_succeeds() {
    let store = MemoryStore::new();
    let id = store
        .create_multipart_upload("k", &ObjectHeaders::default(), true)
        .unwrap();
    let parts = vec![upload(&store, "k", 1, b"x")];
    store.abort_multipart_upload("k", &id).unwrap();
    store
        .abort_multipart_upload("k", &id)
        .expect("already gone is what abort wants");
    let error = store
        .complete_multipart_upload("k", &id, &parts)
        .unwrap_err();
    assert_eq!(error.kind, S3ErrorKind::NotFound, "{error}");
    let error = store
        .upload_part("k", &id, 2, Bytes::from_static(b"y"), &crc32c_base64(b"y"))
        .unwrap_err();
    assert_eq!(error.kind, S3ErrorKind::NotFound, "{error}");
}

#[test]
fn a_delimited_listing_pages_through_objects_and_common_prefixes_once_each() {
    let store = MemoryStore::new();
    for key in ["a", "d/1", "d/2", "e/x/y", "f", "g"] {
        store.insert(key, b"x", &[]);
    }
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = store.list_page("", true, token, Some(2)).unwrap();
        names.extend(page.objects.iter().map(|o| o.key.clone()));
        names.extend(page.common_prefixes.iter().cloned());
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    names.sort();
    assert_eq!(names, ["a", "d/", "e/", "f", "g"]);
    let under = store.list_all("d/", true).unwrap();
    let keys: Vec<_> = under.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["d/1", "d/2"]);
}

#[test]
fn a_range_past_the_end_is_invalid_and_a_range_over_it_is_cut() {
    let store = MemoryStore::new();
    store.insert("k", b"0123456789", &[]);
    assert_eq!(&store.get_object("k", Some(8..20)).unwrap()[..], b"89");
    let error = store.get_object("k", Some(10..12)).unwrap_err();
    assert!(error.detail.starts_with("InvalidRange"), "{error}");
    assert_eq!(
        store.get_object("gone", None).unwrap_err().kind,
        S3ErrorKind::NotFound
    );
}

#[test]
fn a_copy_onto_itself_must_replace_the_metadata_and_a_copy_over_the_limit_is_refused() {
    let store = MemoryStore::new();
    store.insert("k", b"body", &[("mode", "0644")]);
    assert!(store.copy_object("k", "k", None, 4).is_err());
    let headers = ObjectHeaders {
        metadata: [("mode".to_owned(), "0600".to_owned())].into(),
        content_type: None,
    };
    store.copy_object("k", "k", Some(&headers), 4).unwrap();
    assert_eq!(store.object("k").unwrap().headers.metadata["mode"], "0600");
    store.set_copy_object_limit(2);
    assert!(store.copy_object("k", "other", None, 4).is_err());
}

#[test]
fn a_copy_over_the_limit_goes_as_part_copies_and_keeps_the_body() {
    let store = MemoryStore::new();
    let body: Vec<u8> = (0..(12 << 20)).map(|i: u32| i as u8).collect();
    store.insert("src", &body, &[("mode", "0600")]);
    store.set_copy_object_limit(5 << 20);
    store.copy("src", "dst", None, body.len() as u64).unwrap();
    let copied = store.object("dst").unwrap();
    assert_eq!(&copied.body[..], &body[..]);
    assert_eq!(copied.headers.metadata["mode"], "0600");
    assert_eq!(store.count("UploadPartCopy"), 3);
    assert_eq!(store.count("CopyObject"), 0);
    assert!(store.uploads().is_empty());
}

#[test]
fn a_failed_part_copy_aborts_the_copy_and_leaves_no_upload() {
    let store = MemoryStore::new();
    store.insert("src", &vec![7u8; 12 << 20], &[]);
    store.set_copy_object_limit(5 << 20);
    store.set_hook(|phase, operation, key| {
        (phase == Phase::Before && operation == "UploadPartCopy")
            .then(|| access_denied(operation, key))
    });
    let error = store.copy("src", "dst", None, 12 << 20).unwrap_err();
    assert_eq!(error.kind, S3ErrorKind::AccessDenied);
    assert!(store.object("dst").is_none());
    assert!(
        store.uploads().is_empty(),
        "the copy's upload must be aborted"
    );
    assert_eq!(store.count("AbortMultipartUpload"), 1);
}
