//! The checksums the mount sends and compares: CRC32C per part and per small object
//! (the server verifies each), and the object's whole checksum: a full-object CRC32C
//! (the CRC32C of its bytes, whatever the part layout; asked for at
//! CreateMultipartUpload, as AWS and Garage 2.x keep it) or, from a server that only
//! keeps composite checksums, S3's CRC32C of the parts' CRC32Cs with a `-N` suffix.

/// CRC32C of `data`, base64 as S3's `x-amz-checksum-crc32c` wants it.
pub(crate) fn crc32c_base64(data: &[u8]) -> String {
    encode_crc32c(crc32c::crc32c(data))
}

/// A CRC32C value in S3's form: the 4 big-endian bytes, base64.
pub(crate) fn encode_crc32c(crc: u32) -> String {
    aws_smithy_types::base64::encode(crc.to_be_bytes())
}

/// The CRC32C value of S3's base64 form, if it is one (not a composite `...-N`).
pub(crate) fn decode_crc32c(text: &str) -> Option<u32> {
    let raw = aws_smithy_types::base64::decode(text).ok()?;
    Some(u32::from_be_bytes(raw.as_slice().try_into().ok()?))
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

/// The CRC32C of the whole object the parts make, combined from theirs and their
/// sizes (no byte read again). None when a part has no checksum.
pub(crate) fn full_object_checksum(parts: &[super::UploadedPart]) -> Option<String> {
    let mut whole: Option<u32> = None;
    for part in parts {
        let crc = decode_crc32c(part.checksum_crc32c.as_deref()?)?;
        let size = usize::try_from(part.size).ok()?;
        whole = Some(match whole {
            None => crc,
            Some(before) => crc32c::crc32c_combine(before, crc, size),
        });
    }
    whole.map(encode_crc32c)
}

/// Whether `reported` (what the server says the object's CRC32C is, in either form)
/// is what `parts` make.
pub(crate) fn matches_parts(reported: &str, parts: &[super::UploadedPart]) -> bool {
    if reported.contains('-') {
        reported == composite_checksum(parts)
    } else {
        full_object_checksum(parts).as_deref() == Some(reported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::UploadedPart;

    fn part(number: u32, data: &[u8]) -> UploadedPart {
        UploadedPart {
            part_number: number,
            etag: format!("\"{number}\""),
            checksum_crc32c: Some(crc32c_base64(data)),
            size: data.len() as u64,
        }
    }

    #[test]
    fn the_full_object_checksum_of_parts_is_the_crc32c_of_their_bytes_and_not_the_composite() {
        let (a, b, c) = (vec![1u8; 5 << 20], vec![2u8; 5 << 20], b"tail".to_vec());
        let parts = [part(1, &a), part(2, &b), part(3, &c)];
        let whole = [a, b, c].concat();
        let full = full_object_checksum(&parts).expect("every part has a checksum");
        assert_eq!(full, crc32c_base64(&whole));
        assert!(matches_parts(&full, &parts));
        assert!(matches_parts(&composite_checksum(&parts), &parts));
        assert!(!matches_parts(&crc32c_base64(b"other"), &parts));
        let copied = UploadedPart {
            checksum_crc32c: None,
            ..part(2, b"x")
        };
        assert_eq!(full_object_checksum(&[part(1, b"a"), copied]), None);
        assert_eq!(decode_crc32c(&full), Some(crc32c::crc32c(&whole)));
        assert_eq!(decode_crc32c("AAAA-3"), None);
    }
}
