//! The Linux [`Bind`]: what the device calls to open its UDP endpoint.
//!
//! Each open is a listen socket ([`LinuxUdp`]) wrapped in [`PeerSockets`],
//! which adds a socket connected to each established peer so a handshake
//! flood on the listen socket cannot queue ahead of, or crowd out, their
//! data. The pinned endpoints live here, outside any one socket set, so a
//! re-bind (a new listen port) reconnects them.
use super::linux_udp::{Family, LinuxUdp, UdpOptions};
use super::peer_sockets::{PeerSockets, Pins};
use super::{Bind, Udp};
use std::io;
use std::sync::Arc;

/// Opens [`LinuxUdp`] sockets.
#[derive(Clone, Debug, Default)]
pub struct LinuxBind {
    family: Family,
    /// Established peers' endpoints, carried to each socket set opened.
    pins: Arc<Pins>,
    opts: UdpOptions,
}

impl LinuxBind {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_family(family: Family) -> Self {
        LinuxBind {
            family,
            ..Self::default()
        }
    }

    pub fn with_options(opts: UdpOptions) -> Self {
        LinuxBind {
            opts,
            ..Self::default()
        }
    }
}

impl Bind for LinuxBind {
    /// The listen socket plus a connected socket per pinned peer endpoint
    /// (see [`super::peer_sockets`]); the pins outlive a re-bind.
    fn open(&self, port: u16, fwmark: u32) -> io::Result<Arc<dyn Udp>> {
        let listen = LinuxUdp::bind_with(port, fwmark, self.family, self.opts)?;
        Ok(Arc::new(PeerSockets::new(
            listen,
            fwmark,
            self.pins.clone(),
            self.opts.recv_buffer,
        )?))
    }
}
