//! Two services on one database and one bucket, as replicas behind a load balancer.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// A second service sharing `first`'s database and (through S3) its store, both sweeping.
async fn second_replica(first: &TestApp, extra: &[(&str, &str)]) -> TestApp {
    let mut settings = first.s3_settings().await;
    settings.push(("DATABASE_URL".into(), first.database_url()));
    settings.push(("SWEEP_INTERVAL".into(), "1".into()));
    let mut vars: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    vars.extend(extra);
    TestApp::spawn_with(&vars).await
}

#[tokio::test]
async fn uploads_issued_by_one_replica_are_confirmed_by_the_other() {
    let one = TestApp::spawn_with(&[("SWEEP_INTERVAL", "1")]).await;
    let two = second_replica(&one, &[]).await;

    let issued = one.issue("pair", "a.png", "image/png", PNG).await;
    assert_eq!(one.put(&issued, PNG).await.status(), StatusCode::OK);
    let id = issued["upload_id"].as_str().expect("id");
    let resp = two.confirm(id).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let record: Value = resp.json().await.expect("record");
    assert_eq!(record["state"], "completed");
    let latest = one.get_json("/api/v1/images/pair/latest").await;
    assert_eq!(latest["upload_id"], id);
    let seen_by_two = two.get_json("/api/url/pair").await;
    assert_eq!(seen_by_two["file_size"], PNG.len());

    // Racing confirms across both replicas: one state change, the same record everywhere.
    let raced = one.issue("pair", "b.png", "image/png", PNG).await;
    assert_eq!(one.put(&raced, PNG).await.status(), StatusCode::OK);
    let raced_id = raced["upload_id"].as_str().expect("id").to_owned();
    let confirms = (0..40).map(|n| {
        let app = if n % 2 == 0 { &one } else { &two };
        app.confirm(&raced_id)
    });
    let mut records = Vec::new();
    for resp in futures_util::future::join_all(confirms).await {
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body: Value = resp.json().await.expect("record");
        // Each replica makes s3_url its own way (presigned on the embedded store, the
        // bucket's URL through S3); the rest is the one record.
        body["s3_url"] = Value::Null;
        records.push(body);
    }
    assert!(records.windows(2).all(|w| w[0] == w[1]));
    let row = one.row(&raced_id).await.expect("row");
    assert_eq!(Some(row.updated_at), row.uploaded_at, "one state change");
}

#[tokio::test]
async fn five_hundred_flows_across_two_replicas_all_hold() {
    if !on_postgres() {
        // Replicas under load are a Postgres deployment: on one SQLite file two services
        // are two writers queueing for one lock, and time out (503) on a busy machine.
        return;
    }
    let one = TestApp::spawn_with(&[("SWEEP_INTERVAL", "1")]).await;
    let two = second_replica(&one, &[]).await;
    five_hundred_flows_hold(
        |n| {
            if n % 2 == 0 {
                (&one, &two)
            } else {
                (&two, &one)
            }
        },
        &one,
    )
    .await;
}

#[tokio::test]
async fn a_private_bucket_reached_at_another_address_gets_urls_for_that_address() {
    let one = TestApp::spawn().await;
    let addr = one.store_addr();
    // The same store under the name clients use (as a container's store is published).
    let public = format!("http://localhost:{}", addr.port());
    let mut settings = one.s3_settings().await;
    settings.push(("S3_PUBLIC_ENDPOINT_URL".into(), public.clone()));
    settings.push(("PRIVATE_BUCKET".into(), "true".into()));
    let vars: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let two = TestApp::spawn_with(&vars).await;
    let issued = two.issue("private", "a.png", "image/png", PNG).await;
    assert!(issued["url"].as_str().expect("url").starts_with(&public));
    assert_eq!(two.put(&issued, PNG).await.status(), StatusCode::OK);
    let record: Value = two
        .confirm(issued["upload_id"].as_str().expect("id"))
        .await
        .json()
        .await
        .expect("record");
    let s3_url = record["s3_url"].as_str().expect("s3_url");
    assert!(
        s3_url.starts_with(&public) && s3_url.contains("X-Amz-Signature="),
        "{s3_url}"
    );
    let served = reqwest::get(s3_url).await.expect("GET");
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.bytes().await.expect("bytes").as_ref(), PNG);
}

#[tokio::test]
async fn two_replicas_make_each_uploads_variants_once() {
    let variants = ("IMAGE_VARIANTS", "thumb:64,display:1280");
    let one = TestApp::spawn_with(&[("SWEEP_INTERVAL", "1"), variants]).await;
    let two = second_replica(&one, &[variants]).await;
    let mut ids = Vec::new();
    for n in 0..8 {
        let app = if n % 2 == 0 { &one } else { &two };
        let record = app.upload("twins", "a.jpg", "image/jpeg", JPEG).await;
        ids.push(record["upload_id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        let started = std::time::Instant::now();
        loop {
            let record = two.get_json(&format!("/api/v1/uploads/{id}")).await;
            if record["variants_state"] == "ready" {
                break;
            }
            assert_ne!(record["variants_state"], "failed", "{record}");
            assert!(started.elapsed().as_secs() < 60, "still pending: {record}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let jobs = one.sql("SELECT state, attempts FROM variant_jobs").await;
    assert_eq!(jobs.len(), 8);
    for job in jobs {
        assert_eq!(job.try_get::<String>("", "state").expect("state"), "done");
        assert_eq!(
            job.try_get::<i32>("", "attempts").expect("attempts"),
            1,
            "made once"
        );
    }
}
