//! UAPI operations applied to a device on the in-memory backends, through
//! the socket server's own connection handler: set and get in any order,
//! any content. Every operation must be answered with `errno=N`, and the
//! device must keep answering `get`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use phantommesh::device::Device;
use phantommesh::io::mem::{MemNetwork, MemTun};
use phantommesh::uapi::server::handle;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, OnceLock};

fn device() -> &'static Arc<Device> {
    static D: OnceLock<(MemNetwork, Arc<Device>)> = OnceLock::new();
    &D.get_or_init(|| {
        let net = MemNetwork::new();
        let (tun, _handle) = MemTun::new("fuzz0", 1420);
        std::mem::forget(_handle);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let dev = Device::with_workers(tun, Arc::new(net.bind(ip)), 1);
        (net, dev)
    })
    .1
}

/// Runs `ops` on one connection; returns the reply.
fn exchange(dev: &Device, ops: &[u8]) -> String {
    let (mut client, server) = UnixStream::pair().unwrap();
    let ops = ops.to_vec();
    // The client writes from a thread: the server answers as it reads.
    let writer = {
        let mut c = client.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = c.write_all(&ops);
            let _ = c.shutdown(std::net::Shutdown::Write);
        })
    };
    let _ = handle(dev, server);
    writer.join().unwrap();
    let mut out = String::new();
    let _ = client.read_to_string(&mut out);
    out
}

fuzz_target!(|data: &[u8]| {
    let dev = device();
    // Each run starts from no peers and no key (a bounded device).
    let reset = exchange(dev, b"set=1\nprivate_key=0000000000000000000000000000000000000000000000000000000000000000\nreplace_peers=true\n\n");
    assert_eq!(reset, "errno=0\n\n");
    let out = exchange(dev, data);
    // Every answer ends in an errno line and a blank line.
    if !out.is_empty() {
        assert!(out.ends_with("\n\n"), "{out:?}");
        let last = out.trim_end().lines().last().unwrap();
        assert!(last.starts_with("errno="), "{out:?}");
    }
    let get = exchange(dev, b"get=1\n\n");
    assert!(get.ends_with("errno=0\n\n"), "{get:?}");
});
