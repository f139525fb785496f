//! BLAKE2s primitives of the Noise construction: HASH, MAC (keyed BLAKE2s-128),
//! HMAC-BLAKE2s, and HKDF's KDF1/KDF2/KDF3.
use blake2::digest::consts::U16;
use blake2::digest::{Digest, FixedOutput, KeyInit, Update};
use blake2::{Blake2s256, Blake2sMac};
use zeroize::Zeroize;

/// BLAKE2s block size, the HMAC block size.
const BLOCK_LEN: usize = 64;

pub fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    for p in parts {
        Digest::update(&mut h, p);
    }
    h.finalize().into()
}

/// Keyed BLAKE2s with a 16-byte output (MAC1, MAC2, cookies).
///
/// Keys are at most 32 bytes (BLAKE2s' limit); every caller passes a 16- or
/// 32-byte key it owns, so a longer key is a programming error.
pub fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut m = <Blake2sMac<U16> as KeyInit>::new_from_slice(key)
        .expect("BLAKE2s MAC key longer than 32 bytes");
    for p in parts {
        m.update(p);
    }
    m.finalize_fixed().into()
}

/// HMAC (RFC 2104) over unkeyed BLAKE2s-256, as WireGuard specifies: the
/// keyed BLAKE2s mode is *not* used here.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; BLOCK_LEN];
    if key.len() > BLOCK_LEN {
        let mut k = hash(&[key]);
        block[..32].copy_from_slice(&k);
        k.zeroize();
    } else {
        block[..key.len()].copy_from_slice(key);
    }

    for b in block.iter_mut() {
        *b ^= 0x36;
    }
    let mut inner = Blake2s256::new();
    Digest::update(&mut inner, block);
    for p in parts {
        Digest::update(&mut inner, p);
    }
    let mut inner_hash: [u8; 32] = inner.finalize().into();

    // Turn the ipad block into the opad block: 0x36 ^ 0x5c = 0x6a.
    for b in block.iter_mut() {
        *b ^= 0x36 ^ 0x5c;
    }
    let out = hash(&[&block, &inner_hash]);
    block.zeroize();
    inner_hash.zeroize();
    out
}

/// HKDF with HMAC-BLAKE2s yielding `N` 32-byte outputs (N <= 255).
///
/// The fixed-size KDF1/2/3 wrap this; it takes a key of any length so the
/// published test vectors (which use short keys) apply directly.
pub fn hkdf<const N: usize>(key: &[u8], input: &[u8]) -> [[u8; 32]; N] {
    assert!(N > 0 && N < 256, "HKDF output count out of range");
    let mut prk = hmac(key, &[input]);
    let mut out = [[0u8; 32]; N];
    for i in 0..N {
        let counter = [(i + 1) as u8];
        out[i] = if i == 0 {
            hmac(&prk, &[&counter])
        } else {
            hmac(&prk, &[&out[i - 1], &counter])
        };
    }
    prk.zeroize();
    out
}

pub fn kdf1(key: &[u8; 32], input: &[u8]) -> [u8; 32] {
    let [t0] = hkdf::<1>(key, input);
    t0
}
pub fn kdf2(key: &[u8; 32], input: &[u8]) -> ([u8; 32], [u8; 32]) {
    let [t0, t1] = hkdf::<2>(key, input);
    (t0, t1)
}
pub fn kdf3(key: &[u8; 32], input: &[u8]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    let [t0, t1, t2] = hkdf::<3>(key, input);
    (t0, t1, t2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// (key, input, t0, t1, t2) from wireguard-go device/kdf_test.go.
    const VECTORS: [(&str, &str, &str, &str, &str); 3] = [
        (
            "746573742d6b6579",
            "746573742d696e707574",
            "6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633",
            "df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a",
            "fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24",
        ),
        (
            "776972656775617264",
            "776972656775617264",
            "491d43bbfdaa8750aaf535e334ecbfe5129967cd64635101c566d4caefda96e8",
            "1e71a379baefd8a79aa4662212fcafe19a23e2b609a3db7d6bcba8f560e3d25f",
            "31e1ae48bddfbe5de38f295e5452b1909a1b4e38e183926af3780b0c1e1f0160",
        ),
        (
            "",
            "",
            "8387b46bf43eccfcf349552a095d8315c4055beb90208fb1be23b894bc2ed5d0",
            "58a0e5f6faefccf4807bff1f05fa8a9217945762040bcec2f4b4a62bdfe0e86e",
            "0ce6ea98ec548f8e281e93e32db65621c45eb18dc6f0a7ad94178610a2f7338e",
        ),
    ];

    #[test]
    fn hkdf_matches_wireguard_go_vectors() {
        for (key, input, t0, t1, t2) in VECTORS {
            let [a, b, c] = hkdf::<3>(&h(key), &h(input));
            assert_eq!(hex::encode(a), t0);
            assert_eq!(hex::encode(b), t1);
            assert_eq!(hex::encode(c), t2);
            let [a2, b2] = hkdf::<2>(&h(key), &h(input));
            assert_eq!((a2, b2), (a, b));
            let [a1] = hkdf::<1>(&h(key), &h(input));
            assert_eq!(a1, a);
        }
    }

    #[test]
    fn fixed_size_kdfs_agree_with_hkdf() {
        let key = hash(&[b"some chaining key"]);
        let (a, b, c) = kdf3(&key, b"input");
        assert_eq!([a, b, c], hkdf::<3>(&key, b"input"));
        assert_eq!(kdf2(&key, b"input"), (a, b));
        assert_eq!(kdf1(&key, b"input"), a);
        assert_ne!(a, b);
        assert_ne!(b, c);
    }

    #[test]
    fn hash_concatenates_parts() {
        assert_eq!(hash(&[b"ab", b"cd"]), hash(&[b"abcd"]));
        // BLAKE2s-256("abc"), RFC 7693 appendix B.
        assert_eq!(
            hex::encode(hash(&[b"abc"])),
            "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"
        );
    }

    #[test]
    fn mac_is_keyed_and_16_bytes() {
        let a = mac(&[1u8; 32], &[b"msg"]);
        let b = mac(&[2u8; 32], &[b"msg"]);
        assert_ne!(a, b);
        assert_eq!(mac(&[1u8; 32], &[b"m", b"sg"]), a);
        // A 16-byte key (a cookie) is accepted too.
        assert_ne!(mac(&[1u8; 16], &[b"msg"]), a);
    }

    #[test]
    fn hmac_long_key_is_hashed_first() {
        let long = [7u8; 100];
        assert_eq!(hmac(&long, &[b"x"]), hmac(&hash(&[&long]), &[b"x"]));
    }
}
