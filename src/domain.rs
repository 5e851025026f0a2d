//! Validated values at the edge: once one exists it is valid, and nothing re-checks it.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

pub use upload_broker_types::{ImageFormat, InputError};

/// The caller's grouping key: `^[A-Za-z0-9_-]{1,100}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageId(String);

/// Names of the service's own paths, and the embedded store's bucket: never a page, never
/// the image_id of a new upload or link (rows made before stay readable and deletable).
pub const RESERVED_IMAGE_IDS: [&str; 9] = [
    "health",
    "docs",
    "openapi.json",
    "metrics",
    "api",
    "upload",
    "static",
    "admin",
    "upload-broker",
];

impl ImageId {
    /// An image_id for a new upload or link: valid, and not reserved.
    pub fn parse_new(raw: &str) -> Result<Self, InputError> {
        let image_id = Self::parse(raw)?;
        if image_id.is_reserved() {
            return Err(InputError::ReservedImageId);
        }
        Ok(image_id)
    }

    pub fn is_reserved(&self) -> bool {
        RESERVED_IMAGE_IDS.contains(&self.0.as_str())
    }

    pub fn parse(raw: &str) -> Result<Self, InputError> {
        let ok = (1..=100).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InputError::InvalidImageId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The client's file name, cleaned for display and records: the last path component, no
/// control characters, at most 255 characters (what file systems allow; longer names are
/// refused, not cut). It never becomes part of an object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalFilename(String);

pub const MAX_FILENAME_CHARS: usize = 255;

impl OriginalFilename {
    pub fn clean(raw: &str) -> Result<Self, InputError> {
        let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
        let cleaned: String = base
            .chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
            .trim()
            .to_owned();
        if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
            return Err(InputError::MissingFilename);
        }
        if cleaned.chars().count() > MAX_FILENAME_CHARS {
            return Err(InputError::FilenameTooLong);
        }
        Ok(Self(cleaned))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text after the last dot, if there is one.
    pub fn extension(&self) -> Option<&str> {
        let (stem, ext) = self.0.rsplit_once('.')?;
        (!stem.is_empty() || !ext.is_empty()).then_some(ext)
    }

    /// The format the name claims, from the seed's extension allow-list.
    pub fn format(&self) -> Result<ImageFormat, InputError> {
        self.extension()
            .ok_or(InputError::UnsupportedType)
            .and_then(ImageFormat::from_extension)
    }
}

/// A SHA-256 digest as S3 wants it: base64 of the 32 raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha256Checksum(String);

impl Sha256Checksum {
    pub fn parse(raw: &str) -> Result<Self, InputError> {
        match BASE64.decode(raw.trim()) {
            Ok(bytes) if bytes.len() == 32 => Ok(Self(BASE64.encode(bytes))),
            _ => Err(InputError::InvalidChecksum),
        }
    }

    pub fn from_digest(digest: &[u8]) -> Self {
        Self(BASE64.encode(digest))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Client metadata: a flat string map, bounded like S3's user metadata (2 KiB).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

pub const MAX_METADATA_BYTES: usize = 2048;
pub const MAX_METADATA_KEYS: usize = 32;

impl Metadata {
    pub fn parse(map: BTreeMap<String, String>) -> Result<Self, InputError> {
        if map.len() > MAX_METADATA_KEYS {
            return Err(InputError::InvalidMetadata(
                "metadata has more than 32 keys",
            ));
        }
        let mut total = 0;
        for (key, value) in &map {
            let key_ok = (1..=128).contains(&key.len())
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !key_ok {
                return Err(InputError::InvalidMetadata(
                    "metadata keys are 1-128 letters, digits, '-', '_' or '.'",
                ));
            }
            if value.chars().any(char::is_control) {
                return Err(InputError::InvalidMetadata(
                    "metadata values cannot hold control characters",
                ));
            }
            total += key.len() + value.len();
        }
        if total > MAX_METADATA_BYTES {
            return Err(InputError::InvalidMetadata(
                "metadata is larger than 2048 bytes",
            ));
        }
        Ok(Self(map))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_inner(self) -> BTreeMap<String, String> {
        self.0
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Timestamps in the seed's form, `2025-10-26T10:30:00.000000` (UTC, microseconds).
pub fn seed_timestamp(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_id_accepts_the_contract_pattern_only() {
        assert!(ImageId::parse("user_123-A").is_ok());
        assert!(ImageId::parse(&"a".repeat(100)).is_ok());
        for bad in ["", "../etc", "a b", "ü", "a/b", "a.b"] {
            assert_eq!(
                ImageId::parse(bad),
                Err(InputError::InvalidImageId),
                "{bad:?}"
            );
        }
        assert!(ImageId::parse(&"a".repeat(101)).is_err());
    }

    #[test]
    fn filenames_are_cleaned_and_bounded() {
        let name = OriginalFilename::clean("C:\\photos\\..\\cat\u{0}.PNG").expect("clean");
        assert_eq!(name.as_str(), "cat.PNG");
        assert_eq!(name.format(), Ok(ImageFormat::Png));
        let longest = format!("{}.jpeg", "é".repeat(MAX_FILENAME_CHARS - 5));
        assert_eq!(
            OriginalFilename::clean(&longest)
                .expect("255 chars")
                .as_str(),
            longest
        );
        assert_eq!(
            OriginalFilename::clean(&format!("{}.jpeg", "x".repeat(10_000))),
            Err(InputError::FilenameTooLong)
        );
        assert!(OriginalFilename::clean("../").is_err());
        assert_eq!(
            OriginalFilename::clean("noext").expect("clean").format(),
            Err(InputError::UnsupportedType)
        );
        assert_eq!(
            OriginalFilename::clean("a.php.png")
                .expect("clean")
                .format(),
            Ok(ImageFormat::Png)
        );
    }

    #[test]
    fn checksum_must_be_a_sha256_digest() {
        let digest = [7u8; 32];
        let good = BASE64.encode(digest);
        assert_eq!(Sha256Checksum::parse(&good).expect("valid").as_str(), good);
        assert!(Sha256Checksum::parse("abc").is_err());
        assert!(Sha256Checksum::parse(&BASE64.encode([1u8; 16])).is_err());
    }

    #[test]
    fn seed_timestamps_have_microseconds_and_no_offset() {
        let at = time::macros::datetime!(2025-10-26 10:30:00.5 +02:00);
        assert_eq!(seed_timestamp(at), "2025-10-26T08:30:00.500000");
    }

    #[test]
    fn metadata_is_bounded() {
        let mut map = BTreeMap::new();
        map.insert("alt".to_owned(), "a cat".to_owned());
        assert!(Metadata::parse(map.clone()).is_ok());
        map.insert("big".to_owned(), "x".repeat(3000));
        assert!(Metadata::parse(map).is_err());
    }
}
