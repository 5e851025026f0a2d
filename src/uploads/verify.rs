//! What "verified" means, as a pure function: an object's first and last bytes, its size
//! and the service's limits go in; the verified format and pixel dimensions, or the reason
//! it is refused, come out. Confirm, the legacy upload and any later way in call this one
//! function; reading the bytes (from storage, from a request body) is theirs.

pub mod decode;
#[cfg(test)]
mod fixtures;
mod headers;

use crate::domain::ImageFormat;

use super::Rejection;

/// Bytes read from the start of an object to sniff its type and read its dimensions.
pub const SNIFF_BYTES: u64 = 64 * 1024;
/// A JPEG's frame header can sit behind large EXIF blocks; read this far before giving up.
pub const SNIFF_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Bytes from the end of an object the completeness check needs.
pub const TAIL_BYTES: u64 = ImageFormat::TAIL_BYTES;

/// The pixel limits (`MAX_IMAGE_DIMENSION`, `MAX_IMAGE_PIXELS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    pub max_side: u32,
    pub max_pixels: u64,
}

/// What verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedImage {
    pub format: ImageFormat,
    pub width: i32,
    pub height: i32,
}

/// An object as verification sees it.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// The first bytes (up to `SNIFF_BYTES`, or `SNIFF_BYTES_MAX` on a second look).
    pub head: &'a [u8],
    /// The last `TAIL_BYTES` bytes (or all of a shorter object).
    pub tail: &'a [u8],
    /// The object's whole size.
    pub size: u64,
}

/// The whole check: the size is the one declared (when one was), the bytes are an image of
/// the `expected` format within the limits, and the file is whole.
pub fn verify(
    sample: Sample<'_>,
    expected: ImageFormat,
    declared_size: Option<u64>,
    limits: ImageLimits,
) -> Result<VerifiedImage, Rejection> {
    if declared_size.is_some_and(|declared| declared != sample.size) {
        return Err(Rejection::SizeMismatch);
    }
    let (image, header) = read_header(sample.head, expected, limits)?;
    if sample.size < header.min_size
        || !image.format.is_whole(sample.head, sample.tail, sample.size)
    {
        return Err(Rejection::InvalidImage);
    }
    Ok(image)
}

/// What an image's first bytes say: an allowed format, the one `expected`, with a header
/// that is well formed (`headers`) and pixel dimensions within the limits (read from the
/// header, never decoded).
pub fn inspect_header(
    head: &[u8],
    expected: ImageFormat,
    limits: ImageLimits,
) -> Result<VerifiedImage, Rejection> {
    read_header(head, expected, limits).map(|(image, _)| image)
}

fn read_header(
    head: &[u8],
    expected: ImageFormat,
    limits: ImageLimits,
) -> Result<(VerifiedImage, headers::Header), Rejection> {
    let format = ImageFormat::sniff(head).ok_or(Rejection::InvalidImage)?;
    if format != expected {
        return Err(Rejection::TypeMismatch);
    }
    // The limits apply only to a header that is well formed.
    let header = headers::read(format, head)?;
    let (width, height) = (u64::from(header.width), u64::from(header.height));
    let max_side = u64::from(limits.max_side);
    if width > max_side || height > max_side || width * height > limits.max_pixels {
        return Err(Rejection::ImageTooLarge);
    }
    let image = VerifiedImage {
        format,
        width: i32::try_from(width).unwrap_or(i32::MAX),
        height: i32::try_from(height).unwrap_or(i32::MAX),
    };
    Ok((image, header))
}

/// Whether a refusal from `head_len` first bytes of a `size`-byte object may change with
/// more of them: the image is of a known type but its header was not whole in them, as
/// when a JPEG's frame header sits behind large EXIF blocks.
pub fn wants_longer_head(
    outcome: &Result<VerifiedImage, Rejection>,
    head: &[u8],
    size: u64,
) -> bool {
    matches!(outcome, Err(Rejection::InvalidImage))
        && ImageFormat::sniff(head).is_some()
        && (head.len() as u64) < size.min(SNIFF_BYTES_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ImageLimits = ImageLimits {
        max_side: 1000,
        max_pixels: 500_000,
    };
    const PNG_END: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

    /// A PNG's signature and IHDR for `width` x `height`, then an IEND chunk.
    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
        bytes.extend_from_slice(&13u32.to_be_bytes());
        bytes.extend_from_slice(b"IHDR");
        bytes.extend_from_slice(&width.to_be_bytes());
        bytes.extend_from_slice(&height.to_be_bytes());
        bytes.extend_from_slice(&[8, 6, 0, 0, 0]);
        let crc = crc32fast::hash(&bytes[12..]);
        bytes.extend_from_slice(&crc.to_be_bytes());
        bytes.extend_from_slice(&PNG_END);
        bytes
    }

    /// A JPEG with `exif` bytes of APP1 segments before its frame header.
    fn jpeg_behind_exif(exif: usize) -> Vec<u8> {
        jpeg(exif, &[0xFF, 0xC0, 0, 11, 8, 0, 20, 0, 30, 1, 1, 0x11, 0])
    }

    /// A JPEG with `exif` bytes of APP1 segments, then `frame`.
    fn jpeg(exif: usize, frame: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0xFF, 0xD8];
        let mut left = exif;
        while left > 0 {
            let len = left.min(60_000);
            bytes.extend_from_slice(&[0xFF, 0xE1]);
            bytes.extend_from_slice(&u16::try_from(len + 2).expect("fits").to_be_bytes());
            bytes.extend(std::iter::repeat_n(0u8, len));
            left -= len;
        }
        bytes.extend_from_slice(frame);
        bytes.extend_from_slice(&[0xFF, 0xD9]);
        bytes
    }

    fn sample(bytes: &[u8]) -> Sample<'_> {
        let head = &bytes[..bytes.len().min(SNIFF_BYTES as usize)];
        let tail = &bytes[bytes.len().saturating_sub(TAIL_BYTES as usize)..];
        Sample {
            head,
            tail,
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn a_whole_image_of_the_declared_type_is_verified() {
        let bytes = png(40, 30);
        let size = Some(bytes.len() as u64);
        assert_eq!(
            verify(sample(&bytes), ImageFormat::Png, size, LIMITS),
            Ok(VerifiedImage {
                format: ImageFormat::Png,
                width: 40,
                height: 30
            })
        );
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let good = png(40, 30);
        let size = Some(good.len() as u64);
        let mut truncated = good.clone();
        truncated.truncate(good.len() - 4);
        type Case = (&'static str, Vec<u8>, ImageFormat, Option<u64>, Rejection);
        let cases: Vec<Case> = vec![
            (
                "size differs",
                good.clone(),
                ImageFormat::Png,
                Some(1),
                Rejection::SizeMismatch,
            ),
            (
                "declared jpeg",
                good.clone(),
                ImageFormat::Jpeg,
                size,
                Rejection::TypeMismatch,
            ),
            (
                "text",
                b"hello, world".to_vec(),
                ImageFormat::Png,
                None,
                Rejection::InvalidImage,
            ),
            (
                "cut short",
                truncated,
                ImageFormat::Png,
                None,
                Rejection::InvalidImage,
            ),
            (
                "too wide",
                png(1001, 1),
                ImageFormat::Png,
                None,
                Rejection::ImageTooLarge,
            ),
            (
                "too many pixels",
                png(1000, 501),
                ImageFormat::Png,
                None,
                Rejection::ImageTooLarge,
            ),
            (
                "no pixels",
                png(0, 10),
                ImageFormat::Png,
                None,
                Rejection::InvalidImage,
            ),
            (
                // Read as 65535 x 65535 pixels, were the length not checked first.
                "a frame header of length 2",
                jpeg(
                    0,
                    &[0xFF, 0xC0, 0, 2, 8, 0xFF, 0xFF, 0xFF, 0xFF, 1, 1, 0x11, 0],
                ),
                ImageFormat::Jpeg,
                None,
                Rejection::InvalidImage,
            ),
            (
                "a frame header of huge dimensions",
                jpeg(
                    0,
                    &[0xFF, 0xC0, 0, 11, 8, 0xFF, 0xFF, 0xFF, 0xFF, 1, 1, 0x11, 0],
                ),
                ImageFormat::Jpeg,
                None,
                Rejection::ImageTooLarge,
            ),
        ];
        for (what, bytes, expected, declared, rejection) in cases {
            assert_eq!(
                verify(sample(&bytes), expected, declared, LIMITS),
                Err(rejection),
                "{what}"
            );
        }
    }

    #[test]
    fn a_jpeg_header_behind_exif_needs_a_longer_look() {
        let bytes = jpeg_behind_exif(200_000);
        let first = inspect_header(sample(&bytes).head, ImageFormat::Jpeg, LIMITS);
        assert!(wants_longer_head(
            &first,
            sample(&bytes).head,
            bytes.len() as u64
        ));
        let whole = Sample {
            head: &bytes,
            tail: sample(&bytes).tail,
            size: bytes.len() as u64,
        };
        assert_eq!(
            verify(whole, ImageFormat::Jpeg, None, LIMITS).map(|v| (v.width, v.height)),
            Ok((30, 20))
        );
        // Text never gets a second look; nor does a head that already held the whole file.
        let text = b"not an image".repeat(10_000);
        let refused = inspect_header(&text[..SNIFF_BYTES as usize], ImageFormat::Png, LIMITS);
        assert!(!wants_longer_head(
            &refused,
            &text[..SNIFF_BYTES as usize],
            text.len() as u64
        ));
        let small = jpeg_behind_exif(10);
        assert!(!wants_longer_head(
            &Err(Rejection::InvalidImage),
            &small,
            small.len() as u64
        ));
    }
}
