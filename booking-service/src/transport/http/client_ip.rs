//! The client's address behind proxies: the socket peer, unless it is one of the
//! configured trusted proxy networks (`http.trusted_proxies`); then `X-Forwarded-For`
//! is read from the right, skipping hops inside trusted networks, and the first hop
//! that is not trusted is the client. The leftmost entries are whatever the client
//! wrote and are never believed on their own: a client that forges them is still
//! counted under the address our own proxy saw.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The networks whose `X-Forwarded-For` is believed (the ingress, load balancers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses CIDR networks (`10.0.0.0/8`, `fd00::/8`) or single addresses.
    pub fn parse(list: &[String]) -> Result<Self, String> {
        list.iter()
            .map(|s| {
                let s = s.trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| {
                        format!("{s:?} is not a network (CIDR such as 10.0.0.0/8) or an address")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One `X-Forwarded-For` hop: an address, optionally bracketed (IPv6) or with a port.
fn hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            s.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|r| r.parse().ok())
        })
        .map(|ip: IpAddr| ip.to_canonical())
}

/// The client address of a request from `peer` carrying these `X-Forwarded-For`
/// values (in the order they arrived).
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let mut client = peer.to_canonical();
    if !trusted.trusts(client) {
        return client;
    }
    let hops: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|v| v.split(','))
        .collect();
    for raw in hops.iter().rev() {
        // A hop our own proxy cannot have written: the nearest trusted hop answers for
        // the request (never an address the client chose).
        let Some(ip) = hop(raw) else {
            return client;
        };
        client = ip;
        if !trusted.trusts(ip) {
            return ip;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_headers_say() {
        let none = TrustedProxies::default();
        assert_eq!(
            client_ip(ip("198.51.100.9"), ["203.0.113.1"], &none),
            ip("198.51.100.9")
        );
        let proxies = trusted(&["10.0.0.0/8"]);
        // A peer outside the trusted networks cannot speak for anyone else.
        assert_eq!(
            client_ip(ip("198.51.100.9"), ["10.1.1.1"], &proxies),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client_and_forged_left_entries_are_ignored() {
        let proxies = trusted(&["10.0.0.0/8", "fd00::/8"]);
        // The client wrote "1.2.3.4"; our ingress (10.0.0.5) appended what it saw.
        let xff = ["1.2.3.4, 203.0.113.50"];
        assert_eq!(client_ip(ip("10.0.0.5"), xff, &proxies), ip("203.0.113.50"));
        // Two trusted hops, split over two header lines.
        let xff = ["9.9.9.9, 203.0.113.50", "10.2.0.1"];
        assert_eq!(client_ip(ip("10.0.0.5"), xff, &proxies), ip("203.0.113.50"));
        // IPv6, bracketed with a port, and v4-mapped peers.
        let xff = ["[2001:db8::7]:4711"];
        assert_eq!(client_ip(ip("fd00::1"), xff, &proxies), ip("2001:db8::7"));
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.5"), ["203.0.113.50"], &proxies),
            ip("203.0.113.50")
        );
        // No header, or garbage where our proxy writes: the nearest trusted hop.
        assert_eq!(client_ip(ip("10.0.0.5"), [], &proxies), ip("10.0.0.5"));
        assert_eq!(
            client_ip(ip("10.0.0.5"), ["1.2.3.4, unknown"], &proxies),
            ip("10.0.0.5")
        );
        // Every hop trusted: the leftmost.
        assert_eq!(
            client_ip(ip("10.0.0.5"), ["10.9.9.9, 10.2.0.1"], &proxies),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn networks_parse_or_are_named() {
        assert!(trusted(&["10.0.0.0/8", "192.168.1.7", "fd00::/8"]).trusts(ip("192.168.1.7")));
        assert!(
            trusted(&["10.1.2.3/8"]).trusts(ip("10.200.0.1")),
            "host bits dropped"
        );
        let err = TrustedProxies::parse(&["10.0.0.0/33".into()]).unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
    }
}
