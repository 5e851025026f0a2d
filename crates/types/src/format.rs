//! The image formats the service accepts, and why a client's input was refused.

/// Why a client's input was refused; each maps to one stable error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("image_id must be 1-100 characters of letters, digits, '_' or '-'")]
    InvalidImageId,
    #[error("this image_id is reserved for the service's own paths")]
    ReservedImageId,
    #[error("unsupported file type; allowed: png, jpg, jpeg, gif, webp, bmp, tiff")]
    UnsupportedType,
    #[error("the file name's extension does not match the content type")]
    ExtensionMismatch,
    #[error("filename is required")]
    MissingFilename,
    #[error("filename is longer than 255 characters")]
    FilenameTooLong,
    #[error("checksum_sha256 must be the base64 of a 32-byte SHA-256 digest")]
    InvalidChecksum,
    #[error("{0}")]
    InvalidMetadata(&'static str),
}

/// The image formats the service accepts (the seed's allow-list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Gif,
    Webp,
    Bmp,
    Tiff,
}

impl ImageFormat {
    pub const ALL: [ImageFormat; 6] = [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::Gif,
        ImageFormat::Webp,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
    ];

    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Gif => "image/gif",
            ImageFormat::Webp => "image/webp",
            ImageFormat::Bmp => "image/bmp",
            ImageFormat::Tiff => "image/tiff",
        }
    }

    /// The extension used in object keys.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Gif => "gif",
            ImageFormat::Webp => "webp",
            ImageFormat::Bmp => "bmp",
            ImageFormat::Tiff => "tiff",
        }
    }

    /// Accepts the canonical MIME types and the aliases browsers and tools send.
    pub fn from_mime(raw: &str) -> Result<Self, InputError> {
        let essence = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "image/png" => Ok(ImageFormat::Png),
            "image/jpeg" | "image/jpg" | "image/pjpeg" => Ok(ImageFormat::Jpeg),
            "image/gif" => Ok(ImageFormat::Gif),
            "image/webp" => Ok(ImageFormat::Webp),
            "image/bmp" | "image/x-bmp" | "image/x-ms-bmp" => Ok(ImageFormat::Bmp),
            "image/tiff" | "image/tif" => Ok(ImageFormat::Tiff),
            _ => Err(InputError::UnsupportedType),
        }
    }

    /// The seed's extension allow-list, any case.
    pub fn from_extension(ext: &str) -> Result<Self, InputError> {
        match ext.to_ascii_lowercase().as_str() {
            "png" => Ok(ImageFormat::Png),
            "jpg" | "jpeg" => Ok(ImageFormat::Jpeg),
            "gif" => Ok(ImageFormat::Gif),
            "webp" => Ok(ImageFormat::Webp),
            "bmp" => Ok(ImageFormat::Bmp),
            "tif" | "tiff" => Ok(ImageFormat::Tiff),
            _ => Err(InputError::UnsupportedType),
        }
    }

    /// Bytes from the end of a file that `is_whole` needs.
    pub const TAIL_BYTES: u64 = 12;

    /// Whether a file of `size` bytes, with these first and last bytes, is whole: a PNG must
    /// end with its IEND chunk (so a truncated file, or a ZIP or script riding after the
    /// image, is refused), a GIF with its trailer byte, and a WebP's RIFF header must state
    /// its real length. JPEG, BMP and TIFF are not checked this way: cameras append data
    /// after a JPEG's end marker, and BMP and TIFF writers differ too much.
    pub fn is_whole(self, head: &[u8], tail: &[u8], size: u64) -> bool {
        const PNG_IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];
        match self {
            ImageFormat::Png => tail.ends_with(&PNG_IEND),
            ImageFormat::Gif => tail.last() == Some(&0x3B),
            ImageFormat::Webp => head
                .get(4..8)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .is_some_and(|b| u64::from(u32::from_le_bytes(b)) + 8 == size),
            ImageFormat::Jpeg | ImageFormat::Bmp | ImageFormat::Tiff => true,
        }
    }

    /// Whether `is_whole` reads the file's last bytes (a PNG's IEND chunk, a GIF's
    /// trailer); the other formats are judged from their first bytes and size alone.
    pub fn needs_tail(self) -> bool {
        matches!(self, ImageFormat::Png | ImageFormat::Gif)
    }

    /// Identifies the format from an object's first bytes.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        match imagesize::image_type(head).ok()? {
            imagesize::ImageType::Png => Some(ImageFormat::Png),
            imagesize::ImageType::Jpeg => Some(ImageFormat::Jpeg),
            imagesize::ImageType::Gif => Some(ImageFormat::Gif),
            imagesize::ImageType::Webp => Some(ImageFormat::Webp),
            imagesize::ImageType::Bmp => Some(ImageFormat::Bmp),
            imagesize::ImageType::Tiff => Some(ImageFormat::Tiff),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_is_found_again_by_its_mime_type_and_extension() {
        for format in ImageFormat::ALL {
            assert_eq!(ImageFormat::from_mime(format.mime()), Ok(format));
            assert_eq!(ImageFormat::from_extension(format.extension()), Ok(format));
        }
        assert_eq!(ImageFormat::from_extension("TIF"), Ok(ImageFormat::Tiff));
        assert_eq!(
            ImageFormat::from_mime("image/svg+xml"),
            Err(InputError::UnsupportedType)
        );
    }

    #[test]
    fn formats_are_sniffed_from_their_magic_bytes() {
        assert_eq!(
            ImageFormat::sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(ImageFormat::Png)
        );
        assert_eq!(
            ImageFormat::sniff(b"GIF89a\x01\0\x01\0\x80\0\0\0"),
            Some(ImageFormat::Gif)
        );
        assert_eq!(ImageFormat::sniff(b"hello, world"), None);
    }
}
