use super::*;
use crate::mesh::record::node_key;

const P: &str = "/pm/t";

fn member(name: &str, key: u8) -> Member {
    Member {
        name: name.into(),
        public_key: [key; 32],
        endpoint: Some(format!("192.0.2.{key}:51820")),
        addresses: vec![format!("10.100.0.{key}").parse().unwrap()],
        allowed_ips: vec![],
    }
}

fn kv(name: &str, key: u8, create: i64, rev: i64) -> Kv {
    Kv {
        key: node_key(P, name),
        value: NodeRecord::from_member(&member(name, key), 1).to_json(),
        create_revision: create,
        mod_revision: rev,
    }
}

fn names(v: &mut View) -> Vec<String> {
    v.members().0.into_iter().map(|m| m.name).collect()
}

#[test]
fn list_then_events_never_include_self() {
    let mut v = View::new(P, "a", [1; 32]);
    let out = v.apply_list(&[kv("a", 1, 2, 2), kv("b", 2, 3, 3)], 3);
    assert!(out.changed);
    assert_eq!(names(&mut v), ["b"]);
    let out = v.apply_events(&[WatchEvent::Put(kv("c", 3, 4, 4))]);
    assert!(out.changed);
    assert_eq!(out.updated, vec![("c".to_string(), 1)]);
    assert_eq!(names(&mut v), ["b", "c"]);
    let out = v.apply_events(&[WatchEvent::Delete {
        key: node_key(P, "b"),
        mod_revision: 5,
    }]);
    assert!(out.changed);
    assert_eq!(names(&mut v), ["c"]);
    assert_eq!(v.revision(), 5);
}

#[test]
fn garbage_is_reported_once_and_removes_nothing() {
    let mut v = View::new(P, "a", [1; 32]);
    v.apply_list(&[kv("b", 2, 2, 2)], 2);
    let junk = Kv {
        key: node_key(P, "junk"),
        value: b"not json".to_vec(),
        create_revision: 3,
        mod_revision: 3,
    };
    let out = v.apply_events(&[WatchEvent::Put(junk.clone())]);
    assert_eq!(out.invalid.len(), 1);
    assert!(!out.changed);
    // A garbage overwrite of a good record keeps the good one.
    let mut bad_b = junk.clone();
    bad_b.key = node_key(P, "b");
    bad_b.mod_revision = 4;
    let out = v.apply_events(&[WatchEvent::Put(bad_b)]);
    assert_eq!(out.invalid.len(), 1);
    assert_eq!(names(&mut v), ["b"]);
    // A relist of the same garbage is not reported again.
    let out = v.apply_list(&[kv("b", 2, 2, 2), junk], 4);
    assert!(out.invalid.is_empty());
    assert_eq!(names(&mut v), ["b"]);
    // Keys outside nodes/ or nested below a node are not records.
    let mut other = kv("b", 2, 2, 9);
    other.key = format!("{P}/addrs/10.100.0.2");
    let mut nested = kv("b", 2, 2, 9);
    nested.key = format!("{P}/nodes/b/x");
    let out = v.apply_events(&[WatchEvent::Put(other), WatchEvent::Put(nested)]);
    assert_eq!(out, Applied::default());
}

#[test]
fn old_events_do_not_undo_newer_state() {
    let mut v = View::new(P, "a", [1; 32]);
    v.apply_list(&[kv("b", 2, 2, 7)], 7);
    let out = v.apply_events(&[WatchEvent::Delete {
        key: node_key(P, "b"),
        mod_revision: 6,
    }]);
    assert!(!out.changed);
    let mut older = kv("b", 9, 2, 5);
    older.mod_revision = 5;
    v.apply_events(&[WatchEvent::Put(older)]);
    assert_eq!(v.members().0[0].public_key, [2; 32]);
}

#[test]
fn a_stale_list_adds_but_never_removes() {
    let mut v = View::new(P, "a", [1; 32]);
    v.apply_list(&[kv("b", 2, 2, 2), kv("c", 3, 3, 3)], 10);
    let out = v.apply_list(&[kv("d", 4, 4, 4)], 5);
    assert!(out.stale_list);
    assert_eq!(names(&mut v), ["b", "c", "d"]);
    assert_eq!(v.revision(), 10);
    // A list as new as the view removes what is gone.
    v.apply_list(&[kv("d", 4, 4, 4)], 11);
    assert_eq!(names(&mut v), ["d"]);
}

#[test]
fn duplicate_public_keys_keep_the_older_record_and_report_once() {
    let mut v = View::new(P, "a", [1; 32]);
    v.apply_list(&[kv("b", 2, 5, 5), kv("c", 2, 3, 3), kv("d", 4, 6, 6)], 6);
    let (m, new) = v.members();
    let got: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(got, ["c", "d"]);
    assert_eq!(new, ["b"]);
    // Unrelated changes do not report it again.
    v.apply_events(&[WatchEvent::Put(kv("e", 5, 7, 7))]);
    assert!(v.members().1.is_empty());
    // Somebody else using this node's own key is left out too.
    v.apply_events(&[WatchEvent::Put(kv("f", 1, 8, 8))]);
    let (m, new) = v.members();
    assert_eq!(new, ["f"]);
    assert!(m.iter().all(|m| m.name != "f"));
    // When the older record goes, the other one takes its place.
    v.apply_events(&[WatchEvent::Delete {
        key: node_key(P, "c"),
        mod_revision: 9,
    }]);
    assert_eq!(names(&mut v), ["b", "d", "e"]);
}

#[test]
fn own_record_changes_are_flagged() {
    let mut v = View::new(P, "a", [1; 32]);
    let out = v.apply_list(&[kv("a", 1, 2, 2)], 2);
    assert!(!out.own_record_touched);
    let out = v.apply_events(&[WatchEvent::Delete {
        key: node_key(P, "a"),
        mod_revision: 3,
    }]);
    assert!(out.own_record_touched && !out.changed);
    let out = v.apply_events(&[WatchEvent::Put(kv("a", 9, 4, 4))]);
    assert!(out.own_record_touched);
}
