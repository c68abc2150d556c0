//! Single objects: checksums, metadata, copies, ranges, deletes and awkward keys.

use std::collections::HashMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::MetadataDirective;

use crate::{Answer, Target, answer, crc32c, listing};

/// PutObject with an explicit x-amz-checksum-crc32c, as the mount writes small files.
async fn put_crc32c(t: &Target, key: &str, body: &'static [u8], checksum: &str) -> Answer<()> {
    let result =
        t.c.put_object()
            .bucket(&t.bucket)
            .key(key)
            .checksum_crc32_c(checksum)
            .body(ByteStream::from_static(body))
            .send()
            .await;
    answer(result).map(drop)
}

pub async fn a_put_with_the_right_crc32c_is_stored_and_head_reports_the_checksum(t: Target) {
    let body = b"hello conformance";
    put_crc32c(&t, "sum/right", body, &crc32c(body))
        .await
        .unwrap();
    let head = t.head("sum/right").await.expect("stored");
    assert_eq!(head.checksum_crc32_c(), Some(crc32c(body).as_str()));
    assert_eq!(t.get("sum/right").await, body);
}

/// A refusal the mount retries as corruption in transit: 400 BadDigest (AWS and the embedded
/// server) or 400 InvalidDigest (Garage).
fn assert_bad_digest(answer: Answer<()>) {
    match answer {
        Err((400, code)) if code == "BadDigest" || code == "InvalidDigest" => {}
        other => panic!("expected 400 BadDigest or InvalidDigest, got {other:?}"),
    }
}

pub async fn a_put_with_a_wrong_crc32c_is_refused_as_a_bad_digest_and_stores_nothing(t: Target) {
    let wrong = crc32c(b"other bytes");
    assert_bad_digest(put_crc32c(&t, "sum/new", b"new bytes", &wrong).await);
    assert!(
        t.head("sum/new").await.is_none(),
        "a refused put created the key"
    );

    // Nor does it replace what was there.
    t.put("sum/old", b"old bytes").await;
    assert_bad_digest(put_crc32c(&t, "sum/old", b"new bytes", &wrong).await);
    assert_eq!(t.get("sum/old").await, b"old bytes");
}

/// User metadata and Content-Type.
type Headers = (HashMap<String, String>, String);

/// The headers [`put_with_headers`] writes: the mount's metadata and a Content-Type.
fn original() -> Headers {
    let meta = [("mode", "100644"), ("uid", "1000"), ("mtime", "1700000000")];
    let meta = meta.map(|(k, v)| (k.to_owned(), v.to_owned()));
    (meta.into(), "text/plain".to_owned())
}

/// The headers a REPLACE copy gives.
fn replacement() -> Headers {
    let meta = [("mode".to_owned(), "100600".to_owned())];
    (meta.into(), "application/json".to_owned())
}

async fn put_with_headers(t: &Target, key: &str) {
    let (meta, content_type) = original();
    t.c.put_object()
        .bucket(&t.bucket)
        .key(key)
        .set_metadata(Some(meta))
        .content_type(content_type)
        .body(ByteStream::from_static(b"body"))
        .send()
        .await
        .unwrap();
}

async fn headers(t: &Target, key: &str) -> Headers {
    let head = t.head(key).await.expect("the object exists");
    (
        head.metadata().cloned().unwrap_or_default(),
        head.content_type().unwrap_or_default().to_owned(),
    )
}

/// CopyObject `from` → `to` with `directive`, and with [`replacement`] headers when REPLACE.
async fn copy(t: &Target, from: &str, to: &str, directive: MetadataDirective) -> Answer<()> {
    let (meta, content_type) = replacement();
    let replace = directive == MetadataDirective::Replace;
    let result =
        t.c.copy_object()
            .bucket(&t.bucket)
            .key(to)
            .copy_source(t.copy_source(from))
            .metadata_directive(directive)
            .set_metadata(replace.then_some(meta))
            .set_content_type(replace.then_some(content_type))
            .send()
            .await;
    answer(result).map(drop)
}

/// [`copy`] that must succeed and copy the bytes: the headers `to` has then.
async fn copied(t: &Target, from: &str, to: &str, directive: MetadataDirective) -> Headers {
    let body = t.get(from).await;
    assert_eq!(copy(t, from, to, directive).await, Ok(()), "{from} → {to}");
    assert_eq!(t.get(to).await, body, "{from} → {to}");
    headers(t, to).await
}

pub async fn user_metadata_and_content_type_round_trip(t: Target) {
    put_with_headers(&t, "meta/file.txt").await;
    assert_eq!(headers(&t, "meta/file.txt").await, original());
}

pub async fn a_copy_with_directive_copy_keeps_metadata_and_content_type(t: Target) {
    put_with_headers(&t, "copy/src").await;
    let headers = copied(&t, "copy/src", "copy/dst", MetadataDirective::Copy).await;
    assert_eq!(headers, original());
}

pub async fn a_copy_with_directive_replace_replaces_metadata_and_content_type(t: Target) {
    put_with_headers(&t, "copy/src").await;
    let headers = copied(&t, "copy/src", "copy/dst", MetadataDirective::Replace).await;
    assert_eq!(headers, replacement());
}

pub async fn a_copy_onto_itself_without_replace_changes_nothing_and_with_replace_updates_headers(
    t: Target,
) {
    put_with_headers(&t, "self/file").await;
    // AWS refuses this with 400 InvalidRequest ("…copy an object to itself without changing
    // the object's metadata…"), and so does the mount's in-memory store; Garage and the embedded
    // server accept it and change nothing. The mount never sends it: its self-copies (chmod,
    // utimes) all say REPLACE.
    match copy(&t, "self/file", "self/file", MetadataDirective::Copy).await {
        Ok(()) | Err((400, _)) => {}
        other => panic!("self-copy with COPY: {other:?}"),
    }
    assert_eq!(headers(&t, "self/file").await, original());
    let headers = copied(&t, "self/file", "self/file", MetadataDirective::Replace).await;
    assert_eq!(headers, replacement());
}

/// GetObject of `range` (`bytes=…`).
async fn get_range(t: &Target, key: &str, range: &str) -> Answer<Vec<u8>> {
    let result =
        t.c.get_object()
            .bucket(&t.bucket)
            .key(key)
            .range(range)
            .send()
            .await;
    let out = answer(result)?;
    Ok(out.body.collect().await.unwrap().into_bytes().to_vec())
}

pub async fn a_ranged_get_returns_the_range_cut_at_the_end(t: Target) {
    t.put("range/file", b"0123456789").await;
    assert_eq!(
        get_range(&t, "range/file", "bytes=2-5").await.unwrap(),
        b"2345"
    );
    assert_eq!(
        get_range(&t, "range/file", "bytes=7-100").await.unwrap(),
        b"789"
    );
    assert_eq!(get_range(&t, "range/file", "bytes=9-").await.unwrap(), b"9");
}

pub async fn a_range_starting_past_the_end_is_416_invalid_range(t: Target) {
    t.put("range/file", b"0123456789").await;
    for range in ["bytes=10-", "bytes=10-20", "bytes=50-60"] {
        assert_eq!(
            get_range(&t, "range/file", range).await,
            Err((416, "InvalidRange".to_owned())),
            "{range}"
        );
    }
}

pub async fn deleting_a_missing_key_succeeds(t: Target) {
    t.put("gone/file", b"x").await;
    for key in ["never/written", "gone/file", "gone/file"] {
        t.delete(key).await;
    }
    assert!(t.head("gone/file").await.is_none());
}

pub async fn keys_with_spaces_plus_percent_and_unicode_are_stored_listed_and_copied(t: Target) {
    let mut keys = [
        "odd/with space.txt",
        "odd/plus+sign",
        "odd/per%25cent%",
        "odd/ünï cödé ✓/日本語",
        "odd/q?uery#hash&amp=",
    ];
    for (i, key) in keys.iter().enumerate() {
        t.put(key, key.as_bytes()).await;
        assert_eq!(t.get(key).await, key.as_bytes(), "{key}");
        let copy_key = format!("copied/{i} {}", &key[4..]);
        copied(&t, key, &copy_key, MetadataDirective::Copy).await;
    }
    keys.sort_unstable();
    assert_eq!(listing::keys(&t, "odd/").await, keys);
    for key in keys {
        t.delete(key).await;
        assert!(t.head(key).await.is_none(), "{key}");
    }
}
