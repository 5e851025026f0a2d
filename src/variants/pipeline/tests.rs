use super::*;

const LIMITS: Limits = Limits {
    max_pixels: 50_000_000,
    max_memory: 512 * 1024 * 1024,
};

fn presets() -> Vec<Preset> {
    vec![
        Preset {
            name: "thumb".into(),
            longest: 64,
        },
        Preset {
            name: "display".into(),
            longest: 1280,
        },
    ]
}

const BOTH: [VariantFormat; 2] = [VariantFormat::Webp, VariantFormat::Jpeg];

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])
    })
}

fn png(image: &DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

/// A JPEG of `image` with an EXIF block that says `orientation` and carries a GPS tag.
fn jpeg_with_exif(image: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut exif = b"Exif\0\0II*\0\x08\0\0\0".to_vec();
    // Two entries: Orientation (0x0112, SHORT) and GPSInfo (0x8825, LONG offset).
    exif.extend_from_slice(&2u16.to_le_bytes());
    exif.extend_from_slice(&0x0112u16.to_le_bytes());
    exif.extend_from_slice(&3u16.to_le_bytes());
    exif.extend_from_slice(&1u32.to_le_bytes());
    exif.extend_from_slice(&u32::from(orientation).to_le_bytes());
    exif.extend_from_slice(&0x8825u16.to_le_bytes());
    exif.extend_from_slice(&4u16.to_le_bytes());
    exif.extend_from_slice(&1u32.to_le_bytes());
    exif.extend_from_slice(&0u32.to_le_bytes());
    exif.extend_from_slice(&0u32.to_le_bytes());
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
    encoder.add_app_segment(1, exif).expect("app1");
    encoder
        .encode(
            image.as_raw(),
            image.width() as u16,
            image.height() as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("jpeg");
    out
}

fn dimensions(bytes: &[u8]) -> (u32, u32) {
    let decoded = image::load_from_memory(bytes).expect("a variant decodes");
    (decoded.width(), decoded.height())
}

#[test]
fn presets_fit_inside_and_never_enlarge() {
    let original = png(&DynamicImage::ImageRgb8(gradient(400, 300)));
    let made = make(&original, &presets(), &BOTH, LIMITS).expect("variants");
    assert_eq!(made.len(), 4);
    for variant in &made {
        let expected = if variant.preset == "thumb" {
            (64, 48)
        } else {
            (400, 300)
        };
        assert_eq!(
            (variant.width, variant.height),
            expected,
            "{}",
            variant.preset
        );
        assert_eq!(dimensions(&variant.bytes), expected);
    }
}

#[test]
fn the_exif_orientation_is_applied_and_no_metadata_is_kept() {
    // 200 x 100, orientation 6: shown rotated 90 degrees clockwise, 100 x 200.
    let original = jpeg_with_exif(&gradient(200, 100), 6);
    assert!(original.windows(4).any(|w| w == b"Exif"));
    let made = make(&original, &presets(), &BOTH, LIMITS).expect("variants");
    for variant in &made {
        let expected = if variant.preset == "thumb" {
            (32, 64)
        } else {
            (100, 200)
        };
        assert_eq!((variant.width, variant.height), expected);
        assert_eq!(dimensions(&variant.bytes), expected);
        assert!(!variant.bytes.windows(4).any(|w| w == b"Exif"), "no EXIF");
    }
}

#[test]
fn transparency_stays_in_webp_and_is_laid_on_white_in_jpeg() {
    let clear = RgbaImage::from_pixel(80, 80, image::Rgba([0, 0, 0, 0]));
    let original = png(&DynamicImage::ImageRgba8(clear));
    let made = make(&original, &presets()[..1], &BOTH, LIMITS).expect("variants");
    let webp = image::load_from_memory(&made[0].bytes).expect("webp");
    assert!(webp.color().has_alpha());
    let jpeg = image::load_from_memory(&made[1].bytes)
        .expect("jpeg")
        .to_rgb8();
    assert!(
        jpeg.pixels()
            .all(|p| p[0] > 240 && p[1] > 240 && p[2] > 240)
    );
}

#[test]
fn a_bomb_is_refused_before_decoding() {
    // A PNG header declaring 20000 x 20000 (400 MP) in a few bytes.
    let mut bomb = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    bomb.extend_from_slice(&20_000u32.to_be_bytes());
    bomb.extend_from_slice(&20_000u32.to_be_bytes());
    bomb.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = crc32fast::hash(&bomb[12..]);
    bomb.extend_from_slice(&crc.to_be_bytes());
    assert_eq!(
        make(&bomb, &presets(), &BOTH, LIMITS).map(|_| ()),
        Err(VariantError::TooLarge)
    );
}

#[test]
fn garbage_is_an_error_never_a_panic() {
    let mut broken = png(&DynamicImage::ImageRgb8(gradient(50, 50)));
    broken.truncate(60);
    for bytes in [
        &broken[..],
        b"\xFF\xD8\xFF\xE0 not a jpeg",
        b"nothing at all",
    ] {
        let result = make(bytes, &presets(), &BOTH, LIMITS);
        assert!(
            matches!(result, Err(VariantError::Undecodable(_))),
            "{result:?}"
        );
    }
}

#[test]
fn a_large_jpeg_is_decoded_at_a_reduced_scale() {
    let original = jpeg_with_exif(&gradient(2400, 1600), 1);
    let decoded = decode(&original, 128, LIMITS).expect("decoded");
    // 1/8 scale: 300 x 200, at least the 128 asked for.
    assert_eq!((decoded.width(), decoded.height()), (300, 200));
}

/// The variant's mean colour.
fn mean_rgb(bytes: &[u8]) -> [u8; 3] {
    let rgb = image::load_from_memory(bytes).expect("decodes").to_rgb8();
    let n = u64::from(rgb.width() * rgb.height());
    let mut sum = [0u64; 3];
    for p in rgb.pixels() {
        for c in 0..3 {
            sum[c] += u64::from(p[c]);
        }
    }
    sum.map(|s| (s / n) as u8)
}

fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 12)
}

#[test]
fn an_animated_gif_gives_its_first_frame() {
    use image::codecs::gif::GifEncoder;
    use image::{Delay, Frame};
    let frame = |rgba: [u8; 4]| {
        Frame::from_parts(
            RgbaImage::from_pixel(40, 30, image::Rgba(rgba)),
            0,
            0,
            Delay::from_numer_denom_ms(100, 1),
        )
    };
    let mut gif = Vec::new();
    GifEncoder::new(&mut gif)
        .encode_frames([frame([255, 0, 0, 255]), frame([0, 0, 255, 255])])
        .expect("gif");
    let made = make(&gif, &presets()[..1], &[VariantFormat::Jpeg], LIMITS).expect("variants");
    assert_eq!((made[0].width, made[0].height), (40, 30));
    assert!(
        close(mean_rgb(&made[0].bytes), [255, 0, 0]),
        "the red first frame"
    );
}

#[test]
fn a_16_bit_tiff_converts_to_the_same_colours() {
    let deep =
        image::ImageBuffer::<image::Rgb<u16>, _>::from_pixel(64, 48, image::Rgb([65535, 32768, 0]));
    let mut tiff = std::io::Cursor::new(Vec::new());
    DynamicImage::ImageRgb16(deep)
        .write_to(&mut tiff, image::ImageFormat::Tiff)
        .expect("tiff");
    let made = make(tiff.get_ref(), &presets()[..1], &BOTH, LIMITS).expect("variants");
    for variant in &made {
        assert_eq!((variant.width, variant.height), (64, 48));
        assert!(
            close(mean_rgb(&variant.bytes), [255, 128, 0]),
            "{:?}",
            variant.format
        );
    }
}

#[test]
fn a_cmyk_tiff_converts_or_fails_with_a_code_never_a_panic() {
    // Cyan at full ink: shown as (0, 255, 255).
    let cmyk: Vec<u8> = std::iter::repeat_n([255u8, 0, 0, 0], 32 * 32)
        .flatten()
        .collect();
    let mut tiff = std::io::Cursor::new(Vec::new());
    tiff::encoder::TiffEncoder::new(&mut tiff)
        .expect("encoder")
        .write_image::<tiff::encoder::colortype::CMYK8>(32, 32, &cmyk)
        .expect("tiff");
    match make(
        tiff.get_ref(),
        &presets()[..1],
        &[VariantFormat::Jpeg],
        LIMITS,
    ) {
        Ok(made) => assert!(close(mean_rgb(&made[0].bytes), [0, 255, 255])),
        Err(err) => assert_eq!(err.code(), "invalid_image", "{err}"),
    }
}
