//! Loopback HTTP pieces that tests and benches serve to Latch: a request read off a socket, and a
//! stand-in for an Okta org's discovery and keys.

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// One HTTP/1.1 request read off a socket by [`read_request`].
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// The request line's method as sent (empty when missing).
    pub method: String,
    /// The request target as sent (empty when missing).
    pub path: String,
    /// The request line and header fields as sent, up to the blank line ending them.
    pub head: String,
    /// Everything read after the head: at least `Content-Length` bytes, fewer when the peer
    /// closed first.
    pub body: Vec<u8>,
}

impl RawRequest {
    /// The first header field named `name` (any case), its value trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one HTTP/1.1 request from `sock`: the head, then the body up to its `Content-Length`
/// (0 when missing or unreadable) or until the peer closes. `None` when the peer closed (or the
/// read failed) before the head was complete.
pub async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<RawRequest> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_len = loop {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let mut req = RawRequest {
        method: String::new(),
        path: String::new(),
        head: String::from_utf8_lossy(&buf[..head_len]).into_owned(),
        body: Vec::new(),
    };
    let mut words = req.head.split_whitespace();
    req.method = words.next().unwrap_or_default().to_owned();
    req.path = words.next().unwrap_or_default().to_owned();
    let len = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let body_start = head_len + 4;
    while buf.len() < body_start + len {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    req.body = buf.split_off(body_start);
    Some(req)
}

/// A loopback "Okta org" for Global Token Revocation: every path answers one document that is
/// both its discovery and its JWKS, holding `jwk` (an RS256 public key). Returns its base URL.
pub async fn okta_org(jwk: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let org = format!("http://{}", listener.local_addr().expect("addr"));
    let doc = json!({"issuer": org, "jwks_uri": format!("{org}/oauth2/v1/keys"), "keys": [jwk]})
        .to_string();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let doc = doc.clone();
            tokio::spawn(async move {
                if read_request(&mut sock).await.is_some() {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        doc.len()
                    );
                    let _ = sock.write_all(format!("{head}{doc}").as_bytes()).await;
                }
            });
        }
    });
    org
}
