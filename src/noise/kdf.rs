//! BLAKE2s primitives of the Noise construction: HASH, MAC (keyed BLAKE2s-128),
//! HMAC-BLAKE2s, and HKDF's KDF1/KDF2/KDF3.

pub fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let _ = parts;
    todo!()
}
/// Keyed BLAKE2s with a 16-byte output (MAC1, MAC2, cookies).
pub fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let _ = (key, parts);
    todo!()
}
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let _ = (key, parts);
    todo!()
}
pub fn kdf1(key: &[u8; 32], input: &[u8]) -> [u8; 32] {
    let _ = (key, input);
    todo!()
}
pub fn kdf2(key: &[u8; 32], input: &[u8]) -> ([u8; 32], [u8; 32]) {
    let _ = (key, input);
    todo!()
}
pub fn kdf3(key: &[u8; 32], input: &[u8]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    let _ = (key, input);
    todo!()
}
