//! What can go wrong in the lifecycle, and the one classifier that turns each failure into
//! the problem a client sees. Internal detail is logged here and never sent.

use entity::UploadState;

use crate::auth::AuthError;
use crate::db::DbError;
use crate::domain::InputError;
use crate::problem::{Problem, RETRY_AFTER_SECS};
use crate::storage::StorageError;

/// Why an uploaded object was refused; each is a stable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    SizeMismatch,
    TypeMismatch,
    InvalidImage,
    ChecksumMismatch,
    ImageTooLarge,
}

impl Rejection {
    pub const ALL: [Rejection; 5] = [
        Rejection::SizeMismatch,
        Rejection::TypeMismatch,
        Rejection::InvalidImage,
        Rejection::ChecksumMismatch,
        Rejection::ImageTooLarge,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Rejection::SizeMismatch => "size_mismatch",
            Rejection::TypeMismatch => "type_mismatch",
            Rejection::InvalidImage => "invalid_image",
            Rejection::ChecksumMismatch => "checksum_mismatch",
            Rejection::ImageTooLarge => "image_too_large",
        }
    }

    /// The rejection a stored `failure_code` names; `None` for anything else.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    pub fn message(self) -> &'static str {
        match self {
            Rejection::SizeMismatch => "the uploaded object's size differs from the declared size",
            Rejection::TypeMismatch => {
                "the uploaded bytes are a different image type than declared"
            }
            Rejection::InvalidImage => {
                "the uploaded bytes are not a readable image of an allowed type"
            }
            Rejection::ChecksumMismatch => {
                "the uploaded bytes do not match the declared SHA-256 checksum"
            }
            Rejection::ImageTooLarge => "the image's pixel dimensions exceed the service's limit",
        }
    }

    /// What the seed's upload said for it.
    fn legacy_message(self) -> &'static str {
        match self {
            Rejection::TypeMismatch => "File content does not match its extension",
            Rejection::ImageTooLarge => "Image dimensions exceed the limit",
            Rejection::SizeMismatch | Rejection::InvalidImage | Rejection::ChecksumMismatch => {
                "File is not a valid image"
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("size must be at least 1 byte")]
    EmptyFile,
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("invalid pagination cursor")]
    InvalidCursor,
    #[error("upload not found")]
    NotFound,
    #[error("no image found")]
    NoImage,
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("too many uploads at once; try again shortly")]
    Busy,
    /// The temporary file a large streamed upload waits in could not be written or read.
    #[error("the upload could not be held on local disk: {0}")]
    Spool(String),
    #[error("the object has not been uploaded yet")]
    NotUploaded,
    /// The upload is expired, aborted, failed or deleted.
    #[error("the upload is {0}")]
    Gone(UploadState),
    #[error("the upload is already completed")]
    AlreadyCompleted,
    #[error("the upload is not a multipart upload")]
    NotMultipart,
    #[error("{0}")]
    InvalidParts(String),
    #[error("parts {} are not uploaded", list_numbers(.0))]
    IncompleteUpload(Vec<i32>),
    #[error("{}", .0.message())]
    Rejected(Rejection),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    InvalidLink(String),
    /// The image_id has too many pending uploads (`too_many_pending`) or pending bytes
    /// (`pending_bytes_exceeded`); confirm or delete some first.
    #[error("this image_id has {what} pending, the most allowed; confirm or delete some first")]
    PendingCap { code: &'static str, what: String },
    /// A stored row holds what the code never writes (an unknown `failure_code`).
    #[error("stored upload is inconsistent: {0}")]
    Corrupt(String),
    /// The legacy form is not what the seed accepted (no file, two files, a huge field).
    #[error("{0}")]
    InvalidForm(&'static str),
    #[error("no such variant preset; the presets are {0}")]
    UnknownPreset(String),
    #[error("variants are made as {0} only")]
    UnsupportedVariantFormat(String),
    #[error("the upload is {0}, not completed; it has no variants")]
    NotCompleted(UploadState),
    /// Its variants can never be made: `image_too_large`, `invalid_image`, ...
    #[error("this upload's variants cannot be made ({0})")]
    VariantsFailed(String),
    #[error("the variant is being made; try again shortly")]
    VariantsPending,
    #[error("variants are off: IMAGE_VARIANTS is empty")]
    VariantsOff,
    #[error("the body is not an S3 event notification (no Records)")]
    InvalidEvent,
    /// A tus header is missing or malformed.
    #[error("{0}")]
    TusHeader(String),
    /// tus: `filetype` names another type than the file name's extension.
    #[error("filetype and the file name's extension name different types")]
    TypeDisagrees,
    #[error("Upload-Offset does not match the upload's offset, {expected}")]
    OffsetMismatch { expected: u64 },
    #[error("the bytes would go past Upload-Length, {length}")]
    BeyondLength { length: u64 },
    #[error("the PATCH's bytes do not match its Upload-Checksum; they were discarded")]
    ChunkChecksumMismatch,
    #[error("another request is still writing this upload; try again shortly")]
    Locked,
}

impl UploadError {
    /// The one classification of every failure: status, code, message and retry.
    pub fn problem(&self) -> Problem {
        let message = self.to_string();
        match self {
            UploadError::Input(input) => input_problem(input),
            UploadError::EmptyFile => {
                Problem::bad_request("invalid_size", message).legacy("The file is empty")
            }
            UploadError::TooLarge { limit } => {
                let mut problem = Problem::new(413, "too_large", message)
                    .legacy(format!("File too large. Maximum size is {limit} bytes"));
                problem.limit = Some(*limit);
                problem
            }
            UploadError::InvalidCursor => Problem::bad_request("invalid_cursor", message),
            UploadError::ShuttingDown => Problem::unavailable("shutting_down", message),
            UploadError::Busy => Problem::unavailable("busy", message),
            UploadError::Spool(_) => {
                tracing::error!(error = %message, "temporary file for an upload failed");
                Problem::unavailable(
                    "local_disk_unavailable",
                    "the upload could not be held on local disk; try again shortly",
                )
            }
            UploadError::BodyRead(_) => {
                Problem::bad_request("invalid_request", "the request body could not be read")
                    .legacy("The upload body could not be read")
            }
            UploadError::NotFound | UploadError::NoImage => {
                Problem::new(404, "not_found", message).legacy("No image found for this ID")
            }
            UploadError::NotUploaded => Problem::new(409, "not_uploaded", message),
            UploadError::Gone(state) => Problem::new(410, &state.to_string(), message),
            UploadError::AlreadyCompleted => Problem::new(409, "already_completed", message),
            UploadError::NotMultipart => Problem::new(409, "not_multipart", message),
            UploadError::InvalidParts(_) => Problem::bad_request("invalid_parts", message),
            UploadError::IncompleteUpload(missing) => {
                let mut problem = Problem::new(409, "incomplete_upload", message);
                problem.missing_parts = Some(missing.clone());
                problem
            }
            UploadError::Rejected(rejection) => {
                Problem::new(422, rejection.code(), message).legacy(rejection.legacy_message())
            }
            UploadError::Storage(err) => storage_problem(err),
            UploadError::Db(err) => err.problem(),
            UploadError::Auth(auth) if auth.is_unauthenticated() => {
                Problem::new(401, auth.code(), message)
            }
            UploadError::Auth(auth) => Problem::new(403, auth.code(), message),
            UploadError::InvalidLink(_) => Problem::bad_request("invalid_link", message),
            UploadError::PendingCap { code, .. } => {
                Problem::new(429, code, message).retry_after(RETRY_AFTER_SECS)
            }
            UploadError::Corrupt(detail) => {
                tracing::error!(error = %detail, "stored upload is inconsistent");
                Problem::internal()
            }
            UploadError::InvalidForm(what) => {
                Problem::bad_request("invalid_request", *what).legacy(*what)
            }
            UploadError::UnknownPreset(_) => Problem::new(404, "unknown_preset", message),
            UploadError::UnsupportedVariantFormat(_) => {
                Problem::new(415, "unsupported_format", message)
            }
            UploadError::NotCompleted(_) => Problem::new(409, "not_completed", message),
            UploadError::VariantsFailed(code) => Problem::new(422, code, message),
            UploadError::VariantsOff => Problem::new(409, "variants_off", message),
            UploadError::InvalidEvent => Problem::bad_request("invalid_event", message),
            UploadError::TusHeader(_) => Problem::bad_request("invalid_tus_request", message),
            UploadError::TypeDisagrees => Problem::new(415, "extension_mismatch", message),
            UploadError::OffsetMismatch { .. } => Problem::new(409, "offset_mismatch", message),
            UploadError::BeyondLength { length } => {
                let mut problem = Problem::new(413, "beyond_upload_length", message);
                problem.limit = Some(*length);
                problem
            }
            UploadError::ChunkChecksumMismatch => Problem::new(460, "checksum_mismatch", message),
            UploadError::Locked => Problem::new(423, "upload_locked", message).retry_after(1),
            UploadError::VariantsPending => {
                Problem::unavailable("variants_pending", message).retry_after(1)
            }
        }
    }
}

fn input_problem(input: &InputError) -> Problem {
    let message = input.to_string();
    match input {
        InputError::InvalidImageId => {
            Problem::bad_request("invalid_image_id", message).legacy("Invalid image ID")
        }
        InputError::ReservedImageId => {
            Problem::bad_request("reserved_image_id", message).legacy("Reserved image ID")
        }
        InputError::UnsupportedType => Problem::new(415, "unsupported_type", message)
            .legacy("File type not allowed. Allowed types: png, jpg, jpeg, gif, webp, bmp, tiff"),
        InputError::MissingFilename => {
            Problem::bad_request("invalid_filename", message).legacy("No file selected")
        }
        InputError::ExtensionMismatch
        | InputError::FilenameTooLong
        | InputError::InvalidChecksum
        | InputError::InvalidMetadata(_) => {
            let code = match input {
                InputError::ExtensionMismatch => "extension_mismatch",
                InputError::InvalidChecksum => "invalid_checksum",
                InputError::InvalidMetadata(_) => "invalid_metadata",
                _ => "invalid_filename",
            };
            Problem::bad_request(code, &*message).legacy(capitalize(&message))
        }
    }
}

fn storage_problem(err: &StorageError) -> Problem {
    match err {
        StorageError::Unavailable(detail) => {
            tracing::warn!(error = %detail, "object storage unavailable");
            Problem::unavailable(
                "storage_unavailable",
                "object storage is unavailable; try again shortly",
            )
        }
        StorageError::NoSuchKey => {
            tracing::warn!("an object disappeared while it was being read");
            Problem::new(409, "not_uploaded", "the object is no longer in storage")
        }
        StorageError::NoSuchUpload => {
            tracing::warn!("the store no longer has a multipart upload we recorded");
            Problem::new(
                409,
                "not_uploaded",
                "the multipart upload no longer exists in storage",
            )
        }
        StorageError::Refused(detail) | StorageError::Signing(detail) => {
            tracing::error!(error = %detail, "object storage refused a request");
            Problem::new(502, "storage_error", "object storage refused the request")
        }
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn list_numbers(numbers: &[i32]) -> String {
    numbers
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_round_trip_through_their_codes() {
        for rejection in Rejection::ALL {
            assert_eq!(Rejection::from_code(rejection.code()), Some(rejection));
        }
        assert_eq!(Rejection::from_code("made_up"), None);
    }

    #[test]
    fn each_failure_has_one_status_and_code() {
        let cases: Vec<(UploadError, u16, &str)> = vec![
            (InputError::InvalidImageId.into(), 400, "invalid_image_id"),
            (InputError::UnsupportedType.into(), 415, "unsupported_type"),
            (UploadError::TooLarge { limit: 9 }, 413, "too_large"),
            (UploadError::Gone(UploadState::Expired), 410, "expired"),
            (
                UploadError::Rejected(Rejection::ChecksumMismatch),
                422,
                "checksum_mismatch",
            ),
            (AuthError::Missing.into(), 401, "unauthorized"),
            (AuthError::OtherImage.into(), 403, "forbidden_image_id"),
            (
                StorageError::Unavailable("down".into()).into(),
                503,
                "storage_unavailable",
            ),
            (
                DbError::Query("secret detail".into()).into(),
                500,
                "internal",
            ),
            (
                UploadError::UnknownPreset("thumb".into()),
                404,
                "unknown_preset",
            ),
            (
                UploadError::UnsupportedVariantFormat("webp".into()),
                415,
                "unsupported_format",
            ),
            (
                UploadError::NotCompleted(UploadState::Pending),
                409,
                "not_completed",
            ),
            (UploadError::VariantsOff, 409, "variants_off"),
            (UploadError::VariantsPending, 503, "variants_pending"),
        ];
        for (err, status, code) in cases {
            let problem = err.problem();
            assert_eq!(
                (problem.status, problem.code.as_str()),
                (status, code),
                "{err}"
            );
            assert!(!problem.message.contains("secret detail"));
            assert_eq!(problem.retry_after.is_some(), status == 503, "{err}");
        }
        let too_large = UploadError::TooLarge { limit: 9 }.problem();
        assert_eq!(too_large.limit, Some(9));
    }
}
