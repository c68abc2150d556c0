//! What every test needs: a server in a temporary directory with a client for it, and short
//! forms of the requests and checks the tests repeat.

use std::collections::HashMap;
use std::path::Path;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use s3s::crypto::Checksum as _;
use s3upfs_local::LocalServer;
use tempfile::TempDir;

pub const B: &str = LocalServer::BUCKET;

/// A running server on a fresh data directory, and a client with its credentials.
pub struct Local {
    pub server: LocalServer,
    pub c: Client,
    pub dir: TempDir,
}

impl Local {
    pub fn start() -> Local {
        let dir = tempfile::tempdir().unwrap();
        let server = start_in(dir.path());
        Local {
            c: client(&server),
            server,
            dir,
        }
    }

    /// Stops the server and starts a new one on the same data directory (a remount).
    pub fn restart(self) -> Local {
        let Local { server, dir, .. } = self;
        drop(server);
        let server = start_in(dir.path());
        Local {
            c: client(&server),
            server,
            dir,
        }
    }
}

pub fn start_in(dir: &Path) -> LocalServer {
    LocalServer::start(&tokio::runtime::Handle::current(), dir).unwrap()
}

pub fn client_with(endpoint: &str, ak: &str, sk: &str) -> Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .force_path_style(true)
        .credentials_provider(Credentials::new(ak, sk, None, None, "test"))
        .build();
    Client::from_conf(config)
}

pub fn client(server: &LocalServer) -> Client {
    client_with(server.endpoint(), server.access_key(), server.secret_key())
}

/// The HTTP status of a failed request (0 if there was no response).
pub fn status<E>(e: &SdkError<E, HttpResponse>) -> u16 {
    e.raw_response().map_or(0, |r| r.status().as_u16())
}

pub fn crc32c(data: &[u8]) -> String {
    STANDARD.encode(s3s::crypto::Crc32c::checksum(data))
}

pub fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub fn unquote(etag: &str) -> &str {
    etag.trim_start_matches("W/").trim_matches('"')
}

pub async fn put(c: &Client, key: &str, body: &[u8]) {
    c.put_object()
        .bucket(B)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

/// A directory marker as the mount writes it: empty, typed, with a mode.
pub async fn put_marker(c: &Client, key: &str, mode: &str) {
    c.put_object()
        .bucket(B)
        .key(key)
        .content_type("application/x-directory")
        .metadata("mode", mode)
        .body(ByteStream::from_static(b""))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

/// A PutObject that must fail.
pub async fn put_err(
    c: &Client,
    key: &str,
    body: &'static [u8],
) -> SdkError<PutObjectError, HttpResponse> {
    c.put_object()
        .bucket(B)
        .key(key)
        .body(ByteStream::from_static(body))
        .send()
        .await
        .unwrap_err()
}

/// Starts a multipart upload (with `algorithm` if given); returns its id.
pub async fn create_upload(c: &Client, key: &str, algorithm: Option<ChecksumAlgorithm>) -> String {
    c.create_multipart_upload()
        .bucket(B)
        .key(key)
        .set_checksum_algorithm(algorithm)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned()
}

pub async fn get(c: &Client, key: &str) -> Vec<u8> {
    let out = c.get_object().bucket(B).key(key).send().await.unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// HeadObject that must succeed.
pub async fn head(c: &Client, key: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
    c.head_object()
        .bucket(B)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("head {key}: {e:?}"))
}

/// The status of a HeadObject that must fail.
pub async fn head_status(c: &Client, key: &str) -> u16 {
    let e = c.head_object().bucket(B).key(key).send().await.unwrap_err();
    status(&e)
}

pub async fn delete(c: &Client, key: &str) {
    c.delete_object()
        .bucket(B)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("delete {key}: {e:?}"));
}

/// All pages of a listing: (keys, common prefixes).
pub async fn list(
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

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The tree the listing and marker tests share: the markers `a/`, `a/b/` and `a/empty/`
/// (mode 40755), and the objects `a/b/file`, `a/implicit/deep/file` (no marker for
/// `a/implicit/`) and `a/top`.
pub async fn tree(c: &Client) {
    for key in ["a/", "a/b/", "a/empty/"] {
        put_marker(c, key, "40755").await;
    }
    put(c, "a/b/file", b"data").await;
    put(c, "a/implicit/deep/file", b"data").await;
    put(c, "a/top", b"top").await;
}
