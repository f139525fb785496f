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
/// `inline_batch` meaning "every batch": more packets than a reader ever
/// takes at once.
pub const MAX_INLINE_BATCH: usize = 4096;
/// `inline_batch` where crypto workers have cores of their own: a ping, a
/// TCP ACK or a few peers' single packets stay on the reader, bulk runs go
/// to the workers.
pub const SMALL_BATCH: usize = 4;
/// Environment override of [`DeviceOptions::inline_batch`].
pub const INLINE_BATCH_ENV: &str = "PHANTOMMESH_INLINE_BATCH";

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
    /// Largest run of one peer's packets the reading thread seals or opens
    /// itself; longer runs go to the crypto workers (0: every run does).
    /// Default [`default_inline_batch`].
    pub inline_batch: usize,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            workers: default_workers(),
            io_threads: default_io_threads(),
            packet_metrics: true,
            offload: true,
            udp_recv_buffer: crate::io::linux_udp::RECV_BUFFER_BYTES,
            inline_batch: default_inline_batch(),
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

/// How much crypto the reader does itself by default: every batch on up to
/// two cores, [`SMALL_BATCH`] on more.
///
/// Why: a worker earns its hand-off (a queue push, a wake-up, often on the
/// other CPU, and the batch's cache lines moving there) only when it has a
/// core nobody else needs. On two cores the other one is busy with the
/// kernel's half of the same flow (TCP, the TUN, softirqs) or with the
/// application. Measured on the 2-vCPU VM, one `tunnel-bench.sh` call
/// alternating the two: one stream 4167 and 4597 Mbit/s with every batch
/// inline against 4120 and 2861 with workers; four streams 4835 and 4638
/// against 3758 and 3554; both ways at once (`benches/scripts/bidir.sh`)
/// 4497 against 4104. Machines with more cores keep the workers; the
/// `[tuning] inline_batch` key chooses either way.
pub fn default_inline_batch() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores <= 2 {
        MAX_INLINE_BATCH
    } else {
        SMALL_BATCH
    }
}
