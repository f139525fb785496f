//! Run mode's view of a mesh: the config file plus what the mesh agent
//! says, merged into one [`Config`] that goes through the same apply path
//! as a SIGHUP. The device never learns where a peer came from.
use crate::config::{Config, PeerConfig};
use crate::mesh::{Member, MeshUpdate};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long the passive side of a new pair waits before its own keepalive
/// (which starts a handshake if the other side's has not arrived).
pub const KEEPALIVE_HOLD: Duration = Duration::from_secs(1);

/// Which side of a new mesh pair starts the handshake.
///
/// Two nodes learn of each other within milliseconds (one joins, the other
/// sees it in its watch), and turning a persistent keepalive on sends one
/// at once, which starts a handshake. If both start one together, each
/// answers the other's initiation, which replaces its own pending
/// handshake (a peer holds one), so each drops the answer to its own: both
/// then wait REKEY_TIMEOUT (5 s) and, under load, can collide again. So the
/// node with the lower public key starts at once and the other holds its
/// keepalive for [`KEEPALIVE_HOLD`]: by then the handshake is usually done,
/// and if the first initiation was lost (it reached this node before this
/// node knew the peer), the held keepalive starts one.
#[derive(Debug, Default)]
pub struct KeepaliveHold {
    own: [u8; 32],
    until: HashMap<[u8; 32], Instant>,
}

impl KeepaliveHold {
    pub fn new(own_public_key: [u8; 32]) -> KeepaliveHold {
        KeepaliveHold {
            own: own_public_key,
            until: HashMap::new(),
        }
    }

    /// Holds the keepalive towards members new since `applied` whose key is
    /// below this node's; forgets members that left.
    pub fn note(&mut self, u: &MeshUpdate, applied: &HashMap<[u8; 32], Member>, now: Instant) {
        self.until
            .retain(|k, _| u.members.iter().any(|m| &m.public_key == k));
        for m in &u.members {
            if !applied.contains_key(&m.public_key) && m.public_key < self.own {
                self.until.insert(m.public_key, now + KEEPALIVE_HOLD);
            }
        }
    }

    /// Ends the holds that are due; true when one ended (apply again).
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.until.len();
        self.until.retain(|_, t| *t > now);
        self.until.len() != before
    }

    pub fn is_held(&self, key: &[u8; 32]) -> bool {
        self.until.contains_key(key)
    }
}

/// The file's config with the mesh's addresses and members added.
///
/// - Static `[[peer]]`s win over a mesh record with the same public key.
/// - A member's allowed IPs are its tunnel addresses (/32, /128) and the
///   extra prefixes it routes; its probe address is its first tunnel
///   address, so `/tunnel-test?peer=` pings it through the tunnel.
/// - A member's endpoint is set only when it is new or its record's
///   endpoint changed (`applied`: the members last applied); otherwise the
///   endpoint the device learned (roaming) is kept.
/// - A member whose keepalive is held ([`KeepaliveHold`]) gets none yet.
pub fn effective(
    file: &Config,
    update: Option<&MeshUpdate>,
    keepalive: u16,
    applied: &HashMap<[u8; 32], Member>,
    hold: &KeepaliveHold,
) -> Config {
    let mut cfg = file.clone();
    let Some(u) = update else {
        return cfg;
    };
    for a in &u.addresses {
        if !cfg.interface.addresses.contains(a) {
            cfg.interface.addresses.push(*a);
        }
    }
    for m in &u.members {
        if cfg.peers.iter().any(|p| p.public_key == m.public_key) {
            continue;
        }
        let mut allowed: Vec<(IpAddr, u8)> = m
            .addresses
            .iter()
            .map(|ip| (*ip, if ip.is_ipv4() { 32 } else { 128 }))
            .collect();
        allowed.extend(m.allowed_ips.iter().copied());
        let endpoint_changed = applied
            .get(&m.public_key)
            .is_none_or(|old| old.endpoint != m.endpoint);
        cfg.peers.push(PeerConfig {
            public_key: m.public_key,
            preshared_key: None,
            endpoint: if endpoint_changed {
                m.endpoint.clone()
            } else {
                None
            },
            allowed_ips: allowed,
            persistent_keepalive: (keepalive > 0 && !hold.is_held(&m.public_key))
                .then_some(keepalive),
            probe: m.addresses.first().copied(),
        });
    }
    cfg
}

/// The members of an update by public key (what [`effective`] compares
/// against next time).
pub fn by_key(update: Option<&MeshUpdate>) -> HashMap<[u8; 32], Member> {
    update
        .map(|u| {
            u.members
                .iter()
                .map(|m| (m.public_key, m.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::toml_config;
    use std::path::Path;

    fn file() -> Config {
        let text = format!(
            "[interface]\nname = \"pm0\"\nprivate_key_file = \"k\"\naddresses = [\"192.168.9.1/24\"]\n\
             [[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"10.9.0.0/16\"]\n",
            crate::cli::keys::encode_base64_key(&[5; 32])
        );
        toml_config::parse(&text, Path::new("t.toml")).unwrap()
    }

    fn member(name: &str, key: u8, endpoint: &str) -> Member {
        Member {
            name: name.into(),
            public_key: [key; 32],
            endpoint: Some(endpoint.into()),
            addresses: vec![format!("10.100.0.{key}").parse().unwrap()],
            allowed_ips: vec![(format!("10.244.{key}.0").parse().unwrap(), 24)],
        }
    }

    #[test]
    fn merges_addresses_and_members_static_peers_win() {
        let u = MeshUpdate {
            addresses: vec![("10.100.0.1".parse().unwrap(), 24)],
            members: vec![
                member("b", 2, "192.0.2.2:51820"),
                member("x", 5, "192.0.2.5:1"),
            ],
        };
        let none = KeepaliveHold::default();
        let cfg = effective(&file(), Some(&u), 25, &HashMap::new(), &none);
        assert_eq!(cfg.interface.addresses.len(), 2);
        assert_eq!(cfg.peers.len(), 2, "the static peer keeps its key");
        assert_eq!(cfg.peers[0].allowed_ips.len(), 1);
        let b = &cfg.peers[1];
        assert_eq!(b.public_key, [2; 32]);
        assert_eq!(
            b.allowed_ips,
            vec![
                ("10.100.0.2".parse().unwrap(), 32),
                ("10.244.2.0".parse().unwrap(), 24)
            ]
        );
        assert_eq!(b.endpoint.as_deref(), Some("192.0.2.2:51820"));
        assert_eq!(b.persistent_keepalive, Some(25));
        assert_eq!(b.probe, Some("10.100.0.2".parse().unwrap()));
        // Unchanged members keep the endpoint the device learned.
        let again = effective(&file(), Some(&u), 0, &by_key(Some(&u)), &none);
        assert_eq!(again.peers[1].endpoint, None);
        assert_eq!(again.peers[1].persistent_keepalive, None);
        // A changed endpoint is applied.
        let mut moved = u.clone();
        moved.members[0].endpoint = Some("192.0.2.9:51820".into());
        let cfg = effective(&file(), Some(&moved), 25, &by_key(Some(&u)), &none);
        assert_eq!(cfg.peers[1].endpoint.as_deref(), Some("192.0.2.9:51820"));
        // Without an update the file is all there is.
        assert_eq!(effective(&file(), None, 25, &HashMap::new(), &none), file());
    }

    #[test]
    fn the_higher_key_holds_its_keepalive_for_new_members_only() {
        let u = MeshUpdate {
            addresses: vec![],
            members: vec![member("b", 2, "192.0.2.2:1"), member("d", 4, "192.0.2.4:1")],
        };
        let t0 = Instant::now();
        let mut hold = KeepaliveHold::new([3; 32]);
        hold.note(&u, &HashMap::new(), t0);
        // 2 < 3: this node waits for b; 4 > 3: it starts with d at once.
        assert!(hold.is_held(&[2; 32]) && !hold.is_held(&[4; 32]));
        let cfg = effective(&file(), Some(&u), 25, &HashMap::new(), &hold);
        assert_eq!(cfg.peers[1].persistent_keepalive, None);
        assert_eq!(cfg.peers[2].persistent_keepalive, Some(25));
        assert!(!hold.expire(t0 + KEEPALIVE_HOLD / 2));
        assert!(hold.expire(t0 + KEEPALIVE_HOLD));
        assert!(!hold.is_held(&[2; 32]));
        // Members already applied are never held again.
        hold.note(&u, &by_key(Some(&u)), t0);
        assert!(!hold.is_held(&[2; 32]));
        // A held member that leaves is forgotten.
        hold.note(&u, &HashMap::new(), t0);
        let gone = MeshUpdate {
            addresses: vec![],
            members: vec![],
        };
        hold.note(&gone, &HashMap::new(), t0);
        assert!(!hold.expire(t0 + KEEPALIVE_HOLD));
    }
}
