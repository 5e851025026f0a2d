//! Where a registered webhook may point: a public address. A URL is checked when it is
//! registered (every address its host resolves to), and again on every connection, by the
//! resolver of the client that sends to registered endpoints, so a name that later
//! resolves to a private address (DNS rebinding) still cannot reach one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the webhook URL must be an absolute http:// or https:// URL")]
    NotHttp,
    #[error("the webhook URL's host resolves to a loopback, private or link-local address")]
    Private,
    #[error("the webhook URL's host does not resolve")]
    Unresolvable,
}

/// Whether `ip` is loopback, private, link-local or otherwise not a public address.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return private_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local fc00::/7 and link-local fe80::/10.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
                || (v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
                    && private_v4(embedded_v4(v6)))
        }
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // Benchmarking 198.18.0.0/15 and the reserved 240.0.0.0/4.
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

fn embedded_v4(v6: Ipv6Addr) -> Ipv4Addr {
    let s = v6.segments();
    Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8)
}

/// Parses a webhook URL: absolute, `http` or `https`, with a host.
pub fn parse(url: &str) -> Result<Url, TargetError> {
    let parsed = Url::parse(url).map_err(|_| TargetError::NotHttp)?;
    let http = matches!(parsed.scheme(), "http" | "https");
    if !http || parsed.host_str().is_none_or(str::is_empty) {
        return Err(TargetError::NotHttp);
    }
    Ok(parsed)
}

/// The address a URL names literally, if its host is an IP address (no lookup happens for
/// one, so the resolver never sees it).
pub fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Checks a URL being registered: every address its host has must be public.
pub async fn check_public(url: &Url) -> Result<(), TargetError> {
    if let Some(ip) = literal_ip(url) {
        return if is_private(ip) {
            Err(TargetError::Private)
        } else {
            Ok(())
        };
    }
    let host = url.host_str().ok_or(TargetError::NotHttp)?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| TargetError::Unresolvable)?
        .collect();
    if addrs.is_empty() {
        return Err(TargetError::Unresolvable);
    }
    if addrs.iter().any(|addr| is_private(addr.ip())) {
        return Err(TargetError::Private);
    }
    Ok(())
}

/// The resolver of the client that sends to registered endpoints: it drops private
/// addresses from every answer, and fails a name that has only those.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = addrs.filter(|addr| !is_private(addr.ip())).collect();
            if public.is_empty() {
                return Err(
                    Box::new(TargetError::Private) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip} must be refused");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "64:ff9b::101:101",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn urls_are_absolute_http() {
        assert!(parse("https://hooks.example.com/in").is_ok());
        assert_eq!(parse("ftp://example.com/"), Err(TargetError::NotHttp));
        assert_eq!(parse("/relative"), Err(TargetError::NotHttp));
        assert_eq!(
            literal_ip(&parse("http://[::1]:8080/").unwrap()),
            Some("::1".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn literal_and_resolved_private_hosts_are_refused() {
        let url = parse("http://127.0.0.1:9/hook").unwrap();
        assert_eq!(check_public(&url).await, Err(TargetError::Private));
        let url = parse("http://localhost:9/hook").unwrap();
        assert_eq!(check_public(&url).await, Err(TargetError::Private));
    }
}
