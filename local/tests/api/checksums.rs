//! Checksums the SDK computes itself when it is only told the algorithm: as a header, or in an
//! aws-chunked trailer after a streamed body; signed and unsigned.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;

use crate::common::{B, Local, crc32c, create_upload, get};

fn body() -> Vec<u8> {
    vec![7u8; 100_000]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_that_names_only_sha256_gets_the_checksum_back() {
    let Local { c, .. } = &Local::start();
    let out = c
        .put_object()
        .bucket(B)
        .key("t/sha")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from(body()))
        .send()
        .await
        .unwrap();
    assert!(out.checksum_sha256().is_some());
}

async fn part_with_sdk_crc32c(unsigned: bool) {
    let Local { c, .. } = &Local::start();
    let id = create_upload(c, "t/mp", Some(ChecksumAlgorithm::Crc32C)).await;
    let mut req = c
        .upload_part()
        .bucket(B)
        .key("t/mp")
        .upload_id(&id)
        .part_number(1)
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .body(ByteStream::from(body()))
        .customize();
    if unsigned {
        req = req.disable_payload_signing();
    }
    let out = req.send().await.unwrap();
    assert_eq!(out.checksum_crc32_c(), Some(crc32c(&body()).as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_part_with_an_sdk_computed_crc32c_echoes_it() {
    part_with_sdk_crc32c(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_part_with_an_sdk_computed_crc32c_echoes_it() {
    part_with_sdk_crc32c(true).await;
}

/// A file holding [`body`], for streamed requests.
fn body_file(local: &Local) -> std::path::PathBuf {
    let file = local.dir.path().join("part.bin");
    std::fs::write(&file, body()).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_part_with_its_crc32c_in_a_trailer_echoes_it() {
    let local = Local::start();
    let c = &local.c;
    let id = create_upload(c, "t/mp", Some(ChecksumAlgorithm::Crc32C)).await;
    let out = c
        .upload_part()
        .bucket(B)
        .key("t/mp")
        .upload_id(&id)
        .part_number(2)
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .body(ByteStream::from_path(body_file(&local)).await.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(out.checksum_crc32_c(), Some(crc32c(&body()).as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_put_with_its_crc32c_in_a_trailer_echoes_it_and_stores_the_body() {
    let local = Local::start();
    let c = &local.c;
    let out = c
        .put_object()
        .bucket(B)
        .key("t/streamed")
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .body(ByteStream::from_path(body_file(&local)).await.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(out.checksum_crc32_c(), Some(crc32c(&body()).as_str()));
    assert_eq!(get(c, "t/streamed").await, body());
}
