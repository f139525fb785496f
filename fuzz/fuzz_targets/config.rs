//! The configuration surfaces: the TOML config (with `[mesh]` and
//! `[admin]`), wg-quick `.conf` files, and the key, CIDR, endpoint and
//! interface-name syntax they share. The first byte picks the parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use phantommesh::config::{toml_config, wgquick};
use phantommesh::fuzz_api::*;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let s = String::from_utf8_lossy(rest);
    match which % 6 {
        0 => {
            if let Ok(c) = toml_config::parse(&s, Path::new("/etc/phantommesh/phantommesh.toml")) {
                check_config(&c);
            }
        }
        1 => {
            if let Ok(w) = wgquick::parse(&s, Path::new("/etc/wireguard/wg0.conf")) {
                check_config(&w.config);
                for i in &w.ignored {
                    let _ = i.warning("wg0.conf");
                }
            }
        }
        2 => {
            if let Ok((ip, prefix)) = parse_cidr(&s) {
                assert!(prefix <= if ip.is_ipv4() { 32 } else { 128 });
                let back = parse_cidr(&format!("{ip}/{prefix}")).expect("formatted CIDR parses");
                assert_eq!(back, (ip, prefix));
            }
        }
        3 => {
            let _ = validate_endpoint(&s);
        }
        4 => {
            if let Ok(k) = parse_key(&s) {
                let enc = base64_of(&k);
                assert_eq!(parse_key(&enc), Ok(k), "re-encoded key");
            }
        }
        _ => {
            if validate_interface_name(&s).is_ok() {
                assert!(!s.is_empty() && s.len() < 16 && !s.contains('/'), "{s:?}");
            }
            let _ = wgquick::interface_name_from_path(Path::new(&*s));
        }
    }
});

fn check_config(c: &phantommesh::config::Config) {
    for p in &c.peers {
        for (ip, prefix) in &p.allowed_ips {
            assert!(*prefix <= if ip.is_ipv4() { 32 } else { 128 });
        }
    }
    for (ip, prefix) in &c.interface.addresses {
        assert!(*prefix <= if ip.is_ipv4() { 32 } else { 128 });
    }
}

/// Standard base64 with padding, written out here so the target does not
/// pull a crate the product may not use the same way.
fn base64_of(b: &[u8; 32]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}
