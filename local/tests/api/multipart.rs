//! Multipart uploads: pending uploads listed, part checksums verified and echoed, the part list
//! checked at completion before anything is touched, composite checksums, sparse part numbers,
//! and abort.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
use s3s::crypto::Checksum as _;

use crate::common::{B, Local, crc32c, create_upload, get, head_status, meta, unquote};

const KEY: &str = "big/file.bin";

/// Two parts just over the 5 MiB minimum, with different contents.
fn part1() -> Vec<u8> {
    (0..5 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect()
}

fn part2() -> Vec<u8> {
    (0..5 * 1024 * 1024 + 3).map(|i| (i % 241) as u8).collect()
}

/// Starts an upload of `key` as the mount does: CRC32C, metadata and a content type.
async fn create(c: &Client, key: &str) -> String {
    c.create_multipart_upload()
        .bucket(B)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .metadata("mode", "100644")
        .content_type("application/octet-stream")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned()
}

/// Uploads part `n` unsigned with an explicit CRC32C; returns the echoed CRC32C and the part
/// as CompleteMultipartUpload lists it.
async fn upload(c: &Client, key: &str, id: &str, n: i32, body: &[u8]) -> (String, CompletedPart) {
    let out = c
        .upload_part()
        .bucket(B)
        .key(key)
        .upload_id(id)
        .part_number(n)
        .checksum_crc32_c(crc32c(body))
        .body(ByteStream::from(body.to_vec()))
        .customize()
        .disable_payload_signing()
        .send()
        .await
        .unwrap();
    let part = CompletedPart::builder()
        .part_number(n)
        .e_tag(out.e_tag().unwrap())
        .checksum_crc32_c(crc32c(body))
        .build();
    (out.checksum_crc32_c().unwrap_or_default().to_owned(), part)
}

/// Uploads part `n` without checksums; returns it as CompleteMultipartUpload lists it.
async fn upload_plain(c: &Client, key: &str, id: &str, n: i32, body: &[u8]) -> CompletedPart {
    let out = c
        .upload_part()
        .bucket(B)
        .key(key)
        .upload_id(id)
        .part_number(n)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap();
    CompletedPart::builder()
        .part_number(n)
        .e_tag(out.e_tag().unwrap())
        .build()
}

async fn complete(
    c: &Client,
    key: &str,
    id: &str,
    parts: Vec<CompletedPart>,
) -> Result<CompleteMultipartUploadOutput, String> {
    c.complete_multipart_upload()
        .bucket(B)
        .key(key)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(|e| e.code().unwrap_or("no code").to_owned())
}

/// `KEY` created and both parts uploaded; returns the upload id and the part list.
async fn two_parts(c: &Client) -> (String, Vec<CompletedPart>) {
    let id = create(c, KEY).await;
    let mut parts = Vec::new();
    for (n, body) in [(1, part1()), (2, part2())] {
        parts.push(upload(c, KEY, &id, n, &body).await.1);
    }
    (id, parts)
}

/// `KEY` uploaded in two parts and completed.
async fn completed(c: &Client) -> CompleteMultipartUploadOutput {
    let (id, parts) = two_parts(c).await;
    complete(c, KEY, &id, parts).await.unwrap()
}

fn composite_crc32c() -> String {
    let raw = [
        s3s::crypto::Crc32c::checksum(&part1()),
        s3s::crypto::Crc32c::checksum(&part2()),
    ]
    .concat();
    format!("{}-2", crc32c(&raw))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_upload_is_listed_under_its_prefix_with_its_key_id_and_initiation_time() {
    let Local { c, .. } = &Local::start();
    let id = create(c, KEY).await;
    let pending = c
        .list_multipart_uploads()
        .bucket(B)
        .prefix("big/")
        .send()
        .await
        .unwrap();
    let found: Vec<_> = pending
        .uploads()
        .iter()
        .map(|u| (u.key(), u.upload_id()))
        .collect();
    assert_eq!(found, [(Some(KEY), Some(id.as_str()))]);
    assert!(pending.uploads()[0].initiated().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_uploaded_part_echoes_its_crc32c() {
    let Local { c, .. } = &Local::start();
    let id = create(c, KEY).await;
    for (n, body) in [(1, part1()), (2, part2())] {
        let (echoed, _) = upload(c, KEY, &id, n, &body).await;
        assert_eq!(echoed, crc32c(&body));
    }
}

/// (part number, unquoted ETag, CRC32C) of a `Part` or a `CompletedPart`.
macro_rules! summary {
    ($part:expr) => {
        (
            $part.part_number(),
            $part.e_tag().map(|e| unquote(e).to_owned()),
            $part.checksum_crc32_c().map(str::to_owned),
        )
    };
}

type Summary = (Option<i32>, Option<String>, Option<String>);

/// Each part as ListParts returns it.
async fn listed_parts(c: &Client, id: &str) -> Vec<Summary> {
    let parts = c
        .list_parts()
        .bucket(B)
        .key(KEY)
        .upload_id(id)
        .send()
        .await
        .unwrap();
    parts.parts().iter().map(|p| summary!(p)).collect()
}

fn as_listed(parts: &[CompletedPart]) -> Vec<Summary> {
    parts.iter().map(|p| summary!(p)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_parts_returns_the_number_etag_and_crc32c_of_each_uploaded_part() {
    let Local { c, .. } = &Local::start();
    let (id, parts) = two_parts(c).await;
    assert_eq!(listed_parts(c, &id).await, as_listed(&parts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_with_a_wrong_crc32c_is_refused_as_bad_digest_and_not_kept() {
    let Local { c, .. } = &Local::start();
    let (id, parts) = two_parts(c).await;
    let e = c
        .upload_part()
        .bucket(B)
        .key(KEY)
        .upload_id(&id)
        .part_number(3)
        .checksum_crc32_c(crc32c(b"other"))
        .body(ByteStream::from_static(b"tail"))
        .customize()
        .disable_payload_signing()
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("BadDigest"), "{e:?}");
    assert_eq!(listed_parts(c, &id).await, as_listed(&parts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_naming_a_wrong_etag_is_refused_as_invalid_part_before_anything_is_touched() {
    let Local { c, .. } = &Local::start();
    let (id, parts) = two_parts(c).await;
    let mut wrong = parts.clone();
    wrong[0] = CompletedPart::builder()
        .part_number(1)
        .e_tag("\"00\"")
        .build();
    assert_eq!(
        complete(c, KEY, &id, wrong).await.err().as_deref(),
        Some("InvalidPart")
    );
    complete(c, KEY, &id, parts).await.unwrap();
    assert_eq!(get(c, KEY).await, [part1(), part2()].concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_smaller_than_5_mib_that_is_not_the_last_is_rejected_at_complete() {
    let Local { c, .. } = &Local::start();
    let id = create(c, KEY).await;
    let parts = vec![
        upload(c, KEY, &id, 1, b"small").await.1,
        upload(c, KEY, &id, 2, &part2()).await.1,
    ];
    assert_eq!(
        complete(c, KEY, &id, parts).await.err().as_deref(),
        Some("EntityTooSmall")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_listed_out_of_order_are_rejected_as_invalid_part_order() {
    let Local { c, .. } = &Local::start();
    let (id, mut parts) = two_parts(c).await;
    parts.reverse();
    assert_eq!(
        complete(c, KEY, &id, parts).await.err().as_deref(),
        Some("InvalidPartOrder")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_part_that_was_never_uploaded_is_rejected_as_invalid_part() {
    let Local { c, .. } = &Local::start();
    let (id, mut parts) = two_parts(c).await;
    parts.push(
        CompletedPart::builder()
            .part_number(3)
            .e_tag("\"00\"")
            .build(),
    );
    assert_eq!(
        complete(c, KEY, &id, parts).await.err().as_deref(),
        Some("InvalidPart")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_an_unknown_upload_is_no_such_upload() {
    let Local { c, .. } = &Local::start();
    let (_, parts) = two_parts(c).await;
    let unknown = "00000000-0000-4000-8000-000000000000";
    assert_eq!(
        complete(c, KEY, unknown, parts).await.err().as_deref(),
        Some("NoSuchUpload")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_upload_answers_with_a_composite_crc32c_and_an_etag_ending_in_the_part_count() {
    let Local { c, .. } = &Local::start();
    let done = completed(c).await;
    assert_eq!(done.checksum_crc32_c(), Some(composite_crc32c().as_str()));
    assert!(
        done.e_tag().unwrap().ends_with("-2\""),
        "{:?}",
        done.e_tag()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_object_reads_back_whole_with_its_size_metadata_type_checksum_and_etag() {
    let Local { c, .. } = &Local::start();
    let done = completed(c).await;
    let whole = [part1(), part2()].concat();
    assert_eq!(get(c, KEY).await, whole);
    let head = c
        .head_object()
        .bucket(B)
        .key(KEY)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(whole.len() as i64));
    assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "100644")]));
    assert_eq!(head.content_type(), Some("application/octet-stream"));
    assert_eq!(head.checksum_crc32_c(), Some(composite_crc32c().as_str()));
    assert_eq!(head.e_tag(), done.e_tag());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_across_the_part_boundary_reads_the_end_of_one_part_and_the_start_of_the_next() {
    let Local { c, .. } = &Local::start();
    completed(c).await;
    let whole = [part1(), part2()].concat();
    let boundary = part1().len();
    let ranged = c
        .get_object()
        .bucket(B)
        .key(KEY)
        .range(format!("bytes={}-{}", boundary - 2, boundary + 1))
        .send()
        .await
        .unwrap();
    let bytes = ranged.body.collect().await.unwrap().into_bytes();
    assert_eq!(&bytes[..], &whole[boundary - 2..boundary + 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_upload_is_no_longer_pending() {
    let Local { c, .. } = &Local::start();
    completed(c).await;
    let pending = c.list_multipart_uploads().bucket(B).send().await.unwrap();
    assert!(pending.uploads().is_empty());
}

/// `big/sparse` from parts 2 (5 MiB + 17) and 7 (a small tail); part 9 is uploaded but not
/// listed. Returns the upload id.
async fn sparse(c: &Client) -> String {
    let key = "big/sparse";
    let id = create_upload(c, key, None).await;
    let listed = vec![
        upload_plain(c, key, &id, 2, &part1()).await,
        upload_plain(c, key, &id, 7, b"small tail").await,
    ];
    upload_plain(c, key, &id, 9, b"unused").await;
    complete(c, key, &id, listed).await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_numbered_sparsely_complete_into_the_listed_parts_in_order() {
    let Local { c, .. } = &Local::start();
    sparse(c).await;
    assert_eq!(
        get(c, "big/sparse").await,
        [part1().as_slice(), b"small tail"].concat()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_upload_leaves_no_file_of_its_id_behind_not_even_an_unlisted_part() {
    let Local { c, dir, .. } = &Local::start();
    let id = sparse(c).await;
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.contains(&id))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_upload_is_gone_for_a_second_abort_and_leaves_no_object() {
    let Local { c, .. } = &Local::start();
    let key = "big/aborted";
    let id = create_upload(c, key, None).await;
    upload_plain(c, key, &id, 1, b"x").await;
    let abort = || {
        c.abort_multipart_upload()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .send()
    };
    abort().await.unwrap();
    let e = abort().await.unwrap_err();
    assert_eq!(e.code(), Some("NoSuchUpload"), "{e:?}");
    assert_eq!(head_status(c, key).await, 404);
}
