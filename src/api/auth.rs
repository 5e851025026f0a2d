//! Authentication, first of all on the routes the route table marks: the credential is
//! read and checked before any input is parsed, so a caller without a valid one learns
//! nothing about its input (401 before 400). The caller it finds travels with the request
//! for the handler, which authorizes what it asks for once the input is parsed.

use std::sync::Arc;

use poem::{Endpoint, IntoResponse, Request, Response};

use super::routes::{self, Auth, Family};
use crate::auth::{Access, AuthError, Caller};
use crate::uploads::UploadError;

pub async fn authenticate<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let route = routes::route_of_request(&req);
    let needed = route
        .and_then(|r| r.operation(req.method().as_str()))
        .map_or(Auth::Open, |op| op.auth);
    if let (Some(route), Some(access)) = (route, req.data::<Arc<Access>>()) {
        let found = match needed {
            Auth::Open => Ok(None),
            // The seed's upload also takes a link's token as `?token=`, for plain HTML forms.
            Auth::Caller => identify(
                access,
                credential(&req, route.family == Family::Legacy).as_deref(),
            )
            .map(Some),
            Auth::Admin => match access.admin(super::bearer_token(&req).as_deref()) {
                Ok(operator) => {
                    req.set_data(operator);
                    Ok(None)
                }
                Err(err) => Err(err),
            },
            Auth::StorageEvents => access
                .storage_events(super::bearer_token(&req).as_deref())
                .map(|()| None),
        };
        match found {
            Ok(Some(caller)) => req.set_data(caller),
            Ok(None) => {}
            Err(err) => {
                let problem = UploadError::from(err).problem();
                return Ok(super::error::render(route.error_style(), &problem));
            }
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// The caller behind `token`; with access control on, someone must be named.
fn identify(access: &Access, token: Option<&str>) -> Result<Caller, AuthError> {
    match access.caller(token)? {
        Caller::Anonymous if access.enabled() => Err(AuthError::Missing),
        caller => Ok(caller),
    }
}

/// The credential a request carries: an `Authorization: Bearer` token, or (where
/// `from_query`) a `token` query parameter.
pub fn credential(req: &Request, from_query: bool) -> Option<String> {
    super::bearer_token(req).or_else(|| {
        let query = req.uri().query().filter(|_| from_query)?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "token")
            .map(|(_, value)| value.into_owned())
    })
}
