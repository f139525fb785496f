//! Gates for tests that need root and network namespaces.

/// Whether a privileged test should run. It skips (printing so) only when
/// PHANTOMMESH_SKIP_PRIVILEGED=1; otherwise a missing root is a failure.
pub(crate) fn privileged(test: &str) -> bool {
    if std::env::var("PHANTOMMESH_SKIP_PRIVILEGED").as_deref() == Ok("1") {
        eprintln!("skipping {test}: PHANTOMMESH_SKIP_PRIVILEGED=1");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("{test} needs root (CAP_NET_ADMIN, network namespaces); run as root or set PHANTOMMESH_SKIP_PRIVILEGED=1 to skip it");
    }
    true
}

/// Waits until traffic to `ip`, just added to an interface of this
/// thread's namespace, is delivered locally. An IPv4 address's local
/// route exists once the kernel acknowledges the address; an IPv6
/// address's is installed later, by its DAD work on a shared kernel
/// workqueue (even with IFA_F_NODAD), which a loaded machine or other
/// tests' namespace setup and teardown can delay for many milliseconds.
/// Until then, datagrams to the address meet the prefix route, which on
/// `lo` is a reject route, and are silently dropped.
pub(crate) fn wait_until_local(ip: std::net::IpAddr) {
    use std::time::{Duration, Instant};
    let std::net::IpAddr::V6(v6) = ip else {
        return;
    };
    // /proc/net/ipv6_route: destination, prefix length, ..., flags, device.
    let dst = format!("{:032x}", u128::from(v6));
    let is_local = |line: &str| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() >= 10
            && f[0] == dst
            && f[1] == "80"
            && u32::from_str_radix(f[8], 16).is_ok_and(|flags| flags & RTF_LOCAL != 0)
    };
    const RTF_LOCAL: u32 = 0x8000_0000;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let routes = std::fs::read_to_string("/proc/thread-self/net/ipv6_route")
            .expect("read /proc/thread-self/net/ipv6_route");
        if routes.lines().any(is_local) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ip}: no local route after 10 s:\n{routes}"
        );
        // Polls the condition; the kernel work runs meanwhile.
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs `f` on a new thread inside a fresh network namespace with `lo` up.
/// The namespace, and every interface in it, goes away with the thread,
/// whether `f` returns or panics: nothing is left behind on the host.
pub(crate) fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let worker = std::thread::spawn(move || {
        // SAFETY: unshare affects only this thread (CLONE_NEWNET).
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            panic!(
                "cannot create a network namespace (unshare CLONE_NEWNET): {}; \
                 set PHANTOMMESH_SKIP_PRIVILEGED=1 to skip privileged tests",
                std::io::Error::last_os_error()
            );
        }
        super::set_up("lo").expect("bring up lo in the test namespace");
        f()
    });
    worker
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}
