//! The origin a client reached the service at (`http://photos.lan:5000`). With the
//! embedded store, the URLs a client is handed point there, so its bytes go back the way
//! its request came, through the service's own listener.

/// `scheme://host[:port]`, checked: the scheme is `http` or `https`, and the authority is
/// a host name or address with an optional port, nothing else (no user, path or query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOrigin {
    https: bool,
    /// Lower-cased.
    authority: String,
}

impl ClientOrigin {
    /// `None` when `authority` is not a plain `host[:port]`.
    pub fn new(https: bool, authority: &str) -> Option<Self> {
        let authority = authority.trim().to_ascii_lowercase();
        let (host, port) = split_authority(&authority)?;
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        let host_ok = if let Some(inner) = host.strip_prefix('[') {
            // An IPv6 literal.
            inner
                .strip_suffix(']')
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
        } else {
            !host.is_empty() && host.len() <= 253 && host.chars().all(plain)
        };
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
        (host_ok && port_ok).then_some(Self { https, authority })
    }

    /// From `scheme://host[:port]` (`PUBLIC_URL`); `None` for anything else, a path included.
    pub fn parse(url: &str) -> Option<Self> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            (false, url.strip_prefix("http://")?)
        };
        Self::new(https, rest.strip_suffix('/').unwrap_or(rest))
    }

    /// `host[:port]`, as a `Host` header carries it.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// `scheme://host[:port]`.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }
}

/// `host[:port]` split at the port's colon (an IPv6 literal keeps its own).
pub fn split_authority(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            rest => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    Some(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// An `ALLOWED_HOSTS` entry: a host, and the one port it is allowed on when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    host: String,
    port: Option<String>,
}

impl AllowedHost {
    /// `None` when `entry` is not a plain `host[:port]`.
    pub fn parse(entry: &str) -> Option<Self> {
        let origin = ClientOrigin::new(false, entry)?;
        let (host, port) = split_authority(origin.authority())?;
        Some(Self {
            host: host.to_owned(),
            port: port.map(str::to_owned),
        })
    }

    /// Whether a request's `host[:port]` is this entry: the same host, on its port when it
    /// names one.
    pub fn allows(&self, authority: &str) -> bool {
        let Some((host, port)) = split_authority(authority) else {
            return false;
        };
        host.eq_ignore_ascii_case(&self.host)
            && self
                .port
                .as_deref()
                .is_none_or(|allowed| port == Some(allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_a_plain_host_and_port() {
        let origin = ClientOrigin::new(false, "Photos.LAN:5000").expect("origin");
        assert_eq!(origin.url(), "http://photos.lan:5000");
        assert_eq!(origin.authority(), "photos.lan:5000");
        assert_eq!(
            ClientOrigin::new(true, "[::1]:8443").map(|o| o.url()),
            Some("https://[::1]:8443".to_owned())
        );
        for bad in [
            "",
            "evil.example/path",
            "user@evil.example",
            "evil.example:port",
            "evil.example:99999",
            "a b",
            "[::1",
            "[nothost]:80",
            "evil.example?x=1",
            "evil.example#x",
        ] {
            assert_eq!(ClientOrigin::new(false, bad), None, "{bad:?}");
        }
        assert_eq!(
            ClientOrigin::parse("https://uploads.example.com/").map(|o| o.url()),
            Some("https://uploads.example.com".to_owned())
        );
        assert_eq!(ClientOrigin::parse("https://uploads.example.com/app"), None);
        assert_eq!(ClientOrigin::parse("ftp://uploads.example.com"), None);
    }

    #[test]
    fn allowed_hosts_match_their_host_and_port() {
        let any_port = AllowedHost::parse("Photos.lan").expect("entry");
        assert!(any_port.allows("photos.lan"));
        assert!(any_port.allows("PHOTOS.LAN:5000"));
        assert!(!any_port.allows("photos.lan.evil.example"));
        assert!(!any_port.allows("evil.example"));
        let one_port = AllowedHost::parse("photos.lan:5000").expect("entry");
        assert!(one_port.allows("photos.lan:5000"));
        assert!(!one_port.allows("photos.lan"));
        assert!(!one_port.allows("photos.lan:5001"));
        let v6 = AllowedHost::parse("[::1]:5000").expect("entry");
        assert!(v6.allows("[::1]:5000"));
        assert_eq!(AllowedHost::parse("a/b"), None);
    }
}
