//! What the enforcer's two netfilter netlink clients share (conntrack deletion in
//! [`crate::ctnetlink`], the NFLOG reader in [`crate::denials::nflog`]): the attribute encoding,
//! reading an acknowledgement, and the socket itself.

use std::io;

const NLMSG_ERROR: u16 = 2;

/// A netlink attribute: header, payload, padding to 4 bytes.
pub fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut out = Vec::with_capacity(len.next_multiple_of(4));
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(len.next_multiple_of(4), 0);
    out
}

/// The error code of an acknowledgement (`NLMSG_ERROR`; 0 is success), if `reply` is one.
pub fn ack_error(reply: &[u8]) -> Option<i32> {
    let kind = u16::from_ne_bytes(reply.get(4..6)?.try_into().ok()?);
    if kind != NLMSG_ERROR {
        return None;
    }
    Some(i32::from_ne_bytes(reply.get(16..20)?.try_into().ok()?))
}

/// A `NETLINK_NETFILTER` socket of this network namespace, closed on drop.
pub struct Socket {
    fd: i32,
}

impl Socket {
    pub fn open() -> io::Result<Self> {
        // SAFETY: a plain socket call; the descriptor is owned by `Socket` and closed on drop.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Socket { fd })
    }

    /// A `SOL_SOCKET` option.
    pub fn set_option<T>(&self, name: i32, value: &T) -> io::Result<()> {
        // SAFETY: `value` points to a live T of the size passed.
        let r = unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                name,
                (value as *const T).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends `msg` to the kernel.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: sending a buffer we own; an unbound netlink socket sends to the kernel.
        let sent = unsafe { libc::send(self.fd, msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One datagram into `buf`: its length.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: receiving into a buffer we own, at most its length.
        let got = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(got as usize)
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor this value owns, once.
        unsafe {
            libc::close(self.fd);
        }
    }
}
