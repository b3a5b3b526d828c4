//! The checks a received Ethernet frame passes before the network stack
//! sees it, so every malformed frame is dropped *and counted by reason*
//! (the stack itself drops silently).

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// Shorter than an Ethernet header, or than the header it announces.
    Truncated,
    /// Longer than the MTU allows.
    Oversized,
    /// Neither IPv4 nor ARP.
    Ethertype,
    /// IPv4 header: version, length fields or checksum wrong.
    Ipv4Header,
    /// UDP: length field or checksum wrong.
    Udp,
}

impl Drop {
    pub const ALL: [Drop; 5] = [
        Drop::Truncated,
        Drop::Oversized,
        Drop::Ethertype,
        Drop::Ipv4Header,
        Drop::Udp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Drop::Truncated => "truncated",
            Drop::Oversized => "oversized",
            Drop::Ethertype => "ethertype",
            Drop::Ipv4Header => "ipv4-header",
            Drop::Udp => "udp",
        }
    }
}

const ETH_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ARP_LEN: usize = 28;
const PROTO_UDP: u8 = 17;

/// The Internet checksum (RFC 1071) of `data`, starting from `sum`.
pub fn internet_checksum(data: &[u8], mut sum: u32) -> u16 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u32) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Accepts a frame (without FCS) of at most `max_frame` bytes, or says why not.
pub fn check(frame: &[u8], max_frame: usize) -> Result<(), Drop> {
    if frame.len() < ETH_HEADER {
        return Err(Drop::Truncated);
    }
    if frame.len() > max_frame {
        return Err(Drop::Oversized);
    }
    let payload = &frame[ETH_HEADER..];
    match be16(frame, 12) {
        ETHERTYPE_ARP if payload.len() < ARP_LEN => Err(Drop::Truncated),
        ETHERTYPE_ARP => Ok(()),
        ETHERTYPE_IPV4 => check_ipv4(payload),
        _ => Err(Drop::Ethertype),
    }
}

fn check_ipv4(p: &[u8]) -> Result<(), Drop> {
    if p.len() < 20 {
        return Err(Drop::Truncated);
    }
    let ihl = (p[0] & 0xf) as usize * 4;
    let total = be16(p, 2) as usize;
    if p[0] >> 4 != 4 || ihl < 20 || total < ihl {
        return Err(Drop::Ipv4Header);
    }
    if total > p.len() || ihl > p.len() {
        return Err(Drop::Truncated);
    }
    if internet_checksum(&p[..ihl], 0) != 0 {
        return Err(Drop::Ipv4Header);
    }
    let fragment = be16(p, 6) & 0x3fff != 0;
    if p[9] == PROTO_UDP && !fragment {
        check_udp(&p[..total], ihl)?;
    }
    Ok(())
}

fn check_udp(ip: &[u8], ihl: usize) -> Result<(), Drop> {
    let udp = &ip[ihl..];
    if udp.len() < 8 {
        return Err(Drop::Truncated);
    }
    let len = be16(udp, 4) as usize;
    if len < 8 || len > udp.len() {
        return Err(Drop::Udp);
    }
    if be16(udp, 6) != 0 {
        // Pseudo-header: source, destination, protocol, UDP length.
        let mut sum = 0u32;
        for at in [12, 14, 16, 18] {
            sum += be16(ip, at) as u32;
        }
        sum += PROTO_UDP as u32 + len as u32;
        if internet_checksum(&udp[..len], sum) != 0 {
            return Err(Drop::Udp);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid Ethernet + IPv4 + UDP frame carrying `payload`.
    pub fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![
            0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x52, 0x55, 10, 0, 2, 2, 0x08, 0x00,
        ];
        let total = 20 + 8 + payload.len();
        let mut ip = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            1,
            0x40,
            0,
            64,
            17,
            0,
            0,
            10,
            0,
            2,
            2,
            10,
            0,
            2,
            15,
        ];
        let c = internet_checksum(&ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let ulen = 8 + payload.len();
        let mut udp = vec![0x30, 0x39, 0, 7, (ulen >> 8) as u8, ulen as u8, 0, 0];
        udp.extend_from_slice(payload);
        let mut sum = 0u32;
        for at in [12, 14, 16, 18] {
            sum += be16(&ip, at) as u32;
        }
        sum += 17 + ulen as u32;
        let c = internet_checksum(&udp, sum);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&udp);
        f
    }

    #[test]
    fn accepts_valid_udp_and_arp() {
        assert_eq!(check(&udp_frame(b"hello"), 1514), Ok(()));
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[0x52, 0x55, 10, 0, 2, 2, 0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        assert_eq!(check(&arp, 1514), Ok(()));
    }

    #[test]
    fn counts_each_kind_of_damage() {
        let good = udp_frame(b"hello world");
        assert_eq!(check(&good[..10], 1514), Err(Drop::Truncated));
        assert_eq!(check(&good[..30], 1514), Err(Drop::Truncated));
        assert_eq!(check(&udp_frame(&[0; 1600]), 1514), Err(Drop::Oversized));
        let mut t = good.clone();
        t[12] = 0x86;
        t[13] = 0xdd;
        assert_eq!(check(&t, 1514), Err(Drop::Ethertype));
        let mut t = good.clone();
        t[14 + 8] ^= 1; // TTL changed, header checksum now wrong
        assert_eq!(check(&t, 1514), Err(Drop::Ipv4Header));
        let mut t = good.clone();
        let last = t.len() - 1;
        t[last] ^= 0xff; // payload changed, UDP checksum now wrong
        assert_eq!(check(&t, 1514), Err(Drop::Udp));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in 0..2000 {
            let f: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = check(&f, 1514);
        }
    }
}
