//! The keys Latch signs SAML with: its current RS256 signing key (the one that signs ID tokens,
//! as Auth0 uses its tenant key for both) with a certificate made from it, and the next RS256
//! key's certificate, published in the IdP metadata ahead of a rotation so SPs that read the
//! metadata already trust it.
//!
//! [`IdpKeys::snapshot`] is synchronous and cheap (pages that sign LogoutRequests call it while
//! rendering); [`IdpKeys::refresh`] re-reads the store, and the server calls it every
//! [`REFRESH_EVERY`]: a rotation, even on this instance, reaches SAML signing within that.
//! Certificates are made once per key id, by OpenSSL, when SAML first needs them: an instance
//! that serves no SAML never starts OpenSSL, whose initialised library is about 3 MiB of
//! resident memory. The current RS256 key is parsed at start by `latch-jose`, which would refuse
//! a damaged one there; a next key that makes no certificate is logged and left out of the
//! metadata, and signing goes on with the current one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use latch_core::model::{KeyState, SigningAlg, SigningKey};
use latch_core::store::SigningKeyRepo;
use samael::crypto::CertificateDer;

use crate::SamlError;
use crate::idp::IdpKey;

/// How often the server re-reads the keys: a rotation reaches SAML signing within this.
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// What signs now, and what is published.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub signing: Arc<IdpKey>,
    /// The signing certificate first, then the next key's.
    pub published: Vec<CertificateDer>,
}

/// The RS256 key rows that sign now and come next, as last read.
struct Chosen {
    signing: SigningKey,
    next: Option<SigningKey>,
}

pub struct IdpKeys {
    repo: Arc<dyn SigningKeyRepo>,
    common_name: String,
    made: RwLock<HashMap<String, Arc<IdpKey>>>,
    chosen: RwLock<Option<Chosen>>,
    /// The snapshot made from `chosen`, with the key ids it was made from.
    current: RwLock<Option<Made>>,
}

/// A snapshot and the ids of the keys (signing, next) it was made from.
type Made = (String, Option<String>, Arc<Snapshot>);

impl IdpKeys {
    /// Reads the keys now; `common_name` names the certificates (the issuer's host).
    pub async fn load(repo: Arc<dyn SigningKeyRepo>, common_name: &str) -> Result<Self, SamlError> {
        let keys = Self {
            repo,
            common_name: common_name.to_owned(),
            made: RwLock::default(),
            chosen: RwLock::default(),
            current: RwLock::default(),
        };
        keys.refresh().await?;
        Ok(keys)
    }

    /// The keys as last read, with their certificates (made on first use of each key).
    pub fn snapshot(&self) -> Result<Arc<Snapshot>, SamlError> {
        // Read under the lock, not cloned: the rows hold the keys' PEMs, and this runs on every
        // SAML request. A refresh waits for the lock while a first snapshot makes certificates.
        let chosen = self.chosen.read().unwrap_or_else(|p| p.into_inner());
        let Some(chosen) = chosen.as_ref() else {
            return Err(SamlError::Config("no RS256 signing key".into()));
        };
        let (signing_kid, next_kid) = (
            chosen.signing.kid.as_str(),
            chosen.next.as_ref().map(|k| k.kid.as_str()),
        );
        if let Some((s, n, snap)) = &*self.current.read().unwrap_or_else(|p| p.into_inner())
            && s == signing_kid
            && n.as_deref() == next_kid
        {
            return Ok(snap.clone());
        }
        let signing = self.made(&chosen.signing)?;
        let mut published = vec![signing.cert.clone()];
        if let Some(n) = &chosen.next {
            // A next key that makes no certificate must not stop SAML signing with the current
            // one: the metadata publishes the current certificate alone (logged once per pair
            // of keys, as the snapshot is kept).
            match self.made(n) {
                Ok(k) => published.push(k.cert.clone()),
                Err(e) => tracing::error!(
                    kid = n.kid.as_str(),
                    error = %e,
                    "the next RS256 key makes no SAML certificate; the IdP metadata publishes the current one only"
                ),
            }
        }
        let snap = Arc::new(Snapshot { signing, published });
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some((
            signing_kid.to_owned(),
            next_kid.map(str::to_owned),
            snap.clone(),
        ));
        Ok(snap)
    }

    /// The key with its certificate, made once per key id.
    fn made(&self, k: &SigningKey) -> Result<Arc<IdpKey>, SamlError> {
        if let Some(key) = self
            .made
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(k.kid.as_str())
        {
            return Ok(key.clone());
        }
        let key = Arc::new(IdpKey::from_pem(
            k.private_pem.expose(),
            k.kid.as_str(),
            k.created_at,
            &self.common_name,
        )?);
        self.made
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k.kid.as_str().to_owned(), key.clone());
        Ok(key)
    }

    /// Re-reads the RS256 keys from the store.
    pub async fn refresh(&self) -> Result<(), SamlError> {
        let all = self
            .repo
            .list_signing_keys()
            .await
            .map_err(|e| SamlError::Config(format!("signing keys: {e}")))?;
        let mut signing: Option<SigningKey> = None;
        let mut next: Option<SigningKey> = None;
        for k in all.into_iter().filter(|k| k.alg == SigningAlg::RS256) {
            let slot = match k.state {
                KeyState::Current => &mut signing,
                KeyState::Next => &mut next,
                _ => continue,
            };
            // Several rows in one state (mid-rotation elsewhere): the newest wins.
            if slot.as_ref().is_none_or(|s| s.created_at < k.created_at) {
                *slot = Some(k);
            }
        }
        let Some(signing) = signing else {
            return Err(SamlError::Config("no current RS256 signing key".into()));
        };
        *self.chosen.write().unwrap_or_else(|p| p.into_inner()) = Some(Chosen { signing, next });
        Ok(())
    }
}
