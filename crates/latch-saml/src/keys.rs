//! The keys Latch signs SAML with: its current RS256 signing key (the one that signs ID tokens,
//! as Auth0 uses its tenant key for both) with a certificate made from it, and the next RS256
//! key's certificate, published in the IdP metadata ahead of a rotation so SPs that read the
//! metadata already trust it.
//!
//! [`IdpKeys::snapshot`] is synchronous and cheap (pages that sign LogoutRequests call it while
//! rendering); [`IdpKeys::refresh`] re-reads the store, and the server calls it every
//! [`REFRESH_EVERY`]: a rotation, even on this instance, reaches SAML signing within that.
//! Certificates are made once per key id.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use latch_core::model::{KeyState, SigningAlg};
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

pub struct IdpKeys {
    repo: Arc<dyn SigningKeyRepo>,
    common_name: String,
    made: RwLock<HashMap<String, Arc<IdpKey>>>,
    current: RwLock<Option<Arc<Snapshot>>>,
}

impl IdpKeys {
    /// Loads the keys now; `common_name` names the certificates (the issuer's host).
    pub async fn load(repo: Arc<dyn SigningKeyRepo>, common_name: &str) -> Result<Self, SamlError> {
        let keys = Self {
            repo,
            common_name: common_name.to_owned(),
            made: RwLock::default(),
            current: RwLock::default(),
        };
        keys.refresh().await?;
        Ok(keys)
    }

    /// The keys as last loaded.
    pub fn snapshot(&self) -> Result<Arc<Snapshot>, SamlError> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| SamlError::Config("no RS256 signing key".into()))
    }

    /// Re-reads the RS256 keys from the store.
    pub async fn refresh(&self) -> Result<(), SamlError> {
        let all = self
            .repo
            .list_signing_keys()
            .await
            .map_err(|e| SamlError::Config(format!("signing keys: {e}")))?;
        let mut signing = None;
        let mut next = None;
        for k in all.iter().filter(|k| k.alg == SigningAlg::RS256) {
            let slot = match k.state {
                KeyState::Current => &mut signing,
                KeyState::Next => &mut next,
                _ => continue,
            };
            let known = self
                .made
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(k.kid.as_str())
                .cloned();
            let key = match known {
                Some(key) => key,
                None => {
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
                    key
                }
            };
            // Several rows in one state (mid-rotation elsewhere): the newest wins.
            if slot.as_ref().is_none_or(|(at, _)| *at < k.created_at) {
                *slot = Some((k.created_at, key));
            }
        }
        let Some((_, signing)) = signing else {
            return Err(SamlError::Config("no current RS256 signing key".into()));
        };
        let mut published = vec![signing.cert.clone()];
        if let Some((_, n)) = next {
            published.push(n.cert.clone());
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Some(Arc::new(Snapshot { signing, published }));
        Ok(())
    }
}
