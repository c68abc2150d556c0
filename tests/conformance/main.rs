//! The S3 behaviours the mount relies on, each written once as an `async fn(Target)` and run
//! against Garage (`garage::…`) and the embedded `--local` server (`local::…`). Every test
//! starts its own server (nextest runs each test in its own process), so cases may use any key.
//!
//! Where the two servers differ, the case asserts what the mount relies on and says in a
//! comment what each server does.

#[path = "../common/mod.rs"]
mod common;
mod listing;
mod multipart;
mod objects;

use std::future::Future;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, Part,
};
use common::{S3Server, make_temp_dir};
use s3upfs_local::LocalServer;

/// Lists every case once; makes `garage::CASE` and `local::CASE` of each. A case may name, per
/// server, why that server is known not to conform: that test is ignored with the reason
/// (`cargo nextest run --test conformance --run-ignored only` runs them).
macro_rules! conformance {
    ($($module:ident::$case:ident $({
        $(garage: $garage:literal,)?
        $(local: $local:literal,)?
    })?),* $(,)?) => {
        mod garage {
            $($($(#[ignore = $garage])?)?
            #[test]
            fn $case() {
                crate::run(crate::Server::Garage, crate::$module::$case);
            })*
        }
        mod local {
            $($($(#[ignore = $local])?)?
            #[test]
            fn $case() {
                crate::run(crate::Server::Local, crate::$module::$case);
            })*
        }
    };
}

conformance! {
    objects::a_put_with_the_right_crc32c_is_stored_and_head_reports_the_checksum,
    objects::a_put_with_a_wrong_crc32c_is_refused_as_a_bad_digest_and_stores_nothing,
    objects::user_metadata_and_content_type_round_trip,
    objects::a_copy_with_directive_copy_keeps_metadata_and_content_type,
    objects::a_copy_with_directive_replace_replaces_metadata_and_content_type,
    objects::a_copy_onto_itself_without_replace_changes_nothing_and_with_replace_updates_headers,
    objects::a_ranged_get_returns_the_range_cut_at_the_end,
    objects::a_range_starting_past_the_end_is_416_invalid_range,
    objects::deleting_a_missing_key_succeeds,
    objects::keys_with_spaces_plus_percent_and_unicode_are_stored_listed_and_copied,
    listing::a_delimited_listing_names_each_common_prefix_once_across_small_pages,
    listing::a_flat_listing_pages_through_every_key_in_order_with_continuation_tokens,
    multipart::crc32c_parts_complete_to_a_composite_checksum_and_an_etag_ending_in_dash_n,
    multipart::a_part_with_a_wrong_crc32c_is_refused_as_a_bad_digest,
    multipart::a_part_under_5_mib_that_is_not_the_last_is_refused_at_complete {
        garage: "Garage 2.5.0 does not enforce the 5 MiB minimum part size: Complete succeeds",
    },
    multipart::a_part_named_at_complete_unknown_or_with_another_etag_or_crc32c_is_refused,
    multipart::parts_out_of_order_are_refused_at_complete_as_invalid_part_order,
    multipart::an_aborted_upload_is_no_such_upload_to_complete_upload_part_and_abort,
    multipart::list_parts_lists_the_uploaded_parts_with_their_etags_and_crc32cs,
    multipart::list_multipart_uploads_lists_an_unfinished_upload_under_its_prefix,
    multipart::upload_part_copy_of_byte_ranges_completes_to_those_bytes,
    multipart::upload_part_copy_into_a_crc32c_upload_completes_naming_local_crc32cs,
}

pub const MIB: usize = 1 << 20;

#[derive(Clone, Copy)]
pub enum Server {
    Garage,
    Local,
}

/// Starts `server`, runs `case` against it on a fresh runtime and stops the server again.
fn run<F, Fut>(server: Server, case: F)
where
    F: FnOnce(Target) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the test runtime");
    match server {
        Server::Garage => {
            let garage = S3Server::garage();
            let target = Target::new(
                &garage.endpoint(),
                &garage.region(),
                &garage.access_key(),
                &garage.secret_key(),
                &garage.bucket(),
            );
            rt.block_on(case(target));
        }
        Server::Local => {
            let dir = make_temp_dir("s3upfs-conformance-");
            let local = LocalServer::start(rt.handle(), dir.path()).expect("starting --local");
            let target = Target::new(
                local.endpoint(),
                "us-east-1",
                local.access_key(),
                local.secret_key(),
                LocalServer::BUCKET,
            );
            rt.block_on(case(target));
        }
    }
}

/// A server's bucket and a client configured as the mount's (path style, checksums sent only
/// when required: the mount sends its own CRC32C).
#[derive(Clone)]
pub struct Target {
    pub c: Client,
    pub bucket: String,
}

/// A refused request: HTTP status and S3 error code.
pub type Refusal = (u16, String);

pub type Answer<T> = Result<T, Refusal>;

/// The request's output, or the status and code it was refused with.
pub fn answer<T, E: ProvideErrorMetadata>(
    result: Result<T, SdkError<E, HttpResponse>>,
) -> Answer<T> {
    result.map_err(|e| {
        let status = e.raw_response().map_or(0, |r| r.status().as_u16());
        (status, e.code().unwrap_or("no code").to_owned())
    })
}

/// `(400, code)`.
pub fn bad(code: &str) -> Refusal {
    (400, code.to_owned())
}

/// CRC32C as S3 sends it: base64 of the big-endian value.
pub fn crc32c(data: &[u8]) -> String {
    aws_smithy_types::base64::encode(crc32c::crc32c(data).to_be_bytes())
}

/// S3's composite checksum of a multipart object: CRC32C of the parts' raw CRC32Cs, `-N`.
pub fn composite_crc32c(parts: &[&[u8]]) -> String {
    let raw: Vec<u8> = parts
        .iter()
        .flat_map(|p| crc32c::crc32c(p).to_be_bytes())
        .collect();
    format!("{}-{}", crc32c(&raw), parts.len())
}

/// `n` deterministic pseudo-random bytes.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    common::random_bytes(n, seed)
}

pub fn unquote(etag: &str) -> &str {
    etag.trim_matches('"')
}

impl Target {
    fn new(endpoint: &str, region: &str, access_key: &str, secret_key: &str, bucket: &str) -> Self {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                access_key,
                secret_key,
                None,
                None,
                "conformance",
            ))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .build();
        Target {
            c: Client::from_conf(config),
            bucket: bucket.to_owned(),
        }
    }

    pub async fn put(&self, key: &str, body: &[u8]) {
        self.c
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutObject {key}: {e:?}"));
    }

    pub async fn get(&self, key: &str) -> Vec<u8> {
        let out = self
            .c
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetObject {key}: {e:?}"));
        out.body.collect().await.unwrap().into_bytes().to_vec()
    }

    /// DeleteObject, which must succeed (for a missing key too).
    pub async fn delete(&self, key: &str) {
        let request = self.c.delete_object().bucket(&self.bucket).key(key);
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("DeleteObject {key}: {e:?}"));
    }

    /// HeadObject with checksums, as the mount asks; `None` for 404.
    pub async fn head(&self, key: &str) -> Option<HeadObjectOutput> {
        let result = self
            .c
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        match result {
            Ok(out) => Some(out),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => None,
            Err(e) => panic!("HeadObject {key}: {e:?}"),
        }
    }

    /// `bucket/key` for x-amz-copy-source, the key percent-encoded as the mount encodes it (a
    /// copy of `encode_copy_source` in src/s3/sdk.rs, which tests cannot reach).
    pub fn copy_source(&self, key: &str) -> String {
        let mut encoded = format!("{}/", self.bucket);
        for byte in key.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                    encoded.push(byte as char)
                }
                other => encoded.push_str(&format!("%{other:02X}")),
            }
        }
        encoded
    }

    /// CreateMultipartUpload, with ChecksumAlgorithm CRC32C when `checksummed` (as the mount).
    pub async fn create_upload(&self, key: &str, checksummed: bool) -> String {
        self.c
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_checksum_algorithm(checksummed.then_some(ChecksumAlgorithm::Crc32C))
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateMultipartUpload {key}: {e:?}"))
            .upload_id()
            .expect("an upload id")
            .to_owned()
    }

    /// UploadPart as the mount sends it (unsigned payload, `checksum` as its CRC32C header);
    /// the part as Complete names it.
    pub async fn try_upload_part(
        &self,
        (key, id): (&str, &str),
        n: i32,
        body: &[u8],
        checksum: &str,
    ) -> Answer<CompletedPart> {
        let request = self
            .c
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id)
            .part_number(n)
            .checksum_crc32_c(checksum)
            .body(ByteStream::from(body.to_vec()))
            .customize()
            .disable_payload_signing();
        let out = answer(request.send().await)?;
        Ok(CompletedPart::builder()
            .part_number(n)
            .e_tag(out.e_tag().expect("UploadPart answers an ETag"))
            .checksum_crc32_c(checksum)
            .build())
    }

    /// [`Target::try_upload_part`] with the body's CRC32C, which must succeed.
    pub async fn upload_part(&self, key: &str, id: &str, n: i32, body: &[u8]) -> CompletedPart {
        let part = self
            .try_upload_part((key, id), n, body, &crc32c(body))
            .await;
        part.unwrap_or_else(|e| panic!("UploadPart {key} #{n}: {e:?}"))
    }

    pub async fn abort(&self, key: &str, id: &str) -> Answer<()> {
        let request = self
            .c
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key);
        answer(request.upload_id(id).send().await).map(drop)
    }

    /// The parts ListParts names (one page).
    pub async fn list_parts(&self, key: &str, id: &str) -> Vec<Part> {
        let request = self
            .c
            .list_parts()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id);
        let out = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("ListParts {key}: {e:?}"));
        out.parts().to_vec()
    }

    /// `bodies` uploaded as parts 1..=N of a new CRC32C upload of `key`: its id and parts.
    pub async fn upload_parts(&self, key: &str, bodies: &[&[u8]]) -> (String, Vec<CompletedPart>) {
        let id = self.create_upload(key, true).await;
        let mut parts = Vec::new();
        for (n, body) in (1..).zip(bodies) {
            parts.push(self.upload_part(key, &id, n, body).await);
        }
        (id, parts)
    }

    pub async fn complete(
        &self,
        key: &str,
        id: &str,
        parts: Vec<CompletedPart>,
    ) -> Answer<CompleteMultipartUploadOutput> {
        let result = self
            .c
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        answer(result)
    }
}
