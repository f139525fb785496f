use super::*;

#[test]
fn reload_never_generates_a_vanished_key_file() {
    let dir = std::env::temp_dir().join(format!("pm-reload-key-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("private.key");
    let src = KeySource::File(path.clone());
    let e = reload_key(&src).unwrap_err();
    assert!(e.contains("never generates"), "{e}");
    assert!(e.contains("private.key"), "{e}");
    assert!(!path.exists(), "reload created a key file");
    // At start the same source generates one, and a reload then reads it.
    let first = load_key(&src, true).unwrap();
    assert!(path.exists());
    assert_eq!(reload_key(&src).unwrap(), first);
    std::fs::remove_dir_all(&dir).unwrap();
}
