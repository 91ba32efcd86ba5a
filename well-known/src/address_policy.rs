//! Where a gateway may connect out to (issue 14, finding 3): never to loopback, private,
//! link-local, shared, documentation, benchmarking, multicast or other special-purpose ranges,
//! unless the operator re-allows a range (Synapse's `ip_range_blacklist` / `ip_range_whitelist`
//! are the model). Without it a stranger naming `127.0.0.2` or an internal host as its domain
//! makes the gateway probe the operator's own network.

use std::net::IpAddr;

/// An address range, `address/prefix-length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Parses `a.b.c.d/n`, `x:y::z/n`, or a bare address (one host).
    pub fn parse(text: &str) -> Option<IpRange> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let network: IpAddr = address.trim().parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpRange { network, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, canonical(address)) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(address: IpAddr) -> IpAddr {
    address.to_canonical()
}

/// The special-purpose ranges refused by default (RFC 6890 and its updates).
const SPECIAL: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

/// Which addresses outbound connections may go to.
#[derive(Debug, Clone)]
pub struct AddressPolicy {
    special: Vec<IpRange>,
    allowed: Vec<IpRange>,
}

impl AddressPolicy {
    /// Refuses the special-purpose ranges except those inside `allowed`.
    pub fn new(allowed: Vec<IpRange>) -> AddressPolicy {
        AddressPolicy {
            special: SPECIAL
                .iter()
                .filter_map(|range| IpRange::parse(range))
                .collect(),
            allowed,
        }
    }

    pub fn permits(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        // NAT64 (64:ff9b::/96, RFC 6052) and 6to4 (2002::/16, RFC 3056) carry an IPv4
        // address: judged as that address, so DNS64 peers work and none reaches inside.
        if let IpAddr::V6(v6) = address {
            let bits = u128::from(v6);
            let nat64 = bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000;
            let six_to_four = bits >> 112 == 0x2002;
            let embedded = if nat64 {
                Some(bits as u32)
            } else if six_to_four {
                Some((bits >> 80) as u32)
            } else {
                None
            };
            if let Some(v4) = embedded {
                return self.permits(IpAddr::V4(std::net::Ipv4Addr::from(v4)));
            }
        }
        !self.special.iter().any(|range| range.contains(address))
            || self.allowed.iter().any(|range| range.contains(address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn special_ranges_are_refused_unless_re_allowed() {
        let policy = AddressPolicy::new(Vec::new());
        for refused in [
            "127.0.0.2",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
        ] {
            assert!(!policy.permits(ip(refused)), "{refused}");
        }
        for permitted in [
            "93.184.216.34",
            "172.32.0.1",
            "2606:4700::1111",
            "8.8.8.8",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            assert!(policy.permits(ip(permitted)), "{permitted}");
        }
        let loopback = AddressPolicy::new(vec![IpRange::parse("127.0.0.0/8").unwrap()]);
        assert!(loopback.permits(ip("127.0.0.2")));
        assert!(!loopback.permits(ip("10.0.0.1")));
    }

    #[test]
    fn ranges_parse_and_contain() {
        let range = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(range.contains(ip("10.255.0.1")));
        assert!(!range.contains(ip("11.0.0.1")));
        assert!(IpRange::parse("1.2.3.4").unwrap().contains(ip("1.2.3.4")));
        assert!(IpRange::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(IpRange::parse("::/0").unwrap().contains(ip("::1")));
        for bad in ["10.0.0.0/33", "::/129", "nonsense", "10.0.0.0/x", ""] {
            assert_eq!(IpRange::parse(bad), None, "{bad}");
        }
    }
}
