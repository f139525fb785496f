//! Route add/delete over rtnetlink for [`super::RouteSync`].
//!
//! The messages are netlink-packet-route's types on a blocking netlink-sys
//! socket: one request, one acknowledgement, nothing async. Route changes
//! are rare (start, reload, shutdown), so a plain socket on the calling
//! thread is enough, and it is opened in the calling thread's network
//! namespace, which the privileged test relies on.
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use super::Prefix;

/// A NETLINK_ROUTE socket connected to the kernel.
pub(super) struct RouteSocket {
    sock: Socket,
    seq: u32,
}

impl RouteSocket {
    pub(super) fn open() -> io::Result<RouteSocket> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // A kernel that never answers must not hang the daemon's main loop.
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: `tv` outlives the call and its size is passed alongside.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RouteSocket { sock, seq: 0 })
    }

    /// `ip route add PREFIX dev IFINDEX table TABLE proto static scope link`.
    /// NLM_F_EXCL makes an existing route an EEXIST error instead of a
    /// silent replace (IPv4) or an added multipath leg (IPv6).
    pub(super) fn add(&mut self, prefix: Prefix, table: u32, ifindex: u32) -> io::Result<()> {
        let mut msg = route_message(prefix, table, ifindex);
        msg.header.protocol = RouteProtocol::Static;
        msg.header.scope = RouteScope::Link;
        msg.header.kind = RouteType::Unicast;
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Deletes the route to PREFIX through IFINDEX in TABLE, whatever its
    /// protocol and scope (a route adopted after EEXIST may have been made
    /// by someone else's `ip route add`). The output interface in the
    /// request makes the kernel match only a route through that interface.
    pub(super) fn delete(&mut self, prefix: Prefix, table: u32, ifindex: u32) -> io::Result<()> {
        let mut msg = route_message(prefix, table, ifindex);
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.scope = RouteScope::NoWhere;
        msg.header.kind = RouteType::Unspec;
        self.request(
            RouteNetlinkMessage::DelRoute(msg),
            NLM_F_REQUEST | NLM_F_ACK,
        )
    }

    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let mut answer = Vec::with_capacity(8192);
        loop {
            answer.clear();
            if let Err(e) = self.sock.recv(&mut answer, 0) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io::Error::new(
                    e.kind(),
                    format!("no answer from rtnetlink: {e}"),
                ));
            }
            if let Some(result) = find_ack(&answer, self.seq) {
                return result;
            }
        }
    }
}

/// The fields both requests share. The table id goes in RTA_TABLE always
/// (ids above 255 only fit there) and also in the header byte when it fits,
/// as iproute2 sends it.
fn route_message(prefix: Prefix, table: u32, ifindex: u32) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = match prefix.0 {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.destination_prefix_length = prefix.1;
    msg.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    msg.attributes = vec![
        RouteAttribute::Destination(prefix.0.into()),
        RouteAttribute::Table(table),
        RouteAttribute::Oif(ifindex),
    ];
    msg
}

/// Walks the netlink messages of one datagram for the NLMSG_ERROR that
/// answers `seq` (code 0 is the acknowledgement). `None`: not in here.
fn find_ack(mut data: &[u8], seq: u32) -> Option<io::Result<()>> {
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed rtnetlink answer",
            )));
        }
        if let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[..len]) {
            if let (NetlinkPayload::Error(e), true) =
                (&msg.payload, msg.header.sequence_number == seq)
            {
                return Some(match e.code {
                    None => Ok(()),
                    Some(_) => Err(e.to_io()),
                });
            }
        }
        data = &data[len.next_multiple_of(4).min(data.len())..];
    }
    None
}
