//! The SSRF guard of §7.5: which addresses an outgoing webhook may reach. Pure: the caller resolves the
//! host name and checks **every** address it got (and then connects to one of those checked addresses,
//! never re-resolving, so a DNS answer that changes between check and connect cannot slip through).
//!
//! Refused: loopback, unspecified, private (RFC 1918), shared/CGNAT (100.64/10), link-local (169.254/16 —
//! cloud metadata lives there), "this network" (0/8), IETF protocol assignments (192.0.0/24),
//! benchmarking (198.18/15), documentation ranges, multicast, broadcast and reserved (240/4); for IPv6
//! loopback `::1`, unspecified, unique-local `fc00::/7`, link-local `fe80::/10`, site-local `fec0::/10`,
//! multicast, documentation `2001:db8::/32`, and any IPv6 form that embeds an IPv4 address
//! (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`), judged by the IPv4
//! address inside.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether an outgoing request may go to `ip`.
#[must_use]
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240;
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Embedded IPv4: mapped (::ffff:0:0/96), compatible (::/96, but not :: and ::1), NAT64 (64:ff9b::/96).
    let embedded = match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some((hi, lo)),
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) != (0, 0) && (hi, lo) != (0, 1) => Some((hi, lo)),
        _ => None,
    };
    if let Some((hi, lo)) = embedded {
        let [h1, h2] = hi.to_be_bytes();
        let [l1, l2] = lo.to_be_bytes();
        return is_public_v4(Ipv4Addr::new(h1, h2, l1, l2));
    }
    let refused = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8); // documentation
    !refused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn private_loopback_and_link_local_ipv4_are_refused() {
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "192.168.255.255",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
        ] {
            assert!(!ok(s), "{s} must be refused");
        }
    }

    #[test]
    fn public_ipv4_next_to_the_refused_ranges_is_allowed() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "11.0.0.1",
            "169.255.0.1",
        ] {
            assert!(ok(s), "{s} must be allowed");
        }
    }

    #[test]
    fn ipv6_loopback_unique_local_link_local_and_embedded_private_ipv4_are_refused() {
        for s in [
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:192.168.1.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
        ] {
            assert!(!ok(s), "{s} must be refused");
        }
        for s in ["2606:4700:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8"] {
            assert!(ok(s), "{s} must be allowed");
        }
    }
}
