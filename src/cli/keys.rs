//! Key handling shared by `genkey`/`pubkey`/`genpsk` and the daemon: base64
//! keys as `wg` prints them, key files (created 0600), never logged.
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key is not 32 bytes of base64")]
    Malformed,
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: key file is readable by group or others (mode {mode:o}); chmod 600 it")]
    InsecureMode { path: String, mode: u32 },
}

/// A fresh X25519 private key, clamped as `wg genkey` prints it.
pub fn generate_private_key() -> [u8; 32] {
    todo!()
}
/// 32 random bytes (a preshared key).
pub fn generate_preshared_key() -> [u8; 32] {
    todo!()
}
pub fn public_key(private: &[u8; 32]) -> [u8; 32] {
    let _ = private;
    todo!()
}
/// Parses a base64 key (surrounding whitespace allowed).
pub fn parse_base64_key(s: &str) -> Result<[u8; 32], KeyError> {
    let _ = s;
    todo!()
}
pub fn encode_base64_key(key: &[u8; 32]) -> String {
    let _ = key;
    todo!()
}
/// Reads a base64 key file.
pub fn read_key_file(path: &Path) -> Result<[u8; 32], KeyError> {
    let _ = path;
    todo!()
}
/// Reads the private key file, or creates it (mode 0600, parent directories
/// 0700 if missing) with a fresh key. Returns the key and whether it was
/// generated.
pub fn load_or_generate_private_key(path: &Path) -> Result<([u8; 32], bool), KeyError> {
    let _ = path;
    todo!()
}
