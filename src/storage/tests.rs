//! Our presigner against the SDK's, for every request the service signs.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::presigning::PresigningConfig;

use super::connect::presigner_for;
use super::multipart::upload_part_headers;
use super::objects::put_object_headers;
use super::presign::{Unsigned, canonical_header_name};
use crate::domain::Sha256Checksum;

fn sdk_client(endpoint: &str, path_style: bool, token: Option<&str>) -> Client {
    Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-3"))
            .endpoint_url(endpoint)
            .force_path_style(path_style)
            .credentials_provider(Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                token.map(str::to_owned),
                None,
                "test",
            ))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .build(),
    )
}

/// The query parameters of a URL, decoded enough to compare.
fn query(url: &str) -> BTreeMap<String, String> {
    let (base, query) = url.split_once('?').expect("a query");
    let mut out: BTreeMap<String, String> = query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    out.insert("(base)".into(), base.to_owned());
    out
}

/// Our signer must produce what the SDK's presigner produces for the same request at
/// the same instant: same URL, same signature, same headers for the client.
#[tokio::test]
async fn urls_match_the_sdk_presigner_for_every_request_we_sign() {
    let at = UNIX_EPOCH + Duration::from_secs(1_764_000_123);
    let expires = Duration::from_secs(900);
    let sum =
        Sha256Checksum::parse("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").expect("checksum");
    for (endpoint, path_style, token) in [
        ("http://127.0.0.1:9000", true, None),
        (
            "https://s3.eu-west-3.amazonaws.com",
            false,
            Some("session/token+x="),
        ),
    ] {
        let client = sdk_client(endpoint, path_style, token);
        let keys = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_owned),
            None,
            "test",
        );
        let presigner = presigner_for(
            &client,
            "my-bucket",
            "eu-west-3",
            SharedCredentialsProvider::new(keys),
        )
        .await
        .expect("presigner");
        let config = || {
            PresigningConfig::builder()
                .start_time(at)
                .expires_in(expires)
                .build()
                .expect("config")
        };
        let key = "uploads/cat_1-x/0190a2b4-7c1e-7000-8000-000000000000.png";

        for checksum in [None, Some(&sum)] {
            let sdk = client
                .put_object()
                .bucket("my-bucket")
                .key(key)
                .content_type("image/png")
                .content_length(1234)
                .set_checksum_sha256(checksum.map(|c| c.as_str().to_owned()))
                .if_none_match("*")
                .presigned(config())
                .await
                .expect("sdk presign");
            let headers = put_object_headers("1234", "image/png", checksum);
            let ours = presigner
                .sign(
                    &Unsigned {
                        method: "PUT",
                        key,
                        query: &[("x-id", "PutObject")],
                        headers: &headers,
                    },
                    at,
                    expires,
                )
                .await
                .expect("sign");
            assert_eq!(query(&ours.url), query(sdk.uri()), "PUT via {endpoint}");
            let sdk_headers: BTreeMap<String, String> = sdk
                .headers()
                .filter(|(n, _)| !n.eq_ignore_ascii_case("content-length"))
                .map(|(n, v)| (canonical_header_name(n), v.to_owned()))
                .collect();
            assert_eq!(ours.headers, sdk_headers);

            let sdk = client
                .upload_part()
                .bucket("my-bucket")
                .key(key)
                .upload_id("abc/def+ghi=")
                .part_number(7)
                .content_length(5_242_880)
                .set_checksum_sha256(checksum.map(|c| c.as_str().to_owned()))
                .presigned(config())
                .await
                .expect("sdk presign");
            let headers = upload_part_headers("5242880", checksum);
            let ours = presigner
                .sign(
                    &Unsigned {
                        method: "PUT",
                        key,
                        query: &[
                            ("partNumber", "7"),
                            ("uploadId", "abc/def+ghi="),
                            ("x-id", "UploadPart"),
                        ],
                        headers: &headers,
                    },
                    at,
                    expires,
                )
                .await
                .expect("sign");
            assert_eq!(
                query(&ours.url),
                query(sdk.uri()),
                "UploadPart via {endpoint}"
            );
        }

        let sdk = client
            .get_object()
            .bucket("my-bucket")
            .key(key)
            .presigned(config())
            .await
            .expect("sdk presign");
        let ours = presigner
            .sign(
                &Unsigned {
                    method: "GET",
                    key,
                    query: &[("x-id", "GetObject")],
                    headers: &[],
                },
                at,
                expires,
            )
            .await
            .expect("sign");
        assert_eq!(query(&ours.url), query(sdk.uri()), "GET via {endpoint}");
    }
}

#[test]
fn the_embedded_bucket_is_a_reserved_image_id() {
    assert!(crate::domain::RESERVED_IMAGE_IDS.contains(&super::embedded::EMBEDDED_BUCKET));
}
