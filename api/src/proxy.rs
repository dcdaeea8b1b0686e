//! Who sent a request when reverse proxies stand in between (`MEDLEDGER_TRUSTED_PROXIES`).
//!
//! Behind a proxy every request arrives from the proxy's address. The proxy names the
//! client in `X-Forwarded-For`, and the scheme and host the client used in
//! `X-Forwarded-Proto` / `X-Forwarded-Host`; but any client can send those headers, so
//! they are believed only when the socket peer is a configured trusted proxy. The
//! client is then the right-most `X-Forwarded-For` address that is not itself a
//! trusted proxy: everything to its left was written by the client and proves nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Extensions, HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("MEDLEDGER_TRUSTED_PROXIES: '{0}' is neither an IP address nor a CIDR range (such as 10.0.0.0/8 or fd00::/8)")]
pub struct BadProxy(String);

/// The reverse proxies whose `X-Forwarded-*` headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// The request's client as far as it can be told: set on every request by [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The socket peer, or the address a trusted proxy forwarded for.
    pub ip: IpAddr,
    /// `http` or `https`, from a trusted proxy's `X-Forwarded-Proto`.
    pub forwarded_proto: Option<&'static str>,
    /// A trusted proxy's `X-Forwarded-Host`, when it is a well-formed host.
    pub forwarded_host: Option<String>,
}

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";

impl TrustedProxies {
    /// Addresses (`10.0.0.7`) and ranges (`10.0.0.0/8`, `fd00::/8`).
    pub fn parse(entries: &[String]) -> Result<Self, BadProxy> {
        entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry.parse::<IpNet>().or_else(|_| entry.parse::<IpAddr>().map(IpNet::from)).map_err(|_| BadProxy(entry.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> Client {
        // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return Client { ip: peer, forwarded_proto: None, forwarded_host: None };
        }
        let mut ip = peer;
        for hop in values(headers, X_FORWARDED_FOR).rev() {
            // An entry that is no address: nothing further left can be placed.
            let Some(hop) = parse_hop(hop) else { break };
            ip = hop;
            if !self.trusts(hop) {
                break;
            }
        }
        // Proxies set these rather than append to them: the last value is the nearest
        // proxy's, the one that is trusted.
        let forwarded_proto = values(headers, X_FORWARDED_PROTO).next_back().and_then(|p| {
            if p.eq_ignore_ascii_case("https") {
                Some("https")
            } else if p.eq_ignore_ascii_case("http") {
                Some("http")
            } else {
                None
            }
        });
        let forwarded_host = values(headers, X_FORWARDED_HOST).next_back().filter(|h| is_host(h)).map(str::to_string);
        Client { ip, forwarded_proto, forwarded_host }
    }
}

/// Every comma-separated value of every line of a header, trimmed, in order; a line that
/// is not text counts as one unreadable value.
fn values<'a>(headers: &'a HeaderMap, name: &str) -> impl DoubleEndedIterator<Item = &'a str> {
    let lines: Vec<&str> = headers.get_all(name).iter().map(|v| v.to_str().unwrap_or("\u{0}")).collect();
    lines.into_iter().flat_map(|line| line.split(',')).map(str::trim).collect::<Vec<_>>().into_iter()
}

/// An `X-Forwarded-For` entry: an address, bracketed or not, with or without a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim_matches('"');
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| hop.strip_prefix('[').and_then(|h| h.strip_suffix(']')).and_then(|h| h.parse().ok()))?;
    Some(ip.to_canonical())
}

/// A host as it may appear in a URL's authority: a name or an address, with an
/// optional port; nothing that could end the authority or start a path or a query.
pub fn is_host(host: &str) -> bool {
    !host.is_empty() && host.len() <= 255 && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b))
}

/// Middleware: resolves the [`Client`] of every request once, for the rate limits,
/// the metadata recorded with events, and absolute links.
pub async fn resolve(State(proxies): State<Arc<TrustedProxies>>, mut req: Request, next: Next) -> Response {
    if let Some(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) {
        let client = proxies.client(peer, req.headers());
        req.extensions_mut().insert(client);
    }
    next.run(req).await
}

/// The client's address: as [`resolve`] found it, else the socket peer.
pub fn client_ip(extensions: &Extensions) -> Option<IpAddr> {
    extensions.get::<Client>().map(|c| c.ip).or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_canonical()))
}

/// `scheme://host` as the client addressed the server, for absolute links: a trusted
/// proxy's forwarded scheme and host, else `https` when the server is reached over
/// HTTPS (`MEDLEDGER_HTTPS`) and the `Host` header.
pub fn origin(headers: &HeaderMap, extensions: &Extensions, https: bool) -> String {
    let client = extensions.get::<Client>();
    let scheme = client.and_then(|c| c.forwarded_proto).unwrap_or(if https { "https" } else { "http" });
    let host = client
        .and_then(|c| c.forwarded_host.clone())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()).filter(|h| is_host(h)).map(str::to_string))
        .unwrap_or_else(|| "localhost".to_string());
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid list")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).expect("header"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https"), ("x-forwarded-host", "evil.example")]);
        assert_eq!(p.client(ip("203.0.113.9"), &h), Client { ip: ip("203.0.113.9"), forwarded_proto: None, forwarded_host: None });
        assert_eq!(TrustedProxies::default().client(ip("10.0.0.1"), &h).ip, ip("10.0.0.1"), "no proxies configured: none trusted");
    }

    #[test]
    fn behind_a_trusted_proxy_the_right_most_untrusted_address_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "192.168.1.5"]);
        // The client claims 6.6.6.6; the edge proxy appended the address it saw; an inner
        // trusted proxy appended the edge's.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7"), ("x-forwarded-for", "192.168.1.5")]);
        assert_eq!(p.client(ip("10.1.2.3"), &h).ip, ip("198.51.100.7"));
        // No header: the proxy itself.
        assert_eq!(p.client(ip("10.1.2.3"), &HeaderMap::new()).ip, ip("10.1.2.3"));
        // Every hop trusted: the left-most.
        assert_eq!(p.client(ip("10.1.2.3"), &headers(&[("x-forwarded-for", "10.9.9.9, 192.168.1.5")])).ip, ip("10.9.9.9"));
        // Garbage stops the walk at the last address that could be placed.
        assert_eq!(p.client(ip("10.1.2.3"), &headers(&[("x-forwarded-for", "1.1.1.1, unknown, 10.4.4.4")])).ip, ip("10.4.4.4"));
    }

    #[test]
    fn forwarded_entries_may_carry_ports_brackets_and_mapped_addresses() {
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(p.client(ip("::ffff:10.0.0.1"), &headers(&[("x-forwarded-for", "198.51.100.7:4711")])).ip, ip("198.51.100.7"));
        assert_eq!(p.client(ip("10.0.0.1"), &headers(&[("x-forwarded-for", "[2001:db8::1]:443")])).ip, ip("2001:db8::1"));
        assert_eq!(p.client(ip("10.0.0.1"), &headers(&[("x-forwarded-for", "[2001:db8::2]")])).ip, ip("2001:db8::2"));
    }

    #[test]
    fn scheme_and_host_come_from_the_nearest_trusted_proxy_and_must_be_well_formed() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-proto", "http, HTTPS"), ("x-forwarded-host", "api.example.org:8443"), ("host", "10.0.0.2:8000")]);
        let client = p.client(ip("10.0.0.1"), &h);
        assert_eq!(client.forwarded_proto, Some("https"));
        assert_eq!(client.forwarded_host.as_deref(), Some("api.example.org:8443"));
        let mut ext = Extensions::new();
        ext.insert(client);
        assert_eq!(origin(&h, &ext, false), "https://api.example.org:8443");
        let bad = headers(&[("x-forwarded-proto", "gopher"), ("x-forwarded-host", "evil.example/path?"), ("host", "10.0.0.2:8000")]);
        let mut ext = Extensions::new();
        ext.insert(p.client(ip("10.0.0.1"), &bad));
        assert_eq!(origin(&bad, &ext, false), "http://10.0.0.2:8000");
        assert_eq!(origin(&bad, &ext, true), "https://10.0.0.2:8000", "MEDLEDGER_HTTPS says clients use https");
    }

    #[test]
    fn a_list_entry_that_is_no_address_or_range_is_refused() {
        assert!(TrustedProxies::parse(&["10.0.0.0/8".into(), " 127.0.0.1 ".into(), "::1".into()]).is_ok());
        assert_eq!(TrustedProxies::parse(&["10.0.0.0/33".into()]).unwrap_err(), BadProxy("10.0.0.0/33".into()));
        assert!(TrustedProxies::parse(&["proxy.internal".into()]).is_err());
    }
}
