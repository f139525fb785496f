use super::*;

impl LinuxUdp {
    /// `recv` with recvmmsg `flags` (blocking or not).
    pub(super) fn recv_with(
        &self,
        bufs: &mut [Vec<u8>],
        meta: &mut [RecvMeta],
        flags: libc::c_int,
    ) -> io::Result<usize> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        let n = bufs.len().min(meta.len()).min(MAX_BATCH);
        if n == 0 {
            return Ok(0);
        }
        if self.gro {
            // Each message may hold up to 64 datagrams: read no more
            // messages than the batch has room for when all are full
            // (wireguard-go reads 2 of 128 the same way). Arrays for those
            // only: zeroing MAX_BATCH of each would cost a lone datagram
            // more than its system call.
            let read = (n / crate::io::udp_gso::MAX_GSO_SEGMENTS).clamp(1, GRO_READS);
            self.recv_msgs::<GRO_READS>(&mut bufs[..n], &mut meta[..n], flags, read)
        } else {
            self.recv_msgs::<MAX_BATCH>(&mut bufs[..n], &mut meta[..n], flags, n)
        }
    }

    /// recvmmsg of up to `read` messages (N >= read) into the first
    /// buffers, then each (possibly coalesced, with UDP_GRO) message split
    /// in place.
    ///
    /// Message `i` lies in `bufs[i]` and its segments go to the slots after
    /// those of the messages before it. Every message yields at least one
    /// entry, so its first slot is at `i` or later: splitting the last
    /// message first never overwrites a message not yet split, and a lone
    /// datagram is not copied at all (an idle tunnel's packets arrive to
    /// cold caches; touching one buffer instead of two is measurable
    /// there). Without GRO every message is one datagram in its own slot.
    fn recv_msgs<const N: usize>(
        &self,
        bufs: &mut [Vec<u8>],
        meta: &mut [RecvMeta],
        flags: libc::c_int,
        read: usize,
    ) -> io::Result<usize> {
        let n = bufs.len();
        let read = read.min(N).min(n);
        let mut names = [RawAddr::zeroed(); N];
        // SAFETY (zeroed): iovec and mmsghdr are C structs valid when zeroed.
        let mut iovs: [libc::iovec; N] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; N] = unsafe { zeroed() };
        // Filled by the kernel and read only within what it reports.
        let mut cmsgs = [const { MaybeUninit::<CmsgBuf>::uninit() }; N];
        for i in 0..read {
            iovs[i] = libc::iovec {
                iov_base: bufs[i].as_mut_ptr().cast(),
                iov_len: bufs[i].len(),
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&mut names[i] as *mut RawAddr).cast();
            h.msg_namelen = size_of::<RawAddr>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = cmsgs[i].as_mut_ptr().cast();
            h.msg_controllen = CMSG_BUF;
        }
        // With MSG_WAITFORONE: blocks up to SO_RCVTIMEO for the first
        // datagram, then takes whatever else is already queued.
        // SAFETY: hdrs[..read] point at live iovecs (over caller buffers),
        // names and control buffers.
        let r = unsafe { self.recvmmsg(&mut hdrs[..read], flags)? };
        // First pass: each message's metadata into its own slot (`meta[i]`;
        // an unparseable source or an empty datagram as one empty datagram,
        // which every caller drops) and its segment size aside.
        let mut segs = [0u32; N];
        let mut total = 0;
        for i in 0..r {
            let h = &hdrs[i].msg_hdr;
            let len = hdrs[i].msg_len as usize;
            meta[i] = match names[i].to_std(h.msg_namelen).filter(|_| len > 0) {
                Some(src) => RecvMeta {
                    len,
                    src,
                    // SAFETY: the kernel filled this header's control buffer.
                    local: unsafe { pktinfo::parse(h) },
                    connected: false,
                },
                None => RecvMeta::default(),
            };
            segs[i] = if self.gro { gro_size(h) as u32 } else { 0 };
            total += segments(&meta[i], segs[i]);
        }
        if total == r {
            // Nothing coalesced (always so without GRO): every message is
            // one datagram, already in its own slot.
            return Ok(r);
        }
        // Second pass, last message first: its segments into the slots
        // from `end - count` on (the message's own slot is read before its
        // first segment overwrites it).
        let mut end = total;
        for i in (0..r).rev() {
            let m = meta[i];
            let first = end - segments(&m, segs[i]);
            end = first;
            if m.len == 0 {
                if first < n {
                    meta[first] = RecvMeta::default();
                }
                continue;
            }
            for (k, (off, l)) in gro_segments(m.len, segs[i] as usize).enumerate() {
                let dst = first + k;
                // With the sizing in `recv_with` this never triggers; it
                // guards a small batch against segments it has no room for.
                if dst >= n {
                    continue;
                }
                // dst == i only for the first segment (offset 0): in place.
                if dst > i {
                    let (front, back) = bufs.split_at_mut(dst);
                    back[0][..l].copy_from_slice(&front[i][off..off + l]);
                }
                meta[dst] = RecvMeta { len: l, ..m };
            }
        }
        Ok(total.min(n))
    }
}

/// Slots a received message takes: its GRO segments, at least one.
fn segments(m: &RecvMeta, seg: u32) -> usize {
    gro_segments(m.len, seg as usize).count().max(1)
}

impl LinuxUdp {
    /// recvmmsg over `hdrs`: with MSG_WAITFORONE it blocks up to SO_RCVTIMEO
    /// for the first datagram, then takes what is already queued; with
    /// MSG_DONTWAIT it never blocks. A timeout or signal is Ok(0); a closed
    /// socket an error.
    ///
    /// # Safety
    /// Every header must point at live buffers for the call's duration.
    unsafe fn recvmmsg(&self, hdrs: &mut [libc::mmsghdr], flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: the caller vouches for the headers.
        let r = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                hdrs.len() as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        // close() wakes a blocked receiver with a shutdown, which may look
        // like an empty datagram: the flag decides.
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(r as usize)
    }
}

/// The GRO segment size a received message carries, 0 if none.
pub(super) fn gro_size(h: &libc::msghdr) -> usize {
    // SAFETY: walks the control buffer the kernel filled, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == SOL_UDP && (*c).cmsg_type == UDP_GRO {
                return std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>()).max(0)
                    as usize;
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    0
}
