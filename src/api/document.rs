//! The OpenAPI document as served at `/openapi.json` and in `/docs`: poem-openapi's, with
//! the rules the handlers enforce written into it. The handlers check these themselves, so
//! that a refusal carries the contract's own error code (`invalid_image_id`,
//! `invalid_upload_id`, ...) rather than a parser's; that is why they are not validators on
//! the Rust types.

use serde_json::{Value, json};

use crate::domain::MAX_FILENAME_CHARS;
use crate::events::EventType;
use crate::webhooks::MAX_PAGE;

/// What an image_id may be (the contract's words).
pub const IMAGE_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,100}$";

/// A file name the service accepts: the name of an allowed image type (any case).
pub const FILENAME_PATTERN: &str = r"\.([Pp][Nn][Gg]|[Jj][Pp][Ee]?[Gg]|[Gg][Ii][Ff]|[Ww][Ee][Bb][Pp]|[Bb][Mm][Pp]|[Tt][Ii][Ff][Ff]?)$";
/// Base64 of a raw SHA-256 digest (32 bytes).
pub const SHA256_BASE64_PATTERN: &str = "^[A-Za-z0-9+/]{43}=$";

/// The served document, from poem-openapi's `raw` one, for a service whose largest upload
/// is `max_upload_size` bytes.
pub fn document(raw: &str, max_upload_size: u64) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(raw) else {
        return raw.to_owned();
    };
    constrain(&mut doc, max_upload_size);
    serde_json::to_string(&doc).unwrap_or_else(|_| raw.to_owned())
}

fn constrain(doc: &mut Value, max_upload_size: u64) {
    // `get_mut`, never `[]`, on the way down: indexing a missing key would add a null.
    let paths = doc.get_mut("paths").and_then(Value::as_object_mut);
    for item in paths.into_iter().flat_map(|p| p.values_mut()) {
        let ops = item.as_object_mut();
        for op in ops.into_iter().flat_map(|o| o.values_mut()) {
            let operation_id = op
                .get("operationId")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let params = op.get_mut("parameters").and_then(Value::as_array_mut);
            for param in params.into_iter().flatten() {
                let place = param.get("in").and_then(Value::as_str).map(str::to_owned);
                let name = param.get("name").and_then(Value::as_str).map(str::to_owned);
                let Some(schema) = param.get_mut("schema").and_then(Value::as_object_mut) else {
                    continue;
                };
                match (place.as_deref(), name.as_deref()) {
                    (Some("path"), Some("image_id")) => {
                        schema.insert("pattern".to_owned(), json!(IMAGE_ID_PATTERN));
                    }
                    // upload_id, webhook_id, delivery_id.
                    (Some("path"), Some(id)) if id.ends_with("_id") => {
                        schema.insert("format".to_owned(), json!("uuid"));
                    }
                    (Some("query"), Some("upload_id")) => {
                        schema.insert("format".to_owned(), json!("uuid"));
                    }
                    // The operators' search: the same rules as everywhere else.
                    (Some("query"), Some("image_id")) => {
                        schema.insert("pattern".to_owned(), json!(IMAGE_ID_PATTERN));
                    }
                    (Some("query"), Some("since" | "until")) => {
                        schema.insert("format".to_owned(), json!("date-time"));
                    }
                    (Some("query"), Some("state"))
                        if operation_id.as_deref() == Some("admin_search_uploads") =>
                    {
                        let states = [
                            "pending",
                            "completed",
                            "failed",
                            "expired",
                            "aborted",
                            "deleted",
                        ];
                        schema.insert("enum".to_owned(), json!(states));
                    }
                    (Some("query"), Some("limit"))
                        if operation_id.as_deref() == Some("list_deliveries") =>
                    {
                        schema.insert("minimum".to_owned(), json!(1));
                        schema.insert("maximum".to_owned(), json!(MAX_PAGE));
                    }
                    _ => {}
                }
            }
        }
    }
    let Some(schemas) = doc
        .get_mut("components")
        .and_then(|c| c.get_mut("schemas"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let image_id = json!({ "pattern": IMAGE_ID_PATTERN });
    let filename = json!({
        "minLength": 1,
        "maxLength": MAX_FILENAME_CHARS,
        "pattern": FILENAME_PATTERN,
    });
    for (schema, field, rules) in [
        ("CreateUploadRequest", "image_id", &image_id),
        (
            "CreateUploadRequest",
            "size",
            &json!({ "minimum": 1, "maximum": max_upload_size }),
        ),
        ("CreateUploadRequest", "filename", &filename),
        (
            "CreateUploadRequest",
            "checksum_sha256",
            &json!({ "pattern": SHA256_BASE64_PATTERN }),
        ),
        (
            "CreateUploadRequest",
            "checksum_algorithm",
            &json!({ "pattern": "^[Ss][Hh][Aa]256$" }),
        ),
        (
            "SignPartsRequest",
            "part_numbers",
            &json!({ "minItems": 1, "maxItems": 100 }),
        ),
        ("CreateLinkRequest", "image_id", &image_id),
        (
            "CreateLinkRequest",
            "expires_in",
            &json!({ "minimum": 1, "maximum": 604_800 }),
        ),
        (
            "CreateWebhookRequest",
            "url",
            &json!({ "format": "uri", "pattern": "^https?://[^/?#\\s]+" }),
        ),
    ] {
        if let (Some(property), Some(rules)) =
            (property_mut(schemas, schema, field), rules.as_object())
        {
            property.extend(rules.clone());
        }
    }
    if let Some(items) = property_mut(schemas, "CreateWebhookRequest", "events")
        .and_then(|p| p.get_mut("items"))
        .and_then(Value::as_object_mut)
    {
        let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        items.insert("enum".to_owned(), json!(names));
    }
    if let Some(items) = property_mut(schemas, "SignPartsRequest", "part_numbers")
        .and_then(|p| p.get_mut("items"))
        .and_then(Value::as_object_mut)
    {
        items.insert("minimum".to_owned(), json!(1));
    }
    name_maps(schemas);
    // Unsigned integers (`max_uploads`, part numbers...) are never negative.
    for schema in schemas.values_mut() {
        let properties = schema.get_mut("properties").and_then(Value::as_object_mut);
        for property in properties.into_iter().flat_map(|p| p.values_mut()) {
            let Some(property) = property.as_object_mut() else {
                continue;
            };
            let max = match property.get("format").and_then(Value::as_str) {
                Some("uint32") => json!(u32::MAX),
                Some("uint64") => json!(u64::MAX),
                _ => continue,
            };
            property.entry("minimum").or_insert(json!(0));
            property.entry("maximum").or_insert(max);
        }
    }
    // These refuse unknown fields (so a misspelt one cannot silently skip a check).
    for schema in [
        "CreateUploadRequest",
        "SignPartsRequest",
        "CreateLinkRequest",
        "CreateWebhookRequest",
    ] {
        if let Some(schema) = schemas.get_mut(schema).and_then(Value::as_object_mut) {
            schema.insert("additionalProperties".to_owned(), json!(false));
        }
    }
}

/// The string maps (`metadata`, signed `headers`, part checksums) as named schemas, so a
/// generated client has one `Metadata` type instead of one anonymous class per field.
fn name_maps(schemas: &mut serde_json::Map<String, Value>) {
    let named = [
        (
            "Metadata",
            "A flat string map kept with the record (at most 32 keys, 2 KiB in all).",
            &[("CreateUploadRequest", "metadata"), ("Upload", "metadata")][..],
        ),
        (
            "SignedHeaders",
            "Headers to send verbatim with the presigned request.",
            &[("IssuedUpload", "headers"), ("SignedPart", "headers")][..],
        ),
        (
            "PartChecksums",
            "Base64 SHA-256 of each part, keyed by part number.",
            &[("SignPartsRequest", "checksums_sha256")][..],
        ),
    ];
    for (name, description, uses) in named {
        for (schema, field) in uses {
            let Some(property) = property_mut(schemas, schema, field) else {
                continue;
            };
            let nullable = property.get("nullable").cloned();
            let field_description = property.get("description").cloned();
            let mut reference = serde_json::Map::new();
            reference.insert(
                "allOf".to_owned(),
                json!([{ "$ref": format!("#/components/schemas/{name}") }]),
            );
            if let Some(nullable) = nullable {
                reference.insert("nullable".to_owned(), nullable);
            }
            if let Some(text) = field_description {
                reference.insert("description".to_owned(), text);
            }
            *property = reference;
        }
        schemas.insert(
            name.to_owned(),
            json!({
                "type": "object",
                "description": description,
                "additionalProperties": { "type": "string" },
                "maxProperties": 32,
            }),
        );
    }
}

fn property_mut<'a>(
    schemas: &'a mut serde_json::Map<String, Value>,
    schema: &str,
    field: &str,
) -> Option<&'a mut serde_json::Map<String, Value>> {
    schemas
        .get_mut(schema)?
        .get_mut("properties")?
        .get_mut(field)?
        .as_object_mut()
}

/// A request-body parse failure in plain words: poem-openapi's own text names its type
/// parsers (`optional_integer(uint32)`), which mean nothing to a client.
pub fn plain_parse_error(reason: &str) -> String {
    const WHILE: &str = " (occurred while parsing \"";
    let object = reason
        .rsplit(WHILE)
        .next()
        .filter(|_| reason.contains(WHILE))
        .and_then(|tail| tail.split('"').next());
    let core = reason.split(WHILE).next().unwrap_or(reason).trim();
    let core = core
        .strip_prefix("parse request payload error: ")
        .unwrap_or(core);
    // A query or path parameter: `failed to parse parameter `limit`: failed to parse ...`.
    if let Some(rest) = core.strip_prefix("failed to parse parameter `")
        && let Some((name, _)) = rest.split_once('`')
    {
        let expected = rest.split("failed to parse \"").nth(1);
        let expected = expected
            .and_then(|e| e.split('"').next())
            .unwrap_or("value");
        return format!(
            "invalid parameter `{name}`: {} is expected",
            plain_type(expected)
        );
    }
    let core = if let Some(rest) = core.strip_prefix("Expected input type \"") {
        let (expected, found) = rest.split_once("\", found ").unwrap_or((rest, "another"));
        match found.trim_end_matches('.') {
            "null" => format!(
                "a required field is missing or null ({} is expected)",
                plain_type(expected)
            ),
            found => format!(
                "a field is {found}, where {} is expected",
                plain_type(expected)
            ),
        }
    } else if let Some(rest) = core.strip_prefix("failed to parse \"") {
        let expected = rest.split('"').next().unwrap_or(rest);
        format!("a field is not {}", plain_type(expected))
    } else {
        core.to_owned()
    };
    match object {
        Some(object) => format!("invalid {object}: {core}"),
        None => format!("invalid request body: {core}"),
    }
}

fn plain_type(parser: &str) -> String {
    let parser = parser.trim_start_matches("optional_");
    match parser {
        "integer(uint32)" | "integer(uint64)" => "a whole number of 0 or more".to_owned(),
        p if p.starts_with("integer") => "a whole number".to_owned(),
        "string" | "string(uuid)" | "string(date-time)" => "a string".to_owned(),
        "boolean" => "true or false".to_owned(),
        p if p.starts_with('[') || p.starts_with("array") => "a list".to_owned(),
        p if p.starts_with("object") || p.starts_with('{') => "an object".to_owned(),
        p => format!("a valid {p}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_read_as_plain_words() {
        assert_eq!(
            plain_parse_error(
                "parse request payload error: failed to parse \"integer(uint32)\": invalid integer \
                 (occurred while parsing \"optional_integer(uint32)\") (occurred while parsing \"CreateLinkRequest\")"
            ),
            "invalid CreateLinkRequest: a field is not a whole number of 0 or more"
        );
        assert_eq!(
            plain_parse_error(
                "parse request payload error: Expected input type \"string\", found null. \
                 (occurred while parsing \"CreateUploadRequest\")"
            ),
            "invalid CreateUploadRequest: a required field is missing or null (a string is expected)"
        );
        assert_eq!(
            plain_parse_error(
                "failed to parse parameter `limit`: failed to parse \"integer(uint64)\": invalid digit found in string"
            ),
            "invalid parameter `limit`: a whole number of 0 or more is expected"
        );
        assert_eq!(
            plain_parse_error("parse request payload error: unknown field `colour`."),
            "invalid request body: unknown field `colour`."
        );
    }
}
