//! The server under test. The load tool only ever talks to the local machine:
//! any base URL whose host is not a loopback address is refused before a single
//! request is sent, and redirects are never followed (see [`crate::api`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use reqwest::Url;

/// Why a `--url` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError(String);

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TargetError {}

fn refuse(raw: &str, why: impl fmt::Display) -> TargetError {
    TargetError(format!(
        "--url {raw:?} refused: {why}. The load tool only drives a server on this machine: \
         use http://127.0.0.1:PORT (any 127.0.0.0/8 address), http://localhost:PORT or http://[::1]:PORT"
    ))
}

/// A validated base URL, e.g. `http://127.0.0.1:3001` (no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    url: Url,
    base: String,
}

impl Target {
    /// The base as given (normalised), for reports.
    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// Absolute URL of an API path such as `/api/v1/users/me`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The WebSocket endpoint: `ws://host:port[/prefix]/cable`.
    pub fn cable_url(&self) -> String {
        let rest = self.base.strip_prefix("http://").unwrap_or(&self.base);
        format!("ws://{rest}/cable")
    }

    /// The address to open sockets to: the literal address, or for
    /// `localhost` its first loopback address (IPv4 preferred). Never anything
    /// but a loopback address.
    pub async fn socket_addr(&self) -> Result<SocketAddr, TargetError> {
        let host = self.url.host_str().unwrap_or_default();
        let port = self.url.port_or_known_default().unwrap_or(80);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let mut candidates: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| refuse(self.url.as_str(), format!("cannot resolve {host}: {e}")))?
                .collect(),
        };
        candidates.retain(|a| a.ip().is_loopback());
        candidates.sort_by_key(|a| !a.is_ipv4());
        candidates
            .first()
            .copied()
            .ok_or_else(|| refuse(self.url.as_str(), format!("{host} has no loopback address")))
    }

    /// `true` when the host is the name `localhost` (which must then resolve to
    /// loopback addresses only, see [`Target::check_resolution`]).
    fn is_named(&self) -> bool {
        matches!(self.url.host_str(), Some(h) if !h.starts_with('[') && h.parse::<IpAddr>().is_err())
    }

    /// For `localhost`, checks that every address it resolves to is a loopback
    /// address (a doctored hosts file must not turn a load test into an attack).
    pub async fn check_resolution(&self) -> Result<(), TargetError> {
        if !self.is_named() {
            return Ok(());
        }
        let host = self.url.host_str().unwrap_or_default();
        let port = self.url.port_or_known_default().unwrap_or(80);
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| refuse(self.url.as_str(), format!("cannot resolve {host}: {e}")))?;
        for addr in addrs {
            if !addr.ip().is_loopback() {
                return Err(refuse(
                    self.url.as_str(),
                    format!(
                        "{host} resolves to {}, which is not a loopback address",
                        addr.ip()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Parses `--url` and refuses anything that is not plain HTTP to a loopback
/// host: an IPv4 address in 127.0.0.0/8, the IPv6 address `::1`, or the name
/// `localhost`. Pure: no name resolution.
pub fn parse_loopback_url(raw: &str) -> Result<Target, TargetError> {
    let url = Url::parse(raw.trim()).map_err(|e| refuse(raw, format!("not a URL ({e})")))?;
    if url.scheme() != "http" {
        return Err(refuse(
            raw,
            format!(
                "scheme {:?} is not supported (plain http only)",
                url.scheme()
            ),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse(raw, "credentials in the URL are not supported"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(refuse(
            raw,
            "the base URL must not have a query or a fragment",
        ));
    }
    let host = url.host_str().ok_or_else(|| refuse(raw, "no host"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match bare.parse::<IpAddr>() {
        // `Ipv4Addr::is_loopback` is 127.0.0.0/8; `Ipv6Addr::is_loopback` is ::1 only.
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let name = host.strip_suffix('.').unwrap_or(host);
            name.eq_ignore_ascii_case("localhost")
        }
    };
    if !loopback {
        return Err(refuse(
            raw,
            format!("host {host} is not a loopback address"),
        ));
    }
    let base = url.as_str().trim_end_matches('/').to_owned();
    Ok(Target { url, base })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_loopback_hosts() {
        for ok in [
            "http://127.0.0.1:3001",
            "http://127.0.0.1:3001/",
            "http://127.1.2.3:80",
            "http://localhost:3001",
            "http://LOCALHOST:3001",
            "http://localhost.:3001",
            "http://[::1]:3001",
            "  http://127.0.0.1:3999  ",
        ] {
            assert!(parse_loopback_url(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "http://10.0.0.1:3001",
            "http://192.168.1.5",
            "http://0.0.0.0:3001",
            "http://128.0.0.1",
            "http://[::]:3001",
            "http://[::ffff:127.0.0.1]:3001",
            "http://[2001:db8::1]",
            "http://example.com",
            "http://localhost.example.com",
            "http://mylocalhost",
            "http://127.0.0.1.nip.io",
            "https://127.0.0.1:3001",
            "ws://127.0.0.1:3001",
            "http://user:pw@127.0.0.1:3001",
            "http://127.0.0.1:3001/?x=1",
            "127.0.0.1:3001",
            "not a url",
        ] {
            let err = parse_loopback_url(bad).expect_err(bad);
            assert!(err.to_string().contains("refused"), "{bad}: {err}");
        }
    }

    #[test]
    fn error_names_the_flag_and_the_host() {
        let err = parse_loopback_url("http://10.1.2.3:3001")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--url"), "{err}");
        assert!(err.contains("10.1.2.3 is not a loopback address"), "{err}");
    }

    #[test]
    fn builds_endpoints_without_double_slashes() {
        let t = parse_loopback_url("http://127.0.0.1:3001/").unwrap();
        assert_eq!(t.as_str(), "http://127.0.0.1:3001");
        assert_eq!(t.endpoint("/up"), "http://127.0.0.1:3001/up");
        let prefixed = parse_loopback_url("http://localhost:8080/chat/").unwrap();
        assert_eq!(
            prefixed.endpoint("/api/v1/users/me"),
            "http://localhost:8080/chat/api/v1/users/me"
        );
    }

    #[tokio::test]
    async fn cable_url_and_socket_address() {
        let t = parse_loopback_url("http://127.0.0.2:3997/").unwrap();
        assert_eq!(t.cable_url(), "ws://127.0.0.2:3997/cable");
        assert_eq!(
            t.socket_addr().await.unwrap(),
            "127.0.0.2:3997".parse().unwrap()
        );
        let v6 = parse_loopback_url("http://[::1]:80/chat").unwrap();
        assert_eq!(v6.cable_url(), "ws://[::1]/chat/cable");
        assert_eq!(v6.socket_addr().await.unwrap(), "[::1]:80".parse().unwrap());
        let named = parse_loopback_url("http://localhost:9").unwrap();
        assert!(named.socket_addr().await.unwrap().ip().is_loopback());
    }

    #[tokio::test]
    async fn literal_addresses_need_no_resolution() {
        let t = parse_loopback_url("http://127.0.0.1:1").unwrap();
        assert!(t.check_resolution().await.is_ok());
    }
}
