//! TEMPORARY placeholder so `phantommesh mesh leave` compiles on the
//! admin-mesh branch; the lead's mesh agent replaces it with the real
//! `leave` (frees this node's address and record in the store).

/// Not built yet: always an error.
pub fn leave(_: &crate::config::MeshConfig) -> Result<String, String> {
    Err("not built yet".into())
}
