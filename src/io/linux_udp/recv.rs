use super::*;

impl LinuxUdp {
    /// recvmmsg with UDP_GRO: reads a few (possibly coalesced) messages
    /// into the first buffers, then splits them in place.
    ///
    /// Message `i` lies in `bufs[i]` and its segments go to `bufs[first[i]..]`,
    /// after those of the messages before it. Every message yields at least
    /// one entry, so `first[i] >= i`: splitting the last message first never
    /// overwrites a message not yet split, and a lone datagram is not copied
    /// at all (an idle tunnel's packets arrive to cold caches; touching one
    /// buffer instead of two is measurable there).
    fn recv_gro(
        &self,
        bufs: &mut [Vec<u8>],
        meta: &mut [RecvMeta],
        flags: libc::c_int,
    ) -> io::Result<usize> {
        let n = bufs.len().min(meta.len()).min(MAX_BATCH);
        // Each message may hold up to 64 datagrams: read no more messages
        // than the batch has room for when all are full (wireguard-go reads
        // 2 of 128 the same way).
        let read = (n / crate::io::udp_gso::MAX_GSO_SEGMENTS).clamp(1, GRO_READS);
        // Arrays for the messages read only: zeroing MAX_BATCH of each
        // would cost a lone datagram more than its syscall.
        let mut names = [RawAddr::zeroed(); GRO_READS];
        // SAFETY (zeroed): iovec and mmsghdr are C structs valid when zeroed.
        let mut iovs: [libc::iovec; GRO_READS] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; GRO_READS] = unsafe { zeroed() };
        let mut cmsgs = [CmsgBuf([0; CMSG_BUF]); GRO_READS];
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
            h.msg_control = cmsgs[i].0.as_mut_ptr().cast();
            h.msg_controllen = CMSG_BUF;
        }
        // SAFETY: hdrs[..read] point at live iovecs (over caller buffers),
        // names and control buffers.
        let r = unsafe { self.recvmmsg(&mut hdrs[..read], flags)? };
        let mut msgs = [(None, 0usize, 0usize, None); GRO_READS];
        let mut first = [0usize; GRO_READS + 1];
        for i in 0..r {
            let h = &hdrs[i].msg_hdr;
            let (len, seg) = (hdrs[i].msg_len as usize, gro_size(h));
            let src = names[i].to_std(h.msg_namelen);
            // SAFETY: the kernel filled the control buffer of this header.
            let local = unsafe { pktinfo::parse(h) };
            // An unparseable source or an empty datagram is reported as one
            // empty datagram (every caller drops those), as `recv` does.
            let count = match src {
                Some(_) => gro_segments(len, seg).count().max(1),
                None => 1,
            };
            msgs[i] = (src, len, seg, local);
            first[i + 1] = first[i] + count;
        }
        for i in (0..r).rev() {
            let (src, len, seg, local) = msgs[i];
            let Some(src) = src.filter(|_| len > 0) else {
                if first[i] < n {
                    meta[first[i]] = RecvMeta::default();
                }
                continue;
            };
            for (k, (off, l)) in gro_segments(len, seg).enumerate() {
                let dst = first[i] + k;
                // With the sizing above this never triggers; it guards a
                // small batch against segments it has no room for.
                if dst >= n {
                    continue;
                }
                // dst == i only for the first segment (offset 0): in place.
                if dst > i {
                    let (front, back) = bufs.split_at_mut(dst);
                    back[0][..l].copy_from_slice(&front[i][off..off + l]);
                }
                meta[dst] = RecvMeta {
                    len: l,
                    src,
                    local,
                    connected: false,
                };
            }
        }
        Ok(first[r].min(n))
    }
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
        if self.gro && bufs.len().min(meta.len()) > 0 {
            return self.recv_gro(bufs, meta, flags);
        }
        let n = bufs.len().min(meta.len()).min(MAX_BATCH);
        if n == 0 {
            return Ok(0);
        }
        let mut names = [RawAddr::zeroed(); MAX_BATCH];
        // SAFETY (zeroed): iovec and mmsghdr are C structs valid when zeroed.
        let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        // Filled by the kernel and read only within what it reports.
        let mut cmsgs = [const { MaybeUninit::<CmsgBuf>::uninit() }; MAX_BATCH];
        for (iov, buf) in iovs.iter_mut().zip(bufs.iter_mut()) {
            *iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
        }
        let (iov_base, name_base) = (iovs.as_mut_ptr(), names.as_mut_ptr());
        for (i, h) in hdrs.iter_mut().take(n).enumerate() {
            // SAFETY: i < n <= MAX_BATCH, inside both arrays.
            unsafe {
                h.msg_hdr.msg_name = name_base.add(i).cast();
                h.msg_hdr.msg_iov = iov_base.add(i);
            }
            h.msg_hdr.msg_namelen = size_of::<RawAddr>() as libc::socklen_t;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = cmsgs[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = CMSG_BUF;
        }
        // With MSG_WAITFORONE: blocks up to SO_RCVTIMEO for the first
        // datagram, then takes whatever else is already queued.
        // SAFETY: hdrs[..n] point at live iovecs (over caller buffers) and names.
        let got = unsafe { self.recvmmsg(&mut hdrs[..n], flags)? };
        for i in 0..got {
            let h = &hdrs[i].msg_hdr;
            // An unparseable source cannot be answered; an empty datagram is
            // dropped by every caller, so report it as one.
            meta[i] = match names[i].to_std(h.msg_namelen) {
                Some(src) => RecvMeta {
                    len: hdrs[i].msg_len as usize,
                    src,
                    // SAFETY: the kernel filled this header's control buffer.
                    local: unsafe { pktinfo::parse(h) },
                    connected: false,
                },
                None => RecvMeta::default(),
            };
        }
        Ok(got)
    }
}
