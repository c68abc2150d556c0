//! Building the SDK client from the standard AWS chain plus our settings, and proving
//! a bucket usable before anything depends on it.

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation};
use tokio::runtime::Handle;

use super::{S3ErrorKind, SdkStore};

/// Attempts per S3 request inside the SDK, the first included; backoff doubles from
/// 200 ms with full jitter, so these attempts may all fall within a second. Uploads add
/// their own retry budget on top (`retry_within`, `--retry-budget`).
pub(crate) const MAX_ATTEMPTS: u32 = 6;

/// Where and as whom to talk to S3.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    pub(crate) bucket: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) profile: Option<String>,
    pub(crate) path_style: bool,
    /// Fixed credentials (the `--local` server's); otherwise the standard chain.
    pub(crate) credentials: Option<Credentials>,
    /// How long one request may go unanswered, plus 1 s per MiB it carries.
    pub(crate) request_timeout: Duration,
    /// Largest object copied with one CopyObject; larger ones go as UploadPartCopy
    /// ranges. S3's limit, lowered by tests to reach the ranged path with small files.
    pub(crate) copy_object_limit: u64,
}

/// The default of `--request-timeout`.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn connect(runtime: &Handle, connection: &Connection) -> Result<Arc<SdkStore>, String> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &connection.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &connection.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(credentials) = connection.credentials.clone() {
        loader = loader.credentials_provider(credentials);
    }
    let sdk_config = runtime.block_on(loader.load());
    let mut builder = aws_sdk_s3::config::Builder::from(&sdk_config)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(10)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .build(),
        )
        // We send our own CRC32C with every upload; other requests need none.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .force_path_style(connection.path_style);
    if let Some(endpoint) = &connection.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    if sdk_config.region().is_none() {
        if connection.endpoint.is_some() {
            builder = builder.region(Region::new("us-east-1"));
        } else {
            return Err("no AWS region configured: pass --region (or set AWS_REGION)".to_owned());
        }
    }
    Ok(Arc::new(SdkStore::new(
        aws_sdk_s3::Client::from_conf(builder.build()),
        runtime.clone(),
        connection.bucket.clone(),
        connection.endpoint.clone(),
        connection.request_timeout,
        connection.copy_object_limit,
    )))
}

impl SdkStore {
    /// Proves the bucket reachable and readable; the error is one line naming the cause.
    pub(crate) fn check_bucket(&self, prefix: &str) -> Result<(), String> {
        let bucket = self.bucket();
        let at = self
            .endpoint()
            .map(|e| format!(" at {e}"))
            .unwrap_or_default();
        self.probe(prefix, Duration::from_secs(15))
            .map_err(|e| match e.kind {
                S3ErrorKind::NoSuchBucket => format!("bucket '{bucket}' does not exist{at}"),
                S3ErrorKind::AccessDenied => format!(
                    "access to bucket '{bucket}'{at} denied: check the credentials ({})",
                    e.detail
                ),
                S3ErrorKind::Unreachable => {
                    format!("cannot reach the S3 endpoint{at}: {}", e.detail)
                }
                _ => format!("cannot use bucket '{bucket}'{at}: {}", e.detail),
            })
    }
}
