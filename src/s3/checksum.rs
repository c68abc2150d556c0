//! The checksums the mount sends and compares: CRC32C per part and per small object
//! (the server verifies each), and S3's composite checksum of a multipart object.

/// CRC32C of `data`, base64 as S3's `x-amz-checksum-crc32c` wants it.
pub(crate) fn crc32c_base64(data: &[u8]) -> String {
    aws_smithy_types::base64::encode(crc32c::crc32c(data).to_be_bytes())
}

/// S3's checksum of a multipart object: CRC32C over the parts' CRC32Cs, then `-N`.
/// Empty when a part has no checksum (a server-side copy).
pub(crate) fn composite_checksum(parts: &[super::UploadedPart]) -> String {
    let mut concatenated = Vec::with_capacity(parts.len() * 4);
    for part in parts {
        match part
            .checksum_crc32c
            .as_deref()
            .map(aws_smithy_types::base64::decode)
        {
            Some(Ok(raw)) => concatenated.extend_from_slice(&raw),
            _ => return String::new(),
        }
    }
    format!("{}-{}", crc32c_base64(&concatenated), parts.len())
}
