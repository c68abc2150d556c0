//! Multipart uploads as the mount drives them: CRC32C parts, composite checksums, the part
//! list checked at Complete, abort, listings, and UploadPartCopy (a file renamed while being
//! written moves its upload with it).

use aws_sdk_s3::types::CompletedPart;

use crate::{Answer, MIB, Target, bad, bytes, composite_crc32c, crc32c, unquote};

const KEY: &str = "mp/file.bin";

/// Complete of `parts`, as status and code when refused.
async fn complete(t: &Target, key: &str, id: &str, parts: Vec<CompletedPart>) -> Answer<()> {
    t.complete(key, id, parts).await.map(drop)
}

/// `part` as named at Complete with another ETag and/or CRC32C.
fn named_as(part: &CompletedPart, etag: Option<&str>, checksum: Option<&str>) -> CompletedPart {
    CompletedPart::builder()
        .part_number(part.part_number().unwrap())
        .e_tag(etag.or(part.e_tag()).unwrap())
        .set_checksum_crc32_c(checksum.or(part.checksum_crc32_c()).map(str::to_owned))
        .build()
}

pub async fn crc32c_parts_complete_to_a_composite_checksum_and_an_etag_ending_in_dash_n(t: Target) {
    let (p1, p2) = (bytes(5 * MIB, 1), bytes(100_000, 2));
    let (id, parts) = t.upload_parts(KEY, &[&p1, &p2]).await;
    let done = t.complete(KEY, &id, parts).await.unwrap();
    let composite = composite_crc32c(&[&p1, &p2]);
    assert_eq!(done.checksum_crc32_c(), Some(composite.as_str()));
    let etag = done.e_tag().unwrap();
    assert!(unquote(etag).ends_with("-2"), "ETag {etag}");

    let head = t.head(KEY).await.expect("completed");
    assert_eq!(head.checksum_crc32_c(), Some(composite.as_str()));
    assert_eq!(head.e_tag(), Some(etag));
    assert_eq!(head.content_length(), Some((p1.len() + p2.len()) as i64));
    assert_eq!(t.get(KEY).await, [p1, p2].concat());
}

/// AWS and the embedded server refuse; Garage 2.5.0 completes such an upload (its test is
/// ignored). The mount never sends one (its parts are 5 MiB or more but the last); the embedded
/// server's refusal is what makes a part-size bug show before it reaches AWS.
pub async fn a_part_under_5_mib_that_is_not_the_last_is_refused_at_complete(t: Target) {
    let (id, parts) = t.upload_parts(KEY, &[&bytes(MIB, 1), b"last"]).await;
    assert_eq!(
        complete(&t, KEY, &id, parts).await,
        Err(bad("EntityTooSmall"))
    );
    assert!(t.head(KEY).await.is_none());
}

pub async fn a_part_with_a_wrong_crc32c_is_refused_as_a_bad_digest(t: Target) {
    let id = t.create_upload(KEY, true).await;
    let wrong = crc32c(b"other bytes");
    let upload = t
        .try_upload_part((KEY, &id), 1, b"part bytes", &wrong)
        .await;
    // Garage says InvalidDigest, the embedded server BadDigest (as AWS); the mount retries both.
    let (status, code) = upload.expect_err("a part with a wrong CRC32C was accepted");
    assert!(
        status == 400 && ["BadDigest", "InvalidDigest"].contains(&code.as_str()),
        "{code}"
    );
    assert_eq!(
        t.list_parts(KEY, &id).await,
        [],
        "the refused part was kept"
    );
}

pub async fn a_part_named_at_complete_unknown_or_with_another_etag_or_crc32c_is_refused(t: Target) {
    let (id, parts) = t.upload_parts(KEY, &[b"only part"]).await;
    let part = &parts[0];
    let never_uploaded = CompletedPart::builder()
        .part_number(2)
        .e_tag(part.e_tag().unwrap())
        .checksum_crc32_c(crc32c(b"only part"))
        .build();
    let other_etag = named_as(part, Some("\"0123456789abcdef0123456789abcdef\""), None);
    let other_crc = named_as(part, None, Some(&crc32c(b"other")));
    for wrong in [vec![never_uploaded], vec![other_etag]] {
        let refusal = complete(&t, KEY, &id, wrong.clone()).await;
        assert_eq!(refusal, Err(bad("InvalidPart")), "{wrong:?}");
    }
    // Another CRC32C: InvalidPart from the embedded server (as AWS), InvalidDigest from Garage.
    let refusal = complete(&t, KEY, &id, vec![other_crc]).await;
    assert!(
        [Err(bad("InvalidPart")), Err(bad("InvalidDigest"))].contains(&refusal),
        "{refusal:?}"
    );
    // The refusals left the upload as it was.
    assert_eq!(complete(&t, KEY, &id, parts).await, Ok(()));
    assert_eq!(t.get(KEY).await, b"only part");
}

pub async fn parts_out_of_order_are_refused_at_complete_as_invalid_part_order(t: Target) {
    let body = bytes(5 * MIB, 1);
    let (id, mut parts) = t.upload_parts(KEY, &[&body, &body]).await;
    parts.reverse();
    assert_eq!(
        complete(&t, KEY, &id, parts).await,
        Err(bad("InvalidPartOrder"))
    );
}

pub async fn an_aborted_upload_is_no_such_upload_to_complete_upload_part_and_abort(t: Target) {
    let (id, parts) = t.upload_parts(KEY, &[b"part"]).await;
    t.abort(KEY, &id).await.expect("AbortMultipartUpload");
    let gone = (404, "NoSuchUpload".to_owned());
    assert_eq!(complete(&t, KEY, &id, parts).await, Err(gone.clone()));
    let upload = t
        .try_upload_part((KEY, &id), 2, b"late", &crc32c(b"late"))
        .await;
    assert_eq!(upload.map(drop), Err(gone.clone()));
    // Aborting again: S3 may answer success or NoSuchUpload, and the mount takes both as
    // "gone"; Garage and the embedded server both answer 404 NoSuchUpload.
    assert_eq!(t.abort(KEY, &id).await, Err(gone));
    assert!(t.head(KEY).await.is_none());
}

pub async fn list_parts_lists_the_uploaded_parts_with_their_etags_and_crc32cs(t: Target) {
    let bodies: [&[u8]; 3] = [b"first", b"second part", b"third"];
    let (id, parts) = t.upload_parts(KEY, &bodies).await;
    let listed = t.list_parts(KEY, &id).await;
    let listed: Vec<_> = listed
        .iter()
        .map(|p| (p.part_number(), p.e_tag(), p.size(), p.checksum_crc32_c()))
        .collect();
    let uploaded: Vec<_> = parts
        .iter()
        .zip(bodies)
        .map(|(p, body)| {
            let size = Some(body.len() as i64);
            (p.part_number(), p.e_tag(), size, p.checksum_crc32_c())
        })
        .collect();
    assert_eq!(listed, uploaded);
}

pub async fn list_multipart_uploads_lists_an_unfinished_upload_under_its_prefix(t: Target) {
    let mut expected = Vec::new();
    for key in ["pending/a", "pending/b/c"] {
        expected.push((key.to_owned(), t.create_upload(key, true).await));
    }
    t.create_upload("elsewhere/d", true).await;
    let done = t.create_upload("pending/done", true).await;
    t.abort("pending/done", &done).await.unwrap();
    let listed =
        t.c.list_multipart_uploads()
            .bucket(&t.bucket)
            .prefix("pending/")
            .send()
            .await
            .unwrap();
    let mut listed: Vec<(String, String)> = listed
        .uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap().to_owned(),
                u.upload_id().unwrap().to_owned(),
            )
        })
        .collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
}

/// UploadPartCopy of `source` bytes `range` as part `n`; the part as Complete names it (with
/// the CRC32C of `data`, the bytes copied, when given) and the CRC32C the server echoed.
async fn copy_part(
    t: &Target,
    (source, key, id): (&str, &str, &str),
    n: i32,
    range: std::ops::Range<usize>,
    data: Option<&[u8]>,
) -> (CompletedPart, Option<String>) {
    let out =
        t.c.upload_part_copy()
            .bucket(&t.bucket)
            .key(key)
            .upload_id(id)
            .part_number(n)
            .copy_source(t.copy_source(source))
            .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .unwrap_or_else(|e| panic!("UploadPartCopy #{n}: {e:?}"));
    let result = out.copy_part_result().expect("a CopyPartResult");
    let part = CompletedPart::builder()
        .part_number(n)
        .e_tag(result.e_tag().expect("an ETag"))
        .set_checksum_crc32_c(data.map(|d| crc32c(&d[range])))
        .build();
    (part, result.checksum_crc32_c().map(str::to_owned))
}

pub async fn upload_part_copy_of_byte_ranges_completes_to_those_bytes(t: Target) {
    let source = bytes(6 * MIB + 1000, 1);
    t.put("copy/source", &source).await;
    let id = t.create_upload(KEY, false).await;
    let target = ("copy/source", KEY, id.as_str());
    let (first, _) = copy_part(&t, target, 1, MIB..6 * MIB, None).await;
    let (second, _) = copy_part(&t, target, 2, 10..1010, None).await;
    complete(&t, KEY, &id, vec![first, second]).await.unwrap();
    assert_eq!(
        t.get(KEY).await,
        [&source[MIB..6 * MIB], &source[10..1010]].concat()
    );
}

/// What the mount does when a file is renamed while being written: the old upload is
/// completed, its parts are copied (UploadPartCopy, part by part) into a new upload created
/// with ChecksumAlgorithm CRC32C under the new key, the writer uploads its next parts there,
/// and Complete names every part's CRC32C, the copied ones computed locally from the bytes.
///
/// Garage computes a copied part's CRC32C itself (ListParts shows it; CopyPartResult does not
/// echo it), checks the one named at Complete (another one: 400 InvalidDigest) and completes
/// with the composite checksum, also when Complete names none for the copied parts. The embedded
/// server records no checksum for a copied part, so Complete naming one is 400 InvalidPart;
/// naming none completes, but the object then has no checksum at all.
pub async fn upload_part_copy_into_a_crc32c_upload_completes_naming_local_crc32cs(t: Target) {
    let (p1, p2, p3) = (bytes(5 * MIB, 1), bytes(5 * MIB, 2), bytes(1000, 3));
    let composite = composite_crc32c(&[&p1, &p2, &p3]);
    let (old, parts) = t.upload_parts("rename/old", &[&p1, &p2]).await;
    t.complete("rename/old", &old, parts).await.unwrap();
    let written = [p1.as_slice(), &p2].concat();

    let id = t.create_upload("rename/new", true).await;
    let target = ("rename/old", "rename/new", id.as_str());
    let mut parts = Vec::new();
    for (n, range) in [(1, 0..5 * MIB), (2, 5 * MIB..10 * MIB)] {
        let (part, echoed) = copy_part(&t, target, n, range, Some(&written)).await;
        if let Some(echoed) = echoed {
            assert_eq!(Some(echoed.as_str()), part.checksum_crc32_c(), "part {n}");
        }
        parts.push(part);
    }
    parts.push(t.upload_part("rename/new", &id, 3, &p3).await);
    let done = t.complete("rename/new", &id, parts).await;
    let done = done.expect("Complete of copied parts named with their CRC32C");
    assert_eq!(done.checksum_crc32_c(), Some(composite.as_str()));
    let head = t.head("rename/new").await.expect("completed");
    assert_eq!(head.checksum_crc32_c(), Some(composite.as_str()));
    assert_eq!(t.get("rename/new").await, [p1, p2, p3].concat());
}
