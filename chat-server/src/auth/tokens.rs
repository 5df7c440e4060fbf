//! Connection tokens (JWT), of two kinds told apart by their algorithm:
//!
//! - **this server's own** (HS256 with `JWT_SECRET`, issued at register/login): `sub`
//!   is the account's number, `name` its user name;
//! - **the app's backend's** (RS256 or ES256, verified with `JWT_PUBLIC_KEY` or the
//!   `JWT_JWKS_FILE` key its `kid` names): `sub` is any string id (a JSON string, as
//!   RFC 7519 says; a number is refused), the name is the `JWT_NAME_CLAIM` claim (else `sub`), and
//!   `iss`/`aud` must match `JWT_ISSUER`/`JWT_AUDIENCE` when those are set.
//!
//! Both need `exp` and `sub`; `exp` and `nbf` are checked without leeway. A token that
//! names an audience (`aud`) no `JWT_AUDIENCE` names is refused, `JWT_AUDIENCE` unset
//! included: it was made for something else. The
//! algorithm must be the key's own (an RS256 token is never checked against the HS256
//! secret), and a key embedded in the token (`jwk`, `jku`) is never used.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::keys::ExternalKey;
use crate::config::tokens::TokenSettings;

/// The claims of this server's own tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub name: String,
    pub iat: u64,
    pub exp: u64,
}

/// Who signed the token said the user is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// An account of this server (its number).
    Account(i64),
    /// A user of the app's backend (its `sub`, 1 to [`MAX_SUBJECT`] bytes).
    External(String),
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: Subject,
    /// Shown as the author of the user's messages.
    pub name: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

/// The longest `sub` of a backend token, in bytes.
pub const MAX_SUBJECT: usize = 255;
/// The longest display name of a backend token, in characters.
pub const MAX_NAME: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token: send `Authorization: Bearer <token>` or `?token=<token>`")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid")]
    Invalid,
    #[error("the token's issuer (iss) is not the one this server takes (JWT_ISSUER)")]
    Issuer,
    #[error("the token's audience (aud) does not name this server (JWT_AUDIENCE)")]
    Audience,
    #[error("no key of this server matches the token's algorithm and key id (kid)")]
    UnknownKey,
    #[error("the token is not valid yet (nbf)")]
    NotYet,
    #[error(
        "the token lacks a claim this server requires (exp, sub as a string; iss and aud when JWT_ISSUER and JWT_AUDIENCE are set)"
    )]
    MissingClaim,
    #[error(
        "the token's sub must be a string of 1-255 bytes and its name 1-64 characters, neither with control characters"
    )]
    Claims,
}

impl TokenError {
    pub fn code(self) -> &'static str {
        match self {
            TokenError::Missing => "missing_token",
            TokenError::Expired => "expired_token",
            _ => "invalid_token",
        }
    }
}

fn error(e: &jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::ImmatureSignature => TokenError::NotYet,
        ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
        _ => TokenError::Invalid,
    }
}

#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    own: Validation,
    external: Vec<ExternalKey>,
    /// `iss`/`aud` set; `algorithms` set per token to its key's one.
    external_rules: Validation,
    name_claim: String,
    ttl: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("ttl", &self.ttl).field("external", &self.external).finish_non_exhaustive()
    }
}

impl Tokens {
    /// Own tokens only. `secret` must not be empty (the config guarantees 16 bytes).
    pub fn new(secret: &[u8], ttl: Duration) -> Result<Tokens, jsonwebtoken::errors::Error> {
        Tokens::with_backend(secret, ttl, &TokenSettings::default())
    }

    /// Own tokens and the backend's, as `settings` says.
    pub fn with_backend(
        secret: &[u8],
        ttl: Duration,
        settings: &TokenSettings,
    ) -> Result<Tokens, jsonwebtoken::errors::Error> {
        let mut own = Validation::new(Algorithm::HS256);
        own.leeway = 0;
        own.validate_nbf = true;
        own.set_required_spec_claims(&["exp", "sub"]);
        let mut external_rules = own.clone();
        if let Some(issuer) = &settings.issuer {
            external_rules.set_issuer(&[issuer]);
            external_rules.required_spec_claims.insert("iss".into());
        }
        // Unset: jsonwebtoken refuses a token that names any audience.
        if !settings.audience.is_empty() {
            external_rules.set_audience(&settings.audience);
            external_rules.required_spec_claims.insert("aud".into());
        }
        Ok(Tokens {
            encoding: EncodingKey::from_secret(secret)?,
            decoding: DecodingKey::from_secret(secret)?,
            own,
            external: settings.keys.clone(),
            external_rules,
            name_claim: settings.name_claim.clone(),
            ttl,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(&self, id: i64, name: &str) -> String {
        self.issue_with_ttl(id, name, self.ttl)
    }

    pub fn issue_with_ttl(&self, id: i64, name: &str, ttl: Duration) -> String {
        let iat = super::now_secs();
        let claims = Claims { sub: id.to_string(), name: name.to_string(), iat, exp: iat + ttl.as_secs() };
        // HS256 signing of a small struct cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default()
    }

    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        match header.alg {
            Algorithm::HS256 => self.verify_own(token),
            Algorithm::RS256 | Algorithm::ES256 => self.verify_external(token, header.alg, header.kid.as_deref()),
            _ => Err(TokenError::UnknownKey),
        }
    }

    fn verify_own(&self, token: &str) -> Result<Identity, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.own).map_err(|e| error(&e))?;
        // Accounts are numbered from 1; 0 is the publish API and below it the backend's users.
        let id: i64 = data.claims.sub.parse().map_err(|_| TokenError::Invalid)?;
        if id <= 0 {
            return Err(TokenError::Invalid);
        }
        Ok(Identity { subject: Subject::Account(id), name: data.claims.name, exp: data.claims.exp })
    }

    /// The key is the one whose `kid` the token names (else the one key without a
    /// `kid`, a PEM key); a token without `kid` needs exactly one key of its algorithm.
    fn verify_external(&self, token: &str, alg: Algorithm, kid: Option<&str>) -> Result<Identity, TokenError> {
        let of_alg = || self.external.iter().filter(move |k| k.alg == alg);
        let mut candidates: Vec<&ExternalKey> = match kid {
            Some(kid) => of_alg().filter(|k| k.kid.as_deref() == Some(kid)).collect(),
            None => of_alg().collect(),
        };
        if candidates.is_empty() && kid.is_some() {
            candidates = of_alg().filter(|k| k.kid.is_none()).collect();
        }
        let [key] = candidates.as_slice() else { return Err(TokenError::UnknownKey) };
        let mut rules = self.external_rules.clone();
        rules.algorithms = vec![alg];
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &rules)
            .map_err(|e| error(&e))?;
        let claims = data.claims;
        let subject = match claims.get("sub") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => return Err(TokenError::Claims),
        };
        if subject.is_empty() || subject.len() > MAX_SUBJECT || subject.chars().any(char::is_control) {
            return Err(TokenError::Claims);
        }
        let name = match claims.get(&self.name_claim) {
            Some(serde_json::Value::String(name)) => name.clone(),
            None | Some(serde_json::Value::Null) => subject.clone(),
            Some(_) => return Err(TokenError::Claims),
        };
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_NAME || name.chars().any(char::is_control) || name.trim().is_empty() {
            return Err(TokenError::Claims);
        }
        let exp = claims.get("exp").and_then(serde_json::Value::as_f64).map_or(0, |e| e as u64);
        Ok(Identity { subject: Subject::External(subject), name, exp })
    }
}
