//! The client's IP address, as far as we can trust it.
//!
//! `X-Forwarded-For` is believed only when the direct peer is one of our own proxies
//! (`TRUSTED_PROXIES`); otherwise anyone could claim any address and dodge per-IP rate
//! limits or forge audit records.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use poem::Request;
use poem::http::HeaderMap;
use poem::web::RemoteAddr;

/// An IP address block: `10.0.0.0/8`, `fd00::/8`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// Compares the first `prefix` bits of two addresses.
fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`, as dual-stack sockets report) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| "not an IP address or CIDR block".to_owned())?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix length must be 0-{max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Resolves the client address of a request: the peer, or — when the peer is a trusted
/// proxy — the right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn of(req: &Request, trusted: &[IpNetwork]) -> Option<IpAddr> {
    match req.remote_addr() {
        RemoteAddr(poem::Addr::SocketAddr(addr)) => {
            Some(resolve(addr.ip(), req.headers(), trusted))
        }
        _ => None,
    }
}

fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNetwork]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    // Walk from the nearest hop outwards; stop at the first address we did not add.
    for hop in forwarded.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            // Garbage in the chain: the last address we could vouch for is the client.
            break;
        };
        client = canonical(ip);
        if !is_trusted(client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_match() {
        let net: IpNetwork = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.9.9.9".parse().unwrap()));
        let one: IpNetwork = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: IpNetwork = "fd00::/12".parse().unwrap();
        assert!(v6.contains("fd0f::1".parse().unwrap()));
        assert!(!v6.contains("fd10::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "::1/129", "1.2.3.4/x"] {
            assert!(bad.parse::<IpNetwork>().is_err(), "{bad}");
        }
    }

    fn resolve_str(peer: &str, xff: Option<&str>, trusted: &[IpNetwork]) -> IpAddr {
        let mut headers = HeaderMap::new();
        if let Some(xff) = xff {
            headers.insert("x-forwarded-for", xff.parse().unwrap());
        }
        resolve(peer.parse().unwrap(), &headers, trusted)
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // A direct client can't claim another address.
        assert_eq!(
            resolve_str("1.2.3.4", Some("9.9.9.9"), &trusted),
            ip("1.2.3.4")
        );
        // Behind our proxy, the right-most untrusted hop is the client; what the client
        // prepended itself is ignored.
        assert_eq!(
            resolve_str("10.0.0.2", Some("6.6.6.6, 1.2.3.4, 10.0.0.7"), &trusted),
            ip("1.2.3.4")
        );
        assert_eq!(resolve_str("10.0.0.2", None, &trusted), ip("10.0.0.2"));
        assert_eq!(
            resolve_str("10.0.0.2", Some("junk"), &trusted),
            ip("10.0.0.2")
        );
    }
}
