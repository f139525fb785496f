//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`,
//! never on in a product build).
//!
//! Almost every parser the targets exercise is already public; this module
//! reaches the few that are private to their module, without widening their
//! visibility beyond the crate. Each function only forwards: no behaviour
//! here that the product does not have.
use crate::device::handshake::{process_alone, Queued};
use crate::device::receive::Receiver;
use crate::device::Device;
use crate::io::Udp;
use std::net::{IpAddr, SocketAddr};

/// Handles every message waiting in the device's handshake queue on this
/// thread, as the handshake worker would (MAC checks, rate limiting,
/// cookie replies, handshakes); returns how many were handled. The worker
/// thread may take some of them first: they are handled all the same.
pub fn drain_handshake_queue(dev: &Device) -> usize {
    let mut n = 0;
    while let Some(q) = dev.fuzz_next_handshake() {
        process_alone(dev.fuzz_shared(), &q);
        n += 1;
    }
    n
}

/// Handles one handshake message as the handshake worker would, on this
/// thread, without going through the queue.
pub fn handle_handshake(dev: &Device, msg: &[u8], src: SocketAddr) {
    process_alone(
        dev.fuzz_shared(),
        &Queued {
            msg: msg.to_vec(),
            src,
            local: None,
        },
    );
}

/// One pass of the UDP receiver over `udp`, as the I/O loop runs it.
pub fn receive_pass(dev: &Device, rx: &mut Receiver, udp: &dyn Udp) -> std::io::Result<usize> {
    rx.pass(dev.fuzz_shared(), udp)
}

/// The admin plane's `%XX` decoding of query values.
pub fn percent_decode(s: &str) -> String {
    crate::admin::routes::percent_decode(s)
}

/// `/tunnel-test`'s query: (peer key, probe count) or the 400 message.
pub fn parse_test_query(q: Option<&str>) -> Result<(Option<[u8; 32]>, usize), String> {
    crate::admin::routes::parse_test_query(q).map(|t| (t.peer, t.probes))
}

/// The config files' CIDR syntax (`addr/prefix` or a bare address).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    crate::config::parse_cidr(s)
}

/// The config files' endpoint shape check (`host:port`, `[v6]:port`).
pub fn validate_endpoint(s: &str) -> Result<(), String> {
    crate::config::validate_endpoint(s)
}

/// The config files' base64 key syntax.
pub fn parse_key(s: &str) -> Result<[u8; 32], String> {
    crate::config::parse_key(s, "key")
}

/// The config files' interface-name check.
pub fn validate_interface_name(s: &str) -> Result<(), String> {
    crate::config::validate_interface_name(s)
}

/// The offloading TUN's fix-up of a zero UDP checksum on a packet read with
/// virtio-net header `hdr` (see `io::offload_tun`).
pub fn finish_zero_udp_checksum(hdr: &[u8], pkt: &mut [u8]) {
    crate::io::offload_tun::finish_zero_udp_checksum(hdr, pkt)
}
