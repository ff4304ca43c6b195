//! The client's IP address: the connection's peer, or what trusted proxies forwarded.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;
use http::header::FORWARDED;

/// The proxies whose forwarding headers (`Forwarded`, `X-Forwarded-For`) are believed.
///
/// By default none: the client IP is the connection's peer address. With trusted proxies,
/// the forwarded chain is walked from the right (the hop nearest to this server), skipping
/// trusted proxies; the first untrusted address is the client. `Forwarded` (RFC 7239) is
/// preferred when present, `X-Forwarded-For` otherwise.
///
/// ```
/// use audit_layer::TrustedProxies;
/// let proxies = TrustedProxies::new(["10.0.0.0/8", "192.168.1.7", "fd00::/8"])?;
/// assert!(proxies.contains("10.1.2.3".parse()?));
/// assert!(!proxies.contains("192.168.1.8".parse()?));
/// assert!(TrustedProxies::new(["10.0.0.0/33"]).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<Network>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A trusted-proxy entry that is neither an IP address nor a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid trusted proxy {entry:?}: expected an IP address or CIDR network such as 10.0.0.0/8"
)]
pub struct InvalidProxy {
    entry: String,
}

impl TrustedProxies {
    /// Trusts each entry: an IP address (`10.0.0.1`, `::1`) or a CIDR network (`10.0.0.0/8`).
    pub fn new<I, S>(entries: I) -> Result<Self, InvalidProxy>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let networks = entries
            .into_iter()
            .map(|entry| parse_network(entry.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { networks })
    }

    /// Trusts no proxy (the default): only the connection's peer address counts.
    pub fn none() -> Self {
        Self::default()
    }

    /// True when `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|network| network.contains(ip))
    }

    /// The client IP for a connection from `peer` carrying `headers`.
    ///
    /// ```
    /// use audit_layer::TrustedProxies;
    /// use http::HeaderMap;
    ///
    /// let proxies = TrustedProxies::new(["10.0.0.0/8"])?;
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2".parse()?);
    /// let client = proxies.client_ip(Some("10.0.0.1".parse()?), &headers);
    /// assert_eq!(client, Some("203.0.113.9".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?.to_canonical();
        if !self.contains(peer) {
            return Some(peer);
        }
        let hops = forwarded_for(headers).or_else(|| x_forwarded_for(headers));
        let Some(hops) = hops else {
            return Some(peer);
        };
        // Walk from the hop nearest to us. Each trusted hop vouches for the entry to its
        // left; the first address that is not a trusted proxy is the client. An entry that
        // cannot be parsed is something a client made up: stop and keep the last address
        // a trusted hop vouched for.
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) => {
                    client = *ip;
                    if !self.contains(*ip) {
                        break;
                    }
                }
                None => break,
            }
        }
        Some(client)
    }
}

fn parse_network(entry: &str) -> Result<Network, InvalidProxy> {
    let invalid = || InvalidProxy {
        entry: entry.to_owned(),
    };
    let entry_trimmed = entry.trim();
    let (address, prefix) = match entry_trimmed.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (entry_trimmed, None),
    };
    let address = IpAddr::from_str(address)
        .map_err(|_| invalid())?
        .to_canonical();
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(prefix) => prefix.parse::<u8>().map_err(|_| invalid())?,
        None => max,
    };
    if prefix > max {
        return Err(invalid());
    }
    Ok(Network { address, prefix })
}

/// The `for=` addresses of every `Forwarded` header, left to right; `None` entries could not
/// be parsed (`unknown`, obfuscated identifiers, garbage).
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all(FORWARDED) {
        let text = value.to_str().ok()?;
        for element in text.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim())
            });
            if let Some(node) = node {
                hops.push(parse_node(node.trim_matches('"')));
            }
        }
    }
    (!hops.is_empty()).then_some(hops)
}

fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            hops.push(None);
            continue;
        };
        hops.extend(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(parse_node),
        );
    }
    (!hops.is_empty()).then_some(hops)
}

/// `192.0.2.1`, `192.0.2.1:8080`, `[2001:db8::1]`, `[2001:db8::1]:443` or `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = IpAddr::from_str(node) {
        return Some(ip.to_canonical());
    }
    if let Ok(socket) = SocketAddr::from_str(node) {
        return Some(socket.ip().to_canonical());
    }
    let inner = node.strip_prefix('[')?.strip_suffix(']')?;
    IpAddr::from_str(inner).ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            proxies.client_ip(ip("203.0.113.5"), &spoofed),
            ip("203.0.113.5")
        );
        assert_eq!(
            TrustedProxies::none().client_ip(ip("10.0.0.1"), &spoofed),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn walks_from_the_right_through_trusted_hops() {
        let proxies = TrustedProxies::new(["10.0.0.0/8", "2001:db8::/32"]).unwrap();
        let chain = headers(&[
            ("x-forwarded-for", "9.9.9.9, 198.51.100.7"),
            ("x-forwarded-for", "10.0.0.3"),
        ]);
        assert_eq!(
            proxies.client_ip(ip("10.0.0.1"), &chain),
            ip("198.51.100.7")
        );
        let all_trusted = headers(&[("x-forwarded-for", "10.1.1.1, 10.0.0.3")]);
        assert_eq!(
            proxies.client_ip(ip("10.0.0.1"), &all_trusted),
            ip("10.1.1.1")
        );
        let forwarded = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\"",
        )]);
        assert_eq!(
            proxies.client_ip(ip("::ffff:10.0.0.1"), &forwarded),
            ip("192.0.2.60")
        );
        let garbage = headers(&[("x-forwarded-for", "nonsense, 10.0.0.9")]);
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), &garbage), ip("10.0.0.9"));
        let none = HeaderMap::new();
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), &none), ip("10.0.0.1"));
        assert_eq!(proxies.client_ip(None, &chain), None);
    }
}
