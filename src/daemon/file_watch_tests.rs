use super::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::time::SystemTime;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "phantommesh-file-watch-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Polls `cond` every 10 ms for up to 5 s.
fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn events(w: &FileWatch) -> u64 {
    w.pending.lock().events
}

/// Waits until the watch has seen an event after `before` and has looked
/// at the file since, asserting that it never reported a change.
fn assert_no_change_after(w: &FileWatch, before: u64) {
    assert!(
        wait_until(|| events(w) > before),
        "the watch saw no event at all"
    );
    assert!(
        wait_until(|| {
            assert!(!w.changed(), "reported a change for the same contents");
            !w.pending.lock().dirty
        }),
        "the watch never looked at the file"
    );
}

#[test]
fn plain_rewrite_is_one_change() {
    let dir = TempDir::new("rewrite");
    let file = dir.0.join("pm0.toml");
    fs::write(&file, "a = 1\n").unwrap();
    let w = FileWatch::new(&file).unwrap();
    assert!(!w.changed());
    // Several writes before the poll: one change.
    fs::write(&file, "a = 2\n").unwrap();
    fs::write(&file, "a = 3\n").unwrap();
    assert!(wait_until(|| w.changed()), "rewrite not noticed");
    let before = events(&w);
    fs::write(&file, "a = 3\n").unwrap();
    assert_no_change_after(&w, before);
    fs::write(&file, "a = 4\n").unwrap();
    assert!(wait_until(|| w.changed()), "second rewrite not noticed");
}

#[test]
fn rename_over_is_a_change() {
    let dir = TempDir::new("rename");
    let file = dir.0.join("pm0.toml");
    fs::write(&file, "a = 1\n").unwrap();
    let w = FileWatch::new(&file).unwrap();
    let tmp = dir.0.join(".pm0.toml.swp");
    fs::write(&tmp, "a = 2\n").unwrap();
    fs::rename(&tmp, &file).unwrap();
    assert!(wait_until(|| w.changed()), "rename-over not noticed");
    // Still watching the new inode's directory entry.
    fs::write(&tmp, "a = 3\n").unwrap();
    fs::rename(&tmp, &file).unwrap();
    assert!(wait_until(|| w.changed()), "second rename-over not noticed");
}

/// The kubelet's update: a new timestamped directory, a `..data_tmp` link
/// to it renamed over `..data`, the old directory removed.
fn configmap_swap(dir: &Path, generation: &str, contents: &str, old: &str) {
    let data = dir.join(generation);
    fs::create_dir(&data).unwrap();
    fs::write(data.join("pm0.toml"), contents).unwrap();
    symlink(generation, dir.join("..data_tmp")).unwrap();
    fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    fs::remove_dir_all(dir.join(old)).unwrap();
}

#[test]
fn configmap_data_swap_is_a_change() {
    let dir = TempDir::new("configmap");
    fs::create_dir(dir.0.join("..2024_01_01_00_00_00.1")).unwrap();
    fs::write(dir.0.join("..2024_01_01_00_00_00.1/pm0.toml"), "a = 1\n").unwrap();
    symlink("..2024_01_01_00_00_00.1", dir.0.join("..data")).unwrap();
    symlink("..data/pm0.toml", dir.0.join("pm0.toml")).unwrap();
    let file = dir.0.join("pm0.toml");
    let w = FileWatch::new(&file).unwrap();

    configmap_swap(
        &dir.0,
        "..2024_01_01_00_00_00.2",
        "a = 2\n",
        "..2024_01_01_00_00_00.1",
    );
    assert!(wait_until(|| w.changed()), "ConfigMap swap not noticed");
    assert_eq!(fs::read_to_string(&file).unwrap(), "a = 2\n");

    // A swap to identical contents (the kubelet resyncs) is no change.
    let before = events(&w);
    configmap_swap(
        &dir.0,
        "..2024_01_01_00_00_00.3",
        "a = 2\n",
        "..2024_01_01_00_00_00.2",
    );
    assert_no_change_after(&w, before);

    configmap_swap(
        &dir.0,
        "..2024_01_01_00_00_00.4",
        "a = 4\n",
        "..2024_01_01_00_00_00.3",
    );
    assert!(wait_until(|| w.changed()), "third swap not noticed");
}

#[test]
fn touch_with_the_same_contents_is_no_change() {
    let dir = TempDir::new("touch");
    let file = dir.0.join("pm0.toml");
    fs::write(&file, "a = 1\n").unwrap();
    let w = FileWatch::new(&file).unwrap();
    let before = events(&w);
    fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(SystemTime::now())
        .unwrap();
    assert_no_change_after(&w, before);
    // Another file in the directory: no change to this one.
    let before = events(&w);
    fs::write(dir.0.join("other.toml"), "b = 1\n").unwrap();
    assert_no_change_after(&w, before);
}

#[test]
fn missing_file_is_an_error() {
    let dir = TempDir::new("missing");
    let err = FileWatch::new(&dir.0.join("nope.toml"))
        .err()
        .expect("a missing file must not be watched");
    assert!(err.contains("nope.toml"), "{err}");
}
