//! `ALLOWED_ORIGINS`: which web pages may open a WebSocket (the browser sends the page's
//! origin with the upgrade; other clients send none and are not checked). A page of
//! another origin would otherwise use a visitor's token from a query string, or make the
//! visitor's browser hold connections. Default: any origin in development; in production
//! the origin of `PUBLIC_URL` when it is set, else any.

use super::Parser;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    Any,
    /// Origins as browsers send them: `scheme://host[:port]`, lower case, without the
    /// default port.
    Only(Vec<String>),
}

impl Origins {
    /// Whether an upgrade that carries `Origin: origin` is let in.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            Origins::Any => true,
            Origins::Only(list) => normalize(origin).is_some_and(|o| list.contains(&o)),
        }
    }
}

/// `scheme://host[:port]` of a URL or an origin, lower case, default port dropped; None
/// when it is not an http(s) or ws(s) URL.
pub fn normalize(url: &str) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" | "ws" => "80",
        "https" | "wss" => "443",
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = match authority.rsplit_once(':') {
        Some((host, port)) if port == default => host.to_string(),
        _ => authority,
    };
    Some(format!("{scheme}://{authority}"))
}

pub(super) fn parse(p: &mut Parser, development: bool) -> Origins {
    let public = p.text("PUBLIC_URL").filter(|v| !v.trim().is_empty());
    if let Some(url) = &public
        && normalize(url).is_none()
    {
        p.fail("PUBLIC_URL", format!("{url:?} is not an http:// or https:// URL"));
    }
    match p.text("ALLOWED_ORIGINS").filter(|v| !v.trim().is_empty()) {
        Some(list) if list.trim() == "*" => Origins::Any,
        Some(list) => {
            let mut out = Vec::new();
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match normalize(item) {
                    Some(o) => out.push(o),
                    None => {
                        p.fail("ALLOWED_ORIGINS", format!("{item:?} is not an origin such as https://chat.example.com"))
                    }
                }
            }
            Origins::Only(out)
        }
        None if development => Origins::Any,
        None => public.as_deref().and_then(normalize).map_or(Origins::Any, |o| Origins::Only(vec![o])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_as_browsers_send_them() {
        assert_eq!(normalize("https://Chat.Example.com:443/app?x=1").as_deref(), Some("https://chat.example.com"));
        assert_eq!(normalize("http://localhost:8080/").as_deref(), Some("http://localhost:8080"));
        assert_eq!(normalize("http://[::1]:80").as_deref(), Some("http://[::1]"));
        assert_eq!(normalize("ftp://x"), None);
        assert_eq!(normalize("https://user@evil.example"), None);
        let only = Origins::Only(vec!["https://chat.example.com".into()]);
        assert!(only.allows("https://chat.example.com"));
        assert!(only.allows("https://CHAT.example.com:443"));
        assert!(!only.allows("https://chat.example.com.evil.example"));
        assert!(!only.allows("http://chat.example.com"));
        assert!(!only.allows("null"));
        assert!(Origins::Any.allows("null"));
    }
}
