//! Signing key pairs: generation, PKCS#8 PEM storage form, public JWKs and RFC 7638 kids.
//!
//! Signing uses aws-lc-rs key pairs parsed once at load: `jsonwebtoken`'s encoder re-parses an
//! RSA key on every signature, which costs about two thirds of RS256's signing rate.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latch_core::model::SigningAlg;
use latch_core::{Kid, SecretString};
use serde_json::{Value, json};

use crate::ring::JoseError;

/// A key pair ready to sign.
pub enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Signer {
    /// Parses a PKCS#8 PEM private key of `alg`.
    pub fn from_pem(alg: SigningAlg, pem_text: &str) -> Result<Self, JoseError> {
        let der = pem::parse(pem_text).map_err(|_| JoseError::Key("private key is not PEM"))?;
        let der = der.contents();
        Ok(match alg {
            SigningAlg::RS256 => {
                Self::Rsa(RsaKeyPair::from_pkcs8(der).map_err(|_| JoseError::Key("bad RSA key"))?)
            }
            SigningAlg::ES256 => Self::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| JoseError::Key("bad P-256 key"))?,
            ),
            SigningAlg::EdDSA => Self::Ed(
                Ed25519KeyPair::from_pkcs8(der).map_err(|_| JoseError::Key("bad Ed25519 key"))?,
            ),
        })
    }

    /// A new key pair of `alg` (RSA 2048, P-256, Ed25519).
    pub fn generate(alg: SigningAlg) -> Result<Self, JoseError> {
        Ok(match alg {
            SigningAlg::RS256 => Self::Rsa(
                RsaKeyPair::generate(KeySize::Rsa2048)
                    .map_err(|_| JoseError::Key("RSA generation failed"))?,
            ),
            SigningAlg::ES256 => Self::Ec(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| JoseError::Key("P-256 generation failed"))?,
            ),
            SigningAlg::EdDSA => Self::Ed(
                Ed25519KeyPair::generate()
                    .map_err(|_| JoseError::Key("Ed25519 generation failed"))?,
            ),
        })
    }

    /// The private key as PKCS#8 PEM (the stored form; the store seals it).
    pub fn to_pem(&self) -> Result<SecretString, JoseError> {
        let der = match self {
            Self::Rsa(k) => k.as_der().map(|d| d.as_ref().to_vec()),
            Self::Ec(k) => k.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
            Self::Ed(k) => k.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
        }
        .map_err(|_| JoseError::Key("cannot export key"))?;
        Ok(SecretString::new(pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            der,
        ))))
    }

    /// The public JWK members that define the key (RFC 7638 order), without `kid`/`alg`/`use`.
    fn public_members(&self) -> Value {
        match self {
            Self::Rsa(k) => {
                let p = k.public_key();
                json!({ "e": b64(p.exponent().big_endian_without_leading_zero()), "kty": "RSA", "n": b64(p.modulus().big_endian_without_leading_zero()) })
            }
            Self::Ec(k) => {
                // Uncompressed point: 0x04 || X || Y.
                let raw = k.public_key().as_ref();
                json!({ "crv": "P-256", "kty": "EC", "x": b64(&raw[1..33]), "y": b64(&raw[33..65]) })
            }
            Self::Ed(k) => {
                json!({ "crv": "Ed25519", "kty": "OKP", "x": b64(k.public_key().as_ref()) })
            }
        }
    }

    /// The RFC 7638 JWK thumbprint (SHA-256), used as `kid`.
    pub fn thumbprint(&self) -> Kid {
        // serde_json maps keep keys sorted, which is the canonical order RFC 7638 asks for.
        let canonical = self.public_members().to_string();
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        Kid::new(b64(d.as_ref()))
    }

    /// The public JWK as published.
    pub fn public_jwk(&self, alg: SigningAlg) -> Value {
        let mut v = self.public_members();
        if let Some(o) = v.as_object_mut() {
            o.insert("kid".into(), self.thumbprint().as_str().into());
            o.insert("alg".into(), alg.as_str().into());
            o.insert("use".into(), "sig".into());
        }
        v
    }

    /// Signs `message` (the JWS signing input).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JoseError> {
        let rng = SystemRandom::new();
        match self {
            Self::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| JoseError::Sign)?;
                Ok(sig)
            }
            Self::Ec(k) => Ok(k
                .sign(&rng, message)
                .map_err(|_| JoseError::Sign)?
                .as_ref()
                .to_vec()),
            Self::Ed(k) => Ok(k.sign(message).as_ref().to_vec()),
        }
    }
}

/// A compact JWS: `base64url(header).base64url(claims).base64url(signature)`.
pub fn sign_jws(
    signer: &Signer,
    alg: SigningAlg,
    kid: &Kid,
    typ: &str,
    claims: &Value,
) -> Result<String, JoseError> {
    let header = json!({ "alg": alg.as_str(), "kid": kid.as_str(), "typ": typ });
    let mut out = String::with_capacity(512);
    out.push_str(&b64(header.to_string().as_bytes()));
    out.push('.');
    out.push_str(&b64(claims.to_string().as_bytes()));
    let sig = signer.sign(out.as_bytes())?;
    out.push('.');
    out.push_str(&b64(&sig));
    Ok(out)
}
