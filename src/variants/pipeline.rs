//! Making an image's variants, pure: bytes in, encoded variants out. The header's pixel
//! count is checked against `max_pixels` before anything is decoded; a JPEG is decoded at
//! the smallest DCT scale that still gives twice the largest preset (the trick that makes
//! libvips fast); the EXIF orientation is applied; each preset is resized with Lanczos3
//! (fit inside, never enlarged) and encoded as JPEG and lossy WebP, with no metadata. A
//! panic in any decoder or encoder is caught and becomes an error.

use std::panic::{AssertUnwindSafe, catch_unwind};

use fast_image_resize as fr;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage, RgbaImage};

/// One preset: a name and the longest side, in pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    pub name: String,
    pub longest: u32,
}

/// An encoding a variant is made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VariantFormat {
    Webp,
    Jpeg,
}

impl VariantFormat {
    pub fn extension(self) -> &'static str {
        match self {
            VariantFormat::Webp => "webp",
            VariantFormat::Jpeg => "jpeg",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            VariantFormat::Webp => "image/webp",
            VariantFormat::Jpeg => "image/jpeg",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "webp" => Some(VariantFormat::Webp),
            "jpeg" | "jpg" => Some(VariantFormat::Jpeg),
            _ => None,
        }
    }
}

/// One made variant.
#[derive(Debug, Clone)]
pub struct Variant {
    pub preset: String,
    pub format: VariantFormat,
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// What one job may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `VARIANT_MAX_PIXELS`: larger images are refused before decoding.
    pub max_pixels: u64,
    /// Bytes the decoder may allocate.
    pub max_memory: u64,
}

/// JPEG and WebP quality.
const QUALITY: u8 = 80;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariantError {
    #[error("the image has more pixels than VARIANT_MAX_PIXELS allows")]
    TooLarge,
    #[error("the image cannot be decoded: {0}")]
    Undecodable(String),
    #[error("a decoder or encoder failed unexpectedly")]
    Panicked,
}

impl VariantError {
    /// The code an upload's failed `variants_state` carries.
    pub fn code(&self) -> &'static str {
        match self {
            VariantError::TooLarge => "image_too_large",
            VariantError::Undecodable(_) => "invalid_image",
            VariantError::Panicked => "variant_failed",
        }
    }
}

/// Makes every preset in every format from `original`.
pub fn make(
    original: &[u8],
    presets: &[Preset],
    formats: &[VariantFormat],
    limits: Limits,
) -> Result<Vec<Variant>, VariantError> {
    catch_unwind(AssertUnwindSafe(|| {
        make_unguarded(original, presets, formats, limits)
    }))
    .unwrap_or(Err(VariantError::Panicked))
}

fn make_unguarded(
    original: &[u8],
    presets: &[Preset],
    formats: &[VariantFormat],
    limits: Limits,
) -> Result<Vec<Variant>, VariantError> {
    let size =
        imagesize::blob_size(original).map_err(|e| VariantError::Undecodable(e.to_string()))?;
    let pixels = (size.width as u64).saturating_mul(size.height as u64);
    if pixels > limits.max_pixels {
        return Err(VariantError::TooLarge);
    }
    let largest = presets.iter().map(|p| p.longest).max().unwrap_or(0);
    let decoded = decode(original, largest.saturating_mul(2), limits)?;
    let mut out = Vec::with_capacity(presets.len() * formats.len());
    for preset in presets {
        let resized = resize(&decoded, preset.longest)?;
        for format in formats {
            let (width, height) = (resized.width(), resized.height());
            out.push(Variant {
                preset: preset.name.clone(),
                format: *format,
                bytes: encode(&resized, *format)?,
                width,
                height,
            });
        }
    }
    Ok(out)
}

/// Decodes `original` oriented upright, as RGB or (when it has alpha) RGBA, with its longest
/// side at least `at_least` where the format can decode smaller (JPEG).
fn decode(original: &[u8], at_least: u32, limits: Limits) -> Result<DynamicImage, VariantError> {
    if original.starts_with(&[0xFF, 0xD8]) {
        return decode_jpeg(original, at_least);
    }
    let bad = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => VariantError::TooLarge,
        other => VariantError::Undecodable(other.to_string()),
    };
    let mut reader = ImageReader::new(std::io::Cursor::new(original))
        .with_guessed_format()
        .map_err(|e| VariantError::Undecodable(e.to_string()))?;
    let mut bounds = image::Limits::default();
    bounds.max_alloc = Some(limits.max_memory);
    reader.limits(bounds);
    let mut decoder = reader.into_decoder().map_err(bad)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    // Animated GIF and WebP: the first frame.
    let mut image = DynamicImage::from_decoder(decoder).map_err(bad)?;
    image.apply_orientation(orientation);
    // Converted in place when it is already 8-bit RGB(A): no second copy of a large image.
    Ok(if image.color().has_alpha() {
        DynamicImage::ImageRgba8(image.into_rgba8())
    } else {
        DynamicImage::ImageRgb8(image.into_rgb8())
    })
}

fn decode_jpeg(original: &[u8], at_least: u32) -> Result<DynamicImage, VariantError> {
    let bad = |e: jpeg_decoder::Error| VariantError::Undecodable(e.to_string());
    let mut decoder = jpeg_decoder::Decoder::new(original);
    decoder.read_info().map_err(bad)?;
    let info = decoder
        .info()
        .ok_or_else(|| VariantError::Undecodable("no JPEG header".into()))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let longest = w.max(h).max(1);
    // The decoder picks the smallest of 1/8, 2/8 ... 8/8 that is at least this.
    let want = at_least.clamp(1, longest);
    let (sw, sh) = (
        (u64::from(w) * u64::from(want) / u64::from(longest)).max(1) as u16,
        (u64::from(h) * u64::from(want) / u64::from(longest)).max(1) as u16,
    );
    let (w, h) = decoder.scale(sw, sh).map_err(bad)?;
    let pixels = decoder.decode().map_err(bad)?;
    let orientation = decoder
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let info = decoder
        .info()
        .ok_or_else(|| VariantError::Undecodable("no JPEG header".into()))?;
    let (w, h) = (u32::from(w), u32::from(h));
    let rgb: Vec<u8> = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        jpeg_decoder::PixelFormat::L16 => pixels
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        jpeg_decoder::PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|p| {
                let k = 255 - u16::from(p[3]);
                let channel = |c: u8| ((255 - u16::from(c)) * k / 255) as u8;
                [channel(p[0]), channel(p[1]), channel(p[2])]
            })
            .collect(),
    };
    let image = RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| VariantError::Undecodable("short JPEG pixel data".into()))?;
    let mut image = DynamicImage::ImageRgb8(image);
    image.apply_orientation(orientation);
    Ok(image)
}

/// `image` fit inside `longest` x `longest` (never enlarged), with Lanczos3.
fn resize(image: &DynamicImage, longest: u32) -> Result<DynamicImage, VariantError> {
    let (w, h) = (image.width(), image.height());
    let scale = f64::from(longest) / f64::from(w.max(h));
    if scale >= 1.0 {
        return Ok(image.clone());
    }
    let tw = ((f64::from(w) * scale).round() as u32).max(1);
    let th = ((f64::from(h) * scale).round() as u32).max(1);
    // Read where it lies: `decode` gives 8-bit RGB or RGBA.
    let (pixel, bytes) = match image {
        DynamicImage::ImageRgba8(rgba) => (fr::PixelType::U8x4, rgba.as_raw().as_slice()),
        DynamicImage::ImageRgb8(rgb) => (fr::PixelType::U8x3, rgb.as_raw().as_slice()),
        _ => return Err(VariantError::Panicked),
    };
    let src = fr::images::ImageRef::new(w, h, bytes, pixel)
        .map_err(|e| VariantError::Undecodable(e.to_string()))?;
    let mut dst = fr::images::Image::new(tw, th, pixel);
    let options =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3));
    fr::Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| VariantError::Undecodable(e.to_string()))?;
    let raw = dst.into_vec();
    let resized = match pixel {
        fr::PixelType::U8x4 => RgbaImage::from_raw(tw, th, raw).map(DynamicImage::ImageRgba8),
        _ => RgbImage::from_raw(tw, th, raw).map(DynamicImage::ImageRgb8),
    };
    resized.ok_or(VariantError::Panicked)
}

fn encode(image: &DynamicImage, format: VariantFormat) -> Result<Vec<u8>, VariantError> {
    let (w, h) = image.dimensions_u16()?;
    match format {
        VariantFormat::Jpeg => {
            // JPEG has no alpha: transparent pixels are laid over white.
            let rgb = match image {
                DynamicImage::ImageRgba8(rgba) => flatten(rgba),
                other => other.to_rgb8(),
            };
            let mut out = Vec::new();
            jpeg_encoder::Encoder::new(&mut out, QUALITY)
                .encode(rgb.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| VariantError::Undecodable(e.to_string()))?;
            Ok(out)
        }
        VariantFormat::Webp => {
            let encoder = match image {
                DynamicImage::ImageRgba8(rgba) => {
                    webp::Encoder::from_rgba(rgba.as_raw(), rgba.width(), rgba.height())
                }
                DynamicImage::ImageRgb8(rgb) => {
                    webp::Encoder::from_rgb(rgb.as_raw(), rgb.width(), rgb.height())
                }
                _ => return Err(VariantError::Panicked),
            };
            Ok(encoder.encode(f32::from(QUALITY)).to_vec())
        }
    }
}

trait Dimensions16 {
    fn dimensions_u16(&self) -> Result<(u16, u16), VariantError>;
}

impl Dimensions16 for DynamicImage {
    fn dimensions_u16(&self) -> Result<(u16, u16), VariantError> {
        match (u16::try_from(self.width()), u16::try_from(self.height())) {
            (Ok(w), Ok(h)) => Ok((w, h)),
            _ => Err(VariantError::TooLarge),
        }
    }
}

fn flatten(rgba: &RgbaImage) -> RgbImage {
    let mut rgb = RgbImage::new(rgba.width(), rgba.height());
    for (out, px) in rgb.pixels_mut().zip(rgba.pixels()) {
        let a = u16::from(px[3]);
        for c in 0..3 {
            out[c] = ((u16::from(px[c]) * a + 255 * (255 - a)) / 255) as u8;
        }
    }
    rgb
}

#[cfg(test)]
mod tests;
