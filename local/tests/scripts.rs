//! The server's tests as they were before the crate was split: five scripts, kept while the
//! split lands so that the new code passes the old checks unchanged.

use std::fs;
use std::io;
use std::time::Duration;

use base64::Engine as _;
use s3s::crypto::Checksum as _;
use s3upfs_local::LocalServer;

fn unquote(etag: &str) -> &str {
    etag.trim_start_matches("W/").trim_matches('"')
}
use std::os::unix::fs::PermissionsExt;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, MetadataDirective,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn client_with(endpoint: &str, ak: &str, sk: &str) -> Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .force_path_style(true)
        .credentials_provider(Credentials::new(ak, sk, None, None, "test"))
        .build();
    Client::from_conf(config)
}

fn client(server: &LocalServer) -> Client {
    client_with(server.endpoint(), server.access_key(), server.secret_key())
}

const B: &str = LocalServer::BUCKET;

fn status<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> u16 {
    e.raw_response().map_or(0, |r| r.status().as_u16())
}

fn crc32c(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s3s::crypto::Crc32c::checksum(data))
}

fn meta(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn put(c: &Client, key: &str, body: &[u8]) {
    c.put_object()
        .bucket(B)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

async fn get(c: &Client, key: &str) -> Vec<u8> {
    let out = c.get_object().bucket(B).key(key).send().await.unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// All pages of a listing: (keys, common prefixes).
async fn list(
    c: &Client,
    prefix: &str,
    delimited: bool,
    page: Option<i32>,
) -> (Vec<String>, Vec<String>) {
    let (mut keys, mut prefixes, mut token) = (Vec::new(), Vec::new(), None);
    loop {
        let out = c
            .list_objects_v2()
            .bucket(B)
            .prefix(prefix)
            .set_delimiter(delimited.then(|| "/".to_owned()))
            .set_max_keys(page)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        prefixes.extend(
            out.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned)),
        );
        if !out.is_truncated().unwrap_or(false) {
            return (keys, prefixes);
        }
        token = out.next_continuation_token().map(str::to_owned);
        assert!(token.is_some(), "truncated listing without a token");
    }
}

#[test]
fn env_file_lock_and_auth() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = LocalServer::start(rt.handle(), &data).unwrap();
    assert!(server.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(server.access_key().len(), 32);
    assert_eq!(server.secret_key().len(), 64);

    let env = server.env_file();
    assert_eq!(env, data.canonicalize().unwrap().join(".s3upfs-local.env"));
    let mode = fs::metadata(env).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = fs::read_to_string(env).unwrap();
    let expected = format!(
        "S3UPFS_ENDPOINT={}\nS3UPFS_BUCKET=s3upfs\nAWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_REGION=us-east-1\n",
        server.endpoint(),
        server.access_key(),
        server.secret_key()
    );
    assert_eq!(text, expected);

    // One server per data directory.
    let err = LocalServer::start(rt.handle(), &data).err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");

    rt.block_on(async {
        let c = client(&server);
        // The env file is neither a bucket nor an object.
        let buckets = c.list_buckets().send().await.unwrap();
        let names: Vec<_> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
        assert_eq!(names, ["s3upfs"]);
        let (keys, prefixes) = list(&c, "", false, None).await;
        assert!(
            keys.is_empty() && prefixes.is_empty(),
            "{keys:?} {prefixes:?}"
        );
        let e = c
            .get_object()
            .bucket(B)
            .key("../.s3upfs-local.env")
            .send()
            .await
            .unwrap_err();
        assert_eq!(status(&e), 400, "{e:?}");

        // SigV4 is enforced.
        let wrong = client_with(server.endpoint(), server.access_key(), "0000");
        let e = wrong.list_objects_v2().bucket(B).send().await.unwrap_err();
        assert_eq!(status(&e), 403, "{e:?}");
    });

    let endpoint = server.endpoint().to_owned();
    drop(server);
    rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let c = client_with(&endpoint, "a", "b");
        let e = c.list_objects_v2().bucket(B).send().await.unwrap_err();
        assert!(
            e.raw_response().is_none(),
            "server still answers after drop: {e:?}"
        );
    });
    let again = LocalServer::start(rt.handle(), &data).unwrap();
    assert_ne!(fs::read_to_string(again.env_file()).unwrap(), text);
}

#[test]
fn objects_metadata_range_copy_checksums() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(rt.handle(), dir.path()).unwrap();
    let c = client(&server);
    rt.block_on(async {
        let body = b"hello, local s3 world".to_vec();
        // As the mount sends it: unsigned payload with an explicit CRC32C.
        let out = c
            .put_object()
            .bucket(B)
            .key("docs/a.txt")
            .checksum_crc32_c(crc32c(&body))
            .metadata("mode", "100644")
            .metadata("uid", "1000")
            .content_type("text/plain")
            .body(ByteStream::from(body.clone()))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .unwrap();
        assert_eq!(out.checksum_crc32_c(), Some(crc32c(&body).as_str()));

        let head = c
            .head_object()
            .bucket(B)
            .key("docs/a.txt")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(body.len() as i64));
        assert_eq!(
            head.metadata().unwrap(),
            &meta(&[("mode", "100644"), ("uid", "1000")])
        );
        assert_eq!(head.content_type(), Some("text/plain"));
        assert_eq!(head.checksum_crc32_c(), Some(crc32c(&body).as_str()));
        assert_eq!(get(&c, "docs/a.txt").await, body);

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

        // Copy keeps the metadata; REPLACE replaces it.
        c.copy_object()
            .bucket(B)
            .key("docs/b.txt")
            .copy_source("s3upfs/docs/a.txt")
            .send()
            .await
            .unwrap();
        let head = c
            .head_object()
            .bucket(B)
            .key("docs/b.txt")
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.metadata().unwrap(),
            &meta(&[("mode", "100644"), ("uid", "1000")])
        );
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
        let head = c
            .head_object()
            .bucket(B)
            .key("docs/b.txt")
            .send()
            .await
            .unwrap();
        assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "100600")]));
        assert_eq!(head.content_type(), Some("application/octet-stream"));
        assert_eq!(get(&c, "docs/b.txt").await, body);
        // Self-copy with REPLACE: how the mount changes metadata in place.
        c.copy_object()
            .bucket(B)
            .key("docs/a.txt")
            .copy_source("s3upfs/docs/a.txt")
            .metadata_directive(MetadataDirective::Replace)
            .metadata("mode", "100755")
            .send()
            .await
            .unwrap();
        let head = c
            .head_object()
            .bucket(B)
            .key("docs/a.txt")
            .send()
            .await
            .unwrap();
        assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "100755")]));
        assert_eq!(get(&c, "docs/a.txt").await, body);
        // COPY from a source without metadata drops the target's old metadata.
        put(&c, "docs/plain", b"plain").await;
        c.copy_object()
            .bucket(B)
            .key("docs/b.txt")
            .copy_source("s3upfs/docs/plain")
            .send()
            .await
            .unwrap();
        let head = c
            .head_object()
            .bucket(B)
            .key("docs/b.txt")
            .send()
            .await
            .unwrap();
        assert!(
            head.metadata().is_none_or(|m| m.is_empty()),
            "{:?}",
            head.metadata()
        );
        assert_eq!(get(&c, "docs/b.txt").await, b"plain");

        // A bad checksum or Content-MD5 is refused and leaves the object alone.
        let e = c
            .put_object()
            .bucket(B)
            .key("docs/a.txt")
            .checksum_crc32_c(crc32c(b"something else"))
            .body(ByteStream::from(b"corrupted".to_vec()))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("BadDigest"), "{e:?}");
        let e = c
            .put_object()
            .bucket(B)
            .key("docs/a.txt")
            .content_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
            .body(ByteStream::from(b"corrupted".to_vec()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("BadDigest"), "{e:?}");
        assert_eq!(get(&c, "docs/a.txt").await, body);
        let head = c
            .head_object()
            .bucket(B)
            .key("docs/a.txt")
            .send()
            .await
            .unwrap();
        assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "100755")]));

        // Overwrite, delete, and the 404s.
        put(&c, "docs/a.txt", b"v2").await;
        assert_eq!(get(&c, "docs/a.txt").await, b"v2");
        c.delete_object()
            .bucket(B)
            .key("docs/a.txt")
            .send()
            .await
            .unwrap();
        let e = c
            .head_object()
            .bucket(B)
            .key("docs/a.txt")
            .send()
            .await
            .unwrap_err();
        assert_eq!(status(&e), 404);
        let e = c
            .get_object()
            .bucket(B)
            .key("docs/a.txt")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("NoSuchKey"));
        c.delete_object()
            .bucket(B)
            .key("docs/a.txt")
            .send()
            .await
            .unwrap();
        let e = c
            .head_object()
            .bucket(B)
            .key("docs")
            .send()
            .await
            .unwrap_err();
        assert_eq!(status(&e), 404, "a directory is not an object: {e:?}");
        c.delete_object()
            .bucket(B)
            .key("docs")
            .send()
            .await
            .unwrap();
        assert_eq!(get(&c, "docs/plain").await, b"plain");

        // `x` and `x/y` cannot coexist: a clear 400, not a 500.
        let e = c
            .put_object()
            .bucket(B)
            .key("docs/plain/child")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            (status(&e), e.code()),
            (400, Some("InvalidRequest")),
            "{e:?}"
        );
        let e = c
            .put_object()
            .bucket(B)
            .key("docs")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            (status(&e), e.code()),
            (400, Some("InvalidRequest")),
            "{e:?}"
        );

        // Keys too long for s3s-fs's sidecar names are refused up front.
        let long = "k".repeat(163);
        let e = c
            .put_object()
            .bucket(B)
            .key(&long)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("KeyTooLongError"), "{e:?}");
        put(&c, &"k".repeat(162), b"ok").await;
    });
}

#[test]
fn directory_markers_listing_and_remount() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(rt.handle(), dir.path()).unwrap();
    let c = client(&server);
    rt.block_on(async {
        // Empty directory markers, as the mount writes them.
        for key in ["a/", "a/b/", "a/empty/"] {
            c.put_object()
                .bucket(B)
                .key(key)
                .content_type("application/x-directory")
                .metadata("mode", "40755")
                .body(ByteStream::from_static(b""))
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
        }
        put(&c, "a/b/file", b"data").await;
        put(&c, "a/implicit/deep/file", b"data").await;
        put(&c, "a/top", b"top").await;

        assert_eq!(
            list(&c, "a/", true, None).await,
            (
                vec!["a/".to_owned(), "a/top".to_owned()],
                vec![
                    "a/b/".to_owned(),
                    "a/empty/".to_owned(),
                    "a/implicit/".to_owned()
                ]
            )
        );
        assert_eq!(
            list(&c, "a/empty/", true, None).await,
            (vec!["a/empty/".to_owned()], vec![])
        );
        assert_eq!(
            list(&c, "", true, None).await,
            (vec![], vec!["a/".to_owned()])
        );
        assert_eq!(
            list(&c, "a/e", true, None).await,
            (vec![], vec!["a/empty/".to_owned()])
        );
        let all = vec![
            "a/",
            "a/b/",
            "a/b/file",
            "a/empty/",
            "a/implicit/deep/file",
            "a/top",
        ];
        assert_eq!(list(&c, "", false, None).await.0, all);
        // Pagination with continuation tokens.
        assert_eq!(list(&c, "", false, Some(2)).await.0, all);
        assert_eq!(
            list(&c, "a/", true, Some(1)).await,
            list(&c, "a/", true, None).await
        );

        // Head/Get of a marker: empty, with its metadata.
        let head = c
            .head_object()
            .bucket(B)
            .key("a/empty/")
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(0));
        assert_eq!(head.content_type(), Some("application/x-directory"));
        assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "40755")]));
        assert_eq!(get(&c, "a/empty/").await, b"");
        // A directory that only holds keys is not a marker, nor is it an object.
        for key in ["a/implicit/", "a/implicit"] {
            let e = c.head_object().bucket(B).key(key).send().await.unwrap_err();
            assert_eq!(status(&e), 404, "{key}: {e:?}");
        }

        // Marker metadata can be replaced in place (chmod of a directory).
        c.copy_object()
            .bucket(B)
            .key("a/empty/")
            .copy_source("s3upfs/a/empty/")
            .metadata_directive(MetadataDirective::Replace)
            .content_type("application/x-directory")
            .metadata("mode", "40700")
            .send()
            .await
            .unwrap();
        let head = c
            .head_object()
            .bucket(B)
            .key("a/empty/")
            .send()
            .await
            .unwrap();
        assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "40700")]));
        // …and copied (rename of a directory).
        c.copy_object()
            .bucket(B)
            .key("a/moved/")
            .copy_source("s3upfs/a/empty/")
            .send()
            .await
            .unwrap();
        let head = c
            .head_object()
            .bucket(B)
            .key("a/moved/")
            .send()
            .await
            .unwrap();
        assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "40700")]));
        c.delete_object()
            .bucket(B)
            .key("a/moved/")
            .send()
            .await
            .unwrap();

        // Deleting a marker; the directory's other keys stay.
        c.delete_object()
            .bucket(B)
            .key("a/empty/")
            .send()
            .await
            .unwrap();
        c.delete_object()
            .bucket(B)
            .key("a/b/")
            .send()
            .await
            .unwrap();
        let e = c
            .head_object()
            .bucket(B)
            .key("a/empty/")
            .send()
            .await
            .unwrap_err();
        assert_eq!(status(&e), 404);
        assert_eq!(
            list(&c, "a/", true, None).await,
            (
                vec!["a/".to_owned(), "a/top".to_owned()],
                vec!["a/b/".to_owned(), "a/implicit/".to_owned()]
            )
        );
        // A directory left empty by deletes is no longer listed, and a file can take its name.
        c.delete_object()
            .bucket(B)
            .key("a/implicit/deep/file")
            .send()
            .await
            .unwrap();
        assert_eq!(list(&c, "a/", true, None).await.1, vec!["a/b/".to_owned()]);
        put(&c, "a/implicit", b"now a file").await;
        assert_eq!(get(&c, "a/implicit").await, b"now a file");
        // A marker cannot sit on an object.
        let e = c
            .put_object()
            .bucket(B)
            .key("a/implicit/")
            .body(ByteStream::from_static(b""))
            .send()
            .await
            .unwrap_err();
        assert_eq!(status(&e), 400, "{e:?}");

        // DeleteObjects, and ListMultipartUploads with nothing pending.
        put(&c, "a/x1", b"1").await;
        put(&c, "a/x2", b"2").await;
        let ids = ["a/x1", "a/x2"].map(|k| {
            aws_sdk_s3::types::ObjectIdentifier::builder()
                .key(k)
                .build()
                .unwrap()
        });
        let out = c
            .delete_objects()
            .bucket(B)
            .delete(
                aws_sdk_s3::types::Delete::builder()
                    .set_objects(Some(ids.to_vec()))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(out.deleted().len(), 2);
        let uploads = c.list_multipart_uploads().bucket(B).send().await.unwrap();
        assert!(uploads.uploads().is_empty());

        c.put_object()
            .bucket(B)
            .key("kept/empty/")
            .metadata("mode", "40711")
            .body(ByteStream::from_static(b""))
            .send()
            .await
            .unwrap();
    });

    // Markers survive a restart (a remount).
    drop(server);
    let server = LocalServer::start(rt.handle(), dir.path()).unwrap();
    let c = client(&server);
    rt.block_on(async {
        assert_eq!(
            list(&c, "kept/", true, None).await,
            (vec![], vec!["kept/empty/".to_owned()])
        );
        assert_eq!(
            list(&c, "kept/empty/", true, None).await,
            (vec!["kept/empty/".to_owned()], vec![])
        );
        let head = c
            .head_object()
            .bucket(B)
            .key("kept/empty/")
            .send()
            .await
            .unwrap();
        assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "40711")]));
        assert_eq!(get(&c, "a/top").await, b"top");
    });
}

#[test]
fn multipart_upload() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(rt.handle(), dir.path()).unwrap();
    let c = client(&server);
    rt.block_on(async {
        let part1: Vec<u8> = (0..5 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
        let part2: Vec<u8> = (0..5 * 1024 * 1024 + 3).map(|i| (i % 241) as u8).collect();
        let key = "big/file.bin";

        let upload = c
            .create_multipart_upload()
            .bucket(B)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .metadata("mode", "100644")
            .content_type("application/octet-stream")
            .send()
            .await
            .unwrap();
        let id = upload.upload_id().unwrap().to_owned();

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
        assert_eq!(found, [(Some(key), Some(id.as_str()))]);
        assert!(pending.uploads()[0].initiated().is_some());

        let mut completed = Vec::new();
        for (n, body) in [(1, &part1), (2, &part2)] {
            let out = c
                .upload_part()
                .bucket(B)
                .key(key)
                .upload_id(&id)
                .part_number(n)
                .checksum_crc32_c(crc32c(body))
                .body(ByteStream::from(body.clone()))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .unwrap();
            assert_eq!(out.checksum_crc32_c(), Some(crc32c(body).as_str()));
            completed.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(out.e_tag().unwrap())
                    .checksum_crc32_c(crc32c(body))
                    .build(),
            );
        }
        // A corrupted part is refused and not kept.
        let e = c
            .upload_part()
            .bucket(B)
            .key(key)
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

        let parts = c
            .list_parts()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .send()
            .await
            .unwrap();
        let listed: Vec<_> = parts
            .parts()
            .iter()
            .map(|p| {
                (
                    p.part_number(),
                    p.e_tag().map(unquote),
                    p.checksum_crc32_c(),
                )
            })
            .collect();
        let uploaded: Vec<_> = completed
            .iter()
            .map(|p| {
                (
                    p.part_number(),
                    p.e_tag().map(unquote),
                    p.checksum_crc32_c(),
                )
            })
            .collect();
        assert_eq!(listed, uploaded);

        // A wrong ETag is refused before anything is touched.
        let mut wrong = completed.clone();
        wrong[0] = CompletedPart::builder()
            .part_number(1)
            .e_tag("\"00\"")
            .build();
        let e = c
            .complete_multipart_upload()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(wrong))
                    .build(),
            )
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("InvalidPart"), "{e:?}");

        let done = c
            .complete_multipart_upload()
            .bucket(B)
            .key(key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let raw = [
            s3s::crypto::Crc32c::checksum(&part1),
            s3s::crypto::Crc32c::checksum(&part2),
        ]
        .concat();
        let composite = format!("{}-2", crc32c(&raw));
        assert_eq!(done.checksum_crc32_c(), Some(composite.as_str()));
        assert!(
            done.e_tag().unwrap().ends_with("-2\""),
            "{:?}",
            done.e_tag()
        );

        let whole = [part1.clone(), part2.clone()].concat();
        assert_eq!(get(&c, key).await, whole);
        let head = c
            .head_object()
            .bucket(B)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(whole.len() as i64));
        assert_eq!(head.metadata().unwrap(), &meta(&[("mode", "100644")]));
        assert_eq!(head.content_type(), Some("application/octet-stream"));
        assert_eq!(head.checksum_crc32_c(), Some(composite.as_str()));
        assert_eq!(head.e_tag(), done.e_tag());
        let ranged = c
            .get_object()
            .bucket(B)
            .key(key)
            .range(format!("bytes={}-{}", part1.len() - 2, part1.len() + 1))
            .send()
            .await
            .unwrap();
        let bytes = ranged.body.collect().await.unwrap().into_bytes();
        assert_eq!(&bytes[..], &whole[part1.len() - 2..part1.len() + 2]);
        let pending = c.list_multipart_uploads().bucket(B).send().await.unwrap();
        assert!(pending.uploads().is_empty());

        // Part numbers need not be 1..N; unknown uploads are NoSuchUpload.
        let id = c
            .create_multipart_upload()
            .bucket(B)
            .key("big/sparse")
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_owned();
        let mut completed = Vec::new();
        for (n, body) in [
            (2, part1.clone()),
            (7, b"small tail".to_vec()),
            (9, b"unused".to_vec()),
        ] {
            let out = c
                .upload_part()
                .bucket(B)
                .key("big/sparse")
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(body))
                .send()
                .await
                .unwrap();
            if n != 9 {
                completed.push(
                    CompletedPart::builder()
                        .part_number(n)
                        .e_tag(out.e_tag().unwrap())
                        .build(),
                );
            }
        }
        c.complete_multipart_upload()
            .bucket(B)
            .key("big/sparse")
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            get(&c, "big/sparse").await,
            [part1.as_slice(), b"small tail"].concat()
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok())
            .filter(|n| n.contains(&id))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let id = c
            .create_multipart_upload()
            .bucket(B)
            .key("big/aborted")
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_owned();
        c.upload_part()
            .bucket(B)
            .key("big/aborted")
            .upload_id(&id)
            .part_number(1)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
        c.abort_multipart_upload()
            .bucket(B)
            .key("big/aborted")
            .upload_id(&id)
            .send()
            .await
            .unwrap();
        let e = c
            .abort_multipart_upload()
            .bucket(B)
            .key("big/aborted")
            .upload_id(&id)
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("NoSuchUpload"), "{e:?}");
        let e = c
            .head_object()
            .bucket(B)
            .key("big/aborted")
            .send()
            .await
            .unwrap_err();
        assert_eq!(status(&e), 404);
    });
}

#[test]
fn checksums_computed_by_the_sdk() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(rt.handle(), dir.path()).unwrap();
    let c = client(&server);
    rt.block_on(async {
        let body = vec![7u8; 100_000];
        // Algorithm only: the SDK computes the value (header or aws-chunked trailer).
        let out = c
            .put_object()
            .bucket(B)
            .key("t/sha")
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
        assert!(out.checksum_sha256().is_some());
        let id = c
            .create_multipart_upload()
            .bucket(B)
            .key("t/mp")
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_owned();
        for unsigned in [false, true] {
            let mut req = c
                .upload_part()
                .bucket(B)
                .key("t/mp")
                .upload_id(&id)
                .part_number(1)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .body(ByteStream::from(body.clone()))
                .customize();
            if unsigned {
                req = req.disable_payload_signing();
            }
            let out = req.send().await.unwrap();
            assert_eq!(out.checksum_crc32_c(), Some(crc32c(&body).as_str()));
        }
        // A streaming body: the checksum travels in an aws-chunked trailer.
        let file = dir.path().join("part.bin");
        fs::write(&file, &body).unwrap();
        let out = c
            .upload_part()
            .bucket(B)
            .key("t/mp")
            .upload_id(&id)
            .part_number(2)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(ByteStream::from_path(&file).await.unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(out.checksum_crc32_c(), Some(crc32c(&body).as_str()));
        let out = c
            .put_object()
            .bucket(B)
            .key("t/streamed")
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(ByteStream::from_path(&file).await.unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(out.checksum_crc32_c(), Some(crc32c(&body).as_str()));
        assert_eq!(get(&c, "t/streamed").await, body);
    });
}
