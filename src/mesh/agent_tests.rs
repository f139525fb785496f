//! Whole-agent tests on the in-memory store with tokio's paused clock:
//! lease periods, backoff and outages take no real time.
use super::tests_support::mesh_config;
use super::*;
use crate::mesh::mem_store::MemStore;
use std::sync::mpsc::Receiver;

struct Node {
    state: Arc<MeshState>,
    rx: Receiver<MeshUpdate>,
    last: Option<MeshUpdate>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn tmp_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pm-agent-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn start(store: &MemStore, dir: &std::path::Path, name: &str, key: u8) -> Node {
    let mesh = mesh_config(name, "/m", "10.100.0.0/24");
    let p = AgentParams {
        mesh,
        public_key: [key; 32],
        listen_port: 51820,
        cache_path: dir.join(format!("{name}-{key}.json")),
    };
    let state = Arc::new(MeshState::new(name, "/m"));
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let agent = Agent::new(p, state.clone(), store.clone(), tx, stop_rx);
    let task = tokio::spawn(agent.run());
    Node {
        state,
        rx,
        last: None,
        stop,
        task,
    }
}

impl Node {
    /// Waits (virtual time) until the latest update satisfies `f`.
    async fn until(&mut self, what: &str, f: impl Fn(&MeshUpdate) -> bool) -> MeshUpdate {
        for _ in 0..6000 {
            while let Ok(u) = self.rx.try_recv() {
                self.last = Some(u);
            }
            if let Some(u) = &self.last {
                if f(u) {
                    return u.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: not reached in 60 s; last update {:?}", self.last);
    }

    async fn kill(self) {
        let _ = self.stop.send(true);
        self.task.abort();
        let _ = self.task.await;
    }
}

fn names(u: &MeshUpdate) -> Vec<&str> {
    u.members.iter().map(|m| m.name.as_str()).collect()
}

async fn settle(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn nodes_join_see_each_other_and_a_dead_one_leaves() {
    let dir = tmp_dir("join");
    let store = MemStore::new();
    let mut a = start(&store, &dir, "a", 1);
    let mut b = start(&store, &dir, "b", 2);
    let mut c = start(&store, &dir, "c", 3);
    let ua = a.until("a sees b, c", |u| names(u) == ["b", "c"]).await;
    b.until("b sees a, c", |u| names(u) == ["a", "c"]).await;
    c.until("c sees a, b", |u| names(u) == ["a", "b"]).await;
    // Distinct addresses, with the network's prefix length.
    let mut addrs: Vec<IpAddr> = ua
        .members
        .iter()
        .flat_map(|m| m.addresses.clone())
        .collect();
    assert_eq!(ua.addresses.len(), 1);
    assert_eq!(ua.addresses[0].1, 24);
    addrs.push(ua.addresses[0].0);
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 3);
    assert_eq!(ua.members[0].endpoint.as_deref(), Some("10.0.0.1:51820"));
    assert!(a.state.store_up() && a.state.started());
    // c dies: its lease runs out (the store expires it), the others drop it.
    let leases_before = store.leases();
    c.kill().await;
    settle(3).await;
    for l in leases_before {
        if !store.leases().is_empty() {
            // Expire only c's: the one whose key is /m/nodes/c.
            let owner = store.get("/m/nodes/c");
            if owner.is_some() {
                store.expire_lease(l);
                if store.get("/m/nodes/c").is_none() {
                    break;
                }
            }
        }
    }
    a.until("a drops c", |u| names(u) == ["b"]).await;
    b.until("b drops c", |u| names(u) == ["a"]).await;
    // An expired lease of a live node is renewed: its record comes back.
    settle(10).await;
    assert!(store.get("/m/nodes/a").is_some() && store.get("/m/nodes/b").is_some());
    assert!(a.state.convergence().count > 0);
    a.kill().await;
    b.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn an_outage_keeps_members_and_a_restart_in_it_uses_the_cache() {
    let dir = tmp_dir("outage");
    let store = MemStore::new();
    let mut a = start(&store, &dir, "a", 1);
    let mut b = start(&store, &dir, "b", 2);
    let first = a.until("a sees b", |u| names(u) == ["b"]).await;
    b.until("b sees a", |u| names(u) == ["a"]).await;
    store.set_down(true);
    settle(20).await;
    assert!(!a.state.store_up());
    assert!(a.state.sync_errors() > 0);
    assert!(a.state.started(), "readiness must not follow the store");
    assert_eq!(
        a.state.members().len(),
        1,
        "no peer leaves while the store is down"
    );
    // a restarts during the outage: its cache gives it its address and b.
    a.kill().await;
    let mut a2 = start(&store, &dir, "a", 1);
    let cached = a2
        .until("a restarts from its cache", |u| names(u) == ["b"])
        .await;
    assert_eq!(cached.addresses, first.addresses);
    assert!(a2.state.started() && !a2.state.store_up());
    // The store returns: a new node joins and everyone sees it.
    store.set_down(false);
    let mut d = start(&store, &dir, "d", 4);
    a2.until("a sees d", |u| names(u) == ["b", "d"]).await;
    b.until("b sees d", |u| names(u) == ["a", "d"]).await;
    let ud = d.until("d sees a, b", |u| names(u) == ["a", "b"]).await;
    assert!(a2.state.store_up());
    // a kept its address across the restart.
    let a_in_d = ud.members.iter().find(|m| m.name == "a").unwrap();
    assert_eq!(a_in_d.addresses[0], first.addresses[0].0);
    for n in [a2, b, d] {
        n.kill().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn one_name_two_keys_the_second_stays_out() {
    let dir = tmp_dir("name");
    let store = MemStore::new();
    let mut a = start(&store, &dir, "a", 1);
    let mut b = start(&store, &dir, "b", 2);
    b.until("b sees a", |u| names(u) == ["a"]).await;
    let twin = start(&store, &dir, "a", 9);
    settle(10).await;
    assert!(twin.state.conflicts() >= 1);
    let conflicts = twin.state.conflicts();
    assert!(
        twin.state.own_addresses().is_empty(),
        "a fresh twin takes no address"
    );
    // b still peers with the first a.
    let ub = b.until("b keeps a", |u| names(u) == ["a"]).await;
    assert_eq!(ub.members[0].public_key, [1; 32]);
    settle(10).await;
    assert_eq!(
        twin.state.conflicts(),
        conflicts,
        "counted once, not per retry"
    );
    // The first a leaves for good; the twin takes the name over.
    a.kill().await;
    for l in store.leases() {
        store.expire_lease(l);
    }
    b.until("b peers with the new a", |u| {
        names(u) == ["a"] && u.members[0].public_key == [9; 32]
    })
    .await;
    a = twin;
    a.until("the twin sees b", |u| names(u) == ["b"]).await;
    a.kill().await;
    b.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn garbage_and_compaction_do_not_lose_peers() {
    let dir = tmp_dir("garbage");
    let store = MemStore::new();
    let mut a = start(&store, &dir, "a", 1);
    let mut b = start(&store, &dir, "b", 2);
    a.until("a sees b", |u| names(u) == ["b"]).await;
    store.put_raw("/m/nodes/junk", b"not json");
    store.put_raw("/m/nodes/b", b"{\"name\": 5}");
    settle(5).await;
    assert_eq!(names(&a.until("a keeps b", |_| true).await), ["b"]);
    store.compact();
    let _c = start(&store, &dir, "c", 3);
    a.until("a sees c after a compaction", |u| names(u) == ["b", "c"])
        .await;
    // b's agent writes its record back at its next keep-alive tick? No:
    // garbage under its name is taken over only when its claim runs; the
    // view keeps the last good record meanwhile.
    assert!(a.state.members().iter().any(|m| m.name == "b"));
    b.until("b sees a and c", |u| names(u) == ["a", "c"]).await;
    a.kill().await;
    b.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
