use super::*;

const STAT: &str = "1234 (phantom mesh) (x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 5000 12345678 2500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
const STATUS: &str =
    "Name:\tphantommesh\nVmPeak:\t  20480 kB\nVmRSS:\t   10240 kB\nRssAnon:\t    8000 kB\n";
const MEMINFO: &str = "MemTotal:       16384000 kB\nMemFree:         1000000 kB\n";
const CPU_STAT: &str = "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\nnr_periods 0\n";

#[test]
fn parsers() {
    assert_eq!(
        parse_cgroup_path("0::/kubepods.slice/cri-abc.scope\n"),
        Some("/kubepods.slice/cri-abc.scope")
    );
    assert_eq!(
        parse_cgroup_path("12:memory:/x\n1:name=systemd:/y\n0::/\n"),
        Some("/")
    );
    assert_eq!(parse_cgroup_path("12:memory:/x\n"), None);
    assert_eq!(parse_u64_text("123456\n"), Some(123_456));
    assert_eq!(parse_u64_text("12x"), None);
    assert_eq!(parse_memory_max("max\n"), Some(None));
    assert_eq!(parse_memory_max("536870912\n"), Some(Some(536_870_912)));
    assert_eq!(parse_memory_max("0\n"), None);
    assert_eq!(parse_memory_max("lots"), None);
    assert_eq!(parse_cpu_stat_usage_usec(CPU_STAT), Some(1_500_000));
    assert_eq!(parse_cpu_stat_usage_usec("user_usec 5\n"), None);
    assert_eq!(parse_cpu_max("200000 100000\n"), Some(Some(2.0)));
    assert_eq!(parse_cpu_max("50000 100000"), Some(Some(0.5)));
    assert_eq!(parse_cpu_max("max 100000\n"), Some(None));
    assert_eq!(parse_cpu_max("50000"), Some(Some(0.5)));
    assert_eq!(parse_cpu_max(""), None);
    assert_eq!(parse_cpu_max("x 1"), None);
    assert_eq!(parse_cpu_max("5 0"), None);
    assert_eq!(parse_vmrss_bytes(STATUS), Some(10240 * 1024));
    assert_eq!(parse_vmrss_bytes("VmRSS: lots\n"), None);
    assert_eq!(parse_vmrss_bytes("VmRSSX:\t1 kB\n"), None);
    assert_eq!(parse_memtotal_bytes(MEMINFO), Some(16_384_000 * 1024));
    // Field counting survives spaces and parentheses in the command name.
    assert_eq!(parse_proc_stat_times(STAT), Some((300, 5000)));
    assert_eq!(parse_proc_stat_times("1 (x) S 1 2"), None);
    assert_eq!(parse_proc_stat_times("no parens at all"), None);
    assert_eq!(parse_uptime_seconds("150.00 300.00\n"), Some(150.0));
    assert_eq!(parse_uptime_seconds("nan 1"), None);
}

fn texts() -> Texts {
    Texts {
        status: Some(STATUS.into()),
        meminfo: Some(MEMINFO.into()),
        stat: Some(STAT.into()),
        uptime: Some("150.00 300.00\n".into()),
        ..Texts::default()
    }
}

#[test]
fn memory_prefers_the_cgroup_limit() {
    let mut t = texts();
    // No cgroup: RSS over host memory.
    assert_eq!(memory_fraction(&t), Some(10240.0 / 16_384_000.0));
    // cgroup without a limit: cgroup usage over host memory.
    t.memory_current = Some("1638400000\n".into());
    t.memory_max = Some("max\n".into());
    assert_eq!(
        memory_fraction(&t),
        Some(1_638_400_000.0 / (16_384_000.0 * 1024.0))
    );
    // cgroup with a limit.
    t.memory_max = Some("2000000000\n".into());
    assert_eq!(memory_fraction(&t), Some(0.8192));
    // Nothing readable: no data.
    assert_eq!(memory_fraction(&Texts::default()), None);
}

#[test]
fn cpu_sources_and_cores() {
    let mut t = texts();
    assert_eq!(cpu_seconds(&t, 100.0), Some(3.0));
    assert_eq!(cores_allowed(&t, 8.0), 8.0);
    // 3 s of CPU over 100 s alive on 2 cores.
    assert_eq!(lifetime_cpu_fraction(&t, 100.0, 2.0), Some(0.015));
    t.cpu_stat = Some(CPU_STAT.into());
    t.cpu_max = Some("150000 100000\n".into());
    assert_eq!(cpu_seconds(&t, 100.0), Some(1.5));
    assert_eq!(cores_allowed(&t, 8.0), 1.5);
    t.cpu_max = Some("max 100000\n".into());
    assert_eq!(cores_allowed(&t, 8.0), 8.0);
    assert_eq!(cpu_fraction(1.0, 0.0, 1.0), None);
    assert_eq!(cpu_fraction(1.0, 1.0, 0.0), None);
    assert_eq!(cpu_fraction(-1.0, 1.0, 1.0), Some(0.0));
}

#[test]
fn sampler_differences_cpu_time() {
    let mut s = Sampler::with_root(Path::new("/nonexistent"), 100.0, 4.0);
    let t0 = Instant::now();
    let mut t = texts();
    t.cpu_stat = Some("usage_usec 1000000\n".into());
    t.cpu_max = Some("100000 100000\n".into());
    // First sample: lifetime average from /proc/self/stat, on 1 core.
    let r = s.sample_texts(t0, &t);
    assert_eq!(r.cpu, Some(0.03));
    assert_eq!(r.memory, Some(10240.0 / 16_384_000.0));
    // One more CPU second over two wall seconds on one core.
    t.cpu_stat = Some("usage_usec 2000000\n".into());
    let r = s.sample_texts(t0 + Duration::from_secs(2), &t);
    assert_eq!(r.cpu, Some(0.5));
    // Too soon after: the last figure, not a noisy one.
    t.cpu_stat = Some("usage_usec 2100000\n".into());
    let r = s.sample_texts(t0 + Duration::from_millis(2100), &t);
    assert_eq!(r.cpu, Some(0.5));
    // Nothing readable at all.
    let mut s = Sampler::with_root(Path::new("/nonexistent"), 100.0, 4.0);
    assert_eq!(s.sample(t0), Resources::default());
}

#[test]
fn reader_finds_the_process_cgroup() {
    let root = std::env::temp_dir().join(format!("pm-gates-res-{}", std::process::id()));
    let cg = root.join("sys/fs/cgroup/kubepods/pod1");
    std::fs::create_dir_all(&cg).unwrap();
    std::fs::create_dir_all(root.join("proc/self")).unwrap();
    std::fs::write(root.join("proc/self/cgroup"), "0::/kubepods/pod1\n").unwrap();
    std::fs::write(root.join("proc/self/status"), STATUS).unwrap();
    std::fs::write(root.join("proc/self/stat"), STAT).unwrap();
    std::fs::write(root.join("proc/meminfo"), MEMINFO).unwrap();
    std::fs::write(root.join("proc/uptime"), "150.00 1.0\n").unwrap();
    std::fs::write(cg.join("memory.current"), "100\n").unwrap();
    std::fs::write(cg.join("memory.max"), "400\n").unwrap();
    std::fs::write(cg.join("cpu.stat"), CPU_STAT).unwrap();
    let mut s = Sampler::with_root(&root, 100.0, 2.0);
    let t = s.read_texts();
    assert_eq!(t.memory_current.as_deref(), Some("100\n"));
    assert_eq!(s.sample(Instant::now()).memory, Some(0.25));
    // A cgroup path that does not exist: the mount root is tried instead.
    std::fs::write(root.join("proc/self/cgroup"), "0::/gone\n").unwrap();
    std::fs::write(root.join("sys/fs/cgroup/memory.current"), "300\n").unwrap();
    std::fs::write(root.join("sys/fs/cgroup/memory.max"), "400\n").unwrap();
    assert_eq!(s.sample(Instant::now()).memory, Some(0.75));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn real_system_sample_is_sane() {
    // Whatever this machine has, a sample must not panic and memory, when
    // known, is a positive fraction.
    let mut s = Sampler::new();
    let r = s.sample(Instant::now());
    if let Some(m) = r.memory {
        assert!(m > 0.0 && m.is_finite(), "{m}");
    }
    if let Some(c) = r.cpu {
        assert!(c >= 0.0 && c.is_finite(), "{c}");
    }
}
