//! The agent's view of the mesh: every valid node record under the
//! prefix, kept consistent from a list and then watch events, and turned
//! into the members this node peers with. Pure: no store, no clock, so
//! each rule is a unit test.
//!
//! Rules:
//! - a record that does not parse is logged once and ignored; it never
//!   removes a peer that was there;
//! - an event older than what the view already holds for that key is
//!   ignored (etcd revisions only grow; a late event must not undo);
//! - a list older than the applied revision (an etcd restored from an old
//!   backup) may add and update but never remove: a peer leaves only when a
//!   store at least as new as what we saw says so;
//! - this node never peers with itself;
//! - two records with one public key are a conflict: the older record
//!   (lower create revision) wins, the other is left out, and the conflict
//!   is reported once, not on every change.
use super::record::{nodes_prefix, NodeRecord};
use super::status::Member;
use super::store::{Kv, WatchEvent};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub member: Member,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// What applying a list or an event found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Records that did not parse: key and reason (new ones only).
    pub invalid: Vec<String>,
    /// Whether the set of records changed.
    pub changed: bool,
    /// Records of other nodes that were added or changed by this step, with
    /// the time (Unix ms) their node wrote them.
    pub updated: Vec<(String, u64)>,
    /// This node's own key was deleted or changed by someone else.
    pub own_record_touched: bool,
    /// The list was older than the view: removals were not applied.
    pub stale_list: bool,
}

pub struct View {
    prefix: String,
    own_name: String,
    own_key: [u8; 32],
    nodes: BTreeMap<String, Entry>,
    /// Keys whose last value did not parse, with that value's revision
    /// (so a relist does not log them again).
    invalid: BTreeMap<String, i64>,
    revision: i64,
    /// Names currently left out because of a public-key conflict.
    conflicted: BTreeSet<String>,
}

impl View {
    pub fn new(prefix: &str, own_name: &str, own_key: [u8; 32]) -> View {
        View {
            prefix: prefix.to_string(),
            own_name: own_name.to_string(),
            own_key,
            nodes: BTreeMap::new(),
            invalid: BTreeMap::new(),
            revision: 0,
            conflicted: BTreeSet::new(),
        }
    }

    /// The highest store revision applied.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.nodes.values()
    }

    /// Seeds the view from the cache (before the store is reachable).
    pub fn load(&mut self, entries: Vec<Entry>, revision: i64) {
        for e in entries {
            self.nodes.insert(e.member.name.clone(), e);
        }
        self.revision = revision;
    }

    /// The node name a key under the prefix names, if it is a node key.
    fn name_of<'a>(&self, key: &'a str) -> Option<&'a str> {
        let rest = key.strip_prefix(&nodes_prefix(&self.prefix))?;
        (!rest.is_empty() && !rest.contains('/')).then_some(rest)
    }

    fn parse(&mut self, kv: &Kv, out: &mut Applied) -> Option<Entry> {
        let name = self.name_of(&kv.key)?;
        match NodeRecord::parse(&kv.key, name, &kv.value) {
            Ok(member) => {
                self.invalid.remove(&kv.key);
                Some(Entry {
                    member,
                    create_revision: kv.create_revision,
                    mod_revision: kv.mod_revision,
                })
            }
            Err(reason) => {
                if self.invalid.insert(kv.key.clone(), kv.mod_revision) != Some(kv.mod_revision) {
                    out.invalid.push(reason);
                }
                None
            }
        }
    }

    fn upsert(&mut self, e: Entry, out: &mut Applied) {
        let name = e.member.name.clone();
        if name == self.own_name {
            if e.member.public_key != self.own_key {
                out.own_record_touched = true;
            }
        } else if self.nodes.get(&name).map(|o| &o.member) != Some(&e.member) {
            out.updated.push((name.clone(), 0));
            out.changed = true;
        }
        self.nodes.insert(name, e);
    }

    /// Replaces the view with a full list read at `revision`.
    pub fn apply_list(&mut self, kvs: &[Kv], revision: i64) -> Applied {
        let mut out = Applied::default();
        let stale = revision < self.revision;
        let mut seen = BTreeSet::new();
        for kv in kvs {
            if self.name_of(&kv.key).is_none() {
                continue;
            }
            seen.insert(kv.key.clone());
            if let Some(e) = self.parse(kv, &mut out) {
                self.upsert(e, &mut out);
            }
        }
        let prefix = nodes_prefix(&self.prefix);
        self.invalid.retain(|k, _| seen.contains(k));
        if stale {
            out.stale_list = true;
        } else {
            let gone: Vec<String> = self
                .nodes
                .keys()
                .filter(|n| !seen.contains(&format!("{prefix}{n}")))
                .cloned()
                .collect();
            for n in gone {
                if n == self.own_name {
                    out.own_record_touched = true;
                } else {
                    out.changed = true;
                }
                self.nodes.remove(&n);
            }
            self.revision = revision;
        }
        out
    }

    /// Applies watch events in order.
    pub fn apply_events(&mut self, events: &[WatchEvent]) -> Applied {
        let mut out = Applied::default();
        for ev in events {
            match ev {
                WatchEvent::Put(kv) => {
                    let Some(name) = self.name_of(&kv.key) else {
                        continue;
                    };
                    if self
                        .nodes
                        .get(name)
                        .is_some_and(|e| e.mod_revision >= kv.mod_revision)
                    {
                        continue;
                    }
                    let parsed = self.parse(kv, &mut out);
                    if let Some(e) = parsed {
                        let written = NodeRecord::written_ms(&kv.value);
                        let n = out.updated.len();
                        self.upsert(e, &mut out);
                        if let Some(u) = out.updated.get_mut(n) {
                            u.1 = written;
                        }
                    }
                    self.revision = self.revision.max(kv.mod_revision);
                }
                WatchEvent::Delete { key, mod_revision } => {
                    let Some(name) = self.name_of(key).map(str::to_string) else {
                        continue;
                    };
                    self.invalid.remove(key);
                    if let Some(e) = self.nodes.get(&name) {
                        if e.mod_revision < *mod_revision {
                            self.nodes.remove(&name);
                            if name == self.own_name {
                                out.own_record_touched = true;
                            } else {
                                out.changed = true;
                            }
                        }
                    }
                    self.revision = self.revision.max(*mod_revision);
                }
            }
        }
        out
    }

    /// The members to peer with, and the names newly left out for a
    /// public-key conflict (to log and count once).
    pub fn members(&mut self) -> (Vec<Member>, Vec<String>) {
        let mut by_key: BTreeMap<[u8; 32], &Entry> = BTreeMap::new();
        let mut conflicted = BTreeSet::new();
        for e in self.nodes.values() {
            if e.member.name == self.own_name {
                continue;
            }
            if e.member.public_key == self.own_key {
                conflicted.insert(e.member.name.clone());
                continue;
            }
            match by_key.get(&e.member.public_key) {
                Some(o)
                    if (o.create_revision, &o.member.name)
                        <= (e.create_revision, &e.member.name) =>
                {
                    conflicted.insert(e.member.name.clone());
                }
                Some(o) => {
                    conflicted.insert(o.member.name.clone());
                    by_key.insert(e.member.public_key, e);
                }
                None => {
                    by_key.insert(e.member.public_key, e);
                }
            }
        }
        let new: Vec<String> = conflicted.difference(&self.conflicted).cloned().collect();
        self.conflicted = conflicted;
        let mut members: Vec<Member> = by_key.into_values().map(|e| e.member.clone()).collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        (members, new)
    }

    /// This node's own record as the store last showed it.
    pub fn own(&self) -> Option<&Entry> {
        self.nodes.get(&self.own_name)
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
