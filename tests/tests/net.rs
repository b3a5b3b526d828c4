//! QEMU tier, network: UDP echo through QEMU user networking from a real
//! host socket, and malformed Ethernet frames injected through a `dgram`
//! netdev (one raw frame per UDP datagram), after which the guest must still
//! answer and report what it dropped.

use ringos::{Net, PortForward, Protocol, VmRun};
use ringos_proto::{exit, marker, service};
use ringos_tests::{console, field, free_udp_port, line, vm, Outcome, MACHINES};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Boots the echo service in the background; the closure talks to it, and
/// must end it with the quit datagram. If the closure panics, the VM is
/// killed on the way out.
fn with_echo_service(cfg: ringos::VmConfig, talk: impl FnOnce()) -> VmRun {
    let vm = ringos::vm::spawn(&cfg, ringos::Console::Capture).expect("running QEMU");
    talk();
    vm.finish().expect("waiting for QEMU")
}

/// Sends `payload` until an answer comes (the VM may still be booting).
fn first_echo(sock: &UdpSocket, to: SocketAddr) {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    while start.elapsed() < Duration::from_secs(30) {
        sock.send_to(b"hello?", to).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            assert_eq!(&buf[..n], b"hello?");
            // Earlier tries may still be answered: drain those echoes.
            sock.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            while sock.recv_from(&mut buf).is_ok() {}
            return;
        }
    }
    panic!("no echo within 30 s");
}

#[test]
fn udp_echo_1000_datagrams_none_lost_on_both_machines() {
    for m in MACHINES {
        let port = free_udp_port();
        let mut cfg = vm(m, "service=udp-echo port=7");
        cfg.net = Some(Net::User {
            ports: vec![PortForward {
                protocol: Protocol::Udp,
                host: port,
                guest: 7,
            }],
        });
        let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let r = with_echo_service(cfg, || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            first_echo(&sock, to);
            sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 2048];
            for i in 0..1000u32 {
                let msg = format!("datagram {i} {}", "x".repeat((i % 100) as usize));
                sock.send_to(msg.as_bytes(), to).unwrap();
                let (n, _) = sock
                    .recv_from(&mut buf)
                    .unwrap_or_else(|e| panic!("{m}: datagram {i} lost: {e}"));
                assert_eq!(&buf[..n], msg.as_bytes(), "{m}: datagram {i}");
            }
            sock.send_to(service::QUIT, to).unwrap();
        });
        let out = console(&r);
        assert_eq!(r.outcome, Outcome::Guest(exit::SUCCESS), "{m}: {out}");
        let stats = line(&r, marker::NET_STATS).unwrap_or_else(|| panic!("{m}: no stats in {out}"));
        assert!(field(stats, "echoed").unwrap() >= 1001, "{m}: {stats}");
        assert_eq!(field(stats, "dropped"), Some(0), "{m}: {stats}");
    }
}

// Addresses of the frames the test crafts: the host plays 10.0.2.2.
const HOST_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
const HOST_IP: [u8; 4] = [10, 0, 2, 2];
const GUEST_IP: [u8; 4] = [10, 0, 2, 15];

fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet + IPv4 from the host (10.0.2.2) to the guest, carrying `l4`
/// (whose checksum the caller has filled in) as protocol `proto`.
fn ipv4_frame(guest_mac: [u8; 6], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = guest_mac.to_vec();
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + l4.len();
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
        proto,
        0,
        0,
    ];
    ip.extend_from_slice(&HOST_IP);
    ip.extend_from_slice(&GUEST_IP);
    let c = checksum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

/// A UDP datagram from the host (port 40000) to the guest's port 7.
fn udp_frame(guest_mac: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let ulen = 8 + payload.len();
    let mut udp = vec![0x9c, 0x40, 0, 7, (ulen >> 8) as u8, ulen as u8, 0, 0];
    udp.extend_from_slice(payload);
    let word = |a: [u8; 4]| {
        u16::from_be_bytes([a[0], a[1]]) as u32 + u16::from_be_bytes([a[2], a[3]]) as u32
    };
    let pseudo = word(HOST_IP) + word(GUEST_IP) + 17 + ulen as u32;
    let c = checksum(&udp, pseudo);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    ipv4_frame(guest_mac, 17, &udp)
}

/// An ICMP echo request from the host.
fn ping_frame(guest_mac: [u8; 6], id: u16, payload: &[u8]) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, (id >> 8) as u8, id as u8, 0, 1];
    icmp.extend_from_slice(payload);
    let c = checksum(&icmp, 0);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4_frame(guest_mac, 1, &icmp)
}

/// An ARP reply telling the guest that 10.0.2.2 is HOST_MAC.
fn arp_reply(guest_mac: [u8; 6]) -> Vec<u8> {
    let mut f = guest_mac.to_vec();
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&HOST_IP);
    f.extend_from_slice(&guest_mac);
    f.extend_from_slice(&GUEST_IP);
    f
}

/// Waits for the guest's UDP reply carrying `payload`, answering its ARP
/// requests on the way. Returns false on timeout.
fn await_reply(
    sock: &UdpSocket,
    qemu: SocketAddr,
    guest_mac: [u8; 6],
    payload: &[u8],
    resend: &[u8],
) -> bool {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < Duration::from_secs(20) {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            sock.send_to(resend, qemu).unwrap(); // nothing yet: try again
            continue;
        };
        let f = &buf[..n];
        if f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[21] == 1 && f[38..42] == HOST_IP {
            sock.send_to(&arp_reply(guest_mac), qemu).unwrap();
        } else if f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[42..].starts_with(payload) {
            // The payload after IPv4 + UDP, or after IPv4 + ICMP echo reply.
            let udp = f[23] == 17;
            let echo_reply = f[23] == 1 && f[34] == 0;
            if udp || echo_reply {
                return true;
            }
        }
    }
    false
}

#[test]
fn icmp_echo_and_malformed_frames_dropped_counted_and_the_guest_still_answers() {
    for m in MACHINES {
        let host = UdpSocket::bind("127.0.0.1:0").unwrap();
        host.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let qemu: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
        let mut cfg = vm(m, "service=udp-echo port=7");
        cfg.net = Some(Net::Dgram {
            local: qemu,
            remote: host.local_addr().unwrap(),
        });
        // QEMU's default MAC for the first NIC.
        let guest_mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
        let mut expect = [
            ("truncated", 0u64),
            ("oversized", 0),
            ("ethertype", 0),
            ("ipv4-header", 0),
            ("udp", 0),
        ];
        let r = with_echo_service(cfg, || {
            let hello = udp_frame(guest_mac, b"before");
            assert!(
                await_reply(&host, qemu, guest_mac, b"before", &hello),
                "{m}: no echo before the injection"
            );
            let ping = ping_frame(guest_mac, 0x1234, b"ping from the host");
            host.send_to(&ping, qemu).unwrap();
            assert!(
                await_reply(&host, qemu, guest_mac, b"ping from the host", &ping),
                "{m}: no ICMP echo reply"
            );
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let mut rnd = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let good = udp_frame(guest_mac, b"payload that is about to be damaged");
            for i in 0..50 {
                let (frame, why): (Vec<u8>, &str) = match i % 5 {
                    // 1..=13 bytes: a zero-length datagram would make QEMU's dgram
                    // netdev stop reading its socket (it takes it for EOF).
                    0 => (good[..(1 + rnd() % 13) as usize].to_vec(), "truncated"),
                    1 => (udp_frame(guest_mac, &vec![0x55; 1600]), "oversized"),
                    2 => {
                        let mut f = good.clone();
                        f[12..14].copy_from_slice(&[0x86, 0xdd]);
                        (f, "ethertype")
                    }
                    3 => {
                        let mut f = good.clone();
                        f[14 + 8] = (rnd() as u8) | 1; // TTL: the header checksum no longer holds
                        f[14 + 10] ^= 0x80;
                        (f, "ipv4-header")
                    }
                    _ => {
                        let mut f = good.clone();
                        let last = f.len() - 1;
                        f[last] ^= 0x5a; // payload: the UDP checksum no longer holds
                        (f, "udp")
                    }
                };
                expect.iter_mut().find(|e| e.0 == why).unwrap().1 += 1;
                host.send_to(&frame, qemu).unwrap();
                // And pure noise, of any length.
                let noise: Vec<u8> = (0..1 + rnd() % 1500).map(|_| rnd() as u8).collect();
                host.send_to(&noise, qemu).unwrap();
            }
            let after = udp_frame(guest_mac, b"after");
            assert!(
                await_reply(&host, qemu, guest_mac, b"after", &after),
                "{m}: no echo after the injection"
            );
            host.send_to(&udp_frame(guest_mac, service::QUIT), qemu)
                .unwrap();
        });
        let out = console(&r);
        assert_eq!(r.outcome, Outcome::Guest(exit::SUCCESS), "{m}: {out}");
        let stats = line(&r, marker::NET_STATS).unwrap_or_else(|| panic!("{m}: no stats in {out}"));
        for (reason, n) in expect {
            assert!(
                field(stats, reason).unwrap() >= n,
                "{m}: {reason}: expected at least {n} in {stats}\n{out}"
            );
        }
        assert!(field(stats, "dropped").unwrap() >= 50, "{m}: {stats}");
    }
}
