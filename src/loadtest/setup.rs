//! Turning the command line into a run: addresses from the test range,
//! keys (random, or derived from `--seed` so a peer file written by one
//! invocation matches a later run), gate threshold overrides, durations.
//! Pure except key generation without a seed.
use crate::gates::config::{parse_duration, parse_threshold};
use crate::gates::{Comparison, GateSpec, MetricKind, MetricSpec};
use blake2::{Blake2s256, Digest};
use std::net::IpAddr;
use std::time::Duration;

/// `10.250.0.0/16` -> (network address, prefix length).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("invalid range {s:?}: expected ADDRESS/PREFIX"))?;
    let addr: IpAddr = a
        .trim()
        .parse()
        .map_err(|_| format!("invalid range {s:?}: bad address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = p
        .trim()
        .parse()
        .ok()
        .filter(|&p| p <= max)
        .ok_or_else(|| format!("invalid range {s:?}: bad prefix"))?;
    Ok((network(addr, prefix), prefix))
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(v: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::from((v as u32).to_be_bytes()),
        IpAddr::V6(_) => IpAddr::from(v.to_be_bytes()),
    }
}

fn host_bits(addr: IpAddr, prefix: u8) -> u32 {
    (if addr.is_ipv4() { 32 } else { 128 }) - u32::from(prefix)
}

fn network(addr: IpAddr, prefix: u8) -> IpAddr {
    let hb = host_bits(addr, prefix);
    let mask = if hb >= 128 { 0 } else { !((1u128 << hb) - 1) };
    from_u128(to_u128(addr) & mask, addr)
}

/// The range's first host (`10.250.0.1` for `10.250.0.0/16`): the
/// default target address.
pub fn first_host(net: IpAddr, prefix: u8) -> IpAddr {
    let _ = prefix;
    from_u128(to_u128(net) + 1, net)
}

/// `n` peer addresses inside the range, in order from its first host,
/// skipping `target` (and, for IPv4, the broadcast address).
pub fn peer_addresses(
    net: IpAddr,
    prefix: u8,
    target: IpAddr,
    n: usize,
) -> Result<Vec<IpAddr>, String> {
    if net.is_ipv4() != target.is_ipv4() {
        return Err("the target address and the range are of different IP versions".into());
    }
    let hb = host_bits(net, prefix);
    let size: u128 = if hb >= 127 { u128::MAX } else { 1u128 << hb };
    let base = to_u128(net);
    // Usable hosts: 1 ..= size - 2 for IPv4 (no broadcast), size - 1 for IPv6.
    let last = if net.is_ipv4() {
        size.saturating_sub(2)
    } else {
        size - 1
    };
    let t = to_u128(target);
    let target_inside = t > base && t - base <= last;
    let available = last.saturating_sub(u128::from(target_inside));
    if (n as u128) > available {
        return Err(format!(
            "the range /{prefix} has room for {available} peers, {n} asked"
        ));
    }
    let mut out = Vec::with_capacity(n);
    let mut off = 1u128;
    while out.len() < n {
        let v = base + off;
        if v != t {
            out.push(from_u128(v, net));
        }
        off += 1;
    }
    Ok(out)
}

/// Private key of peer `index`: derived from `seed` when given (so two
/// invocations agree on the keys), random otherwise. Clamped as wg does.
pub fn private_key(seed: Option<&str>, index: u32) -> [u8; 32] {
    let mut k = match seed {
        Some(s) => {
            let mut h = Blake2s256::new();
            h.update(b"phantommesh loadtest peer key v1\0");
            h.update(s.as_bytes());
            h.update([0u8]);
            h.update(index.to_le_bytes());
            h.finalize().into()
        }
        None => crate::cli::keys::generate_private_key(),
    };
    crate::cli::keys::clamp(&mut k);
    k
}

/// A duration argument: `30s`, `5m`, `72h`, `500ms`.
pub fn duration_arg(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

/// Applies a `--*-target` override to `gate`: either a full threshold
/// (`">= 99.9%"`) or a bare value (`99.9%`, `5ms`) that keeps the gate's
/// comparison (or the natural one when the gate lacks the metric).
pub fn override_target(gate: &mut GateSpec, metric: MetricKind, value: &str) -> Result<(), String> {
    let v = value.trim();
    let existing = gate.metrics.iter().position(|m| m.metric == metric);
    let text = if v.starts_with(['<', '>', '≤', '≥']) {
        v.to_string()
    } else {
        let op = existing
            .map(|i| gate.metrics[i].target.op)
            .unwrap_or(match metric {
                MetricKind::SuccessRate | MetricKind::Throughput => Comparison::Ge,
                _ => Comparison::Le,
            });
        let ascii = match op {
            Comparison::Ge => ">=",
            Comparison::Gt => ">",
            Comparison::Le | Comparison::Eq => "<=",
            Comparison::Lt => "<",
        };
        format!("{ascii} {v}")
    };
    let target = parse_threshold(metric, &text)?;
    match existing {
        Some(i) => gate.metrics[i].target = target,
        None => gate.metrics.push(MetricSpec {
            metric,
            target,
            optional: false,
        }),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gates::GatesConfig;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_and_addresses() {
        assert_eq!(parse_cidr("10.250.3.7/16").unwrap(), (ip("10.250.0.0"), 16));
        assert!(parse_cidr("10.250.0.0").is_err());
        assert!(parse_cidr("10.250.0.0/33").is_err());
        let (net, p) = parse_cidr("10.250.0.0/16").unwrap();
        let t = first_host(net, p);
        assert_eq!(t, ip("10.250.0.1"));
        let a = peer_addresses(net, p, t, 300).unwrap();
        assert_eq!(a[0], ip("10.250.0.2"));
        assert_eq!(a[253], ip("10.250.0.255"));
        assert_eq!(a[254], ip("10.250.1.0"));
        assert_eq!(a.len(), 300);
        // A /29 has six hosts; the target takes one.
        let (net, p) = parse_cidr("10.9.9.0/29").unwrap();
        assert_eq!(
            peer_addresses(net, p, ip("10.9.9.1"), 5).unwrap().last(),
            Some(&ip("10.9.9.6"))
        );
        assert!(peer_addresses(net, p, ip("10.9.9.1"), 6)
            .unwrap_err()
            .contains("room for 5"));
        // A target outside the range takes nothing from it.
        assert_eq!(peer_addresses(net, p, ip("10.1.1.1"), 6).unwrap().len(), 6);
        assert!(peer_addresses(net, p, ip("fd00::1"), 1).is_err());
        let (net, p) = parse_cidr("fd00:250::/112").unwrap();
        let a = peer_addresses(net, p, first_host(net, p), 2).unwrap();
        assert_eq!(a, vec![ip("fd00:250::2"), ip("fd00:250::3")]);
    }

    #[test]
    fn seeded_keys_are_stable_and_distinct() {
        let a = private_key(Some("s1"), 0);
        assert_eq!(a, private_key(Some("s1"), 0));
        assert_ne!(a, private_key(Some("s1"), 1));
        assert_ne!(a, private_key(Some("s2"), 0));
        assert_ne!(private_key(None, 0), private_key(None, 0));
        assert_eq!(a[0] & 7, 0, "clamped");
        assert_eq!(a[31] & 0xc0, 0x40, "clamped");
    }

    #[test]
    fn overrides_keep_or_set_the_comparison() {
        let cfg = GatesConfig::default();
        let mut g = cfg.gate("performance").unwrap().clone();
        override_target(&mut g, MetricKind::P99Latency, "5ms").unwrap();
        override_target(&mut g, MetricKind::SuccessRate, "99.9%").unwrap();
        override_target(&mut g, MetricKind::Throughput, "> 20000/s").unwrap();
        let t = |g: &GateSpec, k| g.metrics.iter().find(|m| m.metric == k).unwrap().target;
        assert_eq!(
            (
                t(&g, MetricKind::P99Latency).value,
                t(&g, MetricKind::P99Latency).op
            ),
            (5.0, Comparison::Le)
        );
        assert_eq!(
            (
                t(&g, MetricKind::SuccessRate).value,
                t(&g, MetricKind::SuccessRate).op
            ),
            (99.9, Comparison::Ge)
        );
        assert_eq!(
            (
                t(&g, MetricKind::Throughput).value,
                t(&g, MetricKind::Throughput).op
            ),
            (20000.0, Comparison::Gt)
        );
        assert_eq!(t(&g, MetricKind::P99Latency).unit, crate::gates::Unit::Ms);
        // Sub-millisecond targets parse, for forcing a failure.
        override_target(&mut g, MetricKind::P99Latency, "0.001ms").unwrap();
        assert_eq!(t(&g, MetricKind::P99Latency).value, 0.001);
        assert!(override_target(&mut g, MetricKind::P99Latency, "5%").is_err());
        // A metric the gate lacks is added.
        let mut lean = GateSpec {
            name: "x".into(),
            title: "X".into(),
            metrics: vec![],
        };
        override_target(&mut lean, MetricKind::ErrorRate, "0.1%").unwrap();
        assert_eq!(lean.metrics[0].target.op, Comparison::Le);
    }
}
