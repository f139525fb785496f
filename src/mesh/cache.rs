//! The last view of the mesh on disk, so that a node restarting while the
//! store is unreachable still forms the mesh with the peers it knew, at
//! the address it had. Written atomically (temporary file, then rename)
//! after each change; holds public data only (no keys but public ones).
use super::record::NodeRecord;
use super::view::Entry;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedEntry {
    pub record: NodeRecord,
    pub create_revision: i64,
    pub mod_revision: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cache {
    pub version: u32,
    pub prefix: String,
    pub node_name: String,
    /// This node's tunnel addresses.
    pub addresses: Vec<IpAddr>,
    pub revision: i64,
    pub nodes: Vec<CachedEntry>,
}

impl Cache {
    pub const VERSION: u32 = 1;

    pub fn new(
        prefix: &str,
        node_name: &str,
        addresses: Vec<IpAddr>,
        revision: i64,
        entries: &[&Entry],
    ) -> Cache {
        Cache {
            version: Self::VERSION,
            prefix: prefix.into(),
            node_name: node_name.into(),
            addresses,
            revision,
            nodes: entries
                .iter()
                .map(|e| CachedEntry {
                    record: NodeRecord::from_member(&e.member, 0),
                    create_revision: e.create_revision,
                    mod_revision: e.mod_revision,
                })
                .collect(),
        }
    }

    /// The cached records as view entries (records that no longer parse
    /// are dropped).
    pub fn entries(&self) -> Vec<Entry> {
        self.nodes
            .iter()
            .filter_map(|c| {
                let json = c.record.to_json();
                let key = format!("{}/nodes/{}", self.prefix, c.record.name);
                NodeRecord::parse(&key, &c.record.name, &json)
                    .ok()
                    .map(|member| Entry {
                        member,
                        create_revision: c.create_revision,
                        mod_revision: c.mod_revision,
                    })
            })
            .collect()
    }
}

/// Reads the cache; None when absent. A cache of another mesh (prefix) or
/// node name, or one that does not parse, is an error the caller logs.
pub fn load(path: &Path, prefix: &str, node_name: &str) -> Result<Option<Cache>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read mesh cache {}: {e}", path.display())),
    };
    let c: Cache = serde_json::from_slice(&bytes)
        .map_err(|e| format!("mesh cache {} is unreadable: {e}", path.display()))?;
    if c.version != Cache::VERSION || c.prefix != prefix || c.node_name != node_name {
        return Err(format!(
            "mesh cache {} belongs to node {:?} of mesh {:?}; ignoring it",
            path.display(),
            c.node_name,
            c.prefix
        ));
    }
    Ok(Some(c))
}

/// The cache file opened before the daemon dropped its privileges, for
/// when its directory is not writable by the daemon's user afterwards.
static PREOPENED: std::sync::Mutex<Option<(std::path::PathBuf, std::fs::File)>> =
    std::sync::Mutex::new(None);

/// Opens (creating, mode 0600) the cache file while the process may still
/// write its directory; [`save`] then rewrites it in place.
pub fn preopen(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    *PREOPENED.lock().unwrap_or_else(|p| p.into_inner()) = Some((path.to_path_buf(), f));
    Ok(())
}

/// Writes the cache atomically (a temporary file, then rename), or, after
/// [`preopen`] (the daemon's user cannot write the directory), rewrites the
/// preopened file in place: a torn write is only a cache that fails to
/// parse, ignored on the next start.
pub fn save(path: &Path, cache: &Cache) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let json = serde_json::to_vec_pretty(cache).expect("a cache always serializes");
    // Once preopened, always in place: a rename would leave the open
    // descriptor on the replaced file.
    if let Some((_, f)) = PREOPENED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .filter(|(p, _)| p == path)
    {
        return rewrite(f, &json)
            .map_err(|e| format!("cannot write mesh cache {}: {e}", path.display()));
    }
    let res = std::fs::write(&tmp, &json).and_then(|_| std::fs::rename(&tmp, path));
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write mesh cache {}: {e}", path.display())
    })
}

fn rewrite(mut f: &std::fs::File, data: &[u8]) -> std::io::Result<()> {
    use std::io::{Seek, Write};
    f.set_len(0)?;
    f.seek(std::io::SeekFrom::Start(0))?;
    f.write_all(data)?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::status::Member;

    #[test]
    fn save_load_round_trip_and_refuse_foreign() {
        let dir = std::env::temp_dir().join(format!("pm-cache-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mesh.json");
        assert_eq!(load(&path, "/p", "a").unwrap(), None);
        let e = Entry {
            member: Member {
                name: "b".into(),
                public_key: [2; 32],
                endpoint: Some("10.0.0.2:51820".into()),
                addresses: vec!["10.100.0.2".parse().unwrap()],
                allowed_ips: vec![("10.244.2.0".parse().unwrap(), 24)],
            },
            create_revision: 3,
            mod_revision: 4,
        };
        let c = Cache::new("/p", "a", vec!["10.100.0.1".parse().unwrap()], 9, &[&e]);
        save(&path, &c).unwrap();
        let back = load(&path, "/p", "a").unwrap().unwrap();
        assert_eq!(back, c);
        assert_eq!(back.entries(), vec![e]);
        assert!(load(&path, "/other", "a").unwrap_err().contains("ignoring"));
        std::fs::write(&path, b"{").unwrap();
        assert!(load(&path, "/p", "a").unwrap_err().contains("unreadable"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn preopened_cache_is_rewritten_in_place() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("pm-cache-pre-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mesh.json");
        std::fs::write(&path, vec![b' '; 4096]).unwrap();
        preopen(&path).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        let c = Cache::new("/p", "a", vec!["10.100.0.1".parse().unwrap()], 9, &[]);
        save(&path, &c).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            ino,
            "same file, no rename"
        );
        assert_eq!(
            load(&path, "/p", "a").unwrap(),
            Some(c),
            "old longer content truncated"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
