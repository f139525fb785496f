//! Reads back what criterion just measured so a bench can print its result
//! as a ratio to its ceiling. Criterion keeps no results in memory that a
//! caller can reach, but it writes `<group>/<function>/new/estimates.json`
//! under its output directory after every measured benchmark.
#![allow(dead_code)] // each bench binary uses a different subset
use std::path::PathBuf;
use std::time::SystemTime;

/// Criterion's output directory, found the way criterion finds it (minus
/// its `cargo metadata` fallback: a bench binary sits in `<target>/<profile>/deps`).
fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// One benchmark's result as criterion recorded it.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Time per iteration, nanoseconds: the estimate criterion prints (the
    /// regression slope when it has one, else the mean).
    pub ns: f64,
    /// Bytes or elements per iteration, as declared with `Throughput`.
    pub per_iter: Option<f64>,
    pub written: SystemTime,
}

fn read_json(path: &std::path::Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The last recorded result of `group`/`function`; `None` if criterion never
/// measured it (or wrote it before `since`, i.e. not in this run).
pub fn measured(group: &str, function: &str, since: Option<SystemTime>) -> Option<Measured> {
    // Scan rather than rebuild criterion's escaped directory names.
    for g in std::fs::read_dir(criterion_dir()?).ok()?.flatten() {
        for f in std::fs::read_dir(g.path()).into_iter().flatten().flatten() {
            let new = f.path().join("new");
            let Some(id) = read_json(&new.join("benchmark.json")) else {
                continue;
            };
            if id["group_id"] != group || id["function_id"] != function {
                continue;
            }
            let est_path = new.join("estimates.json");
            let written = std::fs::metadata(&est_path).ok()?.modified().ok()?;
            if since.is_some_and(|s| written < s) {
                return None;
            }
            let est = read_json(&est_path)?;
            let t = &id["throughput"];
            let per_iter = t["Bytes"]
                .as_f64()
                .or_else(|| t["BytesDecimal"].as_f64())
                .or_else(|| t["Elements"].as_f64());
            return Some(Measured {
                ns: est["slope"]["point_estimate"]
                    .as_f64()
                    .or_else(|| est["mean"]["point_estimate"].as_f64())?,
                per_iter,
                written,
            });
        }
    }
    None
}

/// Prints one summary line: a measured rate against its ceiling.
pub fn print_ratio(what: &str, measured: f64, ceiling: f64, unit: &str) {
    eprintln!(
        "{what}: {measured:.3} {unit} / ceiling {ceiling:.3} {unit} = {:.1} %",
        100.0 * measured / ceiling
    );
}
