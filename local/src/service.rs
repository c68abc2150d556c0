//! [`LocalFs`], the [`S3`] implementation the server runs: s3s-fs plus the bridges described in
//! the crate documentation. This file is the routing table (which operations go to s3s-fs as they
//! are, which to a bridged method in `objects`, `markers`, `list` or `multipart`) and the one way
//! those methods run blocking filesystem work.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use s3s::dto;
use s3s::{S3, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::error::s3_err;
use crate::store::Store;

/// s3s-fs plus the fixes described in the crate documentation.
pub(crate) struct LocalFs {
    pub(crate) inner: s3s_fs::FileSystem,
    pub(crate) store: Arc<Store>,
}

impl LocalFs {
    /// Runs blocking work on the store off the runtime's worker threads.
    pub(crate) async fn with_store<T, F>(&self, f: F) -> S3Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> S3Result<T> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| {
                s3_err(
                    S3ErrorCode::InternalError,
                    format!("storage task failed: {e}"),
                )
            })?
    }
}

type OpFuture<'a, T> = Pin<Box<dyn Future<Output = S3Result<S3Response<T>>> + Send + 'a>>;

/// Implements `S3` methods in the shape `#[async_trait]` gives them: `inner` forwards to
/// s3s-fs, anything else names an inherent async method of [`LocalFs`].
macro_rules! s3_ops {
    (@call $this:ident, $name:ident, $req:ident, inner) => {
        $this.inner.$name($req)
    };
    (@call $this:ident, $name:ident, $req:ident, $method:ident) => {
        Box::pin($this.$method($req))
    };
    ($($name:ident($input:ident) -> $output:ident = $how:ident;)*) => {
        $(
            fn $name<'life0, 'async_trait>(
                &'life0 self,
                req: S3Request<dto::$input>,
            ) -> OpFuture<'async_trait, dto::$output>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                s3_ops!(@call self, $name, req, $how)
            }
        )*
    };
}

impl S3 for LocalFs {
    s3_ops! {
        create_bucket(CreateBucketInput) -> CreateBucketOutput = inner;
        head_bucket(HeadBucketInput) -> HeadBucketOutput = inner;
        get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput = inner;
        list_buckets(ListBucketsInput) -> ListBucketsOutput = inner;
        delete_bucket(DeleteBucketInput) -> DeleteBucketOutput = delete_bucket_impl;
        put_object(PutObjectInput) -> PutObjectOutput = put_object_impl;
        get_object(GetObjectInput) -> GetObjectOutput = get_object_impl;
        head_object(HeadObjectInput) -> HeadObjectOutput = head_object_impl;
        delete_object(DeleteObjectInput) -> DeleteObjectOutput = delete_object_impl;
        delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput = delete_objects_impl;
        copy_object(CopyObjectInput) -> CopyObjectOutput = copy_object_impl;
        list_objects_v2(ListObjectsV2Input) -> ListObjectsV2Output = list_objects_v2_impl;
        list_objects(ListObjectsInput) -> ListObjectsOutput = list_objects_impl;
        create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput = create_multipart_upload_impl;
        upload_part(UploadPartInput) -> UploadPartOutput = upload_part_impl;
        upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput = upload_part_copy_impl;
        complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput = complete_multipart_upload_impl;
        abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput = abort_multipart_upload_impl;
        list_parts(ListPartsInput) -> ListPartsOutput = list_parts_impl;
        list_multipart_uploads(ListMultipartUploadsInput) -> ListMultipartUploadsOutput = list_multipart_uploads_impl;
    }
}
