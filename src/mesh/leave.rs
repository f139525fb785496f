//! `phantommesh mesh leave`: a node leaves the mesh for good. Its record
//! goes (the others drop it at once instead of at its lease's end) and its
//! tunnel address is freed for another node. Run it after stopping the
//! daemon: a running one would publish itself again.
use super::etcd_store::EtcdStore;
use super::record::{addrs_prefix, node_key};
use super::store::Store;
use crate::config::MeshConfig;

/// Removes `cfg.node_name`'s record and address allocations from the
/// store; returns what was done.
pub async fn leave_store<S: Store>(store: &mut S, cfg: &MeshConfig) -> Result<String, String> {
    let name = &cfg.node_name;
    store
        .delete(&node_key(&cfg.prefix, name))
        .await
        .map_err(|e| e.to_string())?;
    let (kvs, _) = store
        .list(&addrs_prefix(&cfg.prefix))
        .await
        .map_err(|e| e.to_string())?;
    let mut freed = Vec::new();
    for kv in kvs.iter().filter(|kv| kv.value == name.as_bytes()) {
        store.delete(&kv.key).await.map_err(|e| e.to_string())?;
        freed.push(kv.key.rsplit('/').next().unwrap_or("").to_string());
    }
    Ok(format!(
        "node {name} left mesh {}; freed addresses: {}",
        cfg.prefix,
        if freed.is_empty() {
            "none".to_string()
        } else {
            freed.join(", ")
        }
    ))
}

/// [`leave_store`] against the configured etcd, on a runtime of its own
/// (for the command line).
pub fn leave(cfg: &MeshConfig) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let mut store = EtcdStore::connect(cfg).await.map_err(|e| e.to_string())?;
        leave_store(&mut store, cfg).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::alloc::allocate;
    use crate::mesh::mem_store::MemStore;

    #[tokio::test]
    async fn leave_frees_the_address_and_the_record_only() {
        let store = MemStore::new();
        let mut s = store.clone();
        let net = crate::config::parse_cidr("10.1.0.0/24").unwrap();
        let a = allocate(&mut s, "/p", "a", net).await.unwrap();
        let b = allocate(&mut s, "/p", "b", net).await.unwrap();
        store.put_raw("/p/nodes/a", b"{}");
        store.put_raw("/p/nodes/b", b"{}");
        let cfg = crate::mesh::agent::tests_support::mesh_config("a", "/p", "10.1.0.0/24");
        let msg = leave_store(&mut s, &cfg).await.unwrap();
        assert!(msg.contains(&a.to_string()), "{msg}");
        let left: Vec<String> = store.dump("/p/").into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            left,
            vec![format!("/p/addrs/{b}"), "/p/nodes/b".to_string()]
        );
    }
}
