//! The target side of a run: registering and removing the simulated peers
//! through the target's UAPI socket (any implementation: phantommesh,
//! wireguard-go, boringtun), or writing them as a `wg addconf` file for a
//! remote target; and finding the target's process to sample.
//!
//! Message building and reply parsing are pure; [`Uapi`] does the socket
//! I/O, one operation per connection as `wg` does.
use crate::cli::keys::encode_base64_key;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A simulated peer as the target must know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    pub public_key: [u8; 32],
    pub addr: IpAddr,
}

fn host_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// `set=1` adding every peer with its one allowed IP (replacing whatever
/// allowed IPs a peer of that key had). Ends with the blank line.
pub fn add_peers_message(peers: &[PeerEntry]) -> String {
    let mut s = String::with_capacity(32 + peers.len() * 130);
    s.push_str("set=1\n");
    for p in peers {
        let _ = writeln!(s, "public_key={}", hex::encode(p.public_key));
        s.push_str("replace_allowed_ips=true\n");
        let _ = writeln!(s, "allowed_ip={}/{}", p.addr, host_prefix(p.addr));
    }
    s.push('\n');
    s
}

/// `set=1` removing every peer.
pub fn remove_peers_message(peers: &[PeerEntry]) -> String {
    let mut s = String::with_capacity(16 + peers.len() * 90);
    s.push_str("set=1\n");
    for p in peers {
        let _ = writeln!(s, "public_key={}\nremove=true", hex::encode(p.public_key));
    }
    s.push('\n');
    s
}

/// The peers as a `wg addconf` / `wg setconf` fragment (no `[Interface]`).
pub fn peer_file(peers: &[PeerEntry]) -> String {
    let mut s = String::with_capacity(peers.len() * 100 + 200);
    s.push_str("# PhantomMesh load test peers: apply with `wg addconf IFNAME FILE`.\n");
    s.push_str("# Remove them afterwards with the matching .remove.sh script.\n");
    for p in peers {
        let _ = write!(
            s,
            "\n[Peer]\nPublicKey = {}\nAllowedIPs = {}/{}\n",
            encode_base64_key(&p.public_key),
            p.addr,
            host_prefix(p.addr)
        );
    }
    s
}

/// A shell script removing the peers again: `sh FILE IFNAME`.
pub fn removal_script(peers: &[PeerEntry]) -> String {
    let mut s = String::from("#!/bin/sh\n# Removes the PhantomMesh load test peers: sh THIS_FILE IFNAME\nset -e\nIF=\"${1:?usage: $0 IFNAME}\"\n");
    for chunk in peers.chunks(100) {
        s.push_str("wg set \"$IF\"");
        for p in chunk {
            let _ = write!(s, " peer {} remove", encode_base64_key(&p.public_key));
        }
        s.push('\n');
    }
    s
}

/// The errno of a UAPI reply (0 on success), from its `errno=N` line.
pub fn parse_errno(reply: &str) -> Option<i64> {
    reply
        .lines()
        .find_map(|l| l.strip_prefix("errno="))
        .and_then(|v| v.trim().parse().ok())
}

/// What a `get=1` tells a load test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetInfo {
    pub public_key: Option<[u8; 32]>,
    pub listen_port: u16,
    pub peers: usize,
}

/// Parses a `get=1` reply; the private key is turned into the public key
/// at once and not kept.
pub fn parse_get(reply: &str) -> TargetInfo {
    let mut info = TargetInfo::default();
    for line in reply.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "private_key" => {
                let mut key = [0u8; 32];
                if hex::decode_to_slice(v, &mut key).is_ok() {
                    info.public_key = Some(crate::cli::keys::public_key(&key));
                }
                zeroize::Zeroize::zeroize(&mut key);
            }
            "listen_port" => info.listen_port = v.parse().unwrap_or(0),
            "public_key" => info.peers += 1,
            _ => {}
        }
    }
    info
}

/// Public keys of the peers a `get=1` reply lists.
pub fn listed_keys(reply: &str) -> Vec<[u8; 32]> {
    reply
        .lines()
        .filter_map(|l| l.strip_prefix("public_key="))
        .filter_map(|v| {
            let mut k = [0u8; 32];
            hex::decode_to_slice(v, &mut k).ok().map(|_| k)
        })
        .collect()
}

/// A target's UAPI socket.
pub struct Uapi {
    pub path: PathBuf,
    pub timeout: Duration,
}

impl Uapi {
    pub fn new(path: &Path) -> Uapi {
        Uapi {
            path: path.to_path_buf(),
            timeout: Duration::from_secs(30),
        }
    }

    fn connect(&self) -> io::Result<UnixStream> {
        let s = UnixStream::connect(&self.path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        Ok(s)
    }

    /// Sends one operation and returns the reply up to its blank line.
    pub fn exchange(&self, request: &str) -> io::Result<String> {
        let mut s = self.connect()?;
        s.write_all(request.as_bytes())?;
        let mut r = BufReader::new(s);
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "UAPI reply ended early",
                ));
            }
            if line == "\n" {
                return Ok(reply);
            }
            reply.push_str(&line);
        }
    }

    pub fn get(&self) -> io::Result<String> {
        self.exchange("get=1\n\n")
    }

    /// Runs a set operation; an errno other than 0 is an error.
    pub fn set(&self, request: &str) -> io::Result<()> {
        let reply = self.exchange(request)?;
        match parse_errno(&reply) {
            Some(0) => Ok(()),
            Some(e) => Err(io::Error::other(format!("UAPI set failed: errno={e}"))),
            None => Err(io::Error::other("UAPI reply without errno")),
        }
    }

    /// The process listening on the socket (SO_PEERCRED), to sample its
    /// memory and descriptors.
    pub fn listener_pid(&self) -> io::Result<u32> {
        let s = self.connect()?;
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: a connected socket and a ucred-sized buffer.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if cred.pid <= 0 {
            return Err(io::Error::other(
                "the UAPI socket's owner is in another PID namespace",
            ));
        }
        Ok(cred.pid as u32)
    }
}

#[cfg(test)]
#[path = "target_tests.rs"]
mod tests;
