//! Which address a request comes from: the peer of the TCP connection, or, when that peer
//! is a trusted proxy (`TRUSTED_PROXIES`, default loopback: the Nginx in front), the
//! nearest address in `X-Forwarded-For` that is not one. A client cannot pick its own
//! address by sending the header: only trusted proxies' additions are believed.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// The TCP peer of a request, put in its extensions by [`crate::http::serve`].
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// An address or a network (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// `ADDR` or `ADDR/PREFIX`; None when it is neither.
    pub fn parse(text: &str) -> Option<Net> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(u128::from(u32::from(n)), u128::from(u32::from(a)), self.prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => masked(u128::from(n), u128::from(a), self.prefix, 128),
            _ => false,
        }
    }
}

fn masked(net: u128, addr: u128, prefix: u8, bits: u8) -> bool {
    let shift = u32::from(bits - prefix);
    shift >= 128 || (net >> shift) == (addr >> shift)
}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`, as a dual-stack socket reports
/// it) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

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
    fn networks_match_by_prefix_and_mapped_ipv4_is_ipv4() {
        let lo = Net::parse("127.0.0.0/8").unwrap();
        assert!(lo.contains("127.1.2.3".parse().unwrap()));
        assert!(lo.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!lo.contains("128.0.0.1".parse().unwrap()));
        assert!(Net::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Net::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert_eq!(Net::parse("10.0.0.0/33"), None);
        assert_eq!(Net::parse("nonsense"), None);
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
