//! Deleting conntrack entries by their exact original tuple over ctnetlink
//! (`IPCTNL_MSG_CT_DELETE`): the kernel finds each entry by hash, so a deletion costs the same
//! however large the table is. (`conntrack -D`, also in `-R` batches, dumps and filters the whole
//! table for every entry it deletes: measured, 0.2 s per deletion at 20,000 entries.)

use std::io;
use std::net::IpAddr;

use palisade_policy::Protocol;

use crate::conntrack::Entry;
use crate::nfnetlink::{Socket, ack_error, attr};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLA_F_NESTED: u16 = 0x8000;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The message that deletes `entry` (by its original tuple), with sequence number `seq`.
pub fn delete_message(entry: &Entry, seq: u32) -> Vec<u8> {
    let (family, src_kind, dst_kind) = match entry.src {
        IpAddr::V4(_) => (libc::AF_INET as u8, CTA_IP_V4_SRC, CTA_IP_V4_DST),
        IpAddr::V6(_) => (libc::AF_INET6 as u8, CTA_IP_V6_SRC, CTA_IP_V6_DST),
    };
    let number: u8 = match entry.protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    };
    let ip = [
        attr(src_kind, &ip_bytes(entry.src)),
        attr(dst_kind, &ip_bytes(entry.dst)),
    ]
    .concat();
    let proto = [
        attr(CTA_PROTO_NUM, &[number]),
        attr(CTA_PROTO_SRC_PORT, &entry.sport.to_be_bytes()),
        attr(CTA_PROTO_DST_PORT, &entry.dport.to_be_bytes()),
    ]
    .concat();
    let tuple = [
        attr(CTA_TUPLE_IP | NLA_F_NESTED, &ip),
        attr(CTA_TUPLE_PROTO | NLA_F_NESTED, &proto),
    ]
    .concat();
    let body = attr(CTA_TUPLE_ORIG | NLA_F_NESTED, &tuple);
    // nlmsghdr (16 bytes), nfgenmsg (family, version 0, resource id 0), the attributes.
    let len = 16 + 4 + body.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE).to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[family, 0, 0, 0]);
    msg.extend_from_slice(&body);
    msg
}

/// Deletes each entry from this network namespace's conntrack table; an entry already gone
/// (ENOENT) counts as deleted. How many were deleted.
pub fn delete(entries: &[Entry]) -> io::Result<usize> {
    let socket = Socket::open()?;
    let mut deleted = 0;
    let mut buf = vec![0u8; 8192];
    for (i, entry) in entries.iter().enumerate() {
        let msg = delete_message(entry, i as u32 + 1);
        socket.send(&msg)?;
        let got = socket.recv(&mut buf)?;
        match ack_error(&buf[..got]) {
            Some(0) => deleted += 1,
            Some(e) if -e == libc::ENOENT => {}
            Some(e) => return Err(io::Error::from_raw_os_error(-e)),
            None => {}
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_message_names_the_original_tuple() {
        let entry = Entry {
            protocol: Protocol::Tcp,
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            sport: 40000,
            dport: 80,
            reply_src: "10.0.0.2".parse().unwrap(),
            reply_sport: 80,
        };
        let m = delete_message(&entry, 7);
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 0x102);
        assert_eq!(m[16], libc::AF_INET as u8);
        // The addresses and the ports (network order) are in it.
        let has = |needle: &[u8]| m.windows(needle.len()).any(|w| w == needle);
        assert!(has(&[10, 0, 0, 1]) && has(&[10, 0, 0, 2]));
        assert!(has(&40000u16.to_be_bytes()) && has(&80u16.to_be_bytes()));
        assert_eq!(m.len() % 4, 0);
    }
}
