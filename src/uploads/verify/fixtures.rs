//! The test fixtures, and files made from them, for the verification tests.

use crate::domain::ImageFormat;

pub const PNG: &[u8] = include_bytes!("../../../tests/fixtures/sample.png");
pub const JPEG: &[u8] = include_bytes!("../../../tests/fixtures/photo.jpg");
pub const GIF: &[u8] = include_bytes!("../../../tests/fixtures/sample.gif");
pub const WEBP: &[u8] = include_bytes!("../../../tests/fixtures/sample.webp");
pub const BMP: &[u8] = include_bytes!("../../../tests/fixtures/sample.bmp");
pub const TIFF: &[u8] = include_bytes!("../../../tests/fixtures/sample.tiff");

/// Each fixture, all 64 x 48 pixels.
pub const ALL: [(ImageFormat, &[u8]); 6] = [
    (ImageFormat::Png, PNG),
    (ImageFormat::Jpeg, JPEG),
    (ImageFormat::Gif, GIF),
    (ImageFormat::Webp, WEBP),
    (ImageFormat::Bmp, BMP),
    (ImageFormat::Tiff, TIFF),
];

/// A fixture with the bytes at `at` replaced.
pub fn edit(fixture: &[u8], at: usize, with: &[u8]) -> Vec<u8> {
    let mut bytes = fixture.to_vec();
    bytes[at..at + with.len()].copy_from_slice(with);
    bytes
}

/// The PNG fixture whose IDAT holds garbage after its zlib header, under a correct CRC:
/// every chunk is well formed, the pixels are not.
pub const PNG_CORRUPT_IDAT: &[u8] = include_bytes!("../../../tests/fixtures/corrupt-idat.png");
