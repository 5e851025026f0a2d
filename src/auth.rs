//! Access control, off unless `API_KEYS` is set. Then the v1 write endpoints need
//! `Authorization: Bearer <key>`, or a link token a key holder minted: signed with
//! `SECRET_KEY`, bound to one image_id, with an expiry and optional limits on how many
//! uploads and how many bytes each. Browsers get link tokens, never keys.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::Secret;
use crate::crypto::{constant_time_eq, hmac_sha256};

/// Link tokens start with this, so they are never taken for keys.
const TOKEN_PREFIX: &str = "ubl1.";
/// The longest a link may live.
pub const MAX_LINK_SECS: i64 = 7 * 24 * 3600;

/// What a link token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaims {
    /// The link's id: uploads made with it are counted by it.
    #[serde(rename = "j")]
    pub link_id: Uuid,
    #[serde(rename = "i")]
    pub image_id: String,
    /// Unix seconds.
    #[serde(rename = "e")]
    pub expires_at: i64,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub max_uploads: Option<u32>,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Access control is off, or the caller sent no credentials.
    Anonymous,
    /// One of `API_KEYS`.
    Key,
    /// A valid, unexpired link token.
    Link(LinkClaims),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this endpoint needs an API key or an upload link: Authorization: Bearer <token>")]
    Missing,
    #[error("the API key or link token is not valid")]
    Invalid,
    #[error("the upload link has expired")]
    Expired,
    #[error("this endpoint needs an API key")]
    KeyRequired,
    #[error("the upload link is for another image_id")]
    OtherImage,
    #[error("the upload link did not make this upload")]
    OtherUpload,
    #[error("an upload link may only abort the pending uploads it made")]
    LinkCannotDelete,
    #[error("the upload link allows no more uploads")]
    Exhausted,
    #[error("the file is larger than the upload link allows")]
    TooLarge,
    #[error("links cannot be made: set SECRET_KEY")]
    NoSecret,
    #[error("this endpoint needs an admin key: Authorization: Bearer <key>")]
    AdminKeyRequired,
    #[error("the operators' endpoints are off: set ADMIN_KEYS")]
    AdminDisabled,
    #[error("this endpoint needs the storage events token: Authorization: Bearer <token>")]
    StorageTokenRequired,
    #[error("storage events are off: set STORAGE_EVENTS_TOKEN")]
    StorageEventsDisabled,
}

impl AuthError {
    pub fn code(self) -> &'static str {
        match self {
            AuthError::Missing => "unauthorized",
            AuthError::Invalid => "invalid_token",
            AuthError::Expired => "token_expired",
            AuthError::KeyRequired => "api_key_required",
            AuthError::OtherImage => "forbidden_image_id",
            AuthError::OtherUpload | AuthError::LinkCannotDelete => "forbidden_upload",
            AuthError::Exhausted => "link_exhausted",
            AuthError::TooLarge => "link_size_exceeded",
            AuthError::NoSecret => "links_unavailable",
            AuthError::AdminKeyRequired => "unauthorized",
            AuthError::AdminDisabled => "admin_disabled",
            AuthError::StorageTokenRequired => "unauthorized",
            AuthError::StorageEventsDisabled => "storage_events_disabled",
        }
    }

    /// 401 when the credentials are missing or bad, 403 when they do not cover this.
    pub fn is_unauthenticated(self) -> bool {
        matches!(
            self,
            AuthError::Missing
                | AuthError::Invalid
                | AuthError::Expired
                | AuthError::AdminKeyRequired
                | AuthError::StorageTokenRequired
        )
    }
}

#[derive(Clone)]
pub struct Access {
    keys: Vec<Secret>,
    secret: Option<Secret>,
    admin_keys: Vec<Secret>,
    /// `STORAGE_EVENTS_TOKEN`: what a store that sends event notifications presents.
    storage_events: Option<Secret>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// An operator, known by a fingerprint of the admin key they used: enough to tell keys
/// apart in the audit log, and nothing that gives the key away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub fingerprint: String,
}

impl Operator {
    fn of_key(key: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("upload-broker admin key:{key}").as_bytes());
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            fingerprint: format!("key-{hex}"),
        }
    }
}

impl Access {
    pub fn new(keys: Vec<Secret>, secret: Option<Secret>, admin_keys: Vec<Secret>) -> Self {
        Self {
            keys,
            secret,
            admin_keys,
            storage_events: None,
        }
    }

    /// The same, taking storage event notifications presented with `token`.
    pub fn with_storage_events(mut self, token: Option<Secret>) -> Self {
        self.storage_events = token;
        self
    }

    /// Whether `bearer` is `STORAGE_EVENTS_TOKEN` (compared in constant time).
    pub fn storage_events(&self, bearer: Option<&str>) -> Result<(), AuthError> {
        let Some(token) = &self.storage_events else {
            return Err(AuthError::StorageEventsDisabled);
        };
        let given = bearer.map(str::trim).unwrap_or_default();
        if !given.is_empty() && constant_time_eq(token.expose().as_bytes(), given.as_bytes()) {
            Ok(())
        } else {
            Err(AuthError::StorageTokenRequired)
        }
    }

    /// The operator behind `bearer`, if it is one of `ADMIN_KEYS`. An API key or a link
    /// token is not.
    pub fn admin(&self, bearer: Option<&str>) -> Result<Operator, AuthError> {
        if self.admin_keys.is_empty() {
            return Err(AuthError::AdminDisabled);
        }
        let token = bearer.map(str::trim).unwrap_or_default();
        // Every key is compared, so timing tells nothing about which one matched.
        let matched = self.admin_keys.iter().fold(false, |found, key| {
            constant_time_eq(key.expose().as_bytes(), token.as_bytes()) | found
        });
        if matched && !token.is_empty() {
            Ok(Operator::of_key(token))
        } else {
            Err(AuthError::AdminKeyRequired)
        }
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Who sent `bearer` (the token of an `Authorization: Bearer` header or a `token`
    /// query parameter).
    pub fn caller(&self, bearer: Option<&str>) -> Result<Caller, AuthError> {
        let Some(token) = bearer.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(Caller::Anonymous);
        };
        if !self.enabled() {
            return Ok(Caller::Anonymous);
        }
        if let Some(link) = token.strip_prefix(TOKEN_PREFIX) {
            return self.verify(link).map(Caller::Link);
        }
        // Every key is compared, so timing tells nothing about which one matched.
        let matched = self.keys.iter().fold(false, |found, key| {
            constant_time_eq(key.expose().as_bytes(), token.as_bytes()) | found
        });
        if matched {
            Ok(Caller::Key)
        } else {
            Err(AuthError::Invalid)
        }
    }

    /// May `caller` write under `image_id` (and, when `size` is known, that many bytes)?
    pub fn allow_upload(
        &self,
        caller: &Caller,
        image_id: &str,
        size: Option<u64>,
    ) -> Result<(), AuthError> {
        if !self.enabled() {
            return Ok(());
        }
        match caller {
            Caller::Anonymous => Err(AuthError::Missing),
            Caller::Key => Ok(()),
            Caller::Link(claims) if claims.image_id != image_id => Err(AuthError::OtherImage),
            Caller::Link(claims) => match (claims.max_size, size) {
                (Some(max), Some(size)) if size > max => Err(AuthError::TooLarge),
                _ => Ok(()),
            },
        }
    }

    /// Only key holders mint links.
    pub fn require_key(&self, caller: &Caller) -> Result<(), AuthError> {
        match caller {
            _ if !self.enabled() => Err(AuthError::KeyRequired),
            Caller::Key => Ok(()),
            Caller::Anonymous => Err(AuthError::Missing),
            Caller::Link(_) => Err(AuthError::KeyRequired),
        }
    }

    pub fn mint(&self, claims: &LinkClaims) -> Result<String, AuthError> {
        let secret = self.secret.as_ref().ok_or(AuthError::NoSecret)?;
        let payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|_| AuthError::Invalid)?);
        let mac = hmac_sha256(secret.expose().as_bytes(), payload.as_bytes());
        Ok(format!(
            "{TOKEN_PREFIX}{payload}.{}",
            URL_SAFE_NO_PAD.encode(mac)
        ))
    }

    fn verify(&self, link: &str) -> Result<LinkClaims, AuthError> {
        let secret = self.secret.as_ref().ok_or(AuthError::Invalid)?;
        let (payload, mac) = link.split_once('.').ok_or(AuthError::Invalid)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| AuthError::Invalid)?;
        let expected = hmac_sha256(secret.expose().as_bytes(), payload.as_bytes());
        if !constant_time_eq(&expected, &mac) {
            return Err(AuthError::Invalid);
        }
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| AuthError::Invalid)?;
        let claims: LinkClaims = serde_json::from_slice(&json).map_err(|_| AuthError::Invalid)?;
        if claims.expires_at <= OffsetDateTime::now_utc().unix_timestamp() {
            return Err(AuthError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access::new(
            vec![Secret::new("key-one"), Secret::new("key-two")],
            Some(Secret::new("a secret of the service")),
            vec![Secret::new("admin-key")],
        )
    }

    #[test]
    fn only_an_admin_key_is_one() {
        let access = access();
        let operator = access.admin(Some("admin-key")).expect("an admin");
        assert!(operator.fingerprint.starts_with("key-"));
        assert!(!operator.fingerprint.contains("admin-key"));
        assert_eq!(access.admin(Some("admin-key")), Ok(operator));
        for token in [
            None,
            Some(""),
            Some("key-one"),
            Some("admin-ke"),
            Some("admin-keyy"),
        ] {
            assert_eq!(
                access.admin(token),
                Err(AuthError::AdminKeyRequired),
                "{token:?}"
            );
        }
        let off = Access::new(Vec::new(), None, Vec::new());
        assert_eq!(off.admin(Some("admin-key")), Err(AuthError::AdminDisabled));
    }

    fn claims(expires_in: i64) -> LinkClaims {
        LinkClaims {
            link_id: Uuid::now_v7(),
            image_id: "cat".into(),
            expires_at: OffsetDateTime::now_utc().unix_timestamp() + expires_in,
            max_uploads: Some(2),
            max_size: Some(1000),
        }
    }

    #[test]
    fn keys_and_links_are_told_apart_and_checked() {
        let access = access();
        assert_eq!(access.caller(Some("key-two")), Ok(Caller::Key));
        assert_eq!(access.caller(Some("key-three")), Err(AuthError::Invalid));
        assert_eq!(access.caller(None), Ok(Caller::Anonymous));
        let link = claims(60);
        let token = access.mint(&link).expect("mint");
        assert_eq!(access.caller(Some(&token)), Ok(Caller::Link(link.clone())));

        let caller = Caller::Link(link);
        assert_eq!(access.allow_upload(&caller, "cat", Some(1000)), Ok(()));
        assert_eq!(
            access.allow_upload(&caller, "dog", Some(1)),
            Err(AuthError::OtherImage)
        );
        assert_eq!(
            access.allow_upload(&caller, "cat", Some(1001)),
            Err(AuthError::TooLarge)
        );
        assert_eq!(
            access.allow_upload(&Caller::Anonymous, "cat", None),
            Err(AuthError::Missing)
        );
        assert_eq!(access.require_key(&caller), Err(AuthError::KeyRequired));
    }

    #[test]
    fn altered_foreign_and_expired_links_are_refused() {
        let access = access();
        let token = access.mint(&claims(60)).expect("mint");
        // Any one character changed.
        for i in TOKEN_PREFIX.len()..token.len() {
            let mut altered = token.clone().into_bytes();
            altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).expect("ascii");
            assert!(access.caller(Some(&altered)).is_err(), "{altered}");
        }
        let foreign = Access::new(
            vec![Secret::new("k")],
            Some(Secret::new("another")),
            Vec::new(),
        );
        assert_eq!(
            access.caller(Some(&foreign.mint(&claims(60)).expect("mint"))),
            Err(AuthError::Invalid)
        );
        let expired = access.mint(&claims(-1)).expect("mint");
        assert_eq!(access.caller(Some(&expired)), Err(AuthError::Expired));
    }

    #[test]
    fn without_keys_everyone_may_upload_and_nobody_mints() {
        let open = Access::new(Vec::new(), None, Vec::new());
        assert_eq!(open.caller(Some("anything")), Ok(Caller::Anonymous));
        assert_eq!(open.allow_upload(&Caller::Anonymous, "cat", None), Ok(()));
        assert_eq!(
            open.require_key(&Caller::Anonymous),
            Err(AuthError::KeyRequired)
        );
    }
}
