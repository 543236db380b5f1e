//! CIDR blocks for `IpAddress` and `NotIpAddress`.
//!
//! std has addresses but no networks, and the operators need only "is this address in
//! this block", so a twenty-line type beats a dependency. Both IPv4 and IPv6 are
//! supported; an IPv4-mapped IPv6 request address (`::ffff:192.0.2.1`) is compared as
//! IPv4, since that is how dual-stack listeners report IPv4 clients.

use std::net::IpAddr;

/// An address block such as `192.0.2.0/24` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `address/prefix`, or a bare address as a single-host block.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let (addr, prefix) = match value.split_once('/') {
            Some((addr, prefix)) => {
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (
                    addr.parse::<IpAddr>().ok()?,
                    Some(prefix.parse::<u8>().ok()?),
                )
            }
            None => (value.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Returns whether `ip` lies in this block; addresses of the other family never do.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_equal(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_equal(u128::from(net), u128::from(ip), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_equal(a: u128, b: u128, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    a & mask == b & mask
}

/// Parses a request address. A CIDR suffix is not an address and is refused.
pub(crate) fn parse_addr(value: &str) -> Option<IpAddr> {
    value.parse::<IpAddr>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("192.0.2.0/24", "192.0.2.1", true),
            ("192.0.2.0/24", "192.0.3.1", false),
            ("192.0.2.7", "192.0.2.7", true),
            ("192.0.2.7", "192.0.2.8", false),
            ("192.0.2.7/32", "192.0.2.7", true),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("10.0.0.0/8", "10.255.255.255", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::/0", "::1", true),
            ("192.0.2.0/24", "2001:db8::1", false),
            ("2001:db8::/32", "192.0.2.1", false),
            ("192.0.2.0/24", "::ffff:192.0.2.5", true),
        ];
        for (net, ip, expected) in cases {
            let net = IpNet::parse(net).unwrap();
            let ip = parse_addr(ip).unwrap();
            assert_eq!(net.contains(ip), *expected, "{net:?} {ip}");
        }
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "192.0.2.0/33",
            "2001:db8::/129",
            "192.0.2/24",
            "x",
            "192.0.2.0/",
            "1.2.3.4/-1",
            "",
        ] {
            assert_eq!(IpNet::parse(bad), None, "{bad}");
        }
        assert_eq!(parse_addr("192.0.2.0/24"), None);
    }
}
