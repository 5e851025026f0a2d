//! What happened to an upload, as its events name it. One event is recorded for every
//! change of state, in the change's own transaction (`db::transitions`), and sent to every
//! webhook endpoint that takes its type.

use std::fmt;

/// The type of an event: the `type` of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    UploadCompleted,
    UploadFailed,
    UploadExpired,
    UploadAborted,
    UploadDeleted,
    /// An upload's variants are all made (image variants).
    VariantsReady,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::UploadCompleted,
        EventType::UploadFailed,
        EventType::UploadExpired,
        EventType::UploadAborted,
        EventType::UploadDeleted,
        EventType::VariantsReady,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::UploadCompleted => "upload.completed",
            EventType::UploadFailed => "upload.failed",
            EventType::UploadExpired => "upload.expired",
            EventType::UploadAborted => "upload.aborted",
            EventType::UploadDeleted => "upload.deleted",
            EventType::VariantsReady => "variants.ready",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The event types an endpoint takes, as stored: `None` for every type.
pub fn subscribed(filter: Option<&str>, event: EventType) -> bool {
    filter.is_none_or(|list| list.split(',').any(|name| name.trim() == event.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for event in EventType::ALL {
            assert_eq!(EventType::parse(event.as_str()), Some(event));
        }
        assert_eq!(EventType::parse("upload.exploded"), None);
    }

    #[test]
    fn a_filter_lists_what_an_endpoint_takes() {
        assert!(subscribed(None, EventType::UploadDeleted));
        let filter = Some("upload.completed,upload.failed");
        assert!(subscribed(filter, EventType::UploadFailed));
        assert!(!subscribed(filter, EventType::UploadDeleted));
        assert!(!subscribed(Some(""), EventType::UploadCompleted));
    }
}
