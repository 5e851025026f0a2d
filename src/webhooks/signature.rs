//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`,
//! one entry per signing key, with the key taken from its `whsec_` form. Pure.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::crypto::hmac_sha256;

const PREFIX: &str = "whsec_";
/// Shortest and longest key, in bytes, that a `whsec_` secret may hold.
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// Bytes of a key the service makes for a registered endpoint.
const GENERATED_BYTES: usize = 32;

/// A signing key, decoded from its `whsec_` form. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// `whsec_` followed by the base64 of 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let encoded = text.strip_prefix(PREFIX).ok_or("must start with whsec_")?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| "must be whsec_ followed by base64")?;
        if !KEY_BYTES.contains(&key.len()) {
            return Err("must hold 24 to 64 bytes after whsec_");
        }
        Ok(Self(key))
    }

    /// A new random key and its `whsec_` form.
    pub fn generate() -> std::io::Result<(Self, String)> {
        let mut key = vec![0u8; GENERATED_BYTES];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        let text = format!("{PREFIX}{}", STANDARD.encode(&key));
        Ok((Self(key), text))
    }
}

/// The `webhook-signature` header of message `id` sent at `timestamp` (Unix seconds) with
/// `body`: one `v1,` entry per key, space-separated.
pub fn sign(id: &str, timestamp: i64, body: &[u8], keys: &[SigningKey]) -> String {
    let mut signed = Vec::with_capacity(id.len() + body.len() + 24);
    signed.extend_from_slice(id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    keys.iter()
        .map(|key| format!("v1,{}", STANDARD.encode(hmac_sha256(&key.0, &signed))))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specification_example() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, &[key]),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn each_key_signs() {
        let (a, _) = SigningKey::generate().unwrap();
        let (b, text) = SigningKey::generate().unwrap();
        assert_eq!(SigningKey::parse(&text).unwrap(), b);
        let header = sign("id", 1, b"{}", &[a.clone(), b.clone()]);
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            entries,
            [sign("id", 1, b"{}", &[a]), sign("id", 1, b"{}", &[b])]
        );
    }

    #[test]
    fn secrets_are_checked() {
        assert!(SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(SigningKey::parse("whsec_not base64!").is_err());
        // 16 bytes: too short.
        assert!(SigningKey::parse("whsec_AAAAAAAAAAAAAAAAAAAAAA==").is_err());
        assert!(format!("{:?}", SigningKey::generate().unwrap().0).contains(".."));
    }
}
