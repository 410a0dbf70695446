//! The one outbound HTTP client, [`Outbound`]: every request Latch makes (discovery documents,
//! JWKS, SAML metadata, token and userinfo calls, back-channel logouts) goes through it.
//!
//! - **Address policy** (`latch_core::net::OutboundPolicy`): the URL is checked before the
//!   request (scheme, IP-literal host: those never reach a resolver), and every address a host
//!   name resolves to is checked before connecting, so a name that points at a link-local,
//!   private or loopback address (DNS rebinding included) is refused. A connection is only ever
//!   made to an address that was checked.
//! - **Bounded answers**: bodies are read as a stream and reading stops at a cap
//!   ([`MAX_BODY`]); more is an error, never buffered.
//! - **No redirects** (a redirect from an app's logout endpoint or an IdP is a misconfiguration
//!   or an SSRF attempt, not something to chase), timeouts on everything, rustls with the bundled
//!   Mozilla roots.
//! - **Errors say what failed** (status, size, refused address, timeout) and never carry the
//!   answer's content.
//!
//! Proxies from the environment (`HTTPS_PROXY`, …) are not used: a proxy resolves host names
//! itself, past the check above.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use latch_core::net::{Fetch, FetchError, OutboundPolicy, Refused, is_localhost};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};

/// Largest body Latch reads from a fetched document or API answer (1 MiB).
pub const MAX_BODY: usize = 1024 * 1024;
/// What Latch reads of an answer whose body it does not need (a back-channel logout's): enough
/// to keep the connection for reuse when the answer is small.
pub const MAX_DRAINED: usize = 4 * 1024;

/// A status, headers and a body of at most the cap asked for.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// The outbound client: address policy, bounded answers, no redirects, timeouts.
#[derive(Clone)]
pub struct Outbound {
    http: reqwest::Client,
    policy: Arc<OutboundPolicy>,
}

impl Outbound {
    /// `timeout` bounds each whole request, reading the answer included.
    pub fn new(policy: OutboundPolicy, timeout: Duration) -> Self {
        Self::build(policy, timeout, Vec::new())
    }

    /// `hosts`: fixed answers for some host names instead of the system resolver (tests).
    fn build(policy: OutboundPolicy, timeout: Duration, hosts: Vec<(String, SocketAddr)>) -> Self {
        let policy = Arc::new(policy);
        let resolver = Checked {
            policy: policy.clone(),
            hosts,
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Never through a proxy from the environment: a proxy resolves host names itself, so
            // the address check after resolution would be skipped.
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("Latch/", env!("CARGO_PKG_VERSION")))
            .build()
            // Only a TLS back end that cannot start fails here (as `reqwest::Client::new` would
            // panic); never fall back to a client without the policy.
            .unwrap_or_else(|e| panic!("the outbound HTTP client cannot start: {e}"));
        Self { http, policy }
    }

    /// The policy every request goes through.
    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    /// The URL, if the policy accepts what it can check before connecting.
    pub fn check(&self, url: &str) -> Result<Url, FetchError> {
        let url = Url::parse(url).map_err(|_| FetchError::BadUrl)?;
        self.policy.check_url(&url)?;
        Ok(url)
    }

    /// Sends one request and reads at most `limit` bytes of the answer: a longer one is
    /// [`FetchError::TooLarge`], and the connection is dropped without reading further.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Vec<u8>,
        limit: usize,
    ) -> Result<Answer, FetchError> {
        let url = self.check(url)?;
        let mut res = self
            .http
            .request(method, url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(failure)?;
        let (body, complete) = read_capped(&mut res, limit).await?;
        if !complete {
            return Err(FetchError::TooLarge(limit));
        }
        Ok(Answer {
            status: res.status(),
            headers: res.headers().clone(),
            body,
        })
    }

    /// POSTs `body` and answers the status. At most [`MAX_DRAINED`] bytes of the answer are
    /// read, and only to keep the connection; whatever else the peer sends is dropped.
    pub async fn post_for_status(
        &self,
        url: &str,
        content_type: &'static str,
        body: String,
    ) -> Result<StatusCode, FetchError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        self.post_for_status_with(url, headers, body.into_bytes())
            .await
    }

    /// [`Self::post_for_status`] with any headers (`Content-Type`, `Authorization`, …).
    pub async fn post_for_status_with(
        &self,
        url: &str,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<StatusCode, FetchError> {
        let url = self.check(url)?;
        let mut res = self
            .http
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(failure)?;
        let status = res.status();
        // The status is the answer; a body that is slow, broken or long changes nothing.
        let _ = read_capped(&mut res, MAX_DRAINED).await;
        Ok(status)
    }
}

#[async_trait]
impl Fetch for Outbound {
    async fn get(&self, url: &str, accept: &str) -> Result<Vec<u8>, FetchError> {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(accept) {
            headers.insert(ACCEPT, v);
        }
        let a = self
            .send(Method::GET, url, headers, Vec::new(), MAX_BODY)
            .await?;
        if !a.status.is_success() {
            return Err(FetchError::Status(a.status.as_u16()));
        }
        Ok(a.body)
    }
}

/// Reads the body up to `limit` bytes; `false` when there was more (not read).
async fn read_capped(
    res: &mut reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), FetchError> {
    if res.content_length().is_some_and(|n| n > limit as u64) {
        return Ok((Vec::new(), false));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(failure)? {
        if body.len() + chunk.len() > limit {
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// What failed, from a reqwest error: a refusal of the resolver, a timeout, a connection
/// failure (with its causes: they describe the transport, never the answer).
fn failure(e: reqwest::Error) -> FetchError {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(&e);
    let mut chain = Vec::new();
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<Refused>() {
            return FetchError::Refused(r.to_string());
        }
        chain.push(c.to_string());
        cause = c.source();
    }
    if e.is_timeout() {
        FetchError::Timeout
    } else if e.is_connect() {
        FetchError::Connect(chain.get(1..).unwrap_or_default().join(": "))
    } else {
        FetchError::Failed(e.without_url().to_string())
    }
}

/// Resolves host names with the system resolver, then keeps the addresses the policy accepts.
struct Checked {
    policy: Arc<OutboundPolicy>,
    /// Fixed answers (tests only).
    hosts: Vec<(String, SocketAddr)>,
}

impl Resolve for Checked {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        let fixed: Vec<SocketAddr> = self
            .hosts
            .iter()
            .filter(|(h, _)| *h == host)
            .map(|(_, a)| *a)
            .collect();
        Box::pin(async move {
            let found: Vec<SocketAddr> = if fixed.is_empty() {
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect()
            } else {
                fixed
            };
            let kept = admit(&policy, &host, found)?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The resolved addresses of `host` the policy accepts; none is the refusal of the first.
fn admit(
    policy: &OutboundPolicy,
    host: &str,
    found: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, Box<dyn StdError + Send + Sync>> {
    let loopback_named = is_localhost(host);
    let mut refused = None;
    let mut kept = Vec::with_capacity(found.len());
    for a in found {
        match policy.check_ip(a.ip(), loopback_named) {
            Ok(()) => kept.push(a),
            Err(r) => {
                refused.get_or_insert(r);
            }
        }
    }
    match (kept.is_empty(), refused) {
        (false, _) => Ok(kept),
        (true, Some(r)) => Err(Box::new(r)),
        (true, None) => Err(format!("{host} has no address").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| SocketAddr::new(a.parse().unwrap(), 443))
            .collect()
    }

    #[test]
    fn resolved_addresses_are_checked() {
        let none = OutboundPolicy::default();
        // A public name that resolves to the metadata service, or to loopback: refused.
        let e = admit(&none, "evil.example", addrs(&["169.254.169.254"])).unwrap_err();
        assert!(e.to_string().contains("link-local"), "{e}");
        assert!(admit(&none, "evil.example", addrs(&["127.0.0.1"])).is_err());
        assert!(admit(&none, "evil.example", addrs(&["::ffff:10.0.0.5"])).is_err());
        // Only the acceptable addresses are kept.
        assert_eq!(
            admit(&none, "idp.example", addrs(&["10.0.0.5", "8.8.8.8"])).unwrap(),
            addrs(&["8.8.8.8"])
        );
        // `localhost` is the development case.
        assert_eq!(
            admit(&none, "localhost", addrs(&["127.0.0.1", "::1"])).unwrap(),
            addrs(&["127.0.0.1", "::1"])
        );
        assert!(admit(&none, "localhost", addrs(&["10.0.0.5"])).is_err());
        // The operator's allow-list lets its ranges through.
        let allow = OutboundPolicy::new(vec!["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(
            admit(&allow, "idp.internal", addrs(&["10.0.0.5"])).unwrap(),
            addrs(&["10.0.0.5"])
        );
    }

    /// A server on 0.0.0.0 (which the kernel routes to this host) that counts connections.
    async fn counting_listener() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    .await;
            }
        });
        (port, seen)
    }

    #[tokio::test]
    async fn refused_ip_literals_are_never_connected_to() {
        let (port, seen) = counting_listener().await;
        let out = Outbound::new(OutboundPolicy::default(), Duration::from_secs(2));
        for url in [
            format!("http://0.0.0.0:{port}/"),
            format!("https://0.0.0.0:{port}/"),
            format!("https://[::ffff:0.0.0.0]:{port}/"),
        ] {
            let e = out.get(&url, "application/json").await.unwrap_err();
            assert!(matches!(e, FetchError::Refused(_)), "{url}: {e}");
        }
        let e = out
            .post_for_status(
                &format!("http://0.0.0.0:{port}/bc"),
                "text/plain",
                "x".into(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::Refused(_)), "{e}");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
        // The same server through the development case answers.
        let body = out
            .get(&format!("http://127.0.0.1:{port}/"), "application/json")
            .await
            .unwrap();
        assert_eq!(body, b"{}");
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_never_connected_to() {
        let (port, seen) = counting_listener().await;
        let at = |ip: &str| SocketAddr::new(ip.parse().unwrap(), port);
        let hosts = vec![
            ("rebound.example".to_owned(), at("127.0.0.1")),
            ("metadata.example".to_owned(), at("0.0.0.0")),
        ];
        let out = Outbound::build(
            OutboundPolicy::default(),
            Duration::from_secs(2),
            hosts.clone(),
        );
        for host in ["rebound.example", "metadata.example"] {
            let e = out
                .get(&format!("https://{host}:{port}/"), "application/json")
                .await
                .unwrap_err();
            assert!(matches!(e, FetchError::Refused(_)), "{host}: {e}");
        }
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
        // Allowed by the operator: the connection is made (and fails TLS on this plain server).
        let allow = Outbound::build(
            OutboundPolicy::new(vec!["0.0.0.0/32".parse().unwrap()]),
            Duration::from_secs(2),
            hosts,
        );
        let e = allow
            .get(
                &format!("https://metadata.example:{port}/"),
                "application/json",
            )
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::Connect(_)), "{e}");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// Serves `total` bytes of a JSON-looking body (with or without a length), and reports how
    /// many the client took before it hung up.
    async fn huge_server(
        total: usize,
        with_length: bool,
    ) -> (u16, tokio::sync::oneshot::Receiver<(usize, bool)>) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        // Small kernel buffers, so what was written is close to what the client read.
        socket.set_send_buffer_size(64 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let l = socket.listen(8).unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut sock, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let head = if with_length {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {total}\r\n\r\n"
                )
            } else {
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = sock.write_all(head.as_bytes()).await;
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            let mut complete = true;
            while sent < total {
                if sock.write_all(&chunk).await.is_err() {
                    complete = false;
                    break;
                }
                sent += chunk.len();
            }
            let _ = tx.send((sent, complete));
        });
        (port, rx)
    }

    #[tokio::test]
    async fn answers_are_read_up_to_the_cap_and_no_further() {
        const TOTAL: usize = 50 * 1024 * 1024;
        let out = Outbound::new(OutboundPolicy::default(), Duration::from_secs(20));
        for with_length in [false, true] {
            let (port, rx) = huge_server(TOTAL, with_length).await;
            let e = out
                .get(&format!("http://127.0.0.1:{port}/jwks"), "application/json")
                .await
                .unwrap_err();
            assert_eq!(e, FetchError::TooLarge(MAX_BODY));
            let (sent, complete) = rx.await.unwrap();
            assert!(
                !complete,
                "the client hung up (length given: {with_length})"
            );
            assert!(sent < 8 * MAX_BODY, "{sent} bytes sent of {TOTAL}");
        }
        // A back-channel answer: the status, and a few bytes at most.
        let (port, rx) = huge_server(TOTAL, false).await;
        let status = out
            .post_for_status(
                &format!("http://127.0.0.1:{port}/bc"),
                "text/plain",
                "x".into(),
            )
            .await
            .unwrap();
        assert_eq!(status, 200);
        let (sent, complete) = rx.await.unwrap();
        assert!(!complete && sent < 8 * MAX_BODY, "{sent}");
    }

    #[tokio::test]
    async fn localhost_resolves_through_the_checked_resolver() {
        let (port, _) = counting_listener().await;
        let out = Outbound::new(OutboundPolicy::default(), Duration::from_secs(2));
        let body = out
            .get(&format!("http://localhost:{port}/"), "application/json")
            .await
            .unwrap();
        assert_eq!(body, b"{}");
    }
}
