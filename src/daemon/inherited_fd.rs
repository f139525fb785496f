//! Checks on the descriptors wg-quick-style parents hand down (WG_TUN_FD,
//! WG_UAPI_FD) before they are adopted: a wrong descriptor must end in a
//! clear error, never in a hang (accept on a non-listening socket) or in
//! reads from something that is not a TUN.
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::RawFd;

fn fstat(fd: RawFd) -> Result<libc::stat, String> {
    // SAFETY: stat is plain data, filled by fstat on success.
    let mut st: libc::stat = unsafe { zeroed() };
    // SAFETY: fstat only writes to `st`; an invalid fd gives EBADF.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(format!(
            "descriptor {fd} is not open: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(st)
}

fn kind(st: &libc::stat) -> &'static str {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a pipe",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFLNK => "a symbolic link",
        _ => "of an unknown type",
    }
}

/// WG_TUN_FD: a character device that answers TUNGETIFF (an attached TUN).
pub fn validate_tun_fd(fd: RawFd) -> Result<(), String> {
    let st = fstat(fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR {
        return Err(format!(
            "descriptor {fd} is {}, not a TUN device",
            kind(&st)
        ));
    }
    // SAFETY: ifreq is plain data; TUNGETIFF only fills it.
    let mut req: libc::ifreq = unsafe { zeroed() };
    // SAFETY: a valid fd and a properly sized ifreq.
    if unsafe { libc::ioctl(fd, libc::TUNGETIFF as _, &mut req as *mut libc::ifreq) } != 0 {
        return Err(format!(
            "descriptor {fd} is a character device but not an attached TUN: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn sockopt(fd: RawFd, opt: libc::c_int) -> Result<libc::c_int, String> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for an int-sized option.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &mut v as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 {
        return Err(format!(
            "descriptor {fd}: getsockopt: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(v)
}

/// WG_UAPI_FD: a listening unix stream socket.
pub fn validate_uapi_fd(fd: RawFd) -> Result<(), String> {
    let st = fstat(fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(format!(
            "descriptor {fd} is {}, not a listening unix socket",
            kind(&st)
        ));
    }
    if sockopt(fd, libc::SO_DOMAIN)? != libc::AF_UNIX {
        return Err(format!("descriptor {fd} is not a unix socket"));
    }
    if sockopt(fd, libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Err(format!(
            "descriptor {fd} is a unix socket but not a stream socket"
        ));
    }
    if sockopt(fd, libc::SO_ACCEPTCONN)? == 0 {
        return Err(format!(
            "descriptor {fd} is a unix stream socket but not listening"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "inherited_fd_tests.rs"]
mod tests;
