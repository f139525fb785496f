//! Key handling shared by `genkey`/`pubkey`/`genpsk` and the daemon: base64
//! keys as `wg` prints them, key files (created 0600), never logged.
use rand_core::{OsRng, RngCore};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key is not 32 bytes of base64")]
    Malformed,
    /// I/O failures, and key files whose content is not a key (kind
    /// `InvalidData`), so the message names the file.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: key file is accessible by group or others (mode {mode:o}); chmod 600 it")]
    InsecureMode { path: String, mode: u32 },
}

fn io_err(path: &Path, source: std::io::Error) -> KeyError {
    KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A fresh X25519 private key, clamped as `wg genkey` prints it.
pub fn generate_private_key() -> [u8; 32] {
    let mut k = generate_preshared_key();
    clamp(&mut k);
    k
}

/// Curve25519 scalar clamping (RFC 7748 section 5), as `wg genkey` applies
/// before printing, so our keys are byte-identical in form to wg's.
pub fn clamp(k: &mut [u8; 32]) {
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
}

/// 32 random bytes (a preshared key).
pub fn generate_preshared_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    OsRng.fill_bytes(&mut k);
    k
}

pub fn public_key(private: &[u8; 32]) -> [u8; 32] {
    // StaticSecret clamps internally and zeroizes on drop.
    let secret = x25519_dalek::StaticSecret::from(*private);
    x25519_dalek::PublicKey::from(&secret).to_bytes()
}

/// Parses a base64 key (surrounding whitespace allowed).
pub fn parse_base64_key(s: &str) -> Result<[u8; 32], KeyError> {
    crate::noise::keys::parse_base64_key(s).ok_or(KeyError::Malformed)
}

pub use crate::noise::keys::encode_base64_key;

/// Fails with [`KeyError::InsecureMode`] if group or others have any access
/// to the file (for `preflight`; the daemon itself only warns).
pub fn check_key_file_mode(path: &Path) -> Result<(), KeyError> {
    let mode = fs::metadata(path)
        .map_err(|e| io_err(path, e))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecureMode {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// Reads a base64 key file. A file open to group or others is accepted with
/// a warning, as `wg` does.
pub fn read_key_file(path: &Path) -> Result<[u8; 32], KeyError> {
    // A key file is 45 bytes; bound the read so a wrong path (a device, a
    // huge file) cannot stall or exhaust memory.
    let mut text = Zeroizing::new(String::new());
    fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|e| io_err(path, e))?;
    if let Err(e @ KeyError::InsecureMode { .. }) = check_key_file_mode(path) {
        tracing::warn!("{e}");
    }
    parse_base64_key(&text).map_err(|_| {
        io_err(
            path,
            std::io::Error::new(ErrorKind::InvalidData, "key is not 32 bytes of base64"),
        )
    })
}

/// Creates a key file without ever replacing one: the key goes to a 0600
/// temporary file in the same directory, synced, then hard-linked to
/// `path` (link(2) fails if `path` exists). Ok(false) when `path` appeared
/// meanwhile (another process made it): the caller should read that one.
fn create_key_file(path: &Path, key: &[u8; 32]) -> Result<bool, KeyError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io_err(
            path,
            std::io::Error::new(ErrorKind::InvalidInput, "not a file path"),
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    // Unique per process and per call (threads may race here too).
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp_name.push(format!(".new{}-{seq}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut line = Zeroizing::new(encode_base64_key(key));
        line.push('\n');
        f.write_all(line.as_bytes())?;
        f.sync_all()?;
        let linked = match fs::hard_link(&tmp, path) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        };
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(linked)
    })();
    let _ = fs::remove_file(&tmp);
    result.map_err(|e| io_err(path, e))
}

/// Reads the private key file, or creates it (mode 0600, parent directories
/// 0700 if missing) with a fresh key. Returns the key and whether it was
/// generated. Creation never replaces a file: if another process created
/// it meanwhile, its key is read and used.
pub fn load_or_generate_private_key(path: &Path) -> Result<([u8; 32], bool), KeyError> {
    match fs::metadata(path) {
        Ok(_) => return read_key_file(path).map(|k| (k, false)),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path, e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err(dir, e))?;
    }
    let key = Zeroizing::new(generate_private_key());
    if create_key_file(path, &key)? {
        Ok((*key, true))
    } else {
        read_key_file(path).map(|k| (k, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};

    fn temp_dir(tag: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("pm-keys-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn is_clamped(k: &[u8; 32]) -> bool {
        k[0] & 7 == 0 && k[31] & 0x80 == 0 && k[31] & 0x40 != 0
    }

    #[test]
    fn generated_private_keys_are_clamped_and_distinct() {
        let a = generate_private_key();
        let b = generate_private_key();
        assert_ne!(a, b);
        for k in [a, b] {
            assert!(is_clamped(&k));
            let s = encode_base64_key(&k);
            assert_eq!(s.len(), 44);
            assert_eq!(parse_base64_key(&s).unwrap(), k);
        }
        // Clamping must touch only the 5 bits it is defined on.
        let mut ones = [0xffu8; 32];
        clamp(&mut ones);
        assert_eq!(ones[0], 0xf8);
        assert_eq!(ones[31], 0x7f);
        assert!(ones[1..31].iter().all(|&b| b == 0xff));
    }

    #[test]
    fn preshared_keys_are_random_not_clamped() {
        // Clamping forces bit 6 of byte 31; over 64 random keys at least one
        // must have it clear if no clamping happens (failure odds 2^-64).
        let any_unclamped = (0..64).any(|_| !is_clamped(&generate_preshared_key()));
        assert!(any_unclamped);
    }

    #[test]
    fn public_key_rfc7748_vector() {
        // RFC 7748 section 6.1, Alice.
        let sk = hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
            .unwrap();
        let pk = hex::decode("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
            .unwrap();
        assert_eq!(public_key(&sk.try_into().unwrap()).to_vec(), pk);
    }

    #[test]
    fn public_key_matches_wg_tool_vector() {
        // Computed with `wg genkey | tee /dev/stderr | wg pubkey`
        // (wireguard-tools v1.0.20210914).
        let sk = parse_base64_key("mPfbMwcuoKuRL3uk2oeaZ4nyjVebNxHSnksd38SjKEw=").unwrap();
        let pk = parse_base64_key("3WfFJ311L31QfPRRgyQ0szOlYTJGo9YX9Jyibk+G0R8=").unwrap();
        assert_eq!(public_key(&sk), pk);
        // An unclamped input: wg pubkey clamps it first, and so must we.
        let sk = parse_base64_key("//////////////////////////////////////////8=").unwrap();
        let pk = parse_base64_key("hHwNLDdSNPNl5mCVUYejc1oPdhPRYJ06ak2MU66qWiI=").unwrap();
        assert_eq!(public_key(&sk), pk);
    }

    #[test]
    fn public_key_agrees_with_wg_binary_when_present() {
        let wg = Path::new("/usr/bin/wg");
        if !wg.exists() {
            eprintln!("skipping: /usr/bin/wg not installed");
            return;
        }
        let sk = generate_private_key();
        let mut child = Command::new(wg)
            .arg("pubkey")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(encode_base64_key(&sk).as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let theirs = parse_base64_key(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
        assert_eq!(public_key(&sk), theirs);
    }

    #[test]
    fn parse_rejects_malformed_keys() {
        let good = encode_base64_key(&[7u8; 32]);
        assert_eq!(parse_base64_key(&format!("  {good}\n")).unwrap(), [7u8; 32]);
        let bad = [
            "",
            "abc",
            &good[..43],                                     // missing padding
            &format!("{good}A"),                             // too long
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA!=", // bad character
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",  // non-zero trailing bits
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",  // 31 bytes
        ];
        for b in bad {
            assert!(
                matches!(parse_base64_key(b), Err(KeyError::Malformed)),
                "accepted {b:?}"
            );
        }
    }

    #[test]
    fn load_or_generate_creates_private_file_and_rereads_it() {
        let base = temp_dir("gen");
        let path = base.join("new/sub/private.key");
        let (k1, generated) = load_or_generate_private_key(&path).unwrap();
        assert!(generated);
        assert!(is_clamped(&k1));
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(&base.join("new")), 0o700);
        assert_eq!(mode_of(&base.join("new/sub")), 0o700);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", encode_base64_key(&k1)));
        // No temporary file left behind.
        assert_eq!(fs::read_dir(base.join("new/sub")).unwrap().count(), 1);

        let (k2, generated) = load_or_generate_private_key(&path).unwrap();
        assert!(!generated);
        assert_eq!(k1, k2);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn load_or_generate_does_not_overwrite_a_bad_file() {
        let base = temp_dir("bad");
        let path = base.join("private.key");
        fs::write(&path, "not a key\n").unwrap();
        let e = load_or_generate_private_key(&path).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("private.key") && msg.contains("not 32 bytes"),
            "{msg}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a key\n");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn insecure_mode_warns_on_read_and_fails_the_check() {
        let base = temp_dir("mode");
        let path = base.join("k");
        assert!(create_key_file(&path, &[9u8; 32]).unwrap());
        check_key_file_mode(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        // Reading still works: wg only warns.
        assert_eq!(read_key_file(&path).unwrap(), [9u8; 32]);
        match check_key_file_mode(&path) {
            Err(KeyError::InsecureMode { mode, .. }) => assert_eq!(mode, 0o644),
            other => panic!("expected InsecureMode, got {other:?}"),
        }
        let msg = check_key_file_mode(&path).unwrap_err().to_string();
        assert!(msg.contains("644") && msg.contains("chmod 600"), "{msg}");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn oversized_key_file_is_malformed_not_a_hang() {
        // /dev/zero never ends; the bounded read must still return.
        let e = read_key_file(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("not 32 bytes"), "{e}");
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let e = read_key_file(Path::new("/nonexistent/pm/key")).unwrap_err();
        assert!(matches!(&e, KeyError::Io { source, .. } if source.kind() == ErrorKind::NotFound));
        assert!(e.to_string().starts_with("/nonexistent/pm/key: "));
    }

    #[test]
    fn key_creation_never_replaces_an_existing_file() {
        let dir = temp_dir("noreplace");
        let path = dir.join("private.key");
        fs::write(&path, "theirs\n").unwrap();
        assert!(!create_key_file(&path, &[9u8; 32]).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "theirs\n");
        // No temporary file is left behind, either way.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        let fresh = dir.join("fresh.key");
        assert!(create_key_file(&fresh, &[9u8; 32]).unwrap());
        assert_eq!(read_key_file(&fresh).unwrap(), [9u8; 32]);
        assert_eq!(mode_of(&fresh), 0o600);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_generation_agrees_on_one_key() {
        let dir = temp_dir("race");
        let path = dir.join("k").join("private.key");
        let barrier = std::sync::Barrier::new(8);
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        load_or_generate_private_key(&path).unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let on_disk = read_key_file(&path).unwrap();
        assert!(results.iter().all(|(k, _)| *k == on_disk));
        assert!(results.iter().filter(|(_, created)| *created).count() <= 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
