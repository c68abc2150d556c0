//! Objects: put with metadata and checksums, ranged reads, the three kinds of copy, refused
//! writes that leave the object alone, deletes, and the keys the server cannot store.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, MetadataDirective};

use crate::common::{B, Local, crc32c, delete, get, head, head_status, meta, put, put_err, status};

const BODY: &[u8] = b"hello, local s3 world";

/// `docs/a.txt` as the mount sends it: unsigned payload with an explicit CRC32C, metadata and
/// a content type.
async fn put_a(c: &Client) -> aws_sdk_s3::operation::put_object::PutObjectOutput {
    c.put_object()
        .bucket(B)
        .key("docs/a.txt")
        .checksum_crc32_c(crc32c(BODY))
        .metadata("mode", "100644")
        .metadata("uid", "1000")
        .content_type("text/plain")
        .body(ByteStream::from(BODY.to_vec()))
        .customize()
        .disable_payload_signing()
        .send()
        .await
        .unwrap()
}

async fn copy(c: &Client, source: &str, key: &str) {
    c.copy_object()
        .bucket(B)
        .key(key)
        .copy_source(format!("s3upfs/{source}"))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_put_with_a_crc32c_echoes_the_checksum() {
    let Local { c, .. } = &Local::start();
    let out = put_a(c).await;
    assert_eq!(out.checksum_crc32_c(), Some(crc32c(BODY).as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_returns_the_size_metadata_content_type_and_checksum_of_a_put() {
    let Local { c, .. } = &Local::start();
    put_a(c).await;
    let head = c
        .head_object()
        .bucket(B)
        .key("docs/a.txt")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(BODY.len() as i64));
    assert_eq!(
        head.metadata().unwrap(),
        &meta(&[("mode", "100644"), ("uid", "1000")])
    );
    assert_eq!(head.content_type(), Some("text/plain"));
    assert_eq!(head.checksum_crc32_c(), Some(crc32c(BODY).as_str()));
    assert_eq!(get(c, "docs/a.txt").await, BODY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ranged_get_returns_those_bytes_and_their_content_range() {
    let Local { c, .. } = &Local::start();
    put_a(c).await;
    let ranged = c
        .get_object()
        .bucket(B)
        .key("docs/a.txt")
        .range("bytes=7-11")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.content_range(), Some("bytes 7-11/21"));
    assert_eq!(
        &ranged.body.collect().await.unwrap().into_bytes()[..],
        b"local"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_keeps_the_source_metadata() {
    let Local { c, .. } = &Local::start();
    put_a(c).await;
    copy(c, "docs/a.txt", "docs/b.txt").await;
    assert_eq!(
        head(c, "docs/b.txt").await.metadata().unwrap(),
        &meta(&[("mode", "100644"), ("uid", "1000")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_with_replace_sets_the_new_metadata_and_type_and_keeps_the_data() {
    let Local { c, .. } = &Local::start();
    put_a(c).await;
    copy(c, "docs/a.txt", "docs/b.txt").await;
    c.copy_object()
        .bucket(B)
        .key("docs/b.txt")
        .copy_source("s3upfs/docs/a.txt")
        .metadata_directive(MetadataDirective::Replace)
        .metadata("mode", "100600")
        .content_type("application/octet-stream")
        .send()
        .await
        .unwrap();
    let head = head(c, "docs/b.txt").await;
    assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "100600")]));
    assert_eq!(head.content_type(), Some("application/octet-stream"));
    assert_eq!(get(c, "docs/b.txt").await, BODY);
}

/// How the mount changes metadata in place (chmod).
async fn chmod_a(c: &Client) {
    c.copy_object()
        .bucket(B)
        .key("docs/a.txt")
        .copy_source("s3upfs/docs/a.txt")
        .metadata_directive(MetadataDirective::Replace)
        .metadata("mode", "100755")
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_copy_with_replace_changes_the_metadata_in_place() {
    let Local { c, .. } = &Local::start();
    put_a(c).await;
    chmod_a(c).await;
    assert_eq!(
        head(c, "docs/a.txt").await.metadata().unwrap(),
        &meta(&[("mode", "100755")])
    );
    assert_eq!(get(c, "docs/a.txt").await, BODY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_from_a_source_without_metadata_drops_the_targets_old_metadata() {
    let Local { c, .. } = &Local::start();
    put_a(c).await;
    copy(c, "docs/a.txt", "docs/b.txt").await;
    put(c, "docs/plain", b"plain").await;
    copy(c, "docs/plain", "docs/b.txt").await;
    let head = head(c, "docs/b.txt").await;
    assert!(
        head.metadata().is_none_or(|m| m.is_empty()),
        "{:?}",
        head.metadata()
    );
    assert_eq!(get(c, "docs/b.txt").await, b"plain");
}

/// The put was refused as BadDigest, and the object and its metadata are what they were.
async fn assert_bad_digest_left_a_untouched<T: std::fmt::Debug>(
    c: &Client,
    result: Result<T, SdkError<PutObjectError, HttpResponse>>,
) {
    let e = result.unwrap_err();
    assert_eq!(e.code(), Some("BadDigest"), "{e:?}");
    assert_eq!(get(c, "docs/a.txt").await, BODY);
    assert_eq!(
        head(c, "docs/a.txt").await.metadata().unwrap(),
        &meta(&[("mode", "100755")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_with_a_wrong_crc32c_is_refused_as_bad_digest_and_leaves_the_object_alone() {
    let Local { c, .. } = &Local::start();
    put_a(c).await;
    chmod_a(c).await;
    let result = c
        .put_object()
        .bucket(B)
        .key("docs/a.txt")
        .checksum_crc32_c(crc32c(b"something else"))
        .body(ByteStream::from(b"corrupted".to_vec()))
        .customize()
        .disable_payload_signing()
        .send()
        .await;
    assert_bad_digest_left_a_untouched(c, result).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_with_a_wrong_content_md5_is_refused_as_bad_digest_and_leaves_the_object_alone() {
    let Local { c, .. } = &Local::start();
    put_a(c).await;
    chmod_a(c).await;
    let result = c
        .put_object()
        .bucket(B)
        .key("docs/a.txt")
        .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
        .body(ByteStream::from(b"corrupted".to_vec()))
        .send()
        .await;
    assert_bad_digest_left_a_untouched(c, result).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_replaces_the_data() {
    let Local { c, .. } = &Local::start();
    put_a(c).await;
    put(c, "docs/a.txt", b"v2").await;
    assert_eq!(get(c, "docs/a.txt").await, b"v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_object_is_404_on_head_and_no_such_key_on_get() {
    let Local { c, .. } = &Local::start();
    put_a(c).await;
    delete(c, "docs/a.txt").await;
    assert_eq!(head_status(c, "docs/a.txt").await, 404);
    let e = c
        .get_object()
        .bucket(B)
        .key("docs/a.txt")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("NoSuchKey"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_missing_key_succeeds() {
    let Local { c, .. } = &Local::start();
    put_a(c).await;
    delete(c, "docs/a.txt").await;
    delete(c, "docs/a.txt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_on_disk_is_not_an_object_head_is_404_and_delete_leaves_its_keys() {
    let Local { c, .. } = &Local::start();
    put(c, "docs/plain", b"plain").await;
    let e = c
        .head_object()
        .bucket(B)
        .key("docs")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 404, "a directory is not an object: {e:?}");
    delete(c, "docs").await;
    assert_eq!(get(c, "docs/plain").await, b"plain");
}

/// `docs/plain` exists; a put of `key` must be refused as a file/directory conflict.
async fn assert_conflict_with_docs_plain(key: &str) {
    let Local { c, .. } = &Local::start();
    put(c, "docs/plain", b"plain").await;
    let e = put_err(c, key, b"x").await;
    assert_eq!(
        (status(&e), e.code()),
        (400, Some("InvalidRequest")),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_under_an_object_is_refused_with_400_invalid_request() {
    assert_conflict_with_docs_plain("docs/plain/child").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_named_like_a_prefix_with_keys_under_it_is_refused_with_400_invalid_request() {
    assert_conflict_with_docs_plain("docs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_longer_than_162_bytes_is_refused_up_front_as_key_too_long() {
    let Local { c, .. } = &Local::start();
    let e = put_err(c, &"k".repeat(163), b"x").await;
    assert_eq!(e.code(), Some("KeyTooLongError"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_162_bytes_is_stored() {
    let Local { c, .. } = &Local::start();
    put(c, &"k".repeat(162), b"ok").await;
}
