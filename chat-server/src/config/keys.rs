//! The public keys of the app's backend (`JWT_PUBLIC_KEY`, `JWT_JWKS_FILE`): read from
//! files the way a key that decides who anyone is must be read ([`super::trust`]:
//! whoever can replace the file can sign tokens for every user), of at most
//! [`MAX_KEY_FILE`] bytes.
//!
//! Keys taken: RSA of [`MIN_RSA_BITS`] bits or more (RS256) and EC P-256 (ES256), as a
//! PEM public key or JWKS entries, each built here as the verifier will build it, so
//! a key that cannot verify anything fails at start. A private key (PEM, or a JWK with
//! its private members), another curve, a symmetric (`oct`) key or another algorithm
//! is refused with a sentence saying what to give instead.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::traits::PublicKeyParts;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The largest key or JWKS file read.
pub const MAX_KEY_FILE: u64 = 1 << 20;
/// The most keys one JWKS file may hold.
pub const MAX_KEYS: usize = 32;
/// The smallest RSA key taken (NIST SP 800-57: 2048 bits until 2030).
pub const MIN_RSA_BITS: usize = 2048;

/// A key the backend signs connection tokens with.
#[derive(Clone)]
pub struct ExternalKey {
    /// The JWK's `kid`; none for a PEM key.
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for ExternalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// The bytes of a key file, or why it is not trusted (see [`super::trust`]).
pub fn read_trusted(path: &Path) -> Result<Vec<u8>, String> {
    super::trust::read(path, MAX_KEY_FILE)
}

/// A PEM public key: RSA (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`) or EC P-256.
pub fn pem_key(bytes: &[u8]) -> Result<ExternalKey, String> {
    let text = String::from_utf8_lossy(bytes);
    if text.contains("PRIVATE KEY-----") {
        return Err(
            "holds a private key: give the public key (openssl pkey -in private.pem -pubout -out public.pem)".into()
        );
    }
    if !text.contains("-----BEGIN") {
        return Err("holds no PEM (-----BEGIN PUBLIC KEY-----)".into());
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        let der = key.try_get_as_bytes().map_err(|e| e.to_string())?;
        rsa_bits(rsa::PublicKey::from_pkcs1_der(der).map_err(|e| format!("is not a usable RSA key: {e}"))?)?;
        return Ok(ExternalKey { kid: None, alg: Algorithm::RS256, key });
    }
    match DecodingKey::from_ec_pem(bytes) {
        Ok(key) => {
            p256_point(&key).map_err(|()| "is not an EC P-256 key: ES256 needs P-256 (prime256v1)".to_string())?;
            Ok(ExternalKey { kid: None, alg: Algorithm::ES256, key })
        }
        Err(_) => Err("holds no RSA or EC P-256 public key".into()),
    }
}

/// A point of P-256, as the verifier will read it.
fn p256_point(key: &DecodingKey) -> Result<(), ()> {
    let bytes = key.try_get_as_bytes().map_err(drop)?;
    p256::PublicKey::from_sec1_bytes(bytes).map(drop).map_err(drop)
}

fn rsa_bits(key: rsa::PublicKey) -> Result<(), String> {
    let bits = key.n().bit_width() as usize;
    if bits < MIN_RSA_BITS {
        return Err(format!("is an RSA key of {bits} bits; at least {MIN_RSA_BITS} are taken"));
    }
    Ok(())
}

/// Members only a private JWK has (RFC 7518 §6.2.2, §6.3.2).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth"];

/// Every signing key of a JWKS document (`{"keys": [...]}`); keys marked `"use": "enc"`
/// are for encryption and left out.
pub fn jwks(bytes: &[u8]) -> Result<Vec<ExternalKey>, String> {
    let raw: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("is not a JWKS document: {e}"))?;
    let count = raw["keys"].as_array().map_or(0, Vec::len);
    if count > MAX_KEYS {
        return Err(format!("holds {count} keys; at most {MAX_KEYS} are taken"));
    }
    for (n, entry) in raw["keys"].as_array().into_iter().flatten().enumerate() {
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| entry.get(**m).is_some()) {
            return Err(format!("key {} holds a private key (member {member:?}): publish only the public key", n + 1));
        }
    }
    let set: JwkSet = serde_json::from_value(raw).map_err(|e| format!("is not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for (n, jwk) in set.keys.iter().enumerate() {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let name = match &jwk.common.key_id {
            Some(kid) => format!("key {} (kid {kid:?})", n + 1),
            None => format!("key {}", n + 1),
        };
        keys.push(jwk_key(jwk).map_err(|e| format!("{name}: {e}"))?);
    }
    if keys.is_empty() {
        return Err("holds no signing key".into());
    }
    let mut kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
    kids.sort_unstable();
    if let Some(w) = kids.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("names kid {:?} twice: a token could not say which key signed it", w[0]));
    }
    Ok(keys)
}

fn jwk_key(jwk: &Jwk) -> Result<ExternalKey, String> {
    let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256)) if p.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        (AlgorithmParameters::EllipticCurve(p), _) if p.curve != EllipticCurve::P256 => {
            return Err(format!("curve {:?} is not taken: ES256 needs P-256", p.curve));
        }
        (AlgorithmParameters::OctetKey(_), _) => {
            return Err("a symmetric (oct) key is a secret and does not belong in a key file; use JWT_SECRET".into());
        }
        (_, Some(alg)) => return Err(format!("algorithm {alg:?} is not taken (RS256 or ES256)")),
        _ => return Err("only RSA (RS256) and EC P-256 (ES256) keys are taken".into()),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("is not a usable key: {e}"))?;
    match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let part = |b64: &str| URL_SAFE_NO_PAD.decode(b64.trim_end_matches('='));
            let (n, e) = (part(&p.n), part(&p.e));
            let (Ok(n), Ok(e)) = (n, e) else { return Err("n or e is not base64url".into()) };
            let key = rsa::PublicKey::new(
                rsa::BoxedUint::from_be_slice_vartime(&n),
                rsa::BoxedUint::from_be_slice_vartime(&e),
            );
            rsa_bits(key.map_err(|e| format!("is not a usable RSA key: {e}"))?)?;
        }
        _ => p256_point(&key).map_err(|()| "x and y are not a P-256 point".to_string())?,
    }
    Ok(ExternalKey { kid: jwk.common.key_id.clone(), alg, key })
}
