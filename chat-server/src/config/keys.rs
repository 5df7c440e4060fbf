//! The public keys of the app's backend (`JWT_PUBLIC_KEY`, `JWT_JWKS_FILE`): read from
//! files the way a key that decides who anyone is must be read. Whoever can replace
//! the file can sign tokens for every user, so the file is opened without following a
//! symlink, must be a regular file of at most [`MAX_KEY_FILE`] bytes owned by this user
//! or root and writable by no one else, in a folder no one else can write (unless the
//! folder is sticky, like `/tmp`, where only the owner may replace it).
//!
//! Keys taken: RSA (RS256) and EC P-256 (ES256), as a PEM public key or JWKS entries.
//! A private key, another curve, a symmetric (`oct`) key or another algorithm is
//! refused with a sentence saying what to give instead.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The largest key or JWKS file read.
pub const MAX_KEY_FILE: u64 = 1 << 20;
/// The most keys one JWKS file may hold.
pub const MAX_KEYS: usize = 32;

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

/// The bytes of a file that decides who users are, or why it is not trusted.
pub fn read_trusted(path: &Path) -> Result<Vec<u8>, String> {
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).map_err(
            |e| match e.raw_os_error() {
                Some(libc::ELOOP) => "is a symbolic link; name the file itself".to_string(),
                _ => e.to_string(),
            },
        )?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    trusted_owner(meta.uid(), meta.mode(), "the file")?;
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = std::fs::metadata(folder).map_err(|e| format!("its folder: {e}"))?;
    if dir.mode() & libc::S_ISVTX == 0 {
        trusted_owner(dir.uid(), dir.mode(), "its folder")?;
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(format!("has {} bytes; at most {MAX_KEY_FILE} are read", meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Owned by this user or root, and writable by no one else.
fn trusted_owner(uid: u32, mode: u32, what: &str) -> Result<(), String> {
    // SAFETY: geteuid only reads this process's effective user id.
    let me = unsafe { libc::geteuid() };
    if uid != me && uid != 0 {
        return Err(format!(
            "{what} is owned by user {uid}, who could replace the key: it must be this user's or root's"
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!("{what} has mode {:o}: others could replace the key (chmod go-w)", mode & 0o7777));
    }
    Ok(())
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
        return Ok(ExternalKey { kid: None, alg: Algorithm::RS256, key });
    }
    match DecodingKey::from_ec_pem(bytes) {
        Ok(key) if is_p256(&key) => Ok(ExternalKey { kid: None, alg: Algorithm::ES256, key }),
        Ok(_) => Err("is an EC key on a curve other than P-256: ES256 needs P-256 (prime256v1)".into()),
        Err(_) => Err("holds no RSA or EC P-256 public key".into()),
    }
}

/// An uncompressed P-256 point: 0x04, then 32 bytes of x and 32 of y.
fn is_p256(key: &DecodingKey) -> bool {
    key.try_get_as_bytes().is_ok_and(|b| b.len() == 65 && b[0] == 4)
}

/// Every signing key of a JWKS document (`{"keys": [...]}`); keys marked `"use": "enc"`
/// are for encryption and left out.
pub fn jwks(bytes: &[u8]) -> Result<Vec<ExternalKey>, String> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("is not a JWKS document: {e}"))?;
    if set.keys.len() > MAX_KEYS {
        return Err(format!("holds {} keys; at most {MAX_KEYS} are taken", set.keys.len()));
    }
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
    if alg == Algorithm::ES256 && !is_p256(&key) {
        return Err("x and y are not a P-256 point".into());
    }
    Ok(ExternalKey { kid: jwk.common.key_id.clone(), alg, key })
}
