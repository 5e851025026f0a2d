//! The full decode `VERIFY_DECODE` asks for: a whole file's bytes go in, and either every
//! pixel decoded or the refusal comes out. Pure and blocking; callers run it on the
//! blocking pool.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::{ImageError, ImageReader};

use super::super::Rejection;
use super::ImageLimits;
use crate::domain::ImageFormat;

/// The most memory one decode may allocate.
pub const DECODE_MEMORY: u64 = 1024 * 1024 * 1024;

/// Decodes a whole image of `format`. A decoder's error, or a panic inside it, is
/// `InvalidImage`; an image its decoder finds beyond the limits, or needing more than
/// `DECODE_MEMORY`, is `ImageTooLarge`.
pub fn decode(bytes: &[u8], format: ImageFormat, limits: ImageLimits) -> Result<(), Rejection> {
    catch_unwind(AssertUnwindSafe(|| decode_all(bytes, format, limits)))
        .unwrap_or(Err(Rejection::InvalidImage))
}

fn decode_all(bytes: &[u8], format: ImageFormat, limits: ImageLimits) -> Result<(), Rejection> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), decoder_format(format));
    let mut bounds = image::Limits::default();
    bounds.max_image_width = Some(limits.max_side);
    bounds.max_image_height = Some(limits.max_side);
    bounds.max_alloc = Some(DECODE_MEMORY);
    reader.limits(bounds);
    let image = reader.decode().map_err(|err| match err {
        ImageError::Limits(_) => Rejection::ImageTooLarge,
        _ => Rejection::InvalidImage,
    })?;
    if u64::from(image.width()) * u64::from(image.height()) > limits.max_pixels {
        return Err(Rejection::ImageTooLarge);
    }
    Ok(())
}

fn decoder_format(format: ImageFormat) -> image::ImageFormat {
    match format {
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Gif => image::ImageFormat::Gif,
        ImageFormat::Webp => image::ImageFormat::WebP,
        ImageFormat::Bmp => image::ImageFormat::Bmp,
        ImageFormat::Tiff => image::ImageFormat::Tiff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uploads::verify::fixtures;

    const LIMITS: ImageLimits = ImageLimits {
        max_side: 1000,
        max_pixels: 500_000,
    };

    /// The JPEG fixture with its first Huffman table's code counts all 255.
    fn jpeg_with_broken_huffman_table() -> Vec<u8> {
        let dht = fixtures::JPEG
            .windows(2)
            .position(|w| w == [0xFF, 0xC4])
            .expect("a Huffman table");
        fixtures::edit(fixtures::JPEG, dht + 5, &[0xFF; 16])
    }

    #[test]
    fn every_fixture_decodes() {
        for (format, bytes) in fixtures::ALL {
            assert_eq!(decode(bytes, format, LIMITS), Ok(()), "{format:?}");
        }
    }

    #[test]
    fn a_valid_header_over_garbage_does_not_decode() {
        let cases: Vec<(&str, ImageFormat, Vec<u8>, Rejection)> = vec![
            (
                "png with a corrupt IDAT",
                ImageFormat::Png,
                fixtures::PNG_CORRUPT_IDAT.to_vec(),
                Rejection::InvalidImage,
            ),
            (
                "jpeg with an impossible Huffman table",
                ImageFormat::Jpeg,
                jpeg_with_broken_huffman_table(),
                Rejection::InvalidImage,
            ),
            (
                "gif without its image data",
                ImageFormat::Gif,
                [&fixtures::GIF[..40], &[0x3B]].concat(),
                Rejection::InvalidImage,
            ),
            (
                "tiff without its strips",
                ImageFormat::Tiff,
                fixtures::TIFF[..200].to_vec(),
                Rejection::InvalidImage,
            ),
            (
                "wider than the limit",
                ImageFormat::Png,
                fixtures::PNG.to_vec(),
                Rejection::ImageTooLarge,
            ),
        ];
        for (what, format, bytes, rejection) in cases {
            let limits = if rejection == Rejection::ImageTooLarge {
                ImageLimits {
                    max_side: 10,
                    ..LIMITS
                }
            } else {
                LIMITS
            };
            assert_eq!(decode(&bytes, format, limits), Err(rejection), "{what}");
        }
    }
}
