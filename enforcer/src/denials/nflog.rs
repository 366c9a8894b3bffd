//! The enforcer's own NFLOG group over netlink (`nfnetlink_log`, the kernel's
//! `include/uapi/linux/netfilter/nfnetlink_log.h`): the configuration messages that bind a
//! socket to a group and ask for the first bytes of each packet, and the parsing of the
//! `NFULNL_MSG_PACKET` messages the kernel sends back. No ulogd, no libnetfilter_log.

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::nfnetlink::{self, ack_error, attr};

const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;

const NFULA_PACKET_HDR: u16 = 1;
const NFULA_TIMESTAMP: u16 = 3;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
/// The attribute type without the nested and byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Bytes of each packet the kernel copies: the IP header (IPv6 with a few extension headers)
/// and the first bytes of TCP/UDP/SCTP, which is all a record needs.
pub const COPY_RANGE: u32 = 128;

/// One packet the kernel logged to the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// `AF_INET` or `AF_INET6`, from the message's header.
    pub family: u8,
    /// The rule's `--nflog-prefix`, without its terminating NUL.
    pub prefix: String,
    /// The start of the packet from its network header on (up to [`COPY_RANGE`] bytes).
    pub payload: Vec<u8>,
    /// When the kernel saw it, where it says (else when it was read).
    pub time: SystemTime,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NflogError {
    #[error("netlink message truncated")]
    Truncated,
    #[error("the kernel refused the NFLOG configuration: error {0}")]
    Refused(i32),
}

/// A config message for `group` (the resource id, network order) carrying `attrs`.
fn config_message(group: u16, attrs: &[u8], seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: AF_UNSPEC, version 0, the group as the resource id.
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
    msg.extend_from_slice(&group.to_be_bytes());
    msg.extend_from_slice(attrs);
    msg
}

/// Binds the socket to `group`.
pub fn bind_message(group: u16, seq: u32) -> Vec<u8> {
    config_message(group, &attr(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]), seq)
}

/// Asks for the first `range` bytes of each packet.
pub fn copy_mode_message(group: u16, range: u32, seq: u32) -> Vec<u8> {
    let mut mode = range.to_be_bytes().to_vec();
    mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
    config_message(group, &attr(NFULA_CFG_MODE, &mode), seq)
}

/// Every logged packet in one datagram from the socket (the kernel may batch several netlink
/// messages into one). Messages of other kinds are skipped; a malformed one ends the parse.
pub fn parse_datagram(buf: &[u8], received: SystemTime) -> Result<Vec<Logged>, NflogError> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= NLMSG_HDRLEN {
        let len =
            u32::from_ne_bytes(rest[0..4].try_into().map_err(|_| NflogError::Truncated)?) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(NflogError::Truncated);
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let msg = &rest[..len];
        if kind == NLMSG_DONE {
            break;
        }
        if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET {
            out.push(parse_packet(msg, received)?);
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    Ok(out)
}

/// One `NFULNL_MSG_PACKET` message, header included.
pub fn parse_packet(msg: &[u8], received: SystemTime) -> Result<Logged, NflogError> {
    let body = msg.get(NLMSG_HDRLEN..).ok_or(NflogError::Truncated)?;
    let family = *body.first().ok_or(NflogError::Truncated)?;
    let mut attrs = body.get(NFGENMSG_LEN..).ok_or(NflogError::Truncated)?;
    let mut logged = Logged {
        family,
        prefix: String::new(),
        payload: Vec::new(),
        time: received,
    };
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > attrs.len() {
            return Err(NflogError::Truncated);
        }
        let value = &attrs[4..len];
        match kind {
            NFULA_PREFIX => {
                let text = value.split(|b| *b == 0).next().unwrap_or_default();
                logged.prefix = String::from_utf8_lossy(text).into_owned();
            }
            NFULA_PAYLOAD => logged.payload = value.to_vec(),
            NFULA_TIMESTAMP if value.len() >= 16 => {
                let sec = u64::from_be_bytes(value[0..8].try_into().unwrap_or_default());
                let usec = u64::from_be_bytes(value[8..16].try_into().unwrap_or_default());
                logged.time = UNIX_EPOCH + Duration::from_secs(sec) + Duration::from_micros(usec);
            }
            NFULA_PACKET_HDR => {}
            _ => {}
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    Ok(logged)
}

/// A netlink socket bound to one NFLOG group of this network namespace.
pub struct Socket {
    inner: nfnetlink::Socket,
}

impl Socket {
    /// Opens the socket, binds it to `group` with packet copies of [`COPY_RANGE`] bytes, and
    /// gives it a receive buffer of `buffer` bytes and a receive timeout of `timeout` (so the
    /// reader can notice it should stop).
    pub fn open(group: u16, buffer: usize, timeout: Duration) -> io::Result<Self> {
        let socket = Socket {
            inner: nfnetlink::Socket::open()?,
        };
        let size = i32::try_from(buffer).unwrap_or(i32::MAX);
        socket.inner.set_option(libc::SO_RCVBUF, &size)?;
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        socket.inner.set_option(libc::SO_RCVTIMEO, &tv)?;
        socket.request(&bind_message(group, 1))?;
        socket.request(&copy_mode_message(group, COPY_RANGE, 2))?;
        Ok(socket)
    }

    /// Sends a config message and waits for its acknowledgement.
    fn request(&self, msg: &[u8]) -> io::Result<()> {
        self.inner.send(msg)?;
        let mut buf = [0u8; 1024];
        loop {
            let got = self.recv(&mut buf)?;
            match ack_error(&buf[..got]) {
                Some(0) => return Ok(()),
                Some(e) => {
                    return Err(io::Error::other(NflogError::Refused(e)));
                }
                // A packet logged before the acknowledgement: not ours to keep yet.
                None => continue,
            }
        }
    }

    /// One datagram into `buf`: its length. `ErrorKind::WouldBlock`/`TimedOut` on the timeout;
    /// `ENOBUFS` when the kernel had to throw messages away (the reader fell behind).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.recv(buf)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A packet message as `nfnetlink_log` builds it (`__build_packet_message`): nlmsghdr,
    /// nfgenmsg (family, version, group), then PACKET_HDR, the prefix (with its NUL), a
    /// timestamp and the payload, each padded to 4 bytes.
    pub(crate) fn kernel_message(family: u8, group: u16, prefix: &str, payload: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend(attr(NFULA_PACKET_HDR, &[0x08, 0x00, 2, 0]));
        let mut p = prefix.as_bytes().to_vec();
        p.push(0);
        attrs.extend(attr(NFULA_PREFIX, &p));
        let mut ts = 1_700_000_000u64.to_be_bytes().to_vec();
        ts.extend_from_slice(&250_000u64.to_be_bytes());
        attrs.extend(attr(NFULA_TIMESTAMP, &ts));
        attrs.extend(attr(NFULA_PAYLOAD, payload));
        let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
        let mut msg = Vec::new();
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&(NFNL_SUBSYS_ULOG << 8).to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[family, 0]);
        msg.extend_from_slice(&group.to_be_bytes());
        msg.extend_from_slice(&attrs);
        msg
    }

    #[test]
    fn a_packet_message_gives_prefix_payload_and_time() {
        let payload = [0x45u8, 0, 0, 60, 1, 2, 3];
        let msg = kernel_message(
            libc::AF_INET as u8,
            100,
            "palisade-deny y/b ingress",
            &payload,
        );
        let got = parse_datagram(&msg, UNIX_EPOCH).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].family, libc::AF_INET as u8);
        assert_eq!(got[0].prefix, "palisade-deny y/b ingress");
        assert_eq!(got[0].payload, payload);
        assert_eq!(
            got[0].time,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(250)
        );
    }

    #[test]
    fn a_datagram_of_two_messages_gives_both_and_skips_done() {
        let mut buf = kernel_message(libc::AF_INET as u8, 100, "a", &[1, 2, 3, 4, 5]);
        buf.extend(kernel_message(libc::AF_INET6 as u8, 100, "b", &[6]));
        let mut done = vec![0u8; 20];
        done[0..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        buf.extend(done);
        let got = parse_datagram(&buf, UNIX_EPOCH).unwrap();
        let prefixes: Vec<&str> = got.iter().map(|l| l.prefix.as_str()).collect();
        assert_eq!(prefixes, ["a", "b"]);
        assert_eq!(got[1].family, libc::AF_INET6 as u8);
        // Without a timestamp attribute, the time the datagram was read.
        assert_eq!(got[1].payload, [6]);
    }

    #[test]
    fn truncated_messages_are_errors_not_panics() {
        let msg = kernel_message(libc::AF_INET as u8, 100, "palisade-deny", &[1; 40]);
        for cut in [17, 21, 30, msg.len() - 1] {
            assert_eq!(
                parse_datagram(&msg[..cut], UNIX_EPOCH),
                Err(NflogError::Truncated),
                "cut at {cut}"
            );
        }
        // Fewer bytes than a header: nothing, no error.
        assert_eq!(parse_datagram(&msg[..10], UNIX_EPOCH), Ok(vec![]));
    }

    #[test]
    fn config_messages_name_the_group_and_the_copy_range() {
        let bind = bind_message(100, 1);
        assert_eq!(
            u32::from_ne_bytes(bind[0..4].try_into().unwrap()) as usize,
            bind.len()
        );
        assert_eq!(u16::from_ne_bytes([bind[4], bind[5]]), 0x401);
        assert_eq!(&bind[18..20], &100u16.to_be_bytes());
        assert_eq!(bind[24], NFULNL_CFG_CMD_BIND);
        let mode = copy_mode_message(7, COPY_RANGE, 2);
        assert_eq!(&mode[18..20], &7u16.to_be_bytes());
        assert_eq!(&mode[24..28], &COPY_RANGE.to_be_bytes());
        assert_eq!(mode[28], NFULNL_COPY_PACKET);
    }
}
