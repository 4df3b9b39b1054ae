//! Where the service may send webhooks: public addresses only, unless the
//! operator allows a network. A URL's host is checked when a webhook is
//! added, and every address it resolves to is checked again where the
//! connection is made (the resolver hands the HTTP client only the checked
//! addresses, so a name cannot resolve to one address for the check and
//! another for the connection).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// A network as `address/prefix` (`10.1.0.0/16`, `::1/128`), or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` is in this network (a v4-mapped IPv6 address as its IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, canonical(ip)) {
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

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad =
            |why: &str| format!("{text:?} is not a network such as 10.1.0.0/16 or fd00::/8: {why}");
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| bad("not an IP address"))?;
        let address = canonical(address);
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad(&format!("the prefix must be 0 to {max}")))?,
            None => max,
        };
        Ok(Network { address, prefix })
    }
}

impl<'de> serde::Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (whole, rest) = ((prefix / 8) as usize, prefix % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// A v4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address is not a public one, or `None` when it is.
pub fn special_use(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "this network",
        (10, ..) => "private",
        (100, 64..=127, _) => "shared (carrier-grade NAT, cloud metadata)",
        (127, ..) => "loopback",
        (169, 254, _) => "link-local (cloud metadata)",
        (172, 16..=31, _) => "private",
        (192, 0, 0) => "protocol assignments (cloud metadata)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay",
        (192, 168, _) => "private",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, ..) => "multicast",
        (240..=255, ..) => "reserved",
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    Some(match s {
        // Unspecified, loopback and the deprecated IPv4-compatible form.
        [0, 0, 0, 0, 0, 0, ..] => "loopback or unspecified",
        // NAT64 reaches the IPv4 address it embeds.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return special_v4(embedded(hi, lo)),
        [0x64, 0xff9b, 1, ..] => "local NAT64",
        [0x100, 0, 0, 0, ..] => "discard",
        [0x2001, 0xdb8, ..] => "documentation",
        [0x2001, second, ..] if second < 0x200 => "protocol assignments (Teredo, ORCHID)",
        // 6to4 reaches the IPv4 address it embeds.
        [0x2002, hi, lo, ..] => return special_v4(embedded(hi, lo)),
        [0x3fff, second, ..] if second < 0x1000 => "documentation",
        [first, ..] if first & 0xfe00 == 0xfc00 => "unique local (cloud metadata)",
        [first, ..] if first & 0xffc0 == 0xfe80 => "link-local",
        [first, ..] if first & 0xffc0 == 0xfec0 => "site-local",
        [first, ..] if first & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

/// The networks webhooks may reach besides the public internet.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    allowed: Arc<Vec<Network>>,
}

impl Egress {
    /// Public addresses, and those in `allowed` (the operator's choice).
    pub fn allowing(allowed: Vec<Network>) -> Self {
        Egress {
            allowed: Arc::new(allowed),
        }
    }

    /// Whether a webhook may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        special_use(ip).is_none() || self.allowed.iter().any(|n| n.contains(ip))
    }

    /// Checks a webhook URL's host: an address must be permitted; a name
    /// that resolves now must resolve to one permitted address at least (a
    /// name that does not resolve yet is checked when delivering).
    pub async fn check_host(&self, url: &reqwest::Url) -> Result<(), Refused> {
        let host = url.host_str().ok_or(Refused)?;
        if let Some(ip) = literal_ip(host) {
            return self.check_ip(ip);
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let lookup = tokio::net::lookup_host((host, port));
        match tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await {
            Ok(Ok(addrs)) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if addrs.is_empty() || addrs.iter().any(|a| self.permits(a.ip())) {
                    Ok(())
                } else {
                    Err(Refused)
                }
            }
            _ => Ok(()),
        }
    }

    /// Checks a URL whose host is an address, which no resolver sees: `Ok`
    /// for a name, which the resolver checks.
    pub fn check_literal(&self, url: &reqwest::Url) -> Result<(), Refused> {
        match url.host_str().and_then(literal_ip) {
            Some(ip) => self.check_ip(ip),
            None => Ok(()),
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(Refused)
        }
    }

    /// The HTTP client's resolver: only permitted addresses come out.
    pub fn resolver(&self) -> Arc<impl reqwest::dns::Resolve + 'static> {
        Arc::new(Resolver {
            egress: self.clone(),
        })
    }
}

/// The address a URL's host names, when it is one (IPv6 in brackets).
fn literal_ip(host: &str) -> Option<IpAddr> {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()
}

/// An address webhooks may not reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "refused address: the receiver resolves only to addresses webhooks may not reach (loopback, private, link-local, shared or reserved)"
)]
pub struct Refused;

/// A name that did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("name not resolved: {0}")]
pub struct NotResolved(#[source] std::io::Error);

struct Resolver {
    egress: Egress,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = self.egress.clone();
        Box::pin(async move {
            // The port is replaced by the URL's.
            let addrs = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(|e| {
                    Box::new(NotResolved(e)) as Box<dyn std::error::Error + Send + Sync>
                })?;
            let permitted: Vec<SocketAddr> = addrs.filter(|a| egress.permits(a.ip())).collect();
            if permitted.is_empty() {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_public_addresses_are_permitted_by_default() {
        let egress = Egress::default();
        for special in [
            "0.0.0.0",
            "10.0.0.1",
            "100.64.0.1",
            "100.100.100.200",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.192",
            "192.0.2.1",
            "192.168.0.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::",
            "3fff::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!egress.permits(ip(special)), "{special}");
            assert!(special_use(ip(special)).is_some(), "{special}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
            "2600::1",
            "2a00:1450::1",
        ] {
            assert!(egress.permits(ip(public)), "{public}");
        }
    }

    #[test]
    fn the_operator_may_allow_networks() {
        let egress = Egress::allowing(vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.1.2.3".parse().unwrap(),
            "fd00:1::/32".parse().unwrap(),
        ]);
        assert!(egress.permits(ip("127.0.0.1")));
        assert!(egress.permits(ip("::ffff:127.0.0.2")), "v4-mapped");
        assert!(egress.permits(ip("10.1.2.3")));
        assert!(!egress.permits(ip("10.1.2.4")));
        assert!(egress.permits(ip("fd00:1:ffff::1")));
        assert!(!egress.permits(ip("fd00:2::1")));
        assert!(!egress.permits(ip("::1")));
        assert!(!egress.permits(ip("169.254.169.254")));
    }

    #[test]
    fn networks_are_read_with_errors_naming_them() {
        assert_eq!(
            "10.0.0.0/9".parse::<Network>().unwrap(),
            Network {
                address: ip("10.0.0.0"),
                prefix: 9
            }
        );
        for bad in ["10.0.0.0/33", "::/129", "ten/8", "10.0.0.0/x", ""] {
            let err = bad.parse::<Network>().unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        let net: Network = "0.0.0.0/0".parse().unwrap();
        assert!(net.contains(ip("8.8.8.8")) && !net.contains(ip("2600::1")));
    }
}
