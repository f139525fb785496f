//! What a node publishes, and where: the key layout under a mesh prefix.
//!
//! - `PREFIX/nodes/NAME`: the node's [`NodeRecord`] (JSON), on the node's
//!   lease, so it vanishes `lease_ttl` seconds after the node falls silent.
//! - `PREFIX/addrs/IP`: the node name that owns tunnel address IP. No
//!   lease: an address stays a node's own across restarts and outages, and
//!   only `phantommesh mesh leave` (or an operator) frees it.
//!
//! The private key never leaves the node; records carry the public key.
use super::status::Member;
use crate::noise::keys::{encode_base64_key, parse_base64_key};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The JSON a node publishes under `PREFIX/nodes/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    pub name: String,
    /// Base64, as `wg` prints it.
    pub public_key: String,
    /// `host:port` peers dial; absent when the node advertises none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Tunnel addresses (host addresses).
    pub addresses: Vec<IpAddr>,
    /// Extra prefixes the node routes, `addr/len`.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// When the node wrote this record (Unix ms): how long a change took
    /// to reach the other nodes (the convergence delay).
    #[serde(default)]
    pub updated_ms: u64,
}

pub fn nodes_prefix(prefix: &str) -> String {
    format!("{prefix}/nodes/")
}
pub fn node_key(prefix: &str, name: &str) -> String {
    format!("{prefix}/nodes/{name}")
}
pub fn addrs_prefix(prefix: &str) -> String {
    format!("{prefix}/addrs/")
}
pub fn addr_key(prefix: &str, ip: IpAddr) -> String {
    format!("{prefix}/addrs/{ip}")
}

/// Longest accepted record: a record is a few hundred bytes; anything
/// far larger is not ours.
const MAX_RECORD_BYTES: usize = 16 * 1024;

impl NodeRecord {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record always serializes")
    }

    /// Parses and validates a record found under `key`. The error says
    /// what is wrong; the caller logs it and ignores the key.
    pub fn parse(key: &str, name_in_key: &str, value: &[u8]) -> Result<Member, String> {
        if value.len() > MAX_RECORD_BYTES {
            return Err(format!(
                "{key}: record of {} bytes is too long",
                value.len()
            ));
        }
        let r: NodeRecord =
            serde_json::from_slice(value).map_err(|e| format!("{key}: not a node record: {e}"))?;
        if r.name != name_in_key {
            return Err(format!(
                "{key}: record names node {:?}, not the key's {name_in_key:?}",
                r.name
            ));
        }
        crate::config::mesh_config::validate_node_name(&r.name)
            .map_err(|e| format!("{key}: {e}"))?;
        let public_key = parse_base64_key(&r.public_key)
            .ok_or_else(|| format!("{key}: public_key is not a base64 key of 32 bytes"))?;
        if let Some(e) = &r.endpoint {
            crate::config::validate_endpoint(e).map_err(|m| format!("{key}: {m}"))?;
        }
        if r.addresses.is_empty() || r.addresses.len() > 2 {
            return Err(format!("{key}: expected one or two tunnel addresses"));
        }
        if r.allowed_ips.len() > 256 {
            return Err(format!("{key}: too many allowed_ips"));
        }
        let allowed_ips = r
            .allowed_ips
            .iter()
            .map(|s| crate::config::parse_cidr(s).map_err(|m| format!("{key}: {m}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Member {
            name: r.name,
            public_key,
            endpoint: r.endpoint,
            addresses: r.addresses,
            allowed_ips,
        })
    }

    /// The `updated_ms` of a record's JSON (0 when absent or unreadable).
    pub fn written_ms(value: &[u8]) -> u64 {
        serde_json::from_slice::<NodeRecord>(value).map_or(0, |r| r.updated_ms)
    }

    pub fn from_member(m: &Member, updated_ms: u64) -> NodeRecord {
        NodeRecord {
            name: m.name.clone(),
            public_key: encode_base64_key(&m.public_key),
            endpoint: m.endpoint.clone(),
            addresses: m.addresses.clone(),
            allowed_ips: m
                .allowed_ips
                .iter()
                .map(|(ip, len)| format!("{ip}/{len}"))
                .collect(),
            updated_ms,
        }
    }
}

/// Wall-clock Unix milliseconds (records carry it for convergence delays).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> Member {
        Member {
            name: "node-a".into(),
            public_key: [7; 32],
            endpoint: Some("192.0.2.11:51820".into()),
            addresses: vec!["10.100.0.5".parse().unwrap()],
            allowed_ips: vec![("10.244.1.0".parse().unwrap(), 24)],
        }
    }

    #[test]
    fn round_trip() {
        let m = member();
        let json = NodeRecord::from_member(&m, 5).to_json();
        assert_eq!(NodeRecord::parse("k", "node-a", &json).unwrap(), m);
    }

    #[test]
    fn refuses_garbage_and_mismatches() {
        let ok = NodeRecord::from_member(&member(), 5);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "not a node record"),
            (ok.to_json(), "not the key's"),
            (
                serde_json::to_vec(&NodeRecord {
                    public_key: "AAAA".into(),
                    ..ok.clone()
                })
                .unwrap(),
                "public_key",
            ),
            (
                serde_json::to_vec(&NodeRecord {
                    addresses: vec![],
                    ..ok.clone()
                })
                .unwrap(),
                "tunnel addresses",
            ),
            (
                serde_json::to_vec(&NodeRecord {
                    allowed_ips: vec!["10.0.0.0/33".into()],
                    ..ok.clone()
                })
                .unwrap(),
                "invalid CIDR",
            ),
            (vec![b' '; MAX_RECORD_BYTES + 1], "too long"),
        ];
        for (i, (value, want)) in cases.iter().enumerate() {
            let name = if i == 1 { "other" } else { "node-a" };
            let err = NodeRecord::parse("k", name, value).unwrap_err();
            assert!(err.contains(want), "case {i}: {err}");
        }
    }
}
