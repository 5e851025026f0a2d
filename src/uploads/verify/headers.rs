//! Each format's header, read and checked for consistency without decoding any pixels:
//! one function per format, from an object's first bytes to its pixel dimensions, or
//! `InvalidImage` when the header is malformed or does not fit in the bytes given (a
//! header cut short may be whole in a longer look; see `verify::wants_longer_head`).

use crate::domain::ImageFormat;

use super::super::Rejection;

/// What a format's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    /// The fewest bytes a file with this header holds (a BMP's stated file size and pixel
    /// data offset); a shorter file is cut short.
    pub min_size: u64,
}

type Checked<T> = Result<T, Rejection>;

/// Reads the header of an image already sniffed as `format`.
pub fn read(format: ImageFormat, head: &[u8]) -> Checked<Header> {
    let (width, height, min_size) = match format {
        ImageFormat::Png => png(head).map(|(w, h)| (w, h, 0))?,
        ImageFormat::Jpeg => jpeg(head).map(|(w, h)| (w, h, 0))?,
        ImageFormat::Gif => gif(head).map(|(w, h)| (w, h, 0))?,
        ImageFormat::Webp => webp(head).map(|(w, h)| (w, h, 0))?,
        ImageFormat::Bmp => bmp(head)?,
        ImageFormat::Tiff => tiff(head).map(|(w, h)| (w, h, 0))?,
    };
    Ok(Header {
        width,
        height,
        min_size,
    })
}

fn invalid<T>() -> Checked<T> {
    Err(Rejection::InvalidImage)
}

/// `true`, or the refusal.
fn ensure(ok: bool) -> Checked<()> {
    if ok { Ok(()) } else { invalid() }
}

/// `len` bytes at `at`, or the refusal when they are not all there.
fn bytes(data: &[u8], at: usize, len: usize) -> Checked<&[u8]> {
    data.get(at..at.checked_add(len).ok_or(Rejection::InvalidImage)?)
        .ok_or(Rejection::InvalidImage)
}

fn array<const N: usize>(data: &[u8], at: usize) -> Checked<[u8; N]> {
    let slice = bytes(data, at, N)?;
    Ok(<[u8; N]>::try_from(slice).unwrap_or([0; N]))
}

fn byte(data: &[u8], at: usize) -> Checked<u8> {
    data.get(at).copied().ok_or(Rejection::InvalidImage)
}

fn u16_be(data: &[u8], at: usize) -> Checked<u16> {
    array(data, at).map(u16::from_be_bytes)
}

fn u16_le(data: &[u8], at: usize) -> Checked<u16> {
    array(data, at).map(u16::from_le_bytes)
}

fn u32_be(data: &[u8], at: usize) -> Checked<u32> {
    array(data, at).map(u32::from_be_bytes)
}

fn u32_le(data: &[u8], at: usize) -> Checked<u32> {
    array(data, at).map(u32::from_le_bytes)
}

/// 24 bits, little-endian.
fn u24_le(data: &[u8], at: usize) -> Checked<u32> {
    let [a, b, c] = array(data, at)?;
    Ok(u32::from_le_bytes([a, b, c, 0]))
}

/// PNG: the signature, then an `IHDR` chunk of 13 bytes with a correct CRC-32, dimensions
/// of 1 to 2^31-1, a bit depth its colour type allows, compression and filter method 0
/// and interlace method 0 or 1.
fn png(head: &[u8]) -> Checked<(u32, u32)> {
    ensure(bytes(head, 0, 8)? == b"\x89PNG\r\n\x1a\n")?;
    ensure(u32_be(head, 8)? == 13 && bytes(head, 12, 4)? == b"IHDR")?;
    let ihdr = bytes(head, 16, 13)?;
    ensure(crc32fast::hash(bytes(head, 12, 17)?) == u32_be(head, 29)?)?;
    let (width, height) = (u32_be(ihdr, 0)?, u32_be(ihdr, 4)?);
    let [depth, colour, compression, filter, interlace] = array(ihdr, 8)?;
    let depths: &[u8] = match colour {
        0 => &[1, 2, 4, 8, 16],
        3 => &[1, 2, 4, 8],
        2 | 4 | 6 => &[8, 16],
        _ => &[],
    };
    let side = 1..=i32::MAX as u32;
    ensure(side.contains(&width) && side.contains(&height))?;
    ensure(depths.contains(&depth) && compression == 0 && filter == 0 && interlace <= 1)?;
    Ok((width, height))
}

/// JPEG: the markers from SOI walked up to the first frame header, each segment's length
/// at least 2 and within the data; an SOS or EOI before any frame header is refused. The
/// frame header's length must be 8 + 3 per component, its precision 8 or 12 (up to 16 in
/// a lossless frame), its dimensions non-zero (a height given later by DNL is refused),
/// with 1, 3 or 4 components whose sampling factors are 1 to 4 and quantization tables 0
/// to 3.
fn jpeg(head: &[u8]) -> Checked<(u32, u32)> {
    ensure(bytes(head, 0, 2)? == [0xFF, 0xD8])?;
    let mut at = 2;
    loop {
        ensure(byte(head, at)? == 0xFF)?;
        // Any number of fill bytes may come before a marker.
        while byte(head, at)? == 0xFF {
            at += 1;
        }
        let marker = byte(head, at)?;
        at += 1;
        match marker {
            // TEM and RST0-RST7 stand alone.
            0x01 | 0xD0..=0xD7 => continue,
            // A stuffed byte, a second SOI, SOS or EOI: not where a frame header belongs.
            0x00 | 0xD8 | 0xDA | 0xD9 => return invalid(),
            _ => {}
        }
        let len = usize::from(u16_be(head, at)?);
        ensure(len >= 2)?;
        let segment = bytes(head, at + 2, len - 2)?;
        let is_frame = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_frame {
            let lossless = matches!(marker, 0xC3 | 0xC7 | 0xCB | 0xCF);
            return jpeg_frame(segment, lossless);
        }
        at += len;
    }
}

/// A frame header's body (after its length).
fn jpeg_frame(frame: &[u8], lossless: bool) -> Checked<(u32, u32)> {
    let precision = byte(frame, 0)?;
    let (height, width) = (u16_be(frame, 1)?, u16_be(frame, 3)?);
    let components = byte(frame, 5)?;
    ensure(frame.len() == 6 + 3 * usize::from(components))?;
    ensure(matches!(precision, 8 | 12) || (lossless && (2..=16).contains(&precision)))?;
    ensure(height != 0 && width != 0 && matches!(components, 1 | 3 | 4))?;
    for component in frame[6..].chunks_exact(3) {
        let (sampling, table) = (component[1], component[2]);
        let factor = 1..=4;
        ensure(factor.contains(&(sampling >> 4)) && factor.contains(&(sampling & 0x0F)))?;
        ensure(table <= 3)?;
    }
    Ok((u32::from(width), u32::from(height)))
}

/// GIF: the signature, a logical screen of non-zero width and height, a global colour
/// table that fits; the first image (after any extension blocks) inside the logical
/// screen when the bytes given reach it.
fn gif(head: &[u8]) -> Checked<(u32, u32)> {
    ensure(matches!(bytes(head, 0, 6)?, b"GIF87a" | b"GIF89a"))?;
    let (width, height) = (u16_le(head, 6)?, u16_le(head, 8)?);
    ensure(width != 0 && height != 0)?;
    let mut at = 13 + colour_table(byte(head, 10)?);
    ensure(at <= head.len())?;
    // Blocks up to the first image; running out of bytes here leaves the screen's word.
    while let Some(&block) = head.get(at) {
        match block {
            0x21 => {
                // Extension: its label, then data sub-blocks up to an empty one.
                at += 2;
                while let Some(&len) = head.get(at) {
                    at += 1 + usize::from(len);
                    if len == 0 {
                        break;
                    }
                }
            }
            0x2C => {
                let Ok(image) = array::<8>(head, at + 1) else {
                    break;
                };
                let field = |i: usize| u32::from(u16::from_le_bytes([image[i], image[i + 1]]));
                let (left, top, w, h) = (field(0), field(2), field(4), field(6));
                ensure(left + w <= u32::from(width) && top + h <= u32::from(height))?;
                break;
            }
            // The trailer before any image, or anything else.
            _ => return invalid(),
        }
    }
    Ok((u32::from(width), u32::from(height)))
}

/// The size of the colour table a GIF's packed field announces, if any.
fn colour_table(packed: u8) -> usize {
    if packed & 0x80 == 0 {
        0
    } else {
        3 << ((packed & 0x07) + 1)
    }
}

/// WebP: RIFF and WEBP, and a first chunk that fits in the RIFF: `VP8 ` with a key frame's
/// tag and start code and non-zero 14-bit dimensions, `VP8L` with its signature and
/// version 0, or `VP8X` of 10 bytes with its reserved bits clear and a canvas of at most
/// 2^32-1 pixels.
fn webp(head: &[u8]) -> Checked<(u32, u32)> {
    ensure(bytes(head, 0, 4)? == b"RIFF" && bytes(head, 8, 4)? == b"WEBP")?;
    let riff = u64::from(u32_le(head, 4)?);
    let chunk = bytes(head, 12, 4)?;
    let len = u32_le(head, 16)?;
    // The chunk's header, payload and padding byte lie within the RIFF's.
    ensure(4 + 8 + u64::from(len) + u64::from(len & 1) <= riff)?;
    let payload = 20;
    match chunk {
        b"VP8 " => {
            let tag = u24_le(head, payload)?;
            let (key_frame, version, shown) = (tag & 1 == 0, (tag >> 1) & 7, (tag >> 4) & 1);
            ensure(key_frame && version <= 3 && shown == 1 && (tag >> 5) < len)?;
            ensure(len >= 10 && bytes(head, payload + 3, 3)? == [0x9D, 0x01, 0x2A])?;
            let width = u32::from(u16_le(head, payload + 6)? & 0x3FFF);
            let height = u32::from(u16_le(head, payload + 8)? & 0x3FFF);
            ensure(width != 0 && height != 0)?;
            Ok((width, height))
        }
        b"VP8L" => {
            ensure(len >= 5 && byte(head, payload)? == 0x2F)?;
            let bits = u32_le(head, payload + 1)?;
            ensure(bits >> 29 == 0)?;
            Ok(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        b"VP8X" => {
            ensure(len == 10)?;
            let flags = u32_le(head, payload)?;
            // Bits 0, 6 and 7 of the flags byte and the three bytes after it are reserved.
            ensure(flags & !0x3E == 0)?;
            let width = u24_le(head, payload + 4)? + 1;
            let height = u24_le(head, payload + 7)? + 1;
            ensure(u64::from(width) * u64::from(height) <= u64::from(u32::MAX))?;
            Ok((width, height))
        }
        _ => invalid(),
    }
}

/// BMP: "BM", a known DIB header (12, 40, 52, 56, 108 or 124 bytes) that fits before the
/// pixel data, non-zero width and height (a negative height, top-down, only uncompressed),
/// one plane, 1, 4, 8, 16, 24 or 32 bits per pixel and a compression that suits them
/// (none, RLE8 at 8, RLE4 at 4, bit fields at 16 or 32). The file must hold its pixel
/// data's start and, when stated, the file size the header gives.
fn bmp(head: &[u8]) -> Checked<(u32, u32, u64)> {
    ensure(bytes(head, 0, 2)? == b"BM")?;
    let file_size = u32_le(head, 2)?;
    let pixels_at = u32_le(head, 10)?;
    let dib = u32_le(head, 14)?;
    ensure(matches!(dib, 12 | 40 | 52 | 56 | 108 | 124))?;
    ensure(pixels_at >= 14 + dib)?;
    bytes(head, 14, dib as usize)?;
    let (width, height, planes, bits, compression) = if dib == 12 {
        let width = u32::from(u16_le(head, 18)?);
        let height = i64::from(u16_le(head, 20)?);
        (
            i64::from(width),
            height,
            u16_le(head, 22)?,
            u16_le(head, 24)?,
            0,
        )
    } else {
        let width = i64::from(u32_le(head, 18)?.cast_signed());
        let height = i64::from(u32_le(head, 22)?.cast_signed());
        let (planes, bits) = (u16_le(head, 26)?, u16_le(head, 28)?);
        (width, height, planes, bits, u32_le(head, 30)?)
    };
    ensure(width > 0 && height != 0 && planes == 1)?;
    ensure(match compression {
        0 => matches!(bits, 1 | 4 | 8 | 16 | 24 | 32),
        1 => bits == 8 && height > 0,
        2 => bits == 4 && height > 0,
        3 => matches!(bits, 16 | 32),
        _ => false,
    })?;
    let min_size = u64::from(file_size).max(u64::from(pixels_at) + 1);
    let side = |v: i64| u32::try_from(v.unsigned_abs()).unwrap_or(u32::MAX);
    Ok((side(width), side(height), min_size))
}

/// TIFF: "II*\0" or "MM\0*" (BigTIFF is refused), a first IFD at offset 8 or later with
/// at least one entry, wholly within the bytes given, and ImageWidth and ImageLength
/// present, each one SHORT or LONG and non-zero.
fn tiff(head: &[u8]) -> Checked<(u32, u32)> {
    let big_endian = match bytes(head, 0, 4)? {
        b"II*\0" => false,
        b"MM\0*" => true,
        _ => return invalid(),
    };
    let u16_at = |at| {
        if big_endian {
            u16_be(head, at)
        } else {
            u16_le(head, at)
        }
    };
    let u32_at = |at| {
        if big_endian {
            u32_be(head, at)
        } else {
            u32_le(head, at)
        }
    };
    let ifd = usize::try_from(u32_at(4)?).map_err(|_| Rejection::InvalidImage)?;
    ensure(ifd >= 8)?;
    let entries = usize::from(u16_at(ifd)?);
    ensure(entries >= 1)?;
    // The entries and the next IFD's offset.
    bytes(head, ifd + 2, entries * 12 + 4)?;
    let (mut width, mut height) = (None, None);
    for entry in (0..entries).map(|i| ifd + 2 + i * 12) {
        let tag = u16_at(entry)?;
        if tag != 256 && tag != 257 {
            continue;
        }
        let (kind, count) = (u16_at(entry + 2)?, u32_at(entry + 4)?);
        let value = match kind {
            3 => u32::from(u16_at(entry + 8)?),
            4 => u32_at(entry + 8)?,
            _ => return invalid(),
        };
        ensure(count == 1 && value != 0)?;
        *if tag == 256 { &mut width } else { &mut height } = Some(value);
    }
    match (width, height) {
        (Some(width), Some(height)) => Ok((width, height)),
        _ => invalid(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uploads::verify::fixtures::{self, BMP, GIF, JPEG, PNG, TIFF, WEBP, edit};

    /// The PNG fixture with IHDR's data bytes at `at` (0-12) replaced, its CRC made right.
    fn png_ihdr(at: usize, with: &[u8]) -> Vec<u8> {
        let mut bytes = edit(PNG, 16 + at, with);
        let crc = crc32fast::hash(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    /// Where the JPEG fixture's frame header (its FF Cx marker) starts.
    fn jpeg_sof() -> usize {
        JPEG.windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("a baseline frame header")
    }

    /// The JPEG fixture with its frame header's bytes at `at` (from its marker) replaced.
    fn jpeg_frame(at: usize, with: &[u8]) -> Vec<u8> {
        edit(JPEG, jpeg_sof() + at, with)
    }

    #[test]
    fn each_fixture_is_read_with_its_dimensions() {
        for (format, bytes) in fixtures::ALL {
            let header = read(format, bytes).unwrap_or_else(|e| panic!("{format:?}: {e:?}"));
            assert_eq!((header.width, header.height), (64, 48), "{format:?}");
            assert!(header.min_size <= bytes.len() as u64, "{format:?}");
        }
    }

    /// Each case, a fixture edited one way, is refused as `InvalidImage`.
    fn assert_invalid(format: ImageFormat, cases: Vec<(&str, Vec<u8>)>) {
        for (what, bytes) in cases {
            assert_eq!(
                read(format, &bytes),
                Err(Rejection::InvalidImage),
                "{format:?}: {what}"
            );
        }
    }

    #[test]
    fn malformed_png_headers_are_invalid() {
        assert_invalid(
            ImageFormat::Png,
            vec![
                ("crc", edit(PNG, 29, &[0, 0, 0, 0])),
                ("crc of other data", edit(PNG, 16, &[0, 0, 1, 0])),
                ("ihdr length", edit(PNG, 8, &[0, 0, 0, 12])),
                ("first chunk", edit(PNG, 12, b"IDAT")),
                ("width 0", png_ihdr(0, &[0, 0, 0, 0])),
                ("height 2^31", png_ihdr(4, &[0x80, 0, 0, 0])),
                ("rgb depth 4", png_ihdr(8, &[4, 2])),
                ("palette depth 16", png_ihdr(8, &[16, 3])),
                ("grey depth 3", png_ihdr(8, &[3, 0])),
                ("colour type 5", png_ihdr(8, &[8, 5])),
                ("compression", png_ihdr(10, &[1])),
                ("filter", png_ihdr(11, &[1])),
                ("interlace", png_ihdr(12, &[2])),
                ("cut in ihdr", PNG[..30].to_vec()),
            ],
        );
    }

    /// The three frame headers, the one that read as too large, and the rest.
    #[test]
    fn malformed_jpeg_headers_are_invalid() {
        assert_invalid(
            ImageFormat::Jpeg,
            vec![
                ("sof length 2", jpeg_frame(2, &[0, 2])),
                ("sof length 65535", jpeg_frame(2, &[0xFF, 0xFF])),
                ("0 components", jpeg_frame(9, &[0])),
                (
                    "sof length 2, huge numbers",
                    jpeg_frame(2, &[0, 2, 8, 0xFF, 0xFF, 0xFF, 0xFF]),
                ),
                ("sof length 9", jpeg_frame(2, &[0, 9])),
                ("precision 7", jpeg_frame(4, &[7])),
                ("precision 16 baseline", jpeg_frame(4, &[16])),
                ("height 0", jpeg_frame(5, &[0, 0])),
                ("width 0", jpeg_frame(7, &[0, 0])),
                ("2 components", jpeg_frame(9, &[2])),
                ("sampling 0", jpeg_frame(11, &[0x01])),
                ("sampling 5", jpeg_frame(11, &[0x51])),
                ("quant table 4", jpeg_frame(12, &[4])),
                ("segment length 1", edit(JPEG, 4, &[0, 1])),
                ("segment past the end", edit(JPEG, 4, &[0xFF, 0xF0])),
                ("no marker", edit(JPEG, 2, &[0x00])),
                ("sos first", edit(JPEG, 3, &[0xDA])),
                ("eoi first", edit(JPEG, 3, &[0xD9])),
                ("cut before sof", JPEG[..jpeg_sof() + 5].to_vec()),
            ],
        );
    }

    #[test]
    fn malformed_gif_headers_are_invalid() {
        let image = GIF.iter().position(|&b| b == 0x2C).expect("an image");
        assert_invalid(
            ImageFormat::Gif,
            vec![
                ("version", edit(GIF, 3, b"90a")),
                ("width 0", edit(GIF, 6, &[0, 0])),
                ("height 0", edit(GIF, 8, &[0, 0])),
                ("colour table past the end", edit(&GIF[..40], 10, &[0x87])),
                (
                    "image wider than the screen",
                    edit(GIF, image + 5, &[65, 0]),
                ),
                ("image below the screen", edit(GIF, image + 3, &[1, 0])),
                ("trailer first", edit(GIF, image, &[0x3B])),
                ("unknown block", edit(GIF, image, &[0x00])),
            ],
        );
    }

    #[test]
    fn malformed_webp_headers_are_invalid() {
        assert_invalid(
            ImageFormat::Webp,
            vec![
                ("form", edit(WEBP, 8, b"WEBX")),
                ("chunk", edit(WEBP, 12, b"VP9 ")),
                ("chunk past the riff", edit(WEBP, 16, &[0xF0, 0x01])),
                ("start code", edit(WEBP, 23, &[0x9D, 0x01, 0x2B])),
                ("inter frame", edit(WEBP, 20, &[0xD1])),
                ("hidden frame", edit(WEBP, 20, &[0xC0])),
                ("width 0", edit(WEBP, 26, &[0, 0xC0])),
                ("height 0", edit(WEBP, 28, &[0, 0])),
                ("lossless signature", webp_lossless(0x2E, 0)),
                ("lossless version", webp_lossless(0x2F, 1 << 29)),
                ("extended size", webp_extended(9, 0, [1, 1])),
                ("extended reserved", webp_extended(10, 1, [1, 1])),
                ("extended canvas", webp_extended(10, 0, [1 << 24, 1 << 24])),
            ],
        );
    }

    #[test]
    fn malformed_bmp_headers_are_invalid() {
        assert_invalid(
            ImageFormat::Bmp,
            vec![
                ("signature", edit(BMP, 0, b"BA")),
                ("header size", edit(BMP, 14, &[41])),
                ("pixels inside the header", edit(BMP, 10, &[20])),
                ("width 0", edit(BMP, 18, &[0, 0, 0, 0])),
                ("width negative", edit(BMP, 18, &[0xFF; 4])),
                ("height 0", edit(BMP, 22, &[0, 0, 0, 0])),
                ("planes", edit(BMP, 26, &[2])),
                ("bits", edit(BMP, 28, &[12])),
                ("compression", edit(BMP, 30, &[7])),
                ("rle8 at 24 bits", edit(BMP, 30, &[1])),
                ("cut in its header", BMP[..40].to_vec()),
            ],
        );
    }

    #[test]
    fn malformed_tiff_headers_are_invalid() {
        assert_invalid(
            ImageFormat::Tiff,
            vec![
                ("bigtiff", edit(TIFF, 2, &[0x2B])),
                ("ifd in the header", edit(TIFF, 4, &[4])),
                ("ifd past the end", edit(TIFF, 4, &[0, 0, 1, 0])),
                ("no entries", edit(TIFF, 8, &[0, 0])),
                ("entries past the end", edit(TIFF, 8, &[0xFF, 0xFF])),
                ("no width", edit(TIFF, 10, &[0x10, 0x01])),
                ("no height", edit(TIFF, 22, &[0x10, 0x01])),
                ("width 0", edit(TIFF, 18, &[0, 0])),
                ("width as text", edit(TIFF, 12, &[2])),
                ("two widths", edit(TIFF, 14, &[2])),
                // Ten entries, without the next IFD's offset.
                ("cut in its ifd", TIFF[..8 + 2 + 12 * 10].to_vec()),
            ],
        );
    }

    /// A lossless WebP header with this signature byte and these 32 bits after it (width
    /// and height 1 in the low bits).
    fn webp_lossless(signature: u8, bits: u32) -> Vec<u8> {
        let mut bytes = b"RIFF\x16\0\0\0WEBPVP8L\x0a\0\0\0".to_vec();
        bytes.push(signature);
        bytes.extend_from_slice(&bits.to_le_bytes());
        bytes.extend_from_slice(&[0; 5]);
        bytes
    }

    /// An extended WebP header: a VP8X chunk of `len` bytes with these flags and canvas.
    fn webp_extended(len: u32, flags: u32, [width, height]: [u32; 2]) -> Vec<u8> {
        let mut bytes = b"RIFF\x40\0\0\0WEBPVP8X".to_vec();
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&flags.to_le_bytes());
        bytes.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
        bytes.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
        bytes.extend_from_slice(&[0; 32]);
        bytes
    }

    #[test]
    fn well_formed_variants_are_read() {
        let sof = jpeg_sof();
        let mut progressive = JPEG.to_vec();
        progressive[sof + 1] = 0xC2;
        let mut filled = JPEG[..2].to_vec();
        filled.extend_from_slice(&[0xFF, 0xFF, 0xFF]);
        filled.extend_from_slice(&JPEG[3..]);
        let mut top_down = BMP.to_vec();
        top_down[22..26].copy_from_slice(&(-48i32).to_le_bytes());
        type Case = (&'static str, ImageFormat, Vec<u8>, (u32, u32));
        let cases: Vec<Case> = vec![
            (
                "png interlaced",
                ImageFormat::Png,
                png_ihdr(12, &[1]),
                (64, 48),
            ),
            (
                "png grey 16",
                ImageFormat::Png,
                png_ihdr(8, &[16, 0]),
                (64, 48),
            ),
            ("jpeg progressive", ImageFormat::Jpeg, progressive, (64, 48)),
            ("jpeg fill bytes", ImageFormat::Jpeg, filled, (64, 48)),
            (
                "jpeg 12-bit",
                ImageFormat::Jpeg,
                jpeg_frame(4, &[12]),
                (64, 48),
            ),
            (
                "gif screen and colour table only",
                ImageFormat::Gif,
                GIF[..25].to_vec(),
                (64, 48),
            ),
            (
                "webp lossless",
                ImageFormat::Webp,
                webp_lossless(0x2F, 9 | (4 << 14)),
                (10, 5),
            ),
            (
                "webp extended",
                ImageFormat::Webp,
                webp_extended(10, 0x10, [300, 200]),
                (300, 200),
            ),
            ("bmp top-down", ImageFormat::Bmp, top_down, (64, 48)),
        ];
        for (what, format, bytes, dimensions) in cases {
            let header = read(format, &bytes).map(|h| (h.width, h.height));
            assert_eq!(header, Ok(dimensions), "{what}");
        }
    }

    #[test]
    fn a_bmp_says_how_long_it_is() {
        let header = read(ImageFormat::Bmp, BMP).expect("valid");
        assert_eq!(header.min_size, BMP.len() as u64);
        let mut no_size = BMP.to_vec();
        no_size[2..6].copy_from_slice(&[0; 4]);
        let header = read(ImageFormat::Bmp, &no_size).expect("valid");
        assert_eq!(header.min_size, 0x36 + 1);
    }
}
