//! The session record as `RedisSessionStore` keeps it under `{p}sd:{session id}`.
//!
//! Both versions open with lines the Lua scripts read and rewrite without parsing JSON:
//! `v{n}\n{last seen}\n{idle expiry}\n{absolute expiry}\n{user id}\n` (instants in Unix ms), then
//! one line of JSON for what does not change (`{core}\n`), then one `c{json}\n` line per app
//! that joined.
//!
//! - `v1` (releases before this one): every field spelled out; the upstream session under
//!   `UpstreamSession`'s own names (`id_token_sealed`, `name_id`, …); each app line with
//!   `client_id`, its `s` (sid) and `j` (joined at).
//! - `v2` (written from this release on): one-letter names; `a` (auth time) only when it is not
//!   `t` (created at); an app line's `s` only when it is not the session's sid and `j` only when
//!   it is not `t`. A sealed upstream ID token in Latch's own form (`lat1.` + base64url) is kept
//!   as its raw bytes after the text, behind a NUL and `k` (`\0k{bytes}`): a quarter smaller than
//!   its base64, and a NUL never occurs in the text (JSON escapes it, user ids may not hold one).
//!   Any other token stays in the JSON (`p.k`).
//!
//! [`decode`] reads both: every field name of `v1` is an alias of its `v2` name, and a missing
//! `v2` default means what `v1` spelled out. Nothing secret is added: the record holds what it
//! held before (the upstream ID token stays sealed; the session id, a digest, is the key).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latch_core::clock::{from_millis, to_millis};
use latch_core::session::{SamlParticipant, Session, SessionClient, UpstreamSession};
use latch_core::{ClientId, ConnectionName, SessionError, SessionId, Sid, UserId};
use serde::{Deserialize, Serialize};

use crate::internal;

/// The form `latch_jose::TokenSealer` gives a sealed token: this prefix, then base64url without
/// padding. A token of another form is stored as it is.
const SEALED_PREFIX: &str = "lat1.";

/// What follows the NUL that ends the text: the sealed upstream ID token's raw bytes.
const TOKEN_TAG: u8 = b'k';

/// The immutable part of a session, one JSON line.
#[derive(Serialize, Deserialize)]
struct Core {
    s: Sid,
    c: ConnectionName,
    t: i64,
    /// Auth time; `v2` leaves it out when it is `t`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    a: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    g: Option<String>,
    #[serde(default, skip_serializing_if = "Upstream::is_empty")]
    p: Upstream,
}

/// [`UpstreamSession`] with short names; `v1` wrote the long ones.
#[derive(Default, Serialize, Deserialize)]
struct Upstream {
    #[serde(default, alias = "sid", skip_serializing_if = "Option::is_none")]
    s: Option<String>,
    /// The sealed ID token, when it is not kept as raw bytes after the text.
    #[serde(
        default,
        alias = "id_token_sealed",
        skip_serializing_if = "Option::is_none"
    )]
    k: Option<String>,
    /// The digest of the ID token the browser carries instead (`v2` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    h: Option<String>,
    #[serde(default, alias = "name_id", skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(
        default,
        alias = "name_id_format",
        skip_serializing_if = "Option::is_none"
    )]
    f: Option<String>,
    #[serde(
        default,
        alias = "session_index",
        skip_serializing_if = "Option::is_none"
    )]
    x: Option<String>,
}

impl Upstream {
    fn is_empty(&self) -> bool {
        self.s.is_none()
            && self.k.is_none()
            && self.h.is_none()
            && self.n.is_none()
            && self.f.is_none()
            && self.x.is_none()
    }
}

/// One joined app, as a `c…` line.
#[derive(Serialize, Deserialize)]
struct Joined {
    #[serde(alias = "client_id")]
    c: ClientId,
    /// The sid the app was given; `v2` leaves it out when it is the session's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<Sid>,
    /// When it joined; `v2` leaves it out when it is the session's creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    j: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<Saml>,
}

/// [`SamlParticipant`] with short names; `v1` wrote the long ones.
#[derive(Serialize, Deserialize)]
struct Saml {
    #[serde(alias = "name_id")]
    n: String,
    #[serde(alias = "name_id_format")]
    f: String,
    #[serde(alias = "session_index")]
    x: String,
}

fn corrupt() -> SessionError {
    SessionError::Internal("corrupt session record".into())
}

fn json<T: Serialize>(v: &T) -> Result<String, SessionError> {
    serde_json::to_string(v).map_err(internal)
}

/// The raw bytes of a sealed token in Latch's own form, when they give it back exactly.
fn token_bytes(sealed: &str) -> Option<Vec<u8>> {
    let b64 = sealed.strip_prefix(SEALED_PREFIX)?;
    let raw = URL_SAFE_NO_PAD.decode(b64).ok()?;
    (URL_SAFE_NO_PAD.encode(&raw) == b64).then_some(raw)
}

fn joined(c: &SessionClient, session_sid: Option<&Sid>, created: Option<i64>) -> Joined {
    let j = to_millis(c.joined_at);
    Joined {
        c: c.client_id.clone(),
        s: (Some(&c.sid) != session_sid).then(|| c.sid.clone()),
        j: (Some(j) != created).then_some(j),
        m: c.saml.as_ref().map(|m| Saml {
            n: m.name_id.clone(),
            f: m.name_id_format.clone(),
            x: m.session_index.clone(),
        }),
    }
}

/// An app's `c…` line for a record whose sid and creation are not known here: `j` spelled out,
/// and `s` unless `session_sid` is given (when the script finds it is the session's).
pub(crate) fn client_line(
    c: &SessionClient,
    session_sid: Option<&Sid>,
) -> Result<String, SessionError> {
    Ok(format!("c{}\n", json(&joined(c, session_sid, None))?))
}

/// The substrings that mark a client as joined: its `v2` line's start and its `v1` line's.
pub(crate) fn client_markers(c: &ClientId) -> Result<(String, String), SessionError> {
    let id = json(c)?;
    Ok((
        format!("\nc{{\"c\":{id}"),
        format!("\nc{{\"client_id\":{id}"),
    ))
}

/// How a sid looks in the record's core line (`{"s":…`), for the join script to compare.
pub(crate) fn sid_json(sid: &Sid) -> Result<String, SessionError> {
    json(sid)
}

/// The `v2` record of `s`.
pub(crate) fn encode(s: &Session) -> Result<Vec<u8>, SessionError> {
    if s.user_id.as_str().contains(['\n', '\0']) {
        return Err(SessionError::Internal(
            "user id contains a newline or a NUL".into(),
        ));
    }
    let t = to_millis(s.created_at);
    let a = to_millis(s.auth_time);
    let raw_token = s.upstream.sealed_id_token.as_deref().and_then(token_bytes);
    let core = Core {
        s: s.sid.clone(),
        c: s.connection.clone(),
        t,
        a: (a != t).then_some(a),
        i: s.ip.clone(),
        g: s.user_agent.clone(),
        p: Upstream {
            s: s.upstream.sid.clone(),
            k: match raw_token {
                Some(_) => None,
                None => s.upstream.sealed_id_token.clone(),
            },
            h: s.upstream.id_token_cookie.clone(),
            n: s.upstream.name_id.clone(),
            f: s.upstream.name_id_format.clone(),
            x: s.upstream.session_index.clone(),
        },
    };
    let mut out = format!(
        "v2\n{}\n{}\n{}\n{}\n{}\n",
        to_millis(s.last_seen_at),
        to_millis(s.idle_expires_at),
        to_millis(s.expires_at),
        s.user_id,
        json(&core)?
    );
    for c in &s.clients {
        out.push('c');
        out.push_str(&json(&joined(c, Some(&s.sid), Some(t)))?);
        out.push('\n');
    }
    let mut out = out.into_bytes();
    if let Some(raw) = raw_token {
        out.push(0);
        out.push(TOKEN_TAG);
        out.extend_from_slice(&raw);
    }
    Ok(out)
}

/// A `v1` or `v2` record.
pub(crate) fn decode(id: &str, v: &[u8]) -> Result<Session, SessionError> {
    let (text, tail) = match v.iter().position(|b| *b == 0) {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    let text = std::str::from_utf8(text).map_err(|_| corrupt())?;
    let token = match tail {
        None => None,
        Some([TOKEN_TAG, raw @ ..]) => {
            let mut t = String::from(SEALED_PREFIX);
            URL_SAFE_NO_PAD.encode_string(raw, &mut t);
            Some(t)
        }
        Some(_) => return Err(corrupt()),
    };
    let mut lines = text.split('\n');
    if !matches!(lines.next(), Some("v1" | "v2")) {
        return Err(corrupt());
    }
    let mut num = || -> Result<i64, SessionError> {
        lines
            .next()
            .ok_or_else(corrupt)?
            .parse()
            .map_err(|_| corrupt())
    };
    let (ls, ie, ae) = (num()?, num()?, num()?);
    let user = lines.next().ok_or_else(corrupt)?;
    let core: Core = serde_json::from_str(lines.next().ok_or_else(corrupt)?).map_err(internal)?;
    let mut clients = Vec::new();
    for line in lines {
        if let Some(j) = line.strip_prefix('c') {
            let j: Joined = serde_json::from_str(j).map_err(internal)?;
            clients.push(SessionClient {
                client_id: j.c,
                sid: j.s.unwrap_or_else(|| core.s.clone()),
                joined_at: from_millis(j.j.unwrap_or(core.t)),
                saml: j.m.map(|m| SamlParticipant {
                    name_id: m.n,
                    name_id_format: m.f,
                    session_index: m.x,
                }),
            });
        }
    }
    clients.sort_by(|a, b| {
        a.joined_at
            .cmp(&b.joined_at)
            .then_with(|| a.client_id.cmp(&b.client_id))
    });
    Ok(Session {
        id: SessionId::new(id),
        sid: core.s,
        user_id: UserId::new(user),
        connection: core.c,
        created_at: from_millis(core.t),
        auth_time: from_millis(core.a.unwrap_or(core.t)),
        last_seen_at: from_millis(ls),
        idle_expires_at: from_millis(ie),
        expires_at: from_millis(ae),
        ip: core.i,
        user_agent: core.g,
        upstream: UpstreamSession {
            sid: core.p.s,
            sealed_id_token: token.or(core.p.k),
            id_token_cookie: core.p.h,
            name_id: core.p.n,
            name_id_format: core.p.f,
            session_index: core.p.x,
        },
        clients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn at(ms: i64) -> OffsetDateTime {
        from_millis(ms)
    }

    fn session() -> Session {
        Session {
            id: SessionId::new("id"),
            sid: Sid::new("sid-1"),
            user_id: UserId::new("auth0|u1"),
            connection: ConnectionName::new("acme-okta"),
            created_at: at(1_000),
            auth_time: at(1_000),
            last_seen_at: at(2_000),
            idle_expires_at: at(3_000),
            expires_at: at(4_000),
            ip: Some("127.0.0.1".into()),
            user_agent: Some("Mozilla/5.0 \"x\"\ty".into()),
            upstream: UpstreamSession {
                sid: Some("up\nsid".into()),
                sealed_id_token: Some(format!("{SEALED_PREFIX}AAEC_-8")),
                id_token_cookie: None,
                name_id: Some("alice@example.com".into()),
                name_id_format: Some("urn:f".into()),
                session_index: Some("_i1".into()),
            },
            clients: vec![
                SessionClient::oidc(ClientId::new("app"), Sid::new("sid-1"), at(1_000)),
                SessionClient {
                    client_id: ClientId::new("saml-app"),
                    sid: Sid::new("sid-2"),
                    joined_at: at(1_500),
                    saml: Some(SamlParticipant {
                        name_id: "alice".into(),
                        name_id_format: "urn:g".into(),
                        session_index: "_j".into(),
                    }),
                },
            ],
        }
    }

    #[test]
    fn v2_round_trips_and_keeps_a_sealed_token_as_bytes() {
        let s = session();
        let v = encode(&s).unwrap();
        assert!(v.starts_with(b"v2\n2000\n3000\n4000\nauth0|u1\n"));
        // The token's bytes after the text, not its base64.
        assert!(v.ends_with(&[0, TOKEN_TAG, 0, 1, 2, 0xff, 0xef]));
        assert!(!String::from_utf8_lossy(&v).contains("AAEC"));
        assert_eq!(decode("id", &v).unwrap(), s);
    }

    #[test]
    fn v2_leaves_out_what_it_can_derive() {
        let mut s = session();
        s.upstream = UpstreamSession::default();
        s.clients.truncate(1);
        let v = String::from_utf8(encode(&s).unwrap()).unwrap();
        assert_eq!(
            v,
            "v2\n2000\n3000\n4000\nauth0|u1\n{\"s\":\"sid-1\",\"c\":\"acme-okta\",\"t\":1000,\
             \"i\":\"127.0.0.1\",\"g\":\"Mozilla/5.0 \\\"x\\\"\\ty\"}\nc{\"c\":\"app\"}\n"
        );
        assert_eq!(decode("id", v.as_bytes()).unwrap(), s);
        // An auth time of its own, an app with a sid of its own and a later join are spelled out.
        s.auth_time = at(900);
        s.clients[0].sid = Sid::new("other");
        s.clients[0].joined_at = at(1_100);
        let v = encode(&s).unwrap();
        let text = String::from_utf8(v.clone()).unwrap();
        assert!(text.contains("\"a\":900"), "{text}");
        assert!(
            text.contains("c{\"c\":\"app\",\"s\":\"other\",\"j\":1100}\n"),
            "{text}"
        );
        assert_eq!(decode("id", &v).unwrap(), s);
    }

    #[test]
    fn a_token_the_browser_carries_leaves_its_digest() {
        let mut s = session();
        s.upstream.sealed_id_token = None;
        s.upstream.id_token_cookie = Some("d".repeat(22));
        let v = encode(&s).unwrap();
        assert!(!v.contains(&0));
        assert!(String::from_utf8_lossy(&v).contains(r#""h":"dddddddddddddddddddddd""#));
        assert_eq!(decode("id", &v).unwrap(), s);
    }

    #[test]
    fn tokens_of_another_form_stay_text() {
        for token in [
            "sealed-elsewhere",
            "lat1.not base64",
            // Base64url whose unused trailing bits are set: decoding would not give it back.
            "lat1.AAF",
            "lat1.",
        ] {
            let mut s = session();
            s.upstream.sealed_id_token = Some(token.into());
            let v = encode(&s).unwrap();
            if token == "lat1." {
                // Empty bytes are still given back exactly.
                assert_eq!(decode("id", &v).unwrap(), s, "{token}");
                continue;
            }
            assert!(!v.contains(&0), "{token}");
            assert_eq!(decode("id", &v).unwrap(), s, "{token}");
        }
    }

    /// A record exactly as the release before wrote it (its encoder, field for field).
    #[test]
    fn v1_records_are_read() {
        let v = concat!(
            "v1\n2000\n3000\n4000\nauth0|u1\n",
            r#"{"s":"sid-1","c":"acme-okta","t":1000,"a":1000,"i":"127.0.0.1","g":"Mozilla/5.0 \"x\"\ty","#,
            r#""p":{"sid":"up\nsid","id_token_sealed":"lat1.AAEC_-8","name_id":"alice@example.com","#,
            r#""name_id_format":"urn:f","session_index":"_i1"}}"#,
            "\n",
            r#"c{"client_id":"saml-app","s":"sid-2","j":1500,"m":{"name_id":"alice","name_id_format":"urn:g","session_index":"_j"}}"#,
            "\n",
            r#"c{"client_id":"app","s":"sid-1","j":1000}"#,
            "\n",
        );
        assert_eq!(decode("id", v.as_bytes()).unwrap(), session());
        // A v1 record without an upstream session or apps.
        let bare = "v1\n2000\n3000\n4000\nauth0|u1\n{\"s\":\"sid-1\",\"c\":\"database\",\"t\":1000,\"a\":900}\n";
        let s = decode("id", bare.as_bytes()).unwrap();
        assert_eq!(s.auth_time, at(900));
        assert_eq!(s.upstream, UpstreamSession::default());
        assert!(s.clients.is_empty());
    }

    /// A `v2` line appended by the join script to a `v1` record is read with it.
    #[test]
    fn lines_of_both_versions_mix() {
        let mut v = b"v1\n2000\n3000\n4000\nauth0|u1\n{\"s\":\"sid-1\",\"c\":\"database\",\"t\":1000,\"a\":1000}\nc{\"client_id\":\"a\",\"s\":\"sid-1\",\"j\":1000}\n".to_vec();
        let late = SessionClient::oidc(ClientId::new("b"), Sid::new("sid-1"), at(1_200));
        v.extend(
            client_line(&late, Some(&Sid::new("sid-1")))
                .unwrap()
                .bytes(),
        );
        let s = decode("id", &v).unwrap();
        assert_eq!(s.clients.len(), 2);
        assert_eq!(s.clients[1], late);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        for v in [
            &b""[..],
            b"v3\n1\n2\n3\nu\n{}\n",
            b"v2\n1\n2\n",
            b"v2\nx\n2\n3\nu\n{}\n",
            b"v2\n1\n2\n3\nu\n{\"s\":\"a\",\"c\":\"b\",\"t\":1}\n\0z",
            b"v2\n1\n2\n3\nu\n{\"s\":\"a\",\"c\":\"b\",\"t\":1}\nc{}\n",
            b"v2\n1\n2\n3\n\xff\n{}\n",
        ] {
            assert!(decode("id", v).is_err(), "{v:?}");
        }
    }

    #[test]
    fn markers_name_the_client_exactly() {
        let (v2, v1) = client_markers(&ClientId::new("app")).unwrap();
        assert_eq!(v2, "\nc{\"c\":\"app\"");
        assert_eq!(v1, "\nc{\"client_id\":\"app\"");
        let line = client_line(
            &SessionClient::oidc(ClientId::new("app2"), Sid::new("s"), at(1)),
            Some(&Sid::new("s")),
        )
        .unwrap();
        assert_eq!(line, "c{\"c\":\"app2\",\"j\":1}\n");
        assert!(!format!("\n{line}").contains(&v2));
    }
}
