//! Who may write what: the checks the v1 write endpoints and the legacy upload make before
//! they act, and minting upload links. Everything passes while access control is off.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{UploadError, UploadService, UploadState};
use crate::auth::{AuthError, Caller, LinkClaims, MAX_LINK_SECS};
use crate::domain::ImageId;

/// What a caller wants to do to an existing upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send its bytes and confirm it: sign parts, confirm.
    Finish,
    /// Abort or delete it.
    Remove,
}

/// A minted upload link.
#[derive(Debug, Clone)]
pub struct UploadLink {
    pub token: String,
    pub claims: LinkClaims,
}

impl UploadService {
    /// May `caller` start an upload under `image_id` of `size` bytes (unknown for a
    /// streamed upload)? Returns the link it is made with, one of whose uses is now taken:
    /// `issue` and `tus_create` keep it, and give it back if they fail; a caller that
    /// records the upload otherwise (the legacy upload's form) does so through
    /// `keeping_link`.
    pub async fn authorize_new(
        &self,
        caller: &Caller,
        image_id: &ImageId,
        size: Option<u64>,
    ) -> Result<Option<Uuid>, UploadError> {
        self.access.allow_upload(caller, image_id.as_str(), size)?;
        let Caller::Link(claims) = caller else {
            return Ok(None);
        };
        if let Some(max) = claims.max_uploads
            && !self.db.reserve_link_use(claims.link_id, max).await?
        {
            return Err(AuthError::Exhausted.into());
        }
        Ok(Some(claims.link_id))
    }

    /// May `caller` do `action` to the existing upload `id`? A key may do anything; an
    /// upload link may finish (sign parts, confirm) only the uploads it made, and abort only
    /// those of them still pending.
    pub async fn authorize_existing(
        &self,
        caller: &Caller,
        id: Uuid,
        action: Action,
    ) -> Result<(), UploadError> {
        if !self.access.enabled() {
            return Ok(());
        }
        let row = self.row(id).await?;
        self.access.allow_upload(caller, &row.image_id, None)?;
        let Caller::Link(claims) = caller else {
            return Ok(());
        };
        if row.link_id != Some(claims.link_id) {
            return Err(AuthError::OtherUpload.into());
        }
        match (action, row.state) {
            (Action::Finish, _) | (Action::Remove, UploadState::Pending) => Ok(()),
            (
                Action::Remove,
                UploadState::Completed
                | UploadState::Failed
                | UploadState::Expired
                | UploadState::Aborted
                | UploadState::Deleted,
            ) => Err(AuthError::LinkCannotDelete.into()),
        }
    }

    /// Awaits `recording`, the recording of an upload made with `link_id`, and gives the
    /// link's use back if it fails.
    pub async fn keeping_link<T>(
        &self,
        link_id: Option<Uuid>,
        recording: impl Future<Output = Result<T, UploadError>>,
    ) -> Result<T, UploadError> {
        let recorded = recording.await;
        if recorded.is_err() {
            self.release_link(link_id).await;
        }
        recorded
    }

    /// Gives back the use of `link_id` that `authorize_new` took, for an upload that will
    /// not be recorded. A failure is only logged: the link is then stricter, never looser.
    async fn release_link(&self, link_id: Option<Uuid>) {
        if let Some(link_id) = link_id
            && let Err(err) = self.db.release_link_use(link_id).await
        {
            tracing::warn!(%link_id, error = %err, "could not give back an upload link's use");
        }
    }

    /// The largest streamed upload `caller` may send.
    pub fn streamed_limit(&self, caller: &Caller) -> u64 {
        match caller {
            Caller::Link(LinkClaims {
                max_size: Some(max),
                ..
            }) => (*max).min(self.config.limits.max_file_size),
            _ => self.config.limits.max_file_size,
        }
    }

    /// A link for browsers: uploads under `image_id` for `expires_in` seconds, at most
    /// `max_uploads` of them and `max_size` bytes each when given. Key holders only.
    pub fn mint_link(
        &self,
        caller: &Caller,
        image_id: &ImageId,
        expires_in: i64,
        max_uploads: Option<u32>,
        max_size: Option<u64>,
    ) -> Result<UploadLink, UploadError> {
        self.access.require_key(caller)?;
        if !(1..=MAX_LINK_SECS).contains(&expires_in) {
            return Err(UploadError::InvalidLink(format!(
                "expires_in must be 1 to {MAX_LINK_SECS} seconds"
            )));
        }
        if max_uploads == Some(0) || max_size == Some(0) {
            return Err(UploadError::InvalidLink(
                "max_uploads and max_size must be at least 1".to_owned(),
            ));
        }
        let claims = LinkClaims {
            link_id: Uuid::now_v7(),
            image_id: image_id.to_string(),
            expires_at: OffsetDateTime::now_utc().unix_timestamp() + expires_in,
            max_uploads,
            max_size,
        };
        let token = self.access.mint(&claims)?;
        tracing::info!(image_id = %claims.image_id, link_id = %claims.link_id, expires_in, "upload link minted");
        Ok(UploadLink { token, claims })
    }
}
