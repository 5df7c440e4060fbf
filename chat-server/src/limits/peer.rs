//! Which address a request comes from: the peer of the TCP connection, or, when that peer
//! is a trusted proxy (`TRUSTED_PROXIES`, default loopback: the Nginx in front), the
//! nearest address in `X-Forwarded-For` that is not one. A client cannot pick its own
//! address by sending the header: only trusted proxies' additions are believed.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

pub use crate::config::net::{Net, canonical};

/// The TCP peer of a request, put in its extensions by [`crate::http::serve`].
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The client's address: `peer` unless it is trusted, else `X-Forwarded-For` read right
/// to left (each trusted proxy appends the address it saw): the first address that is
/// not trusted. Whatever stands left of a hop that does not parse was written by the
/// client, so the reading stops there, at the nearest trusted hop (or `peer`).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Net]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let values: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    let mut nearest = peer;
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        match hop.trim().parse::<IpAddr>().map(canonical) {
            Ok(ip) if is_trusted(ip) => nearest = ip,
            Ok(ip) => return ip,
            Err(_) => return nearest,
        }
    }
    nearest
}

/// The key a client address is counted under: itself, or for IPv6 its /64 (one host
/// usually holds a whole /64).
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_a_trusted_proxy_s_forwarded_address_is_believed() {
        let trusted = [Net::parse("127.0.0.0/8").unwrap(), Net::parse("10.0.0.0/8").unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // A client talking to us directly cannot pick its address.
        assert_eq!(client_ip(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &trusted), ip("203.0.113.9"));
        // Through Nginx on loopback: the address Nginx saw.
        assert_eq!(client_ip(ip("127.0.0.1"), &headers(&["203.0.113.9"]), &trusted), ip("203.0.113.9"));
        // A forged first hop is skipped: the nearest untrusted address counts.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &headers(&["6.6.6.6, 203.0.113.9", "10.1.1.1"]), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(client_ip(ip("127.0.0.1"), &headers(&[]), &trusted), ip("127.0.0.1"));
        assert_eq!(client_ip(ip("127.0.0.1"), &headers(&["garbage"]), &trusted), ip("127.0.0.1"));
        // What the client wrote left of garbage is its own: Nginx appended the real address.
        assert_eq!(client_ip(ip("127.0.0.1"), &headers(&["1.2.3.4, x, 203.0.113.9"]), &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("127.0.0.1"), &headers(&["1.2.3.4, x, 10.0.0.2"]), &trusted), ip("10.0.0.2"));
        assert_eq!(rate_key(ip("2001:db8::1")), rate_key(ip("2001:db8::ffff:1")));
        assert_ne!(rate_key(ip("2001:db8::1")), rate_key(ip("2001:db8:0:1::1")));
    }
}
