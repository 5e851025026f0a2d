//! What an attempt's result means for its delivery: pure, so every case is tested here.

use std::time::Duration;

use time::OffsetDateTime;

use crate::db::webhooks::Outcome;

/// How an attempt went, as the dispatcher saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The endpoint answered with this status.
    Answered(u16),
    /// No answer: a timeout, a refused or dropped connection. A short reason.
    NoAnswer(String),
}

/// The outcome of attempt number `attempt` (1 for the first) that ended `now`, with
/// `schedule[i]` the wait before retry `i + 1`.
pub fn outcome(
    attempt: u32,
    result: Attempt,
    schedule: &[Duration],
    now: OffsetDateTime,
) -> Outcome {
    let (status, error) = match result {
        Attempt::Answered(status) if (200..300).contains(&status) => {
            return Outcome::Delivered {
                status: i32::from(status),
            };
        }
        Attempt::Answered(410) => return Outcome::Gone,
        Attempt::Answered(status) => (Some(i32::from(status)), answered_error(status)),
        Attempt::NoAnswer(reason) => (None, reason),
    };
    let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    match schedule.get(index) {
        Some(wait) => Outcome::Retry {
            status,
            error,
            at: now + *wait,
        },
        None => Outcome::Failed { status, error },
    }
}

fn answered_error(status: u16) -> String {
    if (300..400).contains(&status) {
        format!("HTTP {status}: redirects are not followed")
    } else {
        format!("HTTP {status}")
    }
}

/// The schedule in plain words, for the start-up log: `5s, 5m, 30m`.
pub fn describe(schedule: &[Duration]) -> String {
    schedule
        .iter()
        .map(|wait| {
            let secs = wait.as_secs();
            if secs >= 3600 && secs % 3600 == 0 {
                format!("{}h", secs / 3600)
            } else if secs >= 60 && secs % 60 == 0 {
                format!("{}m", secs / 60)
            } else {
                format!("{secs}s")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Vec<Duration> {
        [5, 300, 1800].map(Duration::from_secs).to_vec()
    }

    #[test]
    fn attempts_follow_the_schedule() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let cases: &[(u32, Attempt, Outcome)] = &[
            (
                1,
                Attempt::Answered(204),
                Outcome::Delivered { status: 204 },
            ),
            (
                4,
                Attempt::Answered(200),
                Outcome::Delivered { status: 200 },
            ),
            (1, Attempt::Answered(410), Outcome::Gone),
            (
                1,
                Attempt::Answered(500),
                Outcome::Retry {
                    status: Some(500),
                    error: "HTTP 500".into(),
                    at: now + Duration::from_secs(5),
                },
            ),
            (
                2,
                Attempt::NoAnswer("timed out".into()),
                Outcome::Retry {
                    status: None,
                    error: "timed out".into(),
                    at: now + Duration::from_secs(300),
                },
            ),
            (
                3,
                Attempt::Answered(302),
                Outcome::Retry {
                    status: Some(302),
                    error: "HTTP 302: redirects are not followed".into(),
                    at: now + Duration::from_secs(1800),
                },
            ),
            (
                4,
                Attempt::Answered(503),
                Outcome::Failed {
                    status: Some(503),
                    error: "HTTP 503".into(),
                },
            ),
        ];
        for (attempt, result, expected) in cases {
            let got = outcome(*attempt, result.clone(), &schedule(), now);
            assert_eq!(
                format!("{got:?}"),
                format!("{expected:?}"),
                "attempt {attempt} {result:?}"
            );
        }
    }

    #[test]
    fn no_schedule_means_one_attempt() {
        let got = outcome(1, Attempt::Answered(500), &[], OffsetDateTime::UNIX_EPOCH);
        assert!(matches!(got, Outcome::Failed { .. }));
    }

    #[test]
    fn schedules_read_plainly() {
        assert_eq!(
            describe(&[5, 300, 1800, 7200, 90].map(Duration::from_secs)),
            "5s, 5m, 30m, 2h, 90s"
        );
    }
}
