//! The addresses, protocol and ports of a logged packet, from its first bytes (IPv4 or IPv6
//! header, then TCP, UDP or SCTP, whose first four bytes are the ports in all three).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use palisade_policy::Protocol;

/// What a record needs of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    pub src_port: u16,
    pub dst_port: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    #[error("packet too short")]
    Short,
    #[error("not an IP packet (version {0})")]
    NotIp(u8),
    #[error("protocol {0} is not one NetworkPolicy names")]
    Protocol(u8),
    #[error("a fragment after the first: no ports")]
    Fragment,
}

fn protocol(number: u8) -> Result<Protocol, PacketError> {
    match number {
        6 => Ok(Protocol::Tcp),
        17 => Ok(Protocol::Udp),
        132 => Ok(Protocol::Sctp),
        n => Err(PacketError::Protocol(n)),
    }
}

/// Parses the start of a packet from its network header on.
pub fn parse(bytes: &[u8]) -> Result<Packet, PacketError> {
    let first = *bytes.first().ok_or(PacketError::Short)?;
    let (src, dst, number, l4) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < 20 || bytes.len() < ihl {
                return Err(PacketError::Short);
            }
            // Fragment offset other than 0: no transport header in this packet.
            if u16::from_be_bytes([bytes[6], bytes[7]]) & 0x1fff != 0 {
                return Err(PacketError::Fragment);
            }
            let src = Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]);
            let dst = Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19]);
            (IpAddr::V4(src), IpAddr::V4(dst), bytes[9], ihl)
        }
        6 => {
            if bytes.len() < 40 {
                return Err(PacketError::Short);
            }
            let addr = |at: usize| -> Result<Ipv6Addr, PacketError> {
                let octets: [u8; 16] = bytes[at..at + 16]
                    .try_into()
                    .map_err(|_| PacketError::Short)?;
                Ok(Ipv6Addr::from(octets))
            };
            let (src, dst) = (addr(8)?, addr(24)?);
            let (mut next, mut at) = (bytes[6], 40usize);
            // Extension headers: hop-by-hop, routing, destination options, fragment.
            loop {
                match next {
                    0 | 43 | 60 => {
                        let h = bytes.get(at..at + 2).ok_or(PacketError::Short)?;
                        next = h[0];
                        at += (usize::from(h[1]) + 1) * 8;
                    }
                    44 => {
                        let h = bytes.get(at..at + 4).ok_or(PacketError::Short)?;
                        if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
                            return Err(PacketError::Fragment);
                        }
                        next = h[0];
                        at += 8;
                    }
                    _ => break,
                }
            }
            (IpAddr::V6(src), IpAddr::V6(dst), next, at)
        }
        v => return Err(PacketError::NotIp(v)),
    };
    let protocol = protocol(number)?;
    let ports = bytes.get(l4..l4 + 4).ok_or(PacketError::Short)?;
    Ok(Packet {
        src,
        dst,
        protocol,
        src_port: u16::from_be_bytes([ports[0], ports[1]]),
        dst_port: u16::from_be_bytes([ports[2], ports[3]]),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An IPv4 TCP SYN from `src:sport` to `dst:dport`, header and the start of TCP.
    pub(crate) fn syn_v4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 60, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0xa0, 0x02]);
        p
    }

    #[test]
    fn an_ipv4_syn() {
        let p = parse(&syn_v4([10, 0, 1, 2], 40000, [10, 0, 2, 3], 80)).unwrap();
        assert_eq!(p.src, "10.0.1.2".parse::<IpAddr>().unwrap());
        assert_eq!(p.dst, "10.0.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(
            (p.protocol, p.src_port, p.dst_port),
            (Protocol::Tcp, 40000, 80)
        );
    }

    #[test]
    fn an_ipv6_udp_datagram_behind_a_hop_by_hop_header() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
        p.extend_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop, 8 bytes, then UDP
        p.extend_from_slice(&5353u16.to_be_bytes());
        p.extend_from_slice(&53u16.to_be_bytes());
        let got = parse(&p).unwrap();
        assert_eq!(got.dst, "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!((got.protocol, got.dst_port), (Protocol::Udp, 53));
    }

    #[test]
    fn what_has_no_ports_is_refused() {
        let mut icmp = syn_v4([10, 0, 0, 1], 0, [10, 0, 0, 2], 0);
        icmp[9] = 1;
        assert_eq!(parse(&icmp), Err(PacketError::Protocol(1)));
        let mut fragment = syn_v4([10, 0, 0, 1], 1, [10, 0, 0, 2], 2);
        fragment[7] = 0x10;
        assert_eq!(parse(&fragment), Err(PacketError::Fragment));
        assert_eq!(parse(&[0x45, 0, 0]), Err(PacketError::Short));
        assert_eq!(parse(&[0x20; 40]), Err(PacketError::NotIp(2)));
        assert_eq!(parse(&[]), Err(PacketError::Short));
    }
}
