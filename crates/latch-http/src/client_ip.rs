//! The client's address, the one every limit, log event, audit record and session uses.
//!
//! A request's socket peer is the client, unless the peer is one of the operator's trusted
//! proxies (`LATCH_TRUSTED_PROXIES`, mounted as app data by the composition root). Then the
//! forwarding chain (`X-Forwarded-For`, or RFC 7239 `Forwarded`) is walked from the right, each
//! entry being the address the proxy to its right saw; trusted proxies are skipped and the first
//! untrusted hop is the client. Everything left of it was written by the client and is never
//! read. A chain whose walk meets an entry that is not an address, or an empty chain: the peer
//! address. When both headers are sent and name different clients, `X-Forwarded-For` wins. Without trusted proxies no header is
//! believed at all.
//!
//! **Invariant:** this is the only code that reads a request's peer address or forwarding headers
//! (`clippy.toml` disallows `HttpRequest::peer_addr` and `ConnectionInfo::realip_remote_addr`
//! elsewhere), so no caller can pick the wrong one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName};
use actix_web::{HttpMessage, HttpRequest, web};
use ipnet::IpNet;
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};

/// Proxies whose forwarding headers are believed. Empty (the default): none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets.into_iter().map(|n| n.trunc()).collect())
    }

    /// Parses CIDR ranges (`10.0.0.0/8`, `2001:db8::/32`) or single addresses, separated by
    /// commas or white space. The error names the first entry that is neither.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            let net = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("{entry:?} is not an IP address or CIDR range (e.g. 10.0.0.0/8)")
                })?;
            nets.push(net);
        }
        Ok(Self::new(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges, as configured.
    pub fn ranges(&self) -> &[IpNet] {
        &self.0
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?.to_canonical();
        if !self.contains(peer) {
            return Some(peer);
        }
        let xff = joined(headers, &header::X_FORWARDED_FOR)
            .map(|v| self.walk(v.as_deref().map(xff_hops)));
        let fwd = joined(headers, &header::FORWARDED)
            .map(|v| self.walk(v.as_deref().and_then(forwarded_hops)));
        let client = match (xff, fwd) {
            (None, None) => return Some(peer),
            (Some(one), None) | (None, Some(one)) => one,
            // When both are sent and disagree, one was written by the client: `X-Forwarded-For`,
            // which load balancers write, is believed (falling back to the peer would pool every
            // such client on the balancer's address, and give an attacker a second identity).
            (Some(a), Some(b)) => a.or(b),
        };
        Some(client.unwrap_or(peer))
    }

    /// The first untrusted hop from the right; `None` when the walk meets something that is
    /// not an address (or there is nothing to walk).
    fn walk(&self, hops: Option<Vec<&str>>) -> Option<IpAddr> {
        let hops = hops?;
        let mut last = None;
        for hop in hops.iter().rev() {
            let ip = parse_node(hop)?;
            if !self.contains(ip) {
                return Some(ip);
            }
            last = Some(ip);
        }
        // Every hop is a trusted address: the farthest one is the client.
        last
    }
}

/// Every line of a header joined with commas (`Some(None)` when a value is not text).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<Option<String>> {
    let mut values = headers.get_all(name).peekable();
    values.peek()?;
    let mut out = Vec::new();
    for v in values {
        match v.to_str() {
            Ok(s) => out.push(s),
            Err(_) => return Some(None),
        }
    }
    Some(Some(out.join(",")))
}

fn xff_hops(v: &str) -> Vec<&str> {
    v.split(',').map(str::trim).collect()
}

/// The `for` node of each element of a `Forwarded` value, in order; `None` when an element has
/// none or the value does not parse (RFC 7239 §4: elements by commas, pairs by semicolons,
/// values tokens or quoted strings).
fn forwarded_hops(v: &str) -> Option<Vec<&str>> {
    let mut hops = Vec::new();
    for element in split_unquoted(v, ',') {
        let mut node = None;
        for pair in split_unquoted(element, ';') {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=')?;
            if name.trim().eq_ignore_ascii_case("for") {
                let value = value.trim();
                let value = match value.strip_prefix('"') {
                    Some(q) => q.strip_suffix('"')?,
                    None => value,
                };
                // A node is an address, maybe a port, in brackets for IPv6: no escapes needed.
                if value.contains('\\') || node.is_some() {
                    return None;
                }
                node = Some(value);
            }
        }
        hops.push(node?);
    }
    Some(hops)
}

/// `s` split at `sep` outside double-quoted strings (a backslash escapes inside them).
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// An address as proxies write it: bare, IPv4 with a port, IPv6 in brackets with or without one
/// (RFC 7239 ports may be obfuscated: `_abc`).
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    let port_ok =
        |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let ip = if let Ok(ip) = node.parse::<IpAddr>() {
        ip
    } else if let Some(inner) = node.strip_prefix('[') {
        let (addr, rest) = inner.split_once(']')?;
        if !(rest.is_empty() || rest.strip_prefix(':').is_some_and(port_ok)) {
            return None;
        }
        IpAddr::V6(addr.parse::<Ipv6Addr>().ok()?)
    } else {
        let (addr, port) = node.rsplit_once(':')?;
        if !port_ok(port) {
            return None;
        }
        IpAddr::V4(addr.parse::<Ipv4Addr>().ok()?)
    };
    Some(ip.to_canonical())
}

/// The client's address (see the module documentation). `None` only for a request without a
/// peer (a test request).
#[allow(clippy::disallowed_methods)] // the one place the socket peer is read
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    let trusted = req.app_data::<web::Data<TrustedProxies>>();
    if trusted.is_none_or(|t| t.ranges().is_empty()) {
        warn_if_behind_a_proxy(peer, req.headers());
    }
    match trusted {
        Some(trusted) => trusted.client(peer, req.headers()),
        None => peer.map(|p| p.to_canonical()),
    }
}

/// The scheme a trusted proxy says the client used: `X-Forwarded-Proto` (its last value, which
/// the nearest proxy wrote), else RFC 7239 `Forwarded`'s `proto` (its last element). `None` when
/// the request did not come from a trusted proxy or the proxy named no scheme; `Some(None)` when
/// it named one that is neither `http` nor `https`.
#[allow(clippy::disallowed_methods)] // reads the socket peer, as `client_ip` does
pub fn forwarded_scheme(req: &HttpRequest) -> Option<Option<&'static str>> {
    let trusted = req.app_data::<web::Data<TrustedProxies>>()?;
    if !trusted.contains(req.peer_addr()?.ip()) {
        return None;
    }
    let named = match joined(
        req.headers(),
        &header::HeaderName::from_static("x-forwarded-proto"),
    ) {
        Some(v) => v.and_then(|v| v.rsplit(',').next().map(|s| s.trim().to_ascii_lowercase())),
        // Split as `forwarded_hops` splits (quoted commas and semicolons are not separators).
        None => joined(req.headers(), &header::FORWARDED)?.and_then(|v| {
            split_unquoted(&v, ',').last().and_then(|last| {
                split_unquoted(last, ';').into_iter().find_map(|pair| {
                    let (k, val) = pair.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("proto")
                        .then(|| val.trim().trim_matches('"').to_ascii_lowercase())
                })
            })
        }),
    };
    Some(match named.as_deref() {
        Some("https") => Some("https"),
        Some("http") => Some("http"),
        _ => None,
    })
}

/// The scheme the client used, for logs: what a trusted proxy says ([`forwarded_scheme`]),
/// else the connection's own, plain HTTP (Latch does not terminate TLS; not
/// `ConnectionInfo::scheme`, which believes forwarding headers from anyone).
pub fn client_scheme(req: &HttpRequest) -> &'static str {
    match forwarded_scheme(req) {
        Some(Some(s)) => s,
        Some(None) => "unknown",
        None => "http",
    }
}

/// Without `LATCH_TRUSTED_PROXIES`, `X-Forwarded-For` from a private or loopback peer usually
/// means a load balancer nobody told Latch about: every user then shares its address (one
/// address's throttling, one `ip` in the logs). Said once per process.
fn warn_if_behind_a_proxy(peer: Option<IpAddr>, headers: &HeaderMap) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let inward = peer.is_some_and(|p| {
        matches!(
            latch_core::net::classify(p),
            Some(
                latch_core::net::AddressKind::Private
                    | latch_core::net::AddressKind::Loopback
                    | latch_core::net::AddressKind::Shared
            )
        )
    });
    if inward
        && headers.contains_key(header::X_FORWARDED_FOR)
        && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            peer = ?peer,
            "requests come through a proxy (X-Forwarded-For from a private address) but \
             LATCH_TRUSTED_PROXIES is not set: every client looks like the proxy, and shares its \
             sign-in throttling; set LATCH_TRUSTED_PROXIES to the proxy's addresses"
        );
    }
}

/// tracing-actix-web's root span, with `http.client_ip` from [`client_ip`] (its default reads
/// `X-Forwarded-For` from anyone).
pub struct RootSpan;

impl RootSpanBuilder for RootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let ip = client_ip(request.request())
            .map(|i| i.to_string())
            .unwrap_or_default();
        let route = request.match_pattern().unwrap_or_else(|| "default".into());
        let method = request.method().as_str();
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|r| r.to_string())
            .unwrap_or_default();
        let user_agent = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let scheme = client_scheme(request.request());
        tracing::info_span!(
            "HTTP request",
            http.method = %method,
            http.scheme = %scheme,
            http.route = %route,
            http.flavor = ?request.version(),
            http.client_ip = %ip,
            http.user_agent = %user_agent,
            // The path only: a query can hold `state`, `login_hint`, codes.
            http.target = %request.uri().path(),
            http.status_code = tracing::field::Empty,
            otel.name = %format!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            request_id = %request_id,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    /// The status on the span; a refused request (4xx) is one `info` event with the error's
    /// message, never its `Debug` form; a server error's cause is logged where it happened
    /// (`ApiError`, `OAuthError`), and here only as a message.
    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let (status, error) = match outcome {
            Ok(res) => (res.status(), res.response().error().map(|e| e.to_string())),
            Err(e) => (e.as_response_error().status_code(), Some(e.to_string())),
        };
        span.record("http.status_code", status.as_u16());
        span.record(
            "otel.status_code",
            if status.is_server_error() {
                "ERROR"
            } else {
                "OK"
            },
        );
        if let Some(mut message) = error {
            // Error texts can quote what the caller sent: bounded, never the whole input.
            if let Some((cut, _)) = message.char_indices().nth(200) {
                message.truncate(cut);
                message.push('…');
            }
            span.record("exception.message", tracing::field::display(&message));
            let _entered = span.enter();
            if status.is_server_error() {
                tracing::error!(status = status.as_u16(), error = %message, "request failed");
            } else {
                tracing::info!(status = status.as_u16(), error = %message, "request refused");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn lb() -> TrustedProxies {
        TrustedProxies::parse("10.0.0.0/8, 2001:db8:1::/48 192.168.1.7").unwrap()
    }

    const LB: &str = "10.0.0.5";

    #[test]
    fn parses_ranges_and_addresses_and_names_a_bad_entry() {
        let t = lb();
        assert_eq!(t.ranges().len(), 3);
        assert!(t.contains(ip("10.200.0.1")) && t.contains(ip("192.168.1.7")));
        assert!(!t.contains(ip("192.168.1.8")) && !t.contains(ip("11.0.0.1")));
        assert!(t.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        let e = TrustedProxies::parse("10.0.0.0/8,10.0.0.0/33").unwrap_err();
        assert!(e.contains("10.0.0.0/33"), "{e}");
        assert!(TrustedProxies::parse("example.com").is_err());
    }

    #[test]
    fn untrusted_peer_headers_ignored() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6")]);
        assert_eq!(lb().client(Some(ip("8.8.4.4")), &h), Some(ip("8.8.4.4")));
        // No trusted proxies: the peer, whatever the headers say.
        let none = TrustedProxies::default();
        assert_eq!(none.client(Some(ip(LB)), &h), Some(ip(LB)));
        assert_eq!(none.client(None, &h), None);
    }

    #[test]
    fn walks_from_the_right_skipping_trusted_hops() {
        let t = lb();
        let peer = Some(ip(LB));
        let client = |xff: &str| t.client(peer, &headers(&[("x-forwarded-for", xff)]));
        assert_eq!(client("203.0.113.9"), Some(ip("203.0.113.9")));
        // What the client wrote itself (left of the first untrusted hop) is never read.
        assert_eq!(
            client("1.1.1.1, 203.0.113.9, 10.1.1.1"),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(client("garbage, 203.0.113.9"), Some(ip("203.0.113.9")));
        assert_eq!(client("203.0.113.9:5123"), Some(ip("203.0.113.9")));
        assert_eq!(client("[2001:db8::7]:443"), Some(ip("2001:db8::7")));
        assert_eq!(
            client("10.3.3.3, 10.1.1.1"),
            Some(ip("10.3.3.3")),
            "all trusted"
        );
        // Several header lines form one list.
        let h = headers(&[
            ("x-forwarded-for", "9.9.9.9"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(t.client(peer, &h), Some(ip("203.0.113.9")));
    }

    #[test]
    fn malformed_chains_give_the_peer() {
        let t = lb();
        let peer = Some(ip(LB));
        for bad in [
            "",
            "unknown",
            "203.0.113.9, nonsense",
            "1.2.3",
            "203.0.113.9 ,  ",
        ] {
            let h = headers(&[("x-forwarded-for", bad)]);
            assert_eq!(t.client(peer, &h), Some(ip(LB)), "{bad:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            header::X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"\xff203.0.113.9").unwrap(),
        );
        assert_eq!(t.client(peer, &h), Some(ip(LB)), "not text");
    }

    #[test]
    fn forwarded_rfc7239() {
        let t = lb();
        let peer = Some(ip(LB));
        let client = |v: &str| t.client(peer, &headers(&[("forwarded", v)]));
        assert_eq!(client("for=203.0.113.9"), Some(ip("203.0.113.9")));
        assert_eq!(
            client(r#"for="[2001:db8:cafe::17]:4711";proto=https, For=10.1.1.1;by=10.0.0.5"#),
            Some(ip("2001:db8:cafe::17"))
        );
        assert_eq!(
            client(r#"for=192.0.2.60;proto=http;by=203.0.113.43, for="198.51.100.17:_port""#),
            Some(ip("198.51.100.17"))
        );
        assert_eq!(
            client(r#"for="x,y";host=a, for=198.51.100.17"#),
            Some(ip("198.51.100.17"))
        );
        for bad in [
            "for=unknown",
            "for=_hidden",
            "proto=https",
            "for=203.0.113.9;for=1.1.1.1",
            r#"for="203.0.113.9"#,
            "for",
        ] {
            assert_eq!(client(bad), Some(ip(LB)), "{bad:?}");
        }
    }

    #[test]
    fn x_forwarded_for_wins_when_the_headers_disagree() {
        let t = lb();
        let peer = Some(ip(LB));
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        assert_eq!(t.client(peer, &h), Some(ip("203.0.113.9")));
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=6.6.6.6"),
        ]);
        assert_eq!(t.client(peer, &h), Some(ip("203.0.113.9")));
        let h = headers(&[
            ("x-forwarded-for", "not-an-address"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        assert_eq!(t.client(peer, &h), Some(ip("203.0.113.9")));
    }

    #[test]
    fn ipv4_mapped_peers_are_canonical() {
        let t = lb();
        let h = headers(&[("x-forwarded-for", "::ffff:203.0.113.9")]);
        assert_eq!(
            t.client(Some(ip("::ffff:10.0.0.5")), &h),
            Some(ip("203.0.113.9"))
        );
        let plain = TrustedProxies::default();
        assert_eq!(
            plain.client(Some(ip("::ffff:198.51.100.1")), &HeaderMap::new()),
            Some(ip("198.51.100.1"))
        );
    }
}
