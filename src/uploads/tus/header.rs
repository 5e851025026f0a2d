//! What tus's request headers say, parsed (pure): `Upload-Metadata`, `Upload-Checksum`,
//! and the `Upload-Expires` date the answers carry.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

/// Why a tus header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("Upload-Metadata must be comma-separated pairs of a key and its base64 value: {0}")]
    Metadata(&'static str),
    #[error("Upload-Checksum must be an algorithm and a base64 digest: {0}")]
    Checksum(&'static str),
    #[error("Upload-Checksum's algorithm is not supported; the algorithms are sha1 and sha256")]
    Algorithm,
}

/// `Upload-Metadata`: `key base64,key base64,key`. Keys are unique, without spaces or
/// commas; a key may come without a value. Values must be UTF-8 once decoded.
pub fn parse_metadata(raw: &str) -> Result<BTreeMap<String, String>, HeaderError> {
    let mut pairs = BTreeMap::new();
    for pair in raw.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (key, value) = match pair.split_once(' ') {
            Some((key, value)) => (key, value.trim()),
            None => (pair, ""),
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(HeaderError::Metadata(
                "a key is empty or not printable ASCII",
            ));
        }
        let decoded = BASE64
            .decode(value)
            .map_err(|_| HeaderError::Metadata("a value is not base64"))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| HeaderError::Metadata("a value is not UTF-8"))?;
        if pairs.insert(key.to_owned(), text).is_some() {
            return Err(HeaderError::Metadata("a key is given twice"));
        }
    }
    Ok(pairs)
}

/// `Upload-Metadata` for a HEAD's answer.
pub fn format_metadata<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .into_iter()
        .map(|(key, value)| {
            if value.is_empty() {
                key.to_owned()
            } else {
                format!("{key} {}", BASE64.encode(value))
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The algorithms of the checksum extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
}

/// `Tus-Checksum-Algorithm`.
pub const ALGORITHMS: &str = "sha1,sha256";

/// `Upload-Checksum`: the digest one PATCH's bytes must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkChecksum {
    algorithm: Algorithm,
    digest: Vec<u8>,
}

impl ChunkChecksum {
    pub fn parse(raw: &str) -> Result<Self, HeaderError> {
        let (name, value) = raw
            .trim()
            .split_once(' ')
            .ok_or(HeaderError::Checksum("no space between them"))?;
        let (algorithm, len) = match name.to_ascii_lowercase().as_str() {
            "sha1" => (Algorithm::Sha1, 20),
            "sha256" => (Algorithm::Sha256, 32),
            _ => return Err(HeaderError::Algorithm),
        };
        let digest = BASE64
            .decode(value.trim())
            .map_err(|_| HeaderError::Checksum("the digest is not base64"))?;
        if digest.len() != len {
            return Err(HeaderError::Checksum("the digest has the wrong length"));
        }
        Ok(Self { algorithm, digest })
    }

    pub fn hasher(&self) -> ChunkHasher {
        match self.algorithm {
            Algorithm::Sha1 => ChunkHasher::Sha1(Sha1::new()),
            Algorithm::Sha256 => ChunkHasher::Sha256(Sha256::new()),
        }
    }

    /// Whether the bytes `hasher` saw are the ones this checksum names.
    pub fn matches(&self, hasher: ChunkHasher) -> bool {
        let digest: Vec<u8> = match hasher {
            ChunkHasher::Sha1(h) => h.finalize().to_vec(),
            ChunkHasher::Sha256(h) => h.finalize().to_vec(),
        };
        digest == self.digest
    }
}

/// A running digest of one PATCH's bytes.
pub enum ChunkHasher {
    Sha1(Sha1),
    Sha256(Sha256),
}

impl ChunkHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            ChunkHasher::Sha1(h) => h.update(bytes),
            ChunkHasher::Sha256(h) => h.update(bytes),
        }
    }
}

/// `Upload-Expires`: an HTTP date (`Wed, 25 Jun 2025 16:00:00 GMT`).
pub fn http_date(at: OffsetDateTime) -> String {
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_pairs_are_decoded_and_checked() {
        let parsed =
            parse_metadata("filename cGhvdG8ucG5n,image_id YWxidW0=, is_confidential").unwrap();
        assert_eq!(parsed["filename"], "photo.png");
        assert_eq!(parsed["image_id"], "album");
        assert_eq!(parsed["is_confidential"], "");
        assert_eq!(parse_metadata("").unwrap().len(), 0);
        for bad in ["a !!!", "a YQ==,a YQ==", "a /w==", "k\u{e9}y YQ=="] {
            assert!(parse_metadata(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_round_trips() {
        let text = format_metadata([("filename", "a b.png"), ("flag", "")]);
        assert_eq!(text, "filename YSBiLnBuZw==,flag");
        let back = parse_metadata(&text).unwrap();
        assert_eq!(back["filename"], "a b.png");
        assert_eq!(back["flag"], "");
    }

    #[test]
    fn checksums_name_an_algorithm_and_a_digest_of_its_length() {
        let sha1 = ChunkChecksum::parse("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap();
        let mut hasher = sha1.hasher();
        hasher.update(b"hello world");
        assert!(sha1.matches(hasher));
        let mut other = sha1.hasher();
        other.update(b"hello there");
        assert!(!sha1.matches(other));
        let sha256 =
            ChunkChecksum::parse("SHA256 uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=").unwrap();
        let mut hasher = sha256.hasher();
        hasher.update(b"hello world");
        assert!(sha256.matches(hasher));
        assert_eq!(
            ChunkChecksum::parse("md5 XrY7u+Ae7tCTyyK7j1rNww=="),
            Err(HeaderError::Algorithm)
        );
        assert!(ChunkChecksum::parse("sha1 YQ==").is_err());
        assert!(ChunkChecksum::parse("sha1").is_err());
    }

    #[test]
    fn expiry_is_an_http_date() {
        let at = OffsetDateTime::from_unix_timestamp(1_750_867_200).unwrap();
        assert_eq!(http_date(at), "Wed, 25 Jun 2025 16:00:00 GMT");
    }
}
