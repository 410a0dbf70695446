//! The outbound address policy: which hosts Latch connects to when it fetches a document or posts
//! a logout, whoever supplied the URL (an admin, an API caller, a discovery document, SAML
//! metadata). Pure functions over URLs and addresses: the management API applies them when a URL
//! is saved (`validate`), and `latch_http::client::Outbound` applies them before every request
//! (IP-literal hosts) and after every DNS resolution (host names).
//!
//! Refused: unspecified (`0.0.0.0/8`, `::`), private (RFC 1918, ULA `fc00::/7`, site-local
//! `fec0::/10`), shared address space (CGNAT, `100.64.0.0/10`), link-local (`169.254.0.0/16`,
//! `fe80::/10`, where cloud metadata services answer), multicast, broadcast and reserved
//! (`240.0.0.0/4`, IPv4-compatible `::/96`) addresses, in their IPv4-mapped and NAT64
//! (`64:ff9b::/96`) forms too; and loopback, except the development case: a URL whose host *is*
//! a loopback address or `localhost` (a name that resolves to loopback is refused). An
//! operator's allow-list (`LATCH_OUTBOUND_ALLOW`, CIDRs) lets the ranges it names through.
//!
//! Also the port through which Latch fetches ([`Fetch`]), and its errors, which say what failed
//! and never carry what was fetched.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use async_trait::async_trait;
pub use ipnet::IpNet;
use url::{Host, Url};

/// Why an address is not a public one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    Unspecified,
    Loopback,
    Private,
    /// RFC 6598 shared address space (carrier-grade NAT).
    Shared,
    LinkLocal,
    Multicast,
    Broadcast,
    Reserved,
}

impl AddressKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::Shared => "a shared (carrier-grade NAT) address",
            Self::LinkLocal => "a link-local address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Reserved => "a reserved address",
        }
    }
}

/// What kind of non-public address `ip` is; `None` for a public one. IPv4-mapped IPv6
/// addresses are classified as the IPv4 address they carry.
pub fn classify(ip: IpAddr) -> Option<AddressKind> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressKind> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_broadcast() {
        AddressKind::Broadcast
    } else if a == 0 {
        // "This network"; 0.0.0.0 reaches the local host on Linux.
        AddressKind::Unspecified
    } else if ip.is_loopback() {
        AddressKind::Loopback
    } else if ip.is_private() {
        AddressKind::Private
    } else if a == 100 && (b & 0xc0) == 64 {
        AddressKind::Shared
    } else if ip.is_link_local() {
        AddressKind::LinkLocal
    } else if ip.is_multicast() {
        AddressKind::Multicast
    } else if a >= 240
        // IETF protocol assignments, benchmarking, and the documentation networks: never a
        // public IdP or app.
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b & 0xfe) == 18)
        || matches!(ip.octets()[..3], [192, 0, 2] | [198, 51, 100] | [203, 0, 113])
    {
        AddressKind::Reserved
    } else {
        return None;
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressKind> {
    let s = ip.segments();
    Some(if ip.is_unspecified() {
        AddressKind::Unspecified
    } else if ip.is_loopback() {
        AddressKind::Loopback
    } else if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfec0 {
        AddressKind::Private
    } else if (s[0] & 0xffc0) == 0xfe80 {
        AddressKind::LinkLocal
    } else if ip.is_multicast() {
        AddressKind::Multicast
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64: the IPv4 address it reaches decides.
        let o = ip.octets();
        return classify_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    } else if s[0] == 0x2002 {
        // 6to4: the embedded IPv4 address decides.
        let o = ip.octets();
        return classify_v4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    } else if (s[0] == 0x2001 && s[1] == 0)
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
        || (s[0] == 0x2001 && s[1] == 0x0db8)
    {
        // Teredo, local-use NAT64 (its IPv4 may be anything), documentation.
        AddressKind::Reserved
    } else if s[..6] == [0; 6] {
        AddressKind::Reserved
    } else {
        return None;
    })
}

/// Is the URL's host, as written, a loopback address or `localhost` (the development case)?
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => is_localhost(d),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `localhost`, the one host name allowed to resolve to loopback.
pub fn is_localhost(name: &str) -> bool {
    name.strip_suffix('.')
        .unwrap_or(name)
        .eq_ignore_ascii_case("localhost")
}

/// An address the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ip} is {}, which Latch does not connect to unless LATCH_OUTBOUND_ALLOW names it", .kind.describe())]
pub struct Refused {
    pub ip: IpAddr,
    pub kind: AddressKind,
}

/// A URL the policy refuses before any connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("scheme {0} is not allowed: https, or http on loopback hosts")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error(transparent)]
    Address(#[from] Refused),
}

/// The outbound address policy, with the operator's allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allow: Vec<IpNet>,
}

impl OutboundPolicy {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// The ranges the operator allowed.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// May Latch connect to `ip`? `loopback_named` says the URL named its host as loopback (the
    /// development case), which lets loopback addresses through.
    pub fn check_ip(&self, ip: IpAddr, loopback_named: bool) -> Result<(), Refused> {
        let canonical = ip.to_canonical();
        let Some(kind) = classify(canonical) else {
            return Ok(());
        };
        if (kind == AddressKind::Loopback && loopback_named)
            || self
                .allow
                .iter()
                .any(|n| n.contains(&canonical) || n.contains(&ip))
        {
            return Ok(());
        }
        Err(Refused { ip, kind })
    }

    /// What can be checked before connecting: the scheme (`https`, or `http` on a loopback
    /// host) and an IP-literal host. A host name passes; its addresses are checked once resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), UrlRefused> {
        let loopback = is_loopback_host(url);
        match url.host() {
            None => return Err(UrlRefused::NoHost),
            Some(Host::Domain(_)) => {}
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip), loopback)?,
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip), loopback)?,
        }
        match url.scheme() {
            "https" => Ok(()),
            "http" if loopback => Ok(()),
            other => Err(UrlRefused::Scheme(other.to_owned())),
        }
    }
}

/// Why a fetch failed. It says what failed, and never carries the answer's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("not a URL")]
    BadUrl,
    #[error("refused: {0}")]
    Refused(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Failed(String),
}

impl From<UrlRefused> for FetchError {
    fn from(e: UrlRefused) -> Self {
        Self::Refused(e.to_string())
    }
}

/// Fetches documents under the outbound policy, with a size cap (`latch_http::client::Outbound`).
#[async_trait]
pub trait Fetch: Send + Sync {
    /// GETs `url`, asking for `accept`: the body of a 2xx answer. Any other status, a body over
    /// the cap, a refused address, a timeout, is an error.
    async fn get(&self, url: &str, accept: &str) -> Result<Vec<u8>, FetchError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classification() {
        for (a, want) in [
            ("8.8.8.8", None),
            ("2606:4700::1111", None),
            ("0.0.0.0", Some(AddressKind::Unspecified)),
            ("0.1.2.3", Some(AddressKind::Unspecified)),
            ("::", Some(AddressKind::Unspecified)),
            ("127.0.0.1", Some(AddressKind::Loopback)),
            ("::1", Some(AddressKind::Loopback)),
            ("10.0.0.5", Some(AddressKind::Private)),
            ("172.16.0.1", Some(AddressKind::Private)),
            ("192.168.1.1", Some(AddressKind::Private)),
            ("fd00::1", Some(AddressKind::Private)),
            ("fc00::1", Some(AddressKind::Private)),
            ("100.64.0.1", Some(AddressKind::Shared)),
            ("100.127.255.254", Some(AddressKind::Shared)),
            ("169.254.169.254", Some(AddressKind::LinkLocal)),
            ("fe80::1", Some(AddressKind::LinkLocal)),
            ("224.0.0.1", Some(AddressKind::Multicast)),
            ("ff02::1", Some(AddressKind::Multicast)),
            ("255.255.255.255", Some(AddressKind::Broadcast)),
            ("240.0.0.1", Some(AddressKind::Reserved)),
            ("::ffff:169.254.169.254", Some(AddressKind::LinkLocal)),
            ("::ffff:10.1.2.3", Some(AddressKind::Private)),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::a9fe:a9fe", Some(AddressKind::LinkLocal)),
            ("64:ff9b::808:808", None),
            ("::a9fe:a9fe", Some(AddressKind::Reserved)),
            ("198.18.0.1", Some(AddressKind::Reserved)),
            ("198.19.255.254", Some(AddressKind::Reserved)),
            ("192.0.0.8", Some(AddressKind::Reserved)),
            ("192.0.2.1", Some(AddressKind::Reserved)),
            ("203.0.113.7", Some(AddressKind::Reserved)),
            ("2002:a9fe:a9fe::1", Some(AddressKind::LinkLocal)),
            ("2002:0808:0808::1", None),
            ("2001:0:4136:e378::1", Some(AddressKind::Reserved)),
            ("64:ff9b:1::a00:1", Some(AddressKind::Reserved)),
            ("2001:db8::1", Some(AddressKind::Reserved)),
        ] {
            assert_eq!(classify(ip(a)), want, "{a}");
        }
        // Just outside the ranges.
        assert_eq!(classify(ip("100.128.0.1")), None);
        assert_eq!(classify(ip("172.32.0.1")), None);
        assert_eq!(classify(ip("198.20.0.1")), None);
        assert_eq!(classify(ip("192.0.1.1")), None);
    }

    #[test]
    fn loopback_only_as_named() {
        let p = OutboundPolicy::default();
        assert!(p.check_ip(ip("127.0.0.1"), true).is_ok());
        assert!(p.check_ip(ip("127.0.0.1"), false).is_err());
        assert!(p.check_ip(ip("::ffff:127.0.0.1"), false).is_err());
        assert!(p.check_ip(ip("10.0.0.1"), true).is_err());
        for ok in [
            "http://127.0.0.1:3000/x",
            "http://[::1]/x",
            "http://localhost:80/x",
            "http://0x7f000001/x",
            "https://idp.example.com/",
            "https://8.8.8.8/",
        ] {
            assert_eq!(p.check_url(&Url::parse(ok).unwrap()), Ok(()), "{ok}");
        }
        for bad in [
            "http://idp.example.com/",
            "ftp://127.0.0.1/",
            "https://169.254.169.254/",
            "http://0.0.0.0:8080/",
            "https://10.0.0.5:8443/",
            "https://[::ffff:169.254.169.254]/",
            "https://[::ffff:127.0.0.1]/",
            "https://2852039166/",
        ] {
            assert!(p.check_url(&Url::parse(bad).unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_allow_list_lets_named_ranges_through() {
        let p = OutboundPolicy::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        assert!(p.check_ip(ip("10.1.2.3"), false).is_ok());
        assert!(p.check_ip(ip("::ffff:10.1.2.3"), false).is_ok());
        assert!(p.check_ip(ip("fd12::1"), false).is_ok());
        assert!(p.check_ip(ip("192.168.0.1"), false).is_err());
        assert!(p.check_ip(ip("169.254.169.254"), false).is_err());
        let e = p
            .check_url(&Url::parse("https://169.254.169.254/").unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("link-local"), "{e}");
    }
}
