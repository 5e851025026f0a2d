//! `POST /api/v1/storage-events`: uploads completed by the store's own notifications.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const TOKEN: &str = "storage-events-token-of-the-tests";

/// An S3 event notification naming `keys`, as S3 (and MinIO) send it.
fn notification(event: &str, keys: &[String]) -> Value {
    let records: Vec<Value> = keys
        .iter()
        .map(|key| {
            json!({
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": event,
                "s3": {"bucket": {"name": "upload-broker"}, "object": {"key": key, "size": 68}},
            })
        })
        .collect();
    json!({ "Records": records })
}

/// A key as S3 writes it in a notification: URL-encoded.
fn encoded(key: &str) -> String {
    key.replace('_', "%5F")
}

async fn notify(app: &TestApp, token: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/api/v1/storage-events"))
        .json(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("POST")
}

#[tokio::test]
async fn storage_events_need_their_token() {
    let off = TestApp::spawn().await;
    let body = notification("ObjectCreated:Put", &[]);
    assert_eq!(
        error_code(notify(&off, Some(TOKEN), &body).await).await,
        (StatusCode::FORBIDDEN, "storage_events_disabled".into())
    );
    let app = TestApp::spawn_with(&[("STORAGE_EVENTS_TOKEN", TOKEN)]).await;
    for token in [None, Some("wrong")] {
        let resp = notify(&app, token, &body).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        assert!(resp.headers().contains_key("www-authenticate"));
    }
    assert_eq!(
        notify(&app, Some(TOKEN), &body).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_notification_completes_the_upload_it_names_once() {
    let app = TestApp::spawn_with(&[("STORAGE_EVENTS_TOKEN", TOKEN)]).await;
    let issued = app
        .issue("stored_by_event", "a.png", "image/png", PNG)
        .await;
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    let id = issued["upload_id"].as_str().expect("id");
    let key = issued["key"].as_str().expect("key");
    let event = notification("ObjectCreated:Put", &[encoded(key)]);

    let resp = notify(&app, Some(TOKEN), &event).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let report: Value = resp.json().await.expect("JSON");
    assert_eq!(
        report,
        json!({"received": 1, "completed": 1, "failed": 0, "ignored": 0})
    );
    let record = app.get_json(&format!("/api/v1/uploads/{id}")).await;
    assert_eq!(record["state"], "completed");
    assert_eq!(app.object(key).await.as_deref(), Some(PNG));

    // Delivered again (queues deliver at least once): nothing more happens.
    for _ in 0..2 {
        let report: Value = notify(&app, Some(TOKEN), &event)
            .await
            .json()
            .await
            .expect("JSON");
        assert_eq!(report["ignored"], 1);
    }
    let upload_id = uuid::Uuid::parse_str(id).expect("uuid");
    let completions = app
        .sql("SELECT upload_id, event_type FROM events")
        .await
        .iter()
        .filter(|row| {
            row.try_get::<uuid::Uuid>("", "upload_id").ok() == Some(upload_id)
                && row.try_get::<String>("", "event_type").ok().as_deref()
                    == Some("upload.completed")
        })
        .count();
    assert_eq!(completions, 1, "one completion");
    assert_eq!(app.get_json(&format!("/api/v1/uploads/{id}")).await, record);
    // A client's own confirm still answers with the same record.
    assert_eq!(app.confirm(id).await.status(), StatusCode::OK);

    // Refused bytes fail their upload; unknown keys and other events are ignored.
    let bad = app
        .issue("stored_by_event", "b.png", "image/png", PNG)
        .await;
    let mut not_png = PNG.to_vec();
    not_png[1] = b'X';
    assert_eq!(app.put(&bad, &not_png).await.status(), StatusCode::OK);
    let keys = [
        encoded(bad["key"].as_str().expect("key")),
        "uploads/nobody/01a2425e-2a03-73a1-8270-35004c54fae5.png".to_owned(),
        "elsewhere/file.png".to_owned(),
    ];
    let report: Value = notify(&app, Some(TOKEN), &notification("ObjectCreated:Put", &keys))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        report,
        json!({"received": 3, "completed": 0, "failed": 1, "ignored": 2})
    );
    let record = app
        .get_json(&format!(
            "/api/v1/uploads/{}",
            bad["upload_id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(record["state"], "failed");
    let removed = notification("ObjectRemoved:Delete", &[encoded(key)]);
    let report: Value = notify(&app, Some(TOKEN), &removed)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(report["ignored"], 1);
    // The test message S3 sends when a notification is set up, and a body that is no
    // notification.
    let test_event =
        json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "upload-broker"});
    assert_eq!(
        notify(&app, Some(TOKEN), &test_event).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        error_code(notify(&app, Some(TOKEN), &json!({"hello": 1})).await).await,
        (StatusCode::BAD_REQUEST, "invalid_event".into())
    );
}

#[tokio::test]
async fn a_staged_key_names_its_upload() {
    let app = TestApp::spawn_with(&[
        ("STORAGE_EVENTS_TOKEN", TOKEN),
        ("S3_CONDITIONAL_WRITES", "false"),
    ])
    .await;
    let issued = app.issue("staged_event", "a.png", "image/png", PNG).await;
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    let staged = upload_broker::uploads::staging_key(issued["key"].as_str().expect("key"));
    let report: Value = notify(
        &app,
        Some(TOKEN),
        &notification("ObjectCreated:Put", &[encoded(&staged)]),
    )
    .await
    .json()
    .await
    .expect("JSON");
    assert_eq!(report["completed"], 1, "{report}");
}

#[tokio::test]
async fn a_thousand_puts_with_no_confirm_all_complete_on_the_embedded_store() {
    if on_external_store() {
        return;
    }
    let app = TestApp::spawn_with(&[("AUTO_CONFIRM", "true")]).await;
    let mut ids = Vec::new();
    let app = &app;
    for chunk in 0..50 {
        let puts = (0..20).map(|n| async move {
            let issued = app
                .issue(
                    &format!("auto{}", (chunk * 20 + n) % 7),
                    "a.png",
                    "image/png",
                    PNG,
                )
                .await;
            assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
            issued["upload_id"].as_str().expect("id").to_owned()
        });
        ids.extend(futures_util::future::join_all(puts).await);
    }
    assert_eq!(ids.len(), 1000);
    let started = std::time::Instant::now();
    for id in &ids {
        loop {
            let row = app.row(id).await.expect("row");
            if row.state == upload_broker::uploads::UploadState::Completed {
                break;
            }
            assert!(
                started.elapsed().as_secs() < 120,
                "{id} is still {:?}",
                row.state
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    // Each stored once, at its key; a client's confirm afterwards gets the same record.
    let record = app.get_json(&format!("/api/v1/uploads/{}", ids[0])).await;
    assert_eq!(
        app.object(record["key"].as_str().expect("key"))
            .await
            .as_deref(),
        Some(PNG)
    );
    let confirmed: Value = app.confirm(&ids[0]).await.json().await.expect("JSON");
    assert_eq!(confirmed, record);
}

/// S3 and SQS on moto's server (`tests/support/moto.sh`, which `.ci/run` starts and names
/// in `TEST_MOTO_ENDPOINT`); without it the test has nothing to run against.
fn moto() -> Option<String> {
    std::env::var("TEST_MOTO_ENDPOINT").ok()
}

#[tokio::test]
async fn bucket_notifications_on_sqs_complete_uploads_once() {
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    let Some(endpoint) = moto() else {
        return;
    };
    let name = format!("ub-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let credentials =
        aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "tests");
    let region = aws_sdk_s3::config::Region::new("us-east-1");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(region.clone())
            .credentials_provider(credentials.clone())
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version_latest()
            .region(region)
            .credentials_provider(credentials)
            .endpoint_url(&endpoint)
            .build(),
    );
    s3.create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("bucket");
    let queue_url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("queue URL");
    let notify = QueueConfiguration::builder()
        .queue_arn(format!("arn:aws:sqs:us-east-1:123456789012:{name}"))
        .events(Event::from("s3:ObjectCreated:*"))
        .build()
        .expect("queue configuration");
    s3.put_bucket_notification_configuration()
        .bucket(&name)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(notify)
                .build(),
        )
        .send()
        .await
        .expect("notification");
    let app = TestApp::spawn_with(&[
        ("AWS_BUCKET_NAME", name.as_str()),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("S3_EVENTS_QUEUE_URL", queue_url.as_str()),
        ("S3_CONDITIONAL_WRITES", "false"),
    ])
    .await;
    let completed = |id: String| {
        let app = &app;
        async move {
            let started = std::time::Instant::now();
            loop {
                let record = app.get_json(&format!("/api/v1/uploads/{id}")).await;
                if record["state"] != "pending" {
                    return record;
                }
                assert!(started.elapsed().as_secs() < 60, "{id} never completed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };

    // A PUT and no confirm: the bucket's notification completes it.
    let issued = app.issue("queued", "a.png", "image/png", PNG).await;
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    let id = issued["upload_id"].as_str().expect("id").to_owned();
    assert_eq!(completed(id.clone()).await["state"], "completed");

    // One notification delivered three times (SQS delivers at least once): one completion.
    let twice = app.issue("queued", "b.png", "image/png", PNG).await;
    let staged = upload_broker::uploads::staging_key(twice["key"].as_str().expect("key"));
    let body = notification("ObjectCreated:Put", &[encoded(&staged)]).to_string();
    // Sent before its bytes land: the PUT's own notification comes too.
    for _ in 0..3 {
        sqs.send_message()
            .queue_url(&queue_url)
            .message_body(&body)
            .send()
            .await
            .expect("send");
    }
    assert_eq!(app.put(&twice, PNG).await.status(), StatusCode::OK);
    let twice_id = twice["upload_id"].as_str().expect("id").to_owned();
    assert_eq!(completed(twice_id.clone()).await["state"], "completed");

    // A message that is no notification is logged and removed; the poller carries on.
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body("not a notification")
        .send()
        .await
        .expect("send");
    let after = app.issue("queued", "c.png", "image/png", PNG).await;
    assert_eq!(app.put(&after, PNG).await.status(), StatusCode::OK);
    assert_eq!(
        completed(after["upload_id"].as_str().expect("id").to_owned()).await["state"],
        "completed"
    );

    let mut completions = 0;
    for row in app.sql("SELECT upload_id, event_type FROM events").await {
        let upload: uuid::Uuid = row.try_get("", "upload_id").expect("id");
        let kind: String = row.try_get("", "event_type").expect("type");
        if upload.to_string() == twice_id && kind == "upload.completed" {
            completions += 1;
        }
    }
    assert_eq!(
        completions, 1,
        "one completion for a notification delivered four times"
    );
    // Everything handled is deleted: the queue drains.
    let started = std::time::Instant::now();
    loop {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .expect("attributes");
        let left = attributes
            .attributes()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            })
            .cloned()
            .unwrap_or_default();
        if left == "0" {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "{left} messages left on the queue"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
