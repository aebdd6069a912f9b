//! Where a request comes from, as the limits count it.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The network a client address is counted under: an IPv4 address on its own, an IPv6
/// address by its /64 (the smallest allocation a subscriber gets: one client can
/// rotate through its whole /64, so counting per /128 would give it 2^64 budgets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientNetwork(IpAddr);

impl ClientNetwork {
    pub const IPV6_PREFIX: u8 = 64;
}

impl From<IpAddr> for ClientNetwork {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & (u128::MAX << (128 - u32::from(Self::IPV6_PREFIX)));
                Self(IpAddr::V6(Ipv6Addr::from(bits)))
            }
        }
    }
}

impl fmt::Display for ClientNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/{}", Self::IPV6_PREFIX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> String {
        ClientNetwork::from(s.parse::<IpAddr>().unwrap()).to_string()
    }

    #[test]
    fn ipv6_clients_count_per_64_and_ipv4_per_address() {
        assert_eq!(net("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(net("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_ne!(net("2001:db8:1:3::1"), net("2001:db8:1:2::1"));
        assert_eq!(net("203.0.113.7"), "203.0.113.7");
        assert_ne!(net("203.0.113.7"), net("203.0.113.8"));
        // An IPv4 client seen through an IPv6 socket is the same IPv4 client.
        assert_eq!(net("::ffff:203.0.113.7"), "203.0.113.7");
    }
}
