//! The SSRF guard: which URLs and addresses pricewatch may fetch.
//!
//! Users hand the daemon arbitrary links, and the daemon runs next to things
//! a stranger must not reach: its own loopback services, the LAN, the cloud
//! metadata endpoint. So every fetch is checked twice, at the two places an
//! address can enter:
//!
//! - [`check_url`] runs on the URL before it is sent and on every redirect
//!   hop. It covers what the resolver never sees: the scheme, credentials,
//!   the port and IP-literal hosts (`http://169.254.169.254/`,
//!   `http://2130706433/`; the `url` crate has already normalised the
//!   alternate encodings of IPv4 into [`url::Host::Ipv4`]).
//! - [`GuardedResolver`] is the HTTP client's DNS resolver. It drops every
//!   resolved address that fails [`check_ip`], so the connection is made to
//!   exactly the addresses that were checked: no second resolution that a
//!   zero-TTL record could rebind.
//!
//! Addresses are judged against one table per IP version ([`V4_BLOCKED`],
//! [`V6_BLOCKED`]); std's `is_global` is still unstable. IPv4 hidden in IPv6
//! (mapped, NAT64, 6to4) is unwrapped and judged as IPv4.
//!
//! Names that are local by definition (`localhost`, `*.localhost`, `*.local`,
//! `*.internal`, `*.home.arpa`, and single-label names such as `intranet`)
//! are refused before any lookup: no shop lives there, and they are how a
//! LAN host is usually named.
//!
//! An [`Allowlist`] from the configuration lifts all of this for named hosts
//! and networks (a shop on the LAN, or tests on loopback).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use url::{Host, Url};

/// Why a URL or an address is not fetched. The `Display` text is shown to
/// chat users, so it says what was wrong in plain words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the URL scheme must be http or https, not {0}")]
    Scheme(String),
    #[error("URLs with a user name or password are not fetched")]
    Credentials,
    #[error("the URL has no host name")]
    NoHost,
    #[error("port {port} is not allowed (only {})", join_ports(.allowed))]
    Port { port: u16, allowed: Vec<u16> },
    #[error("{host} is a local network name; pricewatch only fetches public addresses")]
    LocalName { host: String },
    #[error("{ip} is {what}; pricewatch only fetches public addresses")]
    Address { ip: IpAddr, what: &'static str },
    #[error("{ip} is {form} of {v4}, {what}; pricewatch only fetches public addresses")]
    Embedded {
        ip: Ipv6Addr,
        form: &'static str,
        v4: Ipv4Addr,
        what: &'static str,
    },
    /// A name whose every address was refused; `ip` is the first of them.
    #[error("{host} points to {ip}, {what}; pricewatch only fetches public addresses")]
    Resolved {
        host: String,
        ip: IpAddr,
        what: String,
    },
    /// A redirect hop that failed [`check_url`].
    #[error("redirected to {url}: {reason}")]
    Redirect { url: String, reason: Box<Refusal> },
}

impl Refusal {
    /// What a refused address is, in words ("a private address"); `None`
    /// for refusals that are not about an address.
    fn address_words(&self) -> Option<String> {
        match self {
            Refusal::Address { what, .. } => Some((*what).to_owned()),
            Refusal::Embedded { form, v4, what, .. } => Some(format!("{form} of {v4}, {what}")),
            Refusal::Resolved { what, .. } => Some(what.clone()),
            _ => None,
        }
    }
}

fn join_ports(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    ports.join(", ")
}

/// An `allow_hosts` entry that is not a host name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a host name")]
pub struct InvalidHost(pub String);

/// Hosts and networks exempt from the guard, from `fetch.allow_hosts` and
/// `fetch.allow_networks`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    /// Lowercased ASCII host names, without a trailing dot, compared exactly
    /// (an allowlisted `shop.example` does not allow `www.shop.example`).
    hosts: Vec<String>,
    networks: Vec<IpNet>,
}

impl Allowlist {
    /// `hosts` are names as a user writes them; they are normalised as the
    /// `url` crate normalises a URL's host (lowercase, IDNA), so they compare
    /// equal to [`Url::host_str`]. A host that is an IP address joins
    /// `networks` as a one-address network. A host that is not a valid host
    /// name is returned as the error.
    pub fn new(hosts: &[String], networks: &[IpNet]) -> Result<Allowlist, InvalidHost> {
        let mut allow = Allowlist {
            hosts: Vec::new(),
            networks: networks.to_vec(),
        };
        for host in hosts {
            let trimmed = host.trim().trim_end_matches('.');
            let literal = trimmed.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = literal.parse::<IpAddr>() {
                allow.networks.push(IpNet::from(ip));
                continue;
            }
            match Host::parse(trimmed) {
                Ok(Host::Domain(name)) if !name.is_empty() => allow.hosts.push(name),
                Ok(Host::Ipv4(ip)) => allow.networks.push(IpNet::from(IpAddr::V4(ip))),
                Ok(Host::Ipv6(ip)) => allow.networks.push(IpNet::from(IpAddr::V6(ip))),
                _ => return Err(InvalidHost(host.clone())),
            }
        }
        Ok(allow)
    }

    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(&ip))
    }
}

/// Checks everything about `url` that can be known without DNS. `ports` is
/// `fetch.ports`; allowlisted hosts and networks may use any port.
pub fn check_url(url: &Url, allow: &Allowlist, ports: &[u16]) -> Result<(), Refusal> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(Refusal::Scheme(other.to_owned())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Credentials);
    }
    let allowlisted = match url.host() {
        None => return Err(Refusal::NoHost),
        Some(Host::Ipv4(ip)) => check_literal(IpAddr::V4(ip), allow)?,
        Some(Host::Ipv6(ip)) => check_literal(IpAddr::V6(ip), allow)?,
        Some(Host::Domain(name)) => {
            if allow.allows_host(name) {
                true
            } else if is_local_name(name) {
                return Err(Refusal::LocalName {
                    host: name.to_owned(),
                });
            } else {
                false
            }
        }
    };
    // Only a scheme without a default port has none, and those are refused above.
    let port = url.port_or_known_default().unwrap_or(0);
    if !allowlisted && !ports.contains(&port) {
        return Err(Refusal::Port {
            port,
            allowed: ports.to_vec(),
        });
    }
    Ok(())
}

/// Whether an IP-literal host may be fetched, and whether it is allowlisted
/// (which lifts the port restriction).
fn check_literal(ip: IpAddr, allow: &Allowlist) -> Result<bool, Refusal> {
    check_ip(ip, allow)?;
    Ok(allow.allows_ip(ip))
}

/// Names that only mean something on the local machine or network.
/// Single-label names are included: the resolver completes them with the
/// host's search domains, i.e. into the LAN.
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    const LOCAL_SUFFIXES: [&str; 4] = [".localhost", ".local", ".internal", ".home.arpa"];
    name == "localhost"
        || name == "home.arpa"
        || !name.contains('.')
        || LOCAL_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
}

/// Whether `ip` may be connected to: allowlisted, or outside every blocked
/// range. IPv4 embedded in IPv6 (mapped, NAT64, 6to4) is judged as IPv4.
pub fn check_ip(ip: IpAddr, allow: &Allowlist) -> Result<(), Refusal> {
    if allow.allows_ip(ip) {
        return Ok(());
    }
    match ip {
        IpAddr::V4(v4) => match V4_BLOCKED.iter().find(|(net, _)| net.contains(&v4)) {
            Some((_, what)) => Err(Refusal::Address { ip, what }),
            None => Ok(()),
        },
        IpAddr::V6(v6) => {
            if let Some((_, what)) = V6_BLOCKED.iter().find(|(net, _)| net.contains(&v6)) {
                return Err(Refusal::Address { ip, what });
            }
            let Some((form, v4)) = embedded_v4(v6) else {
                return Ok(());
            };
            match check_ip(IpAddr::V4(v4), allow) {
                Ok(()) => Ok(()),
                Err(Refusal::Address { what, .. }) => Err(Refusal::Embedded {
                    ip: v6,
                    form,
                    v4,
                    what,
                }),
                Err(other) => Err(other),
            }
        }
    }
}

/// IPv4 ranges that are not public, each with the words a user reads.
/// Order matters where ranges nest: the first match names the reason.
pub const V4_BLOCKED: &[(Ipv4Net, &str)] = &[
    (v4(0, 0, 0, 0, 8), "a \"this network\" address"),
    (v4(127, 0, 0, 0, 8), "a loopback address"),
    (v4(10, 0, 0, 0, 8), "a private address"),
    (v4(172, 16, 0, 0, 12), "a private address"),
    (v4(192, 168, 0, 0, 16), "a private address"),
    (
        v4(169, 254, 0, 0, 16),
        "a link-local address (cloud metadata)",
    ),
    (
        v4(100, 64, 0, 0, 10),
        "a shared address (carrier-grade NAT)",
    ),
    (v4(192, 0, 0, 0, 24), "an IETF protocol address"),
    (v4(192, 0, 2, 0, 24), "a documentation address"),
    (v4(198, 51, 100, 0, 24), "a documentation address"),
    (v4(203, 0, 113, 0, 24), "a documentation address"),
    (v4(198, 18, 0, 0, 15), "a benchmarking address"),
    (v4(224, 0, 0, 0, 4), "a multicast address"),
    (v4(255, 255, 255, 255, 32), "the broadcast address"),
    (v4(240, 0, 0, 0, 4), "a reserved address"),
];

/// IPv6 ranges that are not public. The IPv4-embedding prefixes that stay
/// routable (mapped, NAT64 well-known, 6to4) are not here: `embedded_v4`
/// unwraps them and the IPv4 table decides.
pub const V6_BLOCKED: &[(Ipv6Net, &str)] = &[
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "the unspecified address"),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "a loopback address"),
    // Deprecated (RFC 4291) and never routed; it also hides IPv4.
    (
        v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "an IPv4-compatible address (deprecated)",
    ),
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "a private address (unique local)",
    ),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "a link-local address",
    ),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "a site-local address",
    ),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "a multicast address"),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "a documentation address",
    ),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        "a documentation address",
    ),
    (
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "a discard-only address",
    ),
    // Includes Teredo (2001::/32), whose embedded IPv4 is obfuscated and
    // whose relays would carry the request anywhere.
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        "an IETF protocol address (e.g. Teredo)",
    ),
    // Local-use NAT64 (RFC 8215): the embedding depends on the site's prefix length.
    (
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "a local-use NAT64 address",
    ),
];

const NAT64: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

/// The IPv4 address an IPv6 address leads to, with the name of the form.
fn embedded_v4(ip: Ipv6Addr) -> Option<(&'static str, Ipv4Addr)> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(("an IPv4-mapped form", v4));
    }
    let s = ip.segments();
    let [a, b] = [s[6].to_be_bytes(), s[7].to_be_bytes()];
    if NAT64.contains(&ip) {
        return Some(("a NAT64 form", Ipv4Addr::new(a[0], a[1], b[0], b[1])));
    }
    if SIX_TO_FOUR.contains(&ip) {
        let [c, d] = [s[1].to_be_bytes(), s[2].to_be_bytes()];
        return Some(("a 6to4 form", Ipv4Addr::new(c[0], c[1], d[0], d[1])));
    }
    None
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

const fn v6(s: [u16; 8], prefix: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        prefix,
    )
}

/// How a host name becomes addresses. The system resolver in production
/// ([`SystemLookup`]); tests inject a fixed table so a public-looking name
/// can resolve to a private address.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: String)
        -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;
}

/// The operating system's resolver, through tokio's blocking pool.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|addr| addr.ip()).collect())
        })
    }
}

/// The HTTP client's DNS resolver: resolves, then keeps only the addresses
/// [`check_ip`] accepts, so the connection goes to a checked address.
#[derive(Clone)]
pub struct GuardedResolver {
    allow: Arc<Allowlist>,
    lookup: Arc<dyn Lookup>,
}

impl GuardedResolver {
    pub fn new(allow: Arc<Allowlist>, lookup: Arc<dyn Lookup>) -> GuardedResolver {
        GuardedResolver { allow, lookup }
    }

    /// The addresses of `host` that may be connected to, or why none may.
    pub async fn resolve_checked(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let addrs = self
            .lookup
            .lookup(host.to_owned())
            .await
            .map_err(|source| ResolveError::Lookup {
                host: host.to_owned(),
                source,
            })?;
        if addrs.is_empty() {
            return Err(ResolveError::NoAddress {
                host: host.to_owned(),
            });
        }
        // The operator named this host, wherever it points.
        if self.allow.allows_host(host) {
            return Ok(addrs);
        }
        let mut first_refusal = None;
        let mut allowed = Vec::with_capacity(addrs.len());
        for ip in addrs {
            match check_ip(ip, &self.allow) {
                Ok(()) => allowed.push(ip),
                Err(refusal) => {
                    first_refusal.get_or_insert((ip, refusal));
                }
            }
        }
        match first_refusal {
            Some((ip, refusal)) if allowed.is_empty() => {
                Err(ResolveError::Refused(Refusal::Resolved {
                    host: host.to_owned(),
                    ip,
                    what: refusal.address_words().unwrap_or_default(),
                }))
            }
            _ => Ok(allowed),
        }
    }
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

/// Why [`GuardedResolver`] produced no address. It travels through reqwest
/// and hyper as the source of their connect error; the fetcher finds the
/// [`Refusal`] again by walking the source chain.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    Refused(Refusal),
    #[error("cannot resolve {host}")]
    Lookup {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("{host} has no address")]
    NoAddress { host: String },
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        Box::pin(async move {
            let ips = this.resolve_checked(name.as_str()).await?;
            // Port 0: reqwest puts in the URL's port.
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Allowlist {
        Allowlist::default()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn refusal(s: &str) -> Refusal {
        check_ip(ip(s), &none()).unwrap_err()
    }

    fn what(s: &str) -> &'static str {
        match refusal(s) {
            Refusal::Address { what, .. } | Refusal::Embedded { what, .. } => what,
            other => panic!("{s}: unexpected {other:?}"),
        }
    }

    fn url_check(s: &str) -> Result<(), Refusal> {
        check_url(&Url::parse(s).unwrap(), &none(), &[80, 443])
    }

    #[test]
    fn every_blocked_ipv4_range_with_its_edges() {
        // (inside, reason, just outside)
        let cases = [
            ("0.0.0.0", "this network", None),
            ("0.255.255.255", "this network", Some("1.0.0.0")),
            ("127.0.0.1", "loopback", None),
            ("127.255.255.255", "loopback", Some("128.0.0.0")),
            ("10.0.0.0", "private", Some("9.255.255.255")),
            ("10.255.255.255", "private", Some("11.0.0.0")),
            ("172.16.0.0", "private", Some("172.15.255.255")),
            ("172.31.255.255", "private", Some("172.32.0.0")),
            ("192.168.0.1", "private", Some("192.167.255.255")),
            ("192.168.255.255", "private", Some("192.169.0.0")),
            ("169.254.169.254", "cloud metadata", Some("169.255.0.0")),
            ("169.254.0.0", "link-local", Some("169.253.255.255")),
            ("100.64.0.0", "carrier-grade NAT", Some("100.63.255.255")),
            ("100.127.255.255", "carrier-grade NAT", Some("100.128.0.0")),
            ("100.100.100.200", "carrier-grade NAT", None),
            ("192.0.0.8", "IETF protocol", Some("192.0.1.0")),
            ("192.0.2.1", "documentation", Some("192.0.3.0")),
            ("198.51.100.7", "documentation", Some("198.51.101.0")),
            ("203.0.113.255", "documentation", Some("203.0.114.0")),
            ("198.18.0.0", "benchmarking", Some("198.17.255.255")),
            ("198.19.255.255", "benchmarking", Some("198.20.0.0")),
            ("224.0.0.1", "multicast", Some("223.255.255.255")),
            ("239.255.255.255", "multicast", None),
            ("240.0.0.1", "reserved", None),
            ("255.255.255.254", "reserved", None),
            ("255.255.255.255", "broadcast", None),
        ];
        for (inside, reason, outside) in cases {
            assert!(what(inside).contains(reason), "{inside}: {}", what(inside));
            if let Some(outside) = outside {
                assert_eq!(check_ip(ip(outside), &none()), Ok(()), "{outside}");
            }
        }
    }

    #[test]
    fn every_blocked_ipv6_range_with_its_edges() {
        let cases = [
            ("::", "unspecified", None),
            ("::1", "loopback", None),
            ("::2", "IPv4-compatible", None),
            ("::7f00:1", "IPv4-compatible", None),
            ("::ffff:ffff", "IPv4-compatible", Some("::1:0:0:0")),
            (
                "fc00::1",
                "unique local",
                Some("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ),
            ("fdff:ffff::1", "unique local", Some("fe00::")),
            (
                "fe80::1",
                "link-local",
                Some("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ),
            ("febf:ffff::1", "link-local", None),
            ("fec0::1", "site-local", None),
            ("feff:ffff::1", "site-local", None),
            ("ff02::1", "multicast", None),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "multicast", None),
            ("2001:db8::1", "documentation", Some("2001:db9::1")),
            (
                "2001:db8:ffff::1",
                "documentation",
                Some("2001:db7:ffff::1"),
            ),
            ("3fff:fff::1", "documentation", Some("3fff:1000::1")),
            ("100::1", "discard", Some("100:0:0:1::")),
            ("2001::1", "Teredo", None),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo", None),
            ("2001:1ff:ffff::1", "IETF protocol", Some("2001:200::1")),
            ("64:ff9b:1::1", "local-use NAT64", Some("64:ff9b:2::1")),
        ];
        for (inside, reason, outside) in cases {
            assert!(what(inside).contains(reason), "{inside}: {}", what(inside));
            if let Some(outside) = outside {
                assert_eq!(check_ip(ip(outside), &none()), Ok(()), "{outside}");
            }
        }
    }

    #[test]
    fn public_addresses_pass() {
        for public in [
            "93.184.215.14",
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1",
            "2a00:1450:4001:80b::200e",
            // IPv4 behind the routable embeddings is judged as IPv4.
            "::ffff:93.184.215.14",
            "64:ff9b::808:808",
            "2002:5db8:d70e::1",
        ] {
            assert_eq!(check_ip(ip(public), &none()), Ok(()), "{public}");
        }
    }

    #[test]
    fn ipv4_hidden_in_ipv6_is_unwrapped() {
        let cases = [
            ("::ffff:127.0.0.1", "IPv4-mapped", "127.0.0.1", "loopback"),
            (
                "::ffff:169.254.169.254",
                "IPv4-mapped",
                "169.254.169.254",
                "cloud metadata",
            ),
            ("::ffff:10.1.2.3", "IPv4-mapped", "10.1.2.3", "private"),
            ("64:ff9b::7f00:1", "NAT64", "127.0.0.1", "loopback"),
            (
                "64:ff9b::a9fe:a9fe",
                "NAT64",
                "169.254.169.254",
                "cloud metadata",
            ),
            ("2002:7f00:1::", "6to4", "127.0.0.1", "loopback"),
            ("2002:c0a8:101:1::1", "6to4", "192.168.1.1", "private"),
        ];
        for (addr, form_word, inner, reason) in cases {
            match refusal(addr) {
                Refusal::Embedded { form, v4, what, .. } => {
                    assert!(form.contains(form_word), "{addr}: {form}");
                    assert_eq!(v4.to_string(), inner, "{addr}");
                    assert!(what.contains(reason), "{addr}: {what}");
                }
                other => panic!("{addr}: {other:?}"),
            }
        }
        assert_eq!(
            refusal("::ffff:127.0.0.1").to_string(),
            "::ffff:127.0.0.1 is an IPv4-mapped form of 127.0.0.1, a loopback address; \
             pricewatch only fetches public addresses"
        );
    }

    #[test]
    fn alternate_ipv4_encodings_are_normalised_then_refused() {
        for s in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://0x7f000001/",
            "http://127.0.0.1./",
            "http://[::ffff:7f00:1]/",
            "http://[::1]/",
        ] {
            let url = Url::parse(s).unwrap();
            assert!(
                matches!(url.host(), Some(Host::Ipv4(_) | Host::Ipv6(_))),
                "{s} parsed as {:?}",
                url.host()
            );
            let err = url_check(s).unwrap_err();
            assert!(err.to_string().contains("loopback"), "{s}: {err}");
        }
        for s in ["http://0/", "http://0.0.0.0:80/", "http://[::]/"] {
            let err = url_check(s).unwrap_err();
            assert!(
                err.to_string().contains("this network") || err.to_string().contains("unspecified"),
                "{s}: {err}"
            );
        }
        assert_eq!(
            url_check("http://2130706433/").unwrap_err().to_string(),
            "127.0.0.1 is a loopback address; pricewatch only fetches public addresses"
        );
    }

    #[test]
    fn the_backslash_differential_is_checked_on_the_url_that_is_sent() {
        // WHATWG parsing (what reqwest sends) reads `\` as `/`: the host is
        // 127.0.0.1 and `@1.1.1.1` is path, not a user name.
        let url = Url::parse("http://127.0.0.1\\@1.1.1.1/").unwrap();
        assert_eq!(url.host_str(), Some("127.0.0.1"));
        assert_eq!(url.path(), "/@1.1.1.1/");
        assert_eq!(url.username(), "");
        let err = check_url(&url, &none(), &[80, 443]).unwrap_err();
        assert!(
            err.to_string().starts_with("127.0.0.1 is a loopback"),
            "{err}"
        );
        // The real user-info form is refused for its credentials.
        assert_eq!(
            url_check("http://1.1.1.1@127.0.0.1/"),
            Err(Refusal::Credentials)
        );
    }

    #[test]
    fn credentials_are_refused() {
        for s in [
            "http://user@shop.example/",
            "http://user:pw@shop.example/",
            "https://:pw@shop.example/",
        ] {
            assert_eq!(url_check(s), Err(Refusal::Credentials), "{s}");
        }
        assert_eq!(
            Refusal::Credentials.to_string(),
            "URLs with a user name or password are not fetched"
        );
    }

    #[test]
    fn only_http_and_https_are_fetched() {
        for (s, scheme) in [
            ("ftp://shop.example/x", "ftp"),
            ("file:///etc/passwd", "file"),
            ("javascript:alert(1)", "javascript"),
            ("data:text/html,hi", "data"),
            ("gopher://shop.example/", "gopher"),
        ] {
            assert_eq!(url_check(s), Err(Refusal::Scheme(scheme.into())), "{s}");
        }
        assert_eq!(
            Refusal::Scheme("ftp".into()).to_string(),
            "the URL scheme must be http or https, not ftp"
        );
        assert_eq!(url_check("http://shop.example/p/1"), Ok(()));
        assert_eq!(url_check("https://shop.example/p/1"), Ok(()));
    }

    #[test]
    fn ports_outside_the_list_are_refused() {
        assert_eq!(url_check("http://shop.example:80/"), Ok(()));
        assert_eq!(url_check("https://shop.example:443/"), Ok(()));
        assert_eq!(url_check("http://shop.example:443/"), Ok(()));
        let err = url_check("http://shop.example:22/").unwrap_err();
        assert_eq!(err.to_string(), "port 22 is not allowed (only 80, 443)");
        assert!(matches!(
            url_check("https://shop.example:8443/"),
            Err(Refusal::Port { port: 8443, .. })
        ));
        let url = Url::parse("http://shop.example:8080/").unwrap();
        assert_eq!(check_url(&url, &none(), &[80, 443, 8080]), Ok(()));
        assert!(check_url(&url, &none(), &[]).is_err());
    }

    #[test]
    fn local_names_are_refused() {
        for s in [
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://printer.local/",
            "http://metadata.google.internal/",
            "http://router.home.arpa/",
            "http://intranet/",
        ] {
            assert!(
                matches!(url_check(s), Err(Refusal::LocalName { .. })),
                "{s}: {:?}",
                url_check(s)
            );
        }
        assert_eq!(
            url_check("http://localhost/").unwrap_err().to_string(),
            "localhost is a local network name; pricewatch only fetches public addresses"
        );
        for s in ["http://localhost.shop.example/", "http://local.example/"] {
            assert_eq!(url_check(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn allowlisted_hosts_and_networks_pass() {
        let allow = Allowlist::new(
            &[
                "Shop.Test".to_owned(),
                "localhost".to_owned(),
                "192.168.1.9".to_owned(),
            ],
            &["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        )
        .unwrap();
        for s in [
            "http://shop.test:8080/",
            "http://SHOP.TEST./",
            "http://localhost:3000/",
            "http://127.0.0.1:9999/",
            "http://127.1/",
            "http://[::1]:81/",
            "http://[::ffff:127.0.0.1]/",
            "http://192.168.1.9:8000/",
        ] {
            assert_eq!(
                check_url(&Url::parse(s).unwrap(), &allow, &[80, 443]),
                Ok(()),
                "{s}"
            );
        }
        for s in [
            // Exact names only: a subdomain is not allowlisted, so its port counts.
            "http://www.shop.test:8080/",
            "http://192.168.1.10/",
            "http://10.0.0.1/",
            "http://api.localhost/",
        ] {
            assert!(
                check_url(&Url::parse(s).unwrap(), &allow, &[80, 443]).is_err(),
                "{s}"
            );
        }
        // A public address on a strange port is not allowlisted.
        let url = Url::parse("http://93.184.215.14:22/").unwrap();
        assert!(matches!(
            check_url(&url, &allow, &[80, 443]),
            Err(Refusal::Port { .. })
        ));
        assert_eq!(check_ip(ip("127.8.9.10"), &allow), Ok(()));
        assert!(check_ip(ip("10.0.0.1"), &allow).is_err());
    }

    #[test]
    fn allowlist_rejects_what_is_not_a_host() {
        assert_eq!(
            Allowlist::new(&["a b".to_owned()], &[]),
            Err(InvalidHost("a b".to_owned()))
        );
        assert!(Allowlist::new(&["shop.test/x".to_owned()], &[]).is_err());
        assert!(Allowlist::new(&[String::new()], &[]).is_err());
        let allow =
            Allowlist::new(&["[::1]".to_owned(), "Bücher.example".to_owned()], &[]).unwrap();
        assert!(allow.allows_ip(ip("::1")));
        assert!(allow.allows_host("xn--bcher-kva.example"));
    }

    struct Table(Vec<(&'static str, Vec<IpAddr>)>);

    impl Lookup for Table {
        fn lookup(
            &self,
            host: String,
        ) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
            let found = self
                .0
                .iter()
                .find(|(name, _)| *name == host)
                .map(|(_, ips)| ips.clone());
            Box::pin(async move {
                found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
            })
        }
    }

    fn resolver(allow: Allowlist) -> GuardedResolver {
        let table = Table(vec![
            ("shop.test", vec![ip("10.0.0.5"), ip("127.0.0.1")]),
            (
                "mixed.test",
                vec![ip("10.0.0.5"), ip("93.184.215.14"), ip("::1")],
            ),
            ("public.test", vec![ip("2606:4700::1")]),
            ("mapped.test", vec![ip("::ffff:169.254.169.254")]),
            ("empty.test", vec![]),
        ]);
        GuardedResolver::new(Arc::new(allow), Arc::new(table))
    }

    #[tokio::test]
    async fn resolver_drops_blocked_addresses() {
        let r = resolver(none());
        match r.resolve_checked("shop.test").await {
            Err(ResolveError::Refused(refusal)) => assert_eq!(
                refusal.to_string(),
                "shop.test points to 10.0.0.5, a private address; \
                 pricewatch only fetches public addresses"
            ),
            other => panic!("{other:?}"),
        }
        match r.resolve_checked("mapped.test").await {
            Err(ResolveError::Refused(refusal)) => assert_eq!(
                refusal.to_string(),
                "mapped.test points to ::ffff:169.254.169.254, an IPv4-mapped form of \
                 169.254.169.254, a link-local address (cloud metadata); \
                 pricewatch only fetches public addresses"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            r.resolve_checked("mixed.test").await.unwrap(),
            [ip("93.184.215.14")]
        );
        assert_eq!(
            r.resolve_checked("public.test").await.unwrap(),
            [ip("2606:4700::1")]
        );
        assert!(matches!(
            r.resolve_checked("empty.test").await,
            Err(ResolveError::NoAddress { .. })
        ));
        assert!(matches!(
            r.resolve_checked("nowhere.test").await,
            Err(ResolveError::Lookup { .. })
        ));
    }

    #[tokio::test]
    async fn resolver_trusts_allowlisted_names_and_networks() {
        let by_name = resolver(Allowlist::new(&["shop.test".to_owned()], &[]).unwrap());
        assert_eq!(
            by_name.resolve_checked("shop.test").await.unwrap(),
            [ip("10.0.0.5"), ip("127.0.0.1")]
        );
        assert!(by_name.resolve_checked("mixed.test").await.unwrap().len() == 1);
        let by_net = resolver(Allowlist::new(&[], &["10.0.0.0/8".parse().unwrap()]).unwrap());
        assert_eq!(
            by_net.resolve_checked("shop.test").await.unwrap(),
            [ip("10.0.0.5")]
        );
    }
}
