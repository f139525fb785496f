//! The device's tuning, as one value the daemon builds (from the TOML
//! `[tuning]` table and the environment, in `daemon::options`) and hands
//! down: nothing below the daemon reads the environment, so a bad value is
//! an error where it is read instead of being silently ignored deep inside.

/// Crypto workers at most (and the clamp [`DeviceOptions::workers`] gets).
pub const MAX_WORKERS: usize = 256;
/// I/O threads at most.
pub const MAX_IO_THREADS: usize = 8;
/// The UDP receive buffer's bounds, in bytes.
pub const MIN_UDP_RECV_BUFFER: usize = 4096;
pub const MAX_UDP_RECV_BUFFER: usize = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceOptions {
    /// Crypto workers (1..=[`MAX_WORKERS`]); default one per core.
    pub workers: usize,
    /// I/O threads where the TUN and the socket poll together
    /// (1..=[`MAX_IO_THREADS`]); default 1 on up to two cores, else 2.
    pub io_threads: usize,
    /// Packet-path latency sampling (off measures what it costs).
    pub packet_metrics: bool,
    /// Kernel offloads (TUN TSO/GRO, UDP GSO/GRO); off is the escape hatch.
    /// Used where the TUN and the bind are made.
    pub offload: bool,
    /// UDP receive buffer asked for, bytes (see
    /// [`crate::io::linux_udp::RECV_BUFFER_BYTES`] for why it is small).
    pub udp_recv_buffer: usize,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            workers: default_workers(),
            io_threads: default_io_threads(),
            packet_metrics: true,
            offload: true,
            udp_recv_buffer: crate::io::linux_udp::RECV_BUFFER_BYTES,
        }
    }
}

/// Crypto workers to start by default: one per core (the daemon's
/// `PHANTOMMESH_WORKERS` or `[tuning] workers` override it).
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKERS)
}

/// I/O threads to run by default: one on machines with up to two cores and
/// two on larger ones, where a second thread has a core to run on and
/// bidirectional loads need it (`PHANTOMMESH_IO_THREADS` or `[tuning]
/// io_threads` override it; [`super::io_loop`] says what was measured).
pub fn default_io_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores <= 2 {
        1
    } else {
        2
    }
}
