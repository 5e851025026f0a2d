//! `Vary: Origin` on answers whose CORS headers depend on the request's `Origin`, for the
//! API and the embedded store alike, so a shared cache never serves one origin's answer
//! to another.

use http::{HeaderMap, HeaderValue, header};

/// Adds `Origin` to the answer's `Vary`, keeping what it already names.
pub fn vary_on_origin(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    if named
        .iter()
        .any(|name| name == "*" || name.eq_ignore_ascii_case("origin"))
    {
        return;
    }
    let mut value = named.join(", ");
    if !value.is_empty() {
        value.push_str(", ");
    }
    value.push_str("Origin");
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(header::VARY, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vary(existing: &[&'static str]) -> Vec<String> {
        let mut headers = HeaderMap::new();
        for value in existing {
            headers.append(header::VARY, HeaderValue::from_static(value));
        }
        vary_on_origin(&mut headers);
        headers
            .get_all(header::VARY)
            .iter()
            .map(|v| v.to_str().expect("text").to_owned())
            .collect()
    }

    #[test]
    fn origin_is_added_to_what_vary_already_names() {
        assert_eq!(vary(&[]), ["Origin"]);
        assert_eq!(vary(&["Accept-Encoding"]), ["Accept-Encoding, Origin"]);
        assert_eq!(
            vary(&["Accept-Encoding", "Accept"]),
            ["Accept-Encoding, Accept, Origin"]
        );
        assert_eq!(vary(&["origin"]), ["origin"]);
        assert_eq!(vary(&["Accept, Origin"]), ["Accept, Origin"]);
        assert_eq!(vary(&["*"]), ["*"]);
    }
}
