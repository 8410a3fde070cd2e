//! The client's IP address, as far as we can trust it.
//!
//! `X-Forwarded-For` is believed only when the direct peer is one of our own proxies
//! (`TRUSTED_PROXIES`); otherwise anyone could claim any address and dodge per-IP rate
//! limits or forge audit records.

use std::net::IpAddr;

use poem::Request;
use poem::http::HeaderMap;
use poem::web::RemoteAddr;

use crate::net::{IpNetwork, canonical};

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
