use super::*;

impl LinuxUdp {
    /// Sends at most MAX_BATCH datagrams to one destination: with `gso`, one
    /// message per run of equal-size datagrams (UDP_SEGMENT, each datagram
    /// its own iovec, no copying), else one message each. Retries briefly
    /// when the kernel has no room and drops (counted) what still does not
    /// fit. An error's index is that of the first datagram of the message
    /// it concerns.
    pub(super) fn send_to_one(
        &self,
        bufs: &[&[u8]],
        name: &mut RawAddr,
        namelen: libc::socklen_t,
        src: Option<&LocalAddr>,
        gso: bool,
    ) -> Result<(), (usize, io::Error)> {
        if bufs.len() <= SMALL_BATCH {
            self.send_to_one_n::<SMALL_BATCH>(bufs, name, namelen, src, gso)
        } else {
            self.send_to_one_n::<MAX_BATCH>(bufs, name, namelen, src, gso)
        }
    }

    /// [`Self::send_to_one`] with arrays of N entries.
    fn send_to_one_n<const N: usize>(
        &self,
        bufs: &[&[u8]],
        name: &mut RawAddr,
        namelen: libc::socklen_t,
        src: Option<&LocalAddr>,
        gso: bool,
    ) -> Result<(), (usize, io::Error)> {
        let n = bufs.len();
        assert!(n <= N);
        let mut groups = [(0usize, 0usize); N];
        let g = if gso {
            let mut lens = [0usize; N];
            for (l, b) in lens.iter_mut().zip(bufs) {
                *l = b.len();
            }
            gso_groups(&lens[..n], &mut groups)
        } else {
            for (i, grp) in groups.iter_mut().take(n).enumerate() {
                *grp = (i, i + 1);
            }
            n
        };
        let mut iovs = iovecs::<N>(bufs.iter().copied());
        // SAFETY (zeroed): mmsghdr is a C struct valid when zeroed.
        let mut hdrs: [libc::mmsghdr; N] = unsafe { zeroed() };
        // A lone datagram's message carries just the source, the same for
        // all of them: one control buffer they share (the kernel only reads
        // it). A run's carries its segment size too: a buffer each.
        let mut shared = CmsgBuf([0u8; CMSG_BUF]);
        let shared_len = match src {
            // SAFETY: a msghdr over `shared`, CMSG_BUF >= pktinfo::SPACE.
            Some(src) => unsafe {
                let mut h: libc::msghdr = zeroed();
                h.msg_control = shared.0.as_mut_ptr().cast();
                h.msg_controllen = CMSG_BUF;
                pktinfo::write(libc::CMSG_FIRSTHDR(&h), src)
            },
            None => 0,
        };
        let mut cmsgs = [const { MaybeUninit::<CmsgBuf>::uninit() }; N];
        let name_ptr: *mut RawAddr = name;
        for (k, &(start, end)) in groups[..g].iter().enumerate() {
            let h = &mut hdrs[k].msg_hdr;
            h.msg_name = name_ptr.cast();
            h.msg_namelen = namelen;
            // SAFETY: start < n <= N, inside `iovs`.
            h.msg_iov = unsafe { iovs.as_mut_ptr().add(start) };
            h.msg_iovlen = end - start;
            if end - start == 1 {
                if shared_len > 0 {
                    h.msg_control = shared.0.as_mut_ptr().cast();
                    h.msg_controllen = shared_len;
                }
                continue;
            }
            // Zeroed up to what is written: CMSG_NXTHDR reads the next
            // header's length.
            let buf = cmsgs[k].write(CmsgBuf([0; CMSG_BUF]));
            h.msg_control = buf.0.as_mut_ptr().cast();
            h.msg_controllen = CMSG_BUF;
            let mut used = 0;
            // SAFETY: a pktinfo (SPACE) and a u16 cmsg fit CMSG_BUF (checked
            // in mod.rs); each is written inside that buffer.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(h);
                if let Some(src) = src {
                    used += pktinfo::write(c, src);
                    c = c.cast::<u8>().add(used).cast();
                }
                (*c).cmsg_level = SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                std::ptr::write_unaligned(
                    libc::CMSG_DATA(c).cast::<u16>(),
                    bufs[start].len() as u16,
                );
                used += libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
            }
            h.msg_controllen = used;
        }
        self.sendmmsg_all(&mut hdrs[..g])
            .map_err(|(k, e)| (groups[k].0, e))
    }

    /// Sends every message of `hdrs`, retrying briefly when the kernel has
    /// no room and dropping (counted) what still does not fit. An error
    /// comes with the index of the message it concerns (those before it
    /// were sent).
    fn sendmmsg_all(&self, hdrs: &mut [libc::mmsghdr]) -> Result<(), (usize, io::Error)> {
        let n = hdrs.len();
        let mut done = 0;
        let mut retries = 0;
        while done < n {
            // SAFETY: hdrs[done..n] point at live iovecs, buffers and `name`.
            let r = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    hdrs.as_mut_ptr().add(done),
                    (n - done) as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                done += r as usize;
                continue;
            }
            let e = if r == 0 {
                io::Error::from_raw_os_error(libc::EAGAIN)
            } else {
                io::Error::last_os_error()
            };
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR)
                    if retries < SEND_RETRIES =>
                {
                    retries += 1;
                    // EAGAIN already waited SEND_TIMEOUT in the kernel; ENOBUFS
                    // (a full qdisc) returns at once, so give it a moment.
                    if e.raw_os_error() == Some(libc::ENOBUFS) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {
                    let dropped = (n - done) as u64;
                    self.send_drops.fetch_add(dropped, Ordering::Relaxed);
                    tracing::debug!("UDP send: dropped {dropped} datagrams: {e}");
                    return Ok(());
                }
                _ => return Err((done, e)),
            }
        }
        Ok(())
    }
    /// [`Udp::send_many_from`] for one chunk, with arrays of N entries. A
    /// message whose source the kernel refuses goes again without it, and
    /// `rejected` hears its index.
    pub(super) fn send_many_n<const N: usize>(
        &self,
        chunk: &[(&[u8], Endpoint)],
        rejected: &mut dyn FnMut(usize),
    ) -> io::Result<()> {
        let n = chunk.len();
        assert!(n <= N);
        let mut names = [RawAddr::zeroed(); N];
        let mut iovs = iovecs::<N>(chunk.iter().map(|(buf, _)| *buf));
        // SAFETY (zeroed): mmsghdr is a C struct valid when zeroed.
        let mut hdrs: [libc::mmsghdr; N] = unsafe { zeroed() };
        let mut cmsgs = [const { MaybeUninit::<CmsgBuf>::uninit() }; N];
        let mut lens = [0 as libc::socklen_t; N];
        for (i, (_, ep)) in chunk.iter().enumerate() {
            (names[i], lens[i]) = RawAddr::from_std(self.dst_for_socket(ep.dst)?);
        }
        let (iov_base, name_base) = (iovs.as_mut_ptr(), names.as_mut_ptr());
        for (i, h) in hdrs.iter_mut().take(n).enumerate() {
            // SAFETY: i < n <= N, inside both arrays.
            unsafe {
                h.msg_hdr.msg_name = name_base.add(i).cast();
                h.msg_hdr.msg_iov = iov_base.add(i);
            }
            h.msg_hdr.msg_namelen = lens[i];
            h.msg_hdr.msg_iovlen = 1;
            let ep = &chunk[i].1;
            if let Some(src) = ep.src.as_ref().filter(|s| pktinfo::fits(s, &ep.dst)) {
                let buf = cmsgs[i].write(CmsgBuf([0; CMSG_BUF]));
                h.msg_hdr.msg_control = buf.0.as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = CMSG_BUF;
                // SAFETY: CMSG_BUF >= pktinfo::SPACE, inside `buf`.
                h.msg_hdr.msg_controllen =
                    unsafe { pktinfo::write(libc::CMSG_FIRSTHDR(&h.msg_hdr), src) };
            }
        }
        let mut from = 0;
        while from < n {
            match self.sendmmsg_all(&mut hdrs[from..n]) {
                Ok(()) => return Ok(()),
                Err((k, e)) => {
                    let at = from + k;
                    let h = &mut hdrs[at].msg_hdr;
                    if !source_rejected(&e) || h.msg_controllen == 0 {
                        return Err(with_context(e, format!("UDP send to {n} destinations")));
                    }
                    h.msg_control = std::ptr::null_mut();
                    h.msg_controllen = 0;
                    rejected(at);
                    from = at;
                }
            }
        }
        Ok(())
    }
}

/// An iovec over each send buffer, the rest of the N zeroed. (The kernel
/// only reads send buffers; iovec just has no const variant.)
fn iovecs<'a, const N: usize>(bufs: impl Iterator<Item = &'a [u8]>) -> [libc::iovec; N] {
    // SAFETY: iovec is a C struct valid when zeroed.
    let mut iovs: [libc::iovec; N] = unsafe { zeroed() };
    for (iov, buf) in iovs.iter_mut().zip(bufs) {
        *iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
    }
    iovs
}
