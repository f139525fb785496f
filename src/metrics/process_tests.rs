//! The process families read from this test process's own /proc.
use super::*;
use crate::metrics::parse::parse;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn every_value_is_read_and_plausible() {
    let p = ProcessStats::read();
    let start = p.start_time_seconds.expect("start time");
    let now = now_unix();
    // btime is whole seconds, rounded down: the start may read up to 1 s
    // early, never late. This test binary started well within the hour.
    assert!(start <= now, "start {start} is after now {now}");
    assert!(
        start > now - 3600.0,
        "start {start} is over an hour ago ({now})"
    );

    let open = p.open_fds.expect("open fds");
    let max = p.max_fds.expect("max fds");
    assert!(open >= 3, "stdin, stdout, stderr and the listing: {open}");
    assert!(open <= max, "{open} open but at most {max}");

    let rss = p.resident_memory_bytes.expect("rss");
    let virt = p.virtual_memory_bytes.expect("vsize");
    assert!(rss > 0, "resident {rss}");
    assert!(virt >= rss, "virtual {virt} below resident {rss}");
    assert!(p.cpu_seconds.expect("cpu") >= 0.0);
}

#[test]
fn cpu_seconds_only_grow_and_follow_work() {
    let first = ProcessStats::read().cpu_seconds.unwrap();
    let mut last = first;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut x = 0u64;
    // Burn CPU until the counter has moved by 20 ms (getrusage resolves
    // microseconds; the kernel accounts at least every tick).
    while last < first + 0.02 {
        for i in 0..100_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        let now = ProcessStats::read().cpu_seconds.unwrap();
        assert!(now >= last, "cpu counter went back from {last} to {now}");
        last = now;
        assert!(Instant::now() < deadline, "cpu counter stuck at {last}");
    }
    std::hint::black_box(x);
}

#[test]
fn open_fds_count_descriptors_we_open() {
    let before = ProcessStats::read().open_fds.unwrap();
    let files: Vec<std::fs::File> = (0..64)
        .map(|_| std::fs::File::open("/proc/self/statm").unwrap())
        .collect();
    let during = ProcessStats::read().open_fds.unwrap();
    drop(files);
    // Other tests of this binary open and close descriptors meanwhile:
    // allow them half the difference.
    assert!(
        during >= before + 32,
        "64 files opened: {before} -> {during}"
    );
}

#[test]
fn resident_memory_follows_touched_pages() {
    let before = ProcessStats::read().resident_memory_bytes.unwrap();
    // 64 MiB, every page written: it must be resident while we hold it.
    let mut v = vec![0u8; 64 << 20];
    for i in (0..v.len()).step_by(4096) {
        v[i] = 1;
    }
    let during = ProcessStats::read().resident_memory_bytes.unwrap();
    std::hint::black_box(&v);
    // Other tests may free memory meanwhile: ask for half.
    assert!(
        during >= before + (32 << 20),
        "64 MiB touched: {before} -> {during}"
    );
}

#[test]
fn parses_proc_files() {
    // A command name with spaces and parentheses; starttime is 12345.
    let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 3 0 12345 1000 50";
    assert_eq!(start_ticks(stat), Some(12345));
    assert_eq!(start_ticks("42 (x) S 1"), None);
    assert_eq!(start_ticks("no parenthesis"), None);
    assert_eq!(
        boot_time("cpu  1 2 3\nintr 0\nbtime 1700000000\nprocesses 9\n"),
        Some(1_700_000_000)
    );
    assert_eq!(boot_time("cpu 1\n"), None);
    assert_eq!(
        parse_statm("100 25 3 1 0 40 0\n", 4096),
        Some((409_600, 102_400))
    );
    assert_eq!(parse_statm("100\n", 4096), None);
    assert_eq!(parse_statm("x 1", 4096), None);
}

#[test]
fn exposition_has_the_standard_families() {
    let mut out = String::new();
    render(&mut Writer::new(&mut out), &ProcessStats::read());
    let parsed = parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let want = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
        ),
    ];
    assert_eq!(parsed.families.len(), want.len(), "{out}");
    for (name, kind, help) in want {
        let f = parsed
            .family(name)
            .unwrap_or_else(|| panic!("no {name}:\n{out}"));
        assert_eq!((f.kind.as_str(), f.help.as_str()), (kind, help), "{name}");
        assert_eq!(f.samples.len(), 1, "{name}");
        assert!(f.samples[0].labels.is_empty(), "{name}");
    }
    let start = parsed.value("process_start_time_seconds", &[]).unwrap();
    assert!(
        start > 1e9 && start <= now_unix(),
        "Unix seconds, not an age: {start}"
    );
}

#[test]
fn unreadable_values_leave_their_family_out() {
    let p = ProcessStats {
        cpu_seconds: Some(1.5),
        open_fds: Some(7),
        ..Default::default()
    };
    let mut out = String::new();
    render(&mut Writer::new(&mut out), &p);
    let parsed = parse(&out).unwrap();
    let names: Vec<&str> = parsed.families.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["process_cpu_seconds_total", "process_open_fds"]);
    assert_eq!(parsed.value("process_cpu_seconds_total", &[]), Some(1.5));
    assert_eq!(parsed.value("process_open_fds", &[]), Some(7.0));
}
