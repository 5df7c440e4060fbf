//! The settings of tokens signed by the app's backend (`crate::auth::tokens`): its
//! public keys (`JWT_PUBLIC_KEY`, `JWT_JWKS_FILE`), the issuer and audience they must
//! name (`JWT_ISSUER`, `JWT_AUDIENCE`) and the claim that holds the display name
//! (`JWT_NAME_CLAIM`). Every key file is read and parsed here, so a key that cannot
//! work is an error at `--check` and at start (see `keys`).

use std::path::Path;

use super::Parser;
use super::keys::{self, ExternalKey};

#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The backend's keys, from both variables; empty: only this server's own tokens.
    pub keys: Vec<ExternalKey>,
    /// `JWT_ISSUER`: the `iss` a backend token must carry.
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`: comma-separated; a backend token's `aud` must name one.
    pub audience: Vec<String>,
    /// `JWT_NAME_CLAIM`: the claim shown as the user's name (`name`); `sub` when absent.
    pub name_claim: String,
}

impl Default for TokenSettings {
    fn default() -> TokenSettings {
        TokenSettings { keys: Vec::new(), issuer: None, audience: Vec::new(), name_claim: "name".into() }
    }
}

impl TokenSettings {
    /// Whether the app's backend signs tokens.
    pub fn external(&self) -> bool {
        !self.keys.is_empty()
    }
}

pub const VARIABLES: &[&str] = &["JWT_PUBLIC_KEY", "JWT_JWKS_FILE", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_NAME_CLAIM"];

pub(super) fn parse(p: &mut Parser) -> TokenSettings {
    let mut keys = Vec::new();
    if let Some(path) = p.text("JWT_PUBLIC_KEY").filter(|v| !v.trim().is_empty()) {
        let path = Path::new(path.trim());
        match keys::read_trusted(path).and_then(|bytes| keys::pem_key(&bytes)) {
            Ok(key) => keys.push(key),
            Err(e) => p.fail("JWT_PUBLIC_KEY", format!("{}: {e}", path.display())),
        }
    }
    if let Some(path) = p.text("JWT_JWKS_FILE").filter(|v| !v.trim().is_empty()) {
        let path = Path::new(path.trim());
        match keys::read_trusted(path).and_then(|bytes| keys::jwks(&bytes)) {
            Ok(found) => keys.extend(found),
            Err(e) => p.fail("JWT_JWKS_FILE", format!("{}: {e}", path.display())),
        }
    }
    let issuer = p.text("JWT_ISSUER").map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let audience: Vec<String> = p
        .text("JWT_AUDIENCE")
        .unwrap_or_default()
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    let name_claim = p.text("JWT_NAME_CLAIM").map_or_else(|| "name".to_string(), |v| v.trim().to_string());
    if name_claim.is_empty() || name_claim.len() > 64 {
        p.fail("JWT_NAME_CLAIM", "must be a claim name of 1 to 64 characters".into());
    }
    let no_keys = keys.is_empty() && !p.has("JWT_PUBLIC_KEY") && !p.has("JWT_JWKS_FILE");
    for (name, set) in [("JWT_ISSUER", issuer.is_some()), ("JWT_AUDIENCE", !audience.is_empty())] {
        if set && no_keys {
            p.fail(
                name,
                "applies to the backend's tokens: set JWT_PUBLIC_KEY or JWT_JWKS_FILE too (this server's own tokens carry no issuer or audience)".into(),
            );
        }
    }
    TokenSettings { keys, issuer, audience, name_claim }
}
