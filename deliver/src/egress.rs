//! The egress guard: every outbound connection Tripline makes goes to an
//! address this module has checked, and to no other.
//!
//! A webhook URL is user input; without a guard it reaches whatever the
//! daemon can reach (the cloud metadata service, an admin port on
//! loopback, the internal network): server-side request forgery. The guard
//! refuses loopback, private, link-local, shared (CGNAT), multicast,
//! reserved and unspecified addresses and the cloud metadata endpoints,
//! also when written as an IPv4-mapped, IPv4-compatible, NAT64, 6to4 or
//! Teredo IPv6 address. `[egress] allow_private_networks` names ranges that
//! are allowed anyway (a receiver on the internal network; loopback in
//! tests).
//!
//! Hostnames are resolved by [`Guard`] itself, as the HTTP client's
//! resolver: the client connects to the addresses the guard returned and
//! checked, so a DNS answer that changes between check and connect (DNS
//! rebinding) cannot switch the target. IP literals in a URL never reach a
//! resolver, so [`Guard::check_url`] checks them before a request is sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;

/// `[egress]`: which private ranges outbound connections may reach.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Ranges allowed although the guard would refuse them, such as
    /// `["10.20.0.0/16"]` for a receiver on the internal network or
    /// `["127.0.0.0/8"]` for one on this host. Empty by default.
    pub allow_private_networks: Vec<IpNet>,
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{addr} is {kind}: outbound connections to it are refused (allow its range in [egress] allow_private_networks)"
)]
pub struct Refused {
    /// The address as written or resolved.
    pub addr: IpAddr,
    /// What it is.
    pub kind: &'static str,
}

/// Checks addresses, and resolves hostnames to checked addresses only.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allow: Arc<Vec<IpNet>>,
}

impl Guard {
    /// A guard that allows `config.allow_private_networks` beside the
    /// public internet.
    pub fn new(config: &EgressConfig) -> Guard {
        Guard {
            allow: Arc::new(config.allow_private_networks.clone()),
        }
    }

    /// `Ok` if a connection to `addr` is allowed.
    pub fn check(&self, addr: IpAddr) -> Result<(), Refused> {
        let allowed = |a: IpAddr| self.allow.iter().any(|net| net.contains(&a));
        if allowed(addr) {
            return Ok(());
        }
        match classify(addr) {
            None => Ok(()),
            Some((inner, _)) if inner != addr && allowed(inner) => Ok(()),
            Some((_, kind)) => Err(Refused { addr, kind }),
        }
    }

    /// Checks the host of `url` when it is an IP literal (decimal, octal
    /// and hex IPv4 forms are literals too: the URL parser has normalized
    /// them). Hostnames are checked when resolved.
    pub fn check_url(&self, url: &url::Url) -> Result<(), Refused> {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.check(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check(IpAddr::V6(v6)),
            _ => Ok(()),
        }
    }

    /// Resolves `host` with the system resolver and keeps the allowed
    /// addresses; none allowed is the first refusal.
    pub async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| ResolveError::Lookup(format!("resolving {host}: {e}")))?
            .collect();
        let mut refused = None;
        let mut allowed = Vec::new();
        for a in found {
            match self.check(a.ip()) {
                Ok(()) => allowed.push(a),
                Err(r) => refused = refused.or(Some(r)),
            }
        }
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some(r)) => Err(ResolveError::Refused {
                host: host.to_string(),
                refused: r,
            }),
            (true, None) => Err(ResolveError::Lookup(format!("{host} has no address"))),
        }
    }
}

/// A hostname that did not resolve to an allowed address.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    /// Every address it resolved to is refused.
    #[error("{host} resolves to {refused}")]
    Refused { host: String, refused: Refused },
    /// The lookup failed (and may succeed later).
    #[error("{0}")]
    Lookup(String),
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = Guard::resolve(&guard, &host).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// What `addr` is, if the guard refuses it: the address the decision was
/// made on (the IPv4 address inside an IPv6 form) and its kind.
pub fn classify(addr: IpAddr) -> Option<(IpAddr, &'static str)> {
    match addr {
        IpAddr::V4(v4) => v4_kind(v4).map(|k| (addr, k)),
        IpAddr::V6(v6) => {
            if let Some(k) = v6_kind(v6) {
                return Some((addr, k));
            }
            let inner = embedded_v4(v6)?;
            v4_kind(inner).map(|k| (IpAddr::V4(inner), k))
        }
    }
}

fn v4_kind(a: Ipv4Addr) -> Option<&'static str> {
    let o = a.octets();
    Some(match o {
        [169, 254, 169, 254] => "the cloud metadata service",
        [0, ..] => "unspecified (this network)",
        [127, ..] => "loopback",
        [10, ..] => "private",
        [172, b, ..] if (16..32).contains(&b) => "private",
        [192, 168, ..] => "private",
        [100, b, ..] if (64..128).contains(&b) => "shared address space (CGNAT)",
        [169, 254, ..] => "link-local",
        [192, 0, 0, _] => "reserved for IETF protocol assignments",
        [198, b, ..] if b == 18 || b == 19 => "reserved for benchmarking",
        [a0, ..] if (224..240).contains(&a0) => "multicast",
        [a0, ..] if a0 >= 240 => "reserved (or broadcast)",
        _ => return None,
    })
}

fn v6_kind(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    if a == Ipv6Addr::UNSPECIFIED {
        return Some("unspecified");
    }
    if a == Ipv6Addr::LOCALHOST {
        return Some("loopback");
    }
    if a == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        return Some("the cloud metadata service");
    }
    Some(match s[0] {
        x if x & 0xfe00 == 0xfc00 => "unique local (private)",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "site-local (private)",
        x if x & 0xff00 == 0xff00 => "multicast",
        // Teredo hides its IPv4 address: refuse the whole range.
        0x2001 if s[1] == 0 => "Teredo (a tunnel to an IPv4 address)",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64
/// (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::`).
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allow: &[&str]) -> Guard {
        Guard::new(&EgressConfig {
            allow_private_networks: allow.iter().map(|a| a.parse().expect("a network")).collect(),
        })
    }

    /// Decisions only: nothing here connects anywhere.
    #[test]
    fn the_guard_refuses_every_internal_form_and_allows_public_addresses() {
        let refused = [
            ("169.254.169.254", "the cloud metadata service"),
            ("fd00:ec2::254", "the cloud metadata service"),
            ("::ffff:169.254.169.254", "the cloud metadata service"),
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::127.0.0.1", "loopback"),
            ("2002:7f00:1::", "loopback"),
            ("0.0.0.0", "unspecified (this network)"),
            ("::", "unspecified"),
            ("10.0.0.1", "private"),
            ("::ffff:10.0.0.1", "private"),
            ("172.16.5.4", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("100.127.255.254", "shared address space (CGNAT)"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("fc00::1", "unique local (private)"),
            ("fd12:3456::1", "unique local (private)"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "reserved (or broadcast)"),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                "Teredo (a tunnel to an IPv4 address)",
            ),
        ];
        let g = guard(&[]);
        for (addr, kind) in refused {
            let ip: IpAddr = addr.parse().expect("an address");
            let err = g.check(ip).expect_err(addr);
            assert_eq!(err.kind, kind, "{addr}");
        }
        for addr in [
            "93.184.215.14",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(g.check(addr.parse().expect("an address")), Ok(()), "{addr}");
        }
    }

    #[test]
    fn an_allowed_range_opens_that_range_only_in_every_form() {
        let g = guard(&["127.0.0.0/8", "10.20.0.0/16"]);
        for ok in ["127.0.0.1", "::ffff:127.0.0.1", "10.20.3.4"] {
            assert_eq!(g.check(ok.parse().expect("an address")), Ok(()), "{ok}");
        }
        for no in ["10.21.0.1", "169.254.169.254", "::1", "192.168.0.1"] {
            assert!(g.check(no.parse().expect("an address")).is_err(), "{no}");
        }
    }

    #[test]
    fn url_literals_are_checked_in_every_spelling_the_url_parser_accepts() {
        let g = guard(&[]);
        for u in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
        ] {
            let url = url::Url::parse(u).expect("a url");
            assert!(g.check_url(&url).is_err(), "{u}");
        }
        let public = url::Url::parse("https://hooks.example.com/x").expect("a url");
        assert!(g.check_url(&public).is_ok());
    }

    #[tokio::test]
    async fn a_hostname_resolving_to_loopback_is_refused_with_its_address() {
        let err = guard(&[])
            .resolve("localhost")
            .await
            .expect_err("localhost is loopback");
        let ResolveError::Refused { refused, .. } = err else {
            panic!("not a refusal: {err}")
        };
        assert_eq!(refused.kind, "loopback");
        let allowed = guard(&["127.0.0.0/8", "::1/128"])
            .resolve("localhost")
            .await
            .expect("allowed");
        assert!(allowed.iter().all(|a| a.ip().is_loopback()));
    }
}
