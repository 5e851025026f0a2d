//! `/api/v1/admin`: the operators' API behind the console (`/admin`). Every operation
//! needs an admin key (`ADMIN_KEYS`), checked by `auth::authenticate` before anything
//! else; every action is recorded in the audit log with a fingerprint of that key.

use std::collections::BTreeMap;

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::uploads::parse_upload_id;
use super::{AdminKey, ApiError, ApiTags};
use crate::auth::Operator;
use crate::domain::ImageId;
use crate::problem::Problem;
use crate::uploads::{UploadFilter, UploadService, UploadState};

pub use upload_broker_types::{
    AdminStats, AdminUploadList, AuditEntry, AuditList, LastDay, ReverifiedUpload, ReverifyResult,
    StateStats,
};

/// Rows a page holds unless `limit` says otherwise, and at most.
const DEFAULT_PAGE: u64 = 50;

pub struct AdminApi {
    uploads: UploadService,
}

impl AdminApi {
    pub fn new(uploads: UploadService) -> Self {
        Self { uploads }
    }
}

#[derive(ApiResponse)]
enum SearchResponse {
    /// Uploads in every state, newest first.
    #[oai(status = 200)]
    Ok(Json<AdminUploadList>),
}

#[derive(ApiResponse)]
enum StatsResponse {
    /// Each state's uploads and bytes, and the last 24 hours.
    #[oai(status = 200)]
    Ok(Json<AdminStats>),
}

#[derive(ApiResponse)]
enum ReverifyResponse {
    /// The record, and what checking its object again found. Nothing was changed.
    #[oai(status = 200)]
    Ok(Json<ReverifiedUpload>),
}

#[derive(ApiResponse)]
enum DeletedResponse {
    /// Deleted (or aborted, if it was pending), as `DELETE /api/v1/uploads/{upload_id}`.
    #[oai(status = 204)]
    Deleted,
}

#[derive(ApiResponse)]
enum RegenerateResponse {
    /// Its variants job is due now; `variants_state` is `pending` until it is done.
    #[oai(status = 202)]
    Accepted,
}

#[derive(ApiResponse)]
enum AuditResponse {
    /// Operator actions, newest first.
    #[oai(status = 200)]
    Ok(Json<AuditList>),
}

/// An RFC 3339 time from a query parameter (given empty, it is not one).
fn parse_time(raw: Option<&str>, name: &str) -> Result<Option<OffsetDateTime>, ApiError> {
    raw.map(|r| {
        OffsetDateTime::parse(r, &Rfc3339).map_err(|_| {
            Problem::bad_request(
                "invalid_date",
                format!("{name} must be an RFC 3339 time, like 2026-12-04T18:00:00Z"),
            )
            .into()
        })
    })
    .transpose()
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminApi {
    /// Search uploads
    ///
    /// Every state, newest first (by creation), filtered by any of `image_id`, `state`,
    /// `sha256` (the declared `checksum_sha256`, base64 as declared) and a creation time
    /// range (`since` inclusive, `until` exclusive); paginated with `limit` and `cursor`.
    #[oai(
        path = "/api/v1/admin/uploads",
        method = "get",
        operation_id = "admin_search_uploads"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn search(
        &self,
        _auth: AdminKey,
        image_id: Query<Option<String>>,
        /// `pending`, `completed`, `failed`, `expired`, `aborted` or `deleted`.
        state: Query<Option<String>>,
        sha256: Query<Option<String>>,
        /// RFC 3339.
        since: Query<Option<String>>,
        /// RFC 3339.
        until: Query<Option<String>>,
        /// Page size (1-200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<SearchResponse, ApiError> {
        let image_id = image_id
            .0
            .map(|i| ImageId::parse(&i).map(|id| id.as_str().to_owned()))
            .transpose()?;
        let state = state
            .0
            .map(|s| {
                UploadState::parse(&s).ok_or_else(|| {
                    ApiError::from(Problem::bad_request(
                        "invalid_state",
                        "state must be pending, completed, failed, expired, aborted or deleted",
                    ))
                })
            })
            .transpose()?;
        let filter = UploadFilter {
            image_id,
            state,
            sha256: sha256.0.filter(|s| !s.is_empty()),
            since: parse_time(since.0.as_deref(), "since")?,
            until: parse_time(until.0.as_deref(), "until")?,
        };
        let cursor = cursor.0.as_deref().filter(|c| !c.is_empty());
        let page = self
            .uploads
            .search(&filter, limit.0.unwrap_or(DEFAULT_PAGE), cursor)
            .await?;
        Ok(SearchResponse::Ok(Json(AdminUploadList {
            uploads: page.uploads.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        })))
    }

    /// Stats
    ///
    /// Each state's uploads and bytes, and the completions and failures of the last 24
    /// hours, from counters the service keeps with every change (never a count of the
    /// table).
    #[oai(
        path = "/api/v1/admin/stats",
        method = "get",
        operation_id = "admin_stats"
    )]
    async fn stats(&self, _auth: AdminKey) -> Result<StatsResponse, ApiError> {
        let stats = self.uploads.stats().await?;
        let mut states: BTreeMap<String, StateStats> = [
            UploadState::Pending,
            UploadState::Completed,
            UploadState::Failed,
            UploadState::Expired,
            UploadState::Aborted,
            UploadState::Deleted,
        ]
        .into_iter()
        .map(|s| (s.to_string(), StateStats { count: 0, bytes: 0 }))
        .collect();
        for (state, count, bytes) in stats.states {
            states.insert(state.to_string(), StateStats { count, bytes });
        }
        Ok(StatsResponse::Ok(Json(AdminStats {
            states,
            last_24h: LastDay {
                completed: stats.completed_24h,
                failed: stats.failed_24h,
                bytes: stats.bytes_24h,
            },
        })))
    }

    /// Check an upload's object again
    ///
    /// Runs confirm's checks on the stored object again and reports the result; the
    /// upload's state is not changed and nothing is deleted.
    #[oai(
        path = "/api/v1/admin/uploads/:upload_id/reverify",
        method = "post",
        operation_id = "admin_reverify_upload"
    )]
    async fn reverify(
        &self,
        _auth: AdminKey,
        operator: Data<&Operator>,
        upload_id: Path<String>,
    ) -> Result<ReverifyResponse, ApiError> {
        let id = parse_upload_id::<ApiError>(&upload_id)?;
        let (upload, found) = self.uploads.reverify(&operator, id).await?;
        Ok(ReverifyResponse::Ok(Json(ReverifiedUpload {
            upload: upload.into(),
            reverify: ReverifyResult {
                ok: found.is_none(),
                code: found.map(str::to_owned),
            },
        })))
    }

    /// Delete an upload
    ///
    /// As `DELETE /api/v1/uploads/{upload_id}`, recorded in the audit log.
    #[oai(
        path = "/api/v1/admin/uploads/:upload_id",
        method = "delete",
        operation_id = "admin_delete_upload"
    )]
    async fn delete(
        &self,
        _auth: AdminKey,
        operator: Data<&Operator>,
        upload_id: Path<String>,
    ) -> Result<DeletedResponse, ApiError> {
        let id = parse_upload_id::<ApiError>(&upload_id)?;
        self.uploads.delete_as(&operator, id).await?;
        Ok(DeletedResponse::Deleted)
    }

    /// Make an upload's variants again
    #[oai(
        path = "/api/v1/admin/uploads/:upload_id/variants",
        method = "post",
        operation_id = "admin_regenerate_variants"
    )]
    async fn regenerate_variants(
        &self,
        _auth: AdminKey,
        operator: Data<&Operator>,
        upload_id: Path<String>,
    ) -> Result<RegenerateResponse, ApiError> {
        let id = parse_upload_id::<ApiError>(&upload_id)?;
        self.uploads.regenerate_variants(&operator, id).await?;
        Ok(RegenerateResponse::Accepted)
    }

    /// The audit log
    ///
    /// Every operator action, newest first: when, a fingerprint of the admin key, what,
    /// and on what.
    #[oai(
        path = "/api/v1/admin/audit",
        method = "get",
        operation_id = "admin_audit"
    )]
    async fn audit(
        &self,
        _auth: AdminKey,
        /// Page size (1-200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<AuditResponse, ApiError> {
        let cursor = cursor.0.as_deref().filter(|c| !c.is_empty());
        let page = self
            .uploads
            .audit_log(limit.0.unwrap_or(DEFAULT_PAGE), cursor)
            .await?;
        Ok(AuditResponse::Ok(Json(AuditList {
            entries: page
                .entries
                .into_iter()
                .map(|e| AuditEntry {
                    at: e.at,
                    actor: e.actor,
                    action: e.action,
                    target: e.target,
                })
                .collect(),
            next_cursor: page.next_cursor,
        })))
    }
}
