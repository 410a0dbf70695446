//! What a token of another issuer must be, and the pure checks of its header and claims. No
//! I/O: [`crate::RemoteKeys::verify`] runs them with the issuer's key, and the endpoints' own
//! pure checks (fuzzed) run them with a fixture key.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation, decode, decode_header};
use serde_json::{Map, Value};

use crate::RemoteError;
use crate::jws::{REMOTE_ALGORITHMS, SignatureError};

/// A verified token's claims.
pub type Claims = Map<String, Value>;

/// What the JOSE `typ` header must say (compared ASCII case-insensitively).
#[derive(Debug, Clone, Copy)]
pub enum Typ<'a> {
    /// Present, and this.
    Required(&'a str),
    /// Absent, or one of these (the first is the one named in errors).
    IfPresent(&'a [&'a str]),
    /// Not looked at.
    Any,
}

/// Bounds on a token's time claims, in seconds. `exp`, `iat` and `nbf` are numbers when present;
/// `exp` (plus the leeway) is in the future, `iat` and `nbf` (minus the leeway) are not.
#[derive(Debug, Clone, Copy)]
pub struct Lifetime {
    /// Clock skew tolerated on `exp`, `iat` and `nbf`.
    pub leeway: i64,
    /// Oldest accepted `iat`, seconds before now (`iat` is then required).
    pub max_age: Option<i64>,
    /// Longest accepted `exp - iat` (both are then required).
    pub max_lifetime: Option<i64>,
}

/// Everything a token of another issuer must satisfy, besides its signature. Protocol rules on
/// particular claims (`events`, `nonce`, `sub` or `sid`, which `sub`) stay with the caller.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// Accepted `iss` values (exact strings).
    pub issuers: &'a [&'a str],
    /// Accepted audiences: `aud` must name one.
    pub audiences: &'a [&'a str],
    /// The `typ` header.
    pub typ: Typ<'a>,
    /// Accepted `alg` values; only those also in [`REMOTE_ALGORITHMS`] ever pass.
    pub algorithms: &'a [Algorithm],
    /// Claims that must be present (not null). A required `jti` must be a non-empty string.
    pub required: &'a [&'a str],
    pub lifetime: Lifetime,
    /// The instant the token is judged at (Unix seconds, the caller's clock).
    pub now: i64,
}

/// Why a token of another issuer was refused. The text names what failed, never what was
/// fetched (a document's content) and never more of the token than a decoder's position.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("algorithm {0:?} is not allowed")]
    Algorithm(Algorithm),
    #[error("typ is not {0}")]
    Typ(String),
    #[error("issuer keys unavailable: {0}")]
    Keys(RemoteError),
    #[error("the issuer's discovery has no jwks_uri")]
    NoJwksUri,
    #[error("no key {0:?} in the issuer's JWKS")]
    UnknownKey(Option<String>),
    #[error("the key is not for this algorithm")]
    KeyAlgorithm,
    #[error("the key cannot be used")]
    Key,
    #[error("invalid token: bad signature")]
    Signature,
    /// jsonwebtoken's refusal: `iss`, `aud`, a missing or mistyped registered claim.
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("no {0}")]
    Missing(String),
    #[error("{0} is not a number")]
    NotNumber(&'static str),
    #[error("expired")]
    Expired,
    #[error("issued in the future")]
    IssuedInFuture,
    #[error("not yet valid")]
    NotYetValid,
    #[error("issued too long ago")]
    TooOld,
    #[error("lifetime too long")]
    TooLongLived,
}

impl VerifyError {
    /// Whether fresher keys could turn this refusal into an acceptance (the issuer replaced a
    /// key under the same `kid`).
    pub(crate) fn keys_may_be_stale(&self) -> bool {
        matches!(self, Self::Signature | Self::KeyAlgorithm | Self::Key)
    }
}

impl From<SignatureError> for VerifyError {
    fn from(e: SignatureError) -> Self {
        match e {
            SignatureError::Malformed => Self::Malformed("not a compact JWS".into()),
            SignatureError::Algorithm(a) => Self::Algorithm(a),
            SignatureError::UnknownKey(kid) => Self::UnknownKey(kid),
            SignatureError::KeyAlgorithm(_) => Self::KeyAlgorithm,
            SignatureError::Key(_) => Self::Key,
            SignatureError::Invalid => Self::Signature,
        }
    }
}

/// A token's header, checked before any key is fetched: an algorithm among `algorithms` and
/// [`REMOTE_ALGORITHMS`], and the `typ` rule. Pure.
pub fn check_header(
    token: &str,
    typ: Typ<'_>,
    algorithms: &[Algorithm],
) -> Result<Header, VerifyError> {
    let header = decode_header(token).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if !algorithms.contains(&header.alg) || !REMOTE_ALGORITHMS.contains(&header.alg) {
        return Err(VerifyError::Algorithm(header.alg));
    }
    let is = |want: &str| {
        header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(want))
    };
    match typ {
        Typ::Required(want) if !is(want) => return Err(VerifyError::Typ(want.to_owned())),
        Typ::IfPresent(allowed) if header.typ.is_some() && !allowed.iter().any(|t| is(t)) => {
            return Err(VerifyError::Typ(
                allowed.first().copied().unwrap_or_default().to_owned(),
            ));
        }
        _ => {}
    }
    Ok(header)
}

/// Checks a token whose header passed [`check_header`]: the signature by `key` (for
/// `header.alg`), `iss`, `aud`, the required claims and the time claims against `want.now`.
/// Returns the claims. Pure; saturating where a time claim at the edge of `i64` could overflow.
pub fn check_claims(
    token: &str,
    header: &Header,
    key: &DecodingKey,
    want: &Expectations<'_>,
) -> Result<Claims, VerifyError> {
    let mut v = Validation::new(header.alg);
    v.set_issuer(want.issuers);
    v.set_audience(want.audiences);
    // Times are checked below, against the caller's clock.
    v.validate_exp = false;
    v.validate_nbf = false;
    // jsonwebtoken enforces presence of `exp`, `nbf`, `aud`, `iss` and `sub` only; the rest below.
    v.required_spec_claims = want.required.iter().map(|c| (*c).to_owned()).collect();
    let claims = decode::<Claims>(token, key, &v)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => VerifyError::Signature,
            _ => VerifyError::Invalid(e.to_string()),
        })?
        .claims;
    for name in want.required {
        if claims.get(*name).is_none_or(Value::is_null) {
            return Err(VerifyError::Missing((*name).to_owned()));
        }
    }
    if want.required.contains(&"jti")
        && claims
            .get("jti")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(VerifyError::Missing("jti".into()));
    }
    check_times(&claims, &want.lifetime, want.now)?;
    Ok(claims)
}

fn check_times(claims: &Claims, l: &Lifetime, now: i64) -> Result<(), VerifyError> {
    let num = |k: &'static str| match claims.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or(VerifyError::NotNumber(k)),
    };
    let (exp, iat, nbf) = (num("exp")?, num("iat")?, num("nbf")?);
    let need = |v: Option<i64>, k: &str| v.ok_or_else(|| VerifyError::Missing(k.to_owned()));
    if exp.is_some_and(|exp| exp.saturating_add(l.leeway) <= now) {
        return Err(VerifyError::Expired);
    }
    if iat.is_some_and(|iat| iat.saturating_sub(l.leeway) > now) {
        return Err(VerifyError::IssuedInFuture);
    }
    if nbf.is_some_and(|nbf| nbf.saturating_sub(l.leeway) > now) {
        return Err(VerifyError::NotYetValid);
    }
    if let Some(max) = l.max_age
        && need(iat, "iat")?.saturating_add(max) < now
    {
        return Err(VerifyError::TooOld);
    }
    if let Some(max) = l.max_lifetime
        && need(exp, "exp")?
            .checked_sub(need(iat, "iat")?)
            .is_none_or(|life| life > max)
    {
        return Err(VerifyError::TooLongLived);
    }
    Ok(())
}
