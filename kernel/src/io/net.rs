//! The network stack: smoltcp (Ethernet, ARP, IPv4, ICMP echo, UDP, TCP)
//! over virtio-net, with every received frame checked first so malformed
//! ones are dropped and counted by reason.

use super::hal::KernelHal;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use ringos_drivers::frame_check::{self, Drop};
use ringos_drivers::net::{NetDevice, RxFrame, MAX_FRAME};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::udp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

/// QEMU user networking's defaults: the guest is 10.0.2.15/24, the gateway
/// 10.0.2.2.
pub const GUEST_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
pub const GATEWAY_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);

#[derive(Default, Clone, Copy, Debug)]
pub struct NetStats {
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub dropped: [u64; Drop::ALL.len()],
    pub echoed: u64,
}

impl NetStats {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// smoltcp's view of the NIC. The device sits in a RefCell because smoltcp
/// sends a reply (TxToken) while it still reads the request (RxToken).
pub struct Phy {
    dev: RefCell<NetDevice<KernelHal>>,
    stats: Cell<NetStats>,
}

pub struct RxTok<'a> {
    phy: &'a Phy,
    frame: RxFrame,
}

pub struct TxTok<'a> {
    phy: &'a Phy,
}

impl phy::RxToken for RxTok<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let bytes = self.phy.dev.borrow().frame(&self.frame);
        // SAFETY: the frame's buffer belongs to us until `recycle` below;
        // sending meanwhile uses other buffers.
        let r = f(unsafe { &*bytes });
        self.phy.dev.borrow_mut().recycle(self.frame);
        r
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut f = Some(f);
        let sent = self
            .phy
            .dev
            .borrow_mut()
            .transmit(len, |buf| (f.take().unwrap())(buf));
        match sent {
            Some(r) => {
                let mut s = self.phy.stats.get();
                s.tx_frames += 1;
                self.phy.stats.set(s);
                r
            }
            // No buffer after all: let smoltcp write into scratch, drop it.
            None => (f.take().unwrap())(&mut vec![0; len]),
        }
    }
}

impl Device for Phy {
    type RxToken<'a> = RxTok<'a>;
    type TxToken<'a> = TxTok<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxTok<'_>, TxTok<'_>)> {
        let dev = self.dev.get_mut();
        // smoltcp needs a TxToken with every RxToken: without a free
        // transmit buffer, leave the frames in the ring for the next turn.
        if !dev.can_transmit() {
            return None;
        }
        let frame = loop {
            let frame = dev.receive()?;
            let mut stats = self.stats.get();
            stats.rx_frames += 1;
            // SAFETY: the frame is ours until recycled; read right here.
            let bytes = unsafe { &*dev.frame(&frame) };
            let verdict = frame_check::check(bytes, MAX_FRAME);
            if let Err(why) = verdict {
                stats.dropped[why as usize] += 1;
                log::debug!("net: dropped a {}-byte frame: {}", bytes.len(), why.name());
            }
            // Stored every time: the loop may end at the `?` above.
            self.stats.set(stats);
            match verdict {
                Ok(()) => break frame,
                Err(_) => dev.recycle(frame),
            }
        };
        Some((RxTok { phy: self, frame }, TxTok { phy: self }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxTok<'_>> {
        self.dev
            .get_mut()
            .can_transmit()
            .then_some(TxTok { phy: self })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(ringos_drivers::net::QUEUE_SIZE / 2);
        caps
    }
}

pub struct NetStack {
    phy: Phy,
    iface: Interface,
    sockets: SocketSet<'static>,
    echo: Option<SocketHandle>,
    quit: bool,
}

impl NetStack {
    pub fn new(dev: NetDevice<KernelHal>, now_ns: u64) -> Self {
        let mac = EthernetAddress(dev.mac());
        let mut phy = Phy {
            dev: RefCell::new(dev),
            stats: Cell::new(NetStats::default()),
        };
        let config = Config::new(HardwareAddress::Ethernet(mac));
        let mut iface = Interface::new(config, &mut phy, instant(now_ns));
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(GUEST_IP), 24));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(GATEWAY_IP);
        Self {
            phy,
            iface,
            sockets: SocketSet::new(Vec::new()),
            echo: None,
            quit: false,
        }
    }

    /// Echoes every UDP datagram that arrives on `port` back to its sender.
    pub fn serve_udp_echo(&mut self, port: u16) {
        let buf =
            || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * 1024]);
        let mut socket = udp::Socket::new(buf(), buf());
        socket.bind(port).expect("binding the UDP echo port");
        self.echo = Some(self.sockets.add(socket));
    }

    /// One turn of the stack: take in frames, answer, send.
    pub fn poll(&mut self, now_ns: u64) {
        let now = instant(now_ns);
        self.iface.poll(now, &mut self.phy, &mut self.sockets);
        if let Some(h) = self.echo {
            let socket = self.sockets.get_mut::<udp::Socket>(h);
            let mut echoed = 0;
            while let Ok((data, meta)) = socket.recv() {
                if data == ringos_proto::service::QUIT {
                    self.quit = true;
                    continue;
                }
                // A full send buffer drops the echo (UDP), never blocks.
                let (data, endpoint) = (data.to_vec(), meta.endpoint);
                if socket.send_slice(&data, endpoint).is_ok() {
                    echoed += 1;
                }
            }
            if echoed > 0 {
                let mut s = self.phy.stats.get();
                s.echoed += echoed;
                self.phy.stats.set(s);
                self.iface.poll(now, &mut self.phy, &mut self.sockets);
            }
        }
        self.phy.dev.get_mut().reap_tx();
    }

    /// When the stack next needs a turn even without traffic (ARP, TCP
    /// timers), in ns of the kernel clock.
    pub fn next_deadline(&mut self, now_ns: u64) -> Option<u64> {
        self.iface
            .poll_delay(instant(now_ns), &self.sockets)
            .map(|d| now_ns.saturating_add(d.total_micros() * 1000))
    }

    pub fn has_rx(&self) -> bool {
        self.phy.dev.borrow().has_rx()
    }

    pub fn quit_requested(&self) -> bool {
        self.quit
    }

    pub fn stats(&self) -> NetStats {
        self.phy.stats.get()
    }

    pub fn set_interrupts(&mut self, enabled: bool) {
        self.phy.dev.get_mut().set_interrupts(enabled);
    }

    pub fn ack_interrupt(&mut self) {
        self.phy.dev.get_mut().ack_interrupt();
    }
}

fn instant(now_ns: u64) -> Instant {
    Instant::from_micros((now_ns / 1000) as i64)
}
