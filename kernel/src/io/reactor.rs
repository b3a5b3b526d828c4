//! The reactor: the one completion-based event loop of the VM.
//!
//! ```text
//! loop {
//!     reap every device's used ring -> completions (tag, result), in ring order
//!     run the network stack (frames in, replies out)
//!     fire expired timers
//!     if nothing happened: arm the LAPIC for the next deadline, let the
//!     block device interrupt, re-check the devices with interrupts masked,
//!     then `sti; hlt` (or spin, in poll mode); the block device's
//!     interrupts go off again after the halt
//! }
//! ```
//! Submissions never block: they go on the device's queue with a tag, or
//! fail at once with `QueueFull`. Buffers in flight are owned by the caller
//! per `submit_blk`'s contract; the device driver keeps a token -> request
//! table.

use super::devices::{self, Devices};
use super::hal::KernelHal;
use super::net::NetStack;
use crate::arch::cpu;
use crate::time;
use alloc::vec::Vec;
use ringos_drivers::blk::{self, BlkDevice, BlkError};

/// How the loop waits when there is nothing to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    /// Device interrupts on, `hlt` when idle.
    Irq,
    /// Interrupts off at the devices, spin on the used rings (lowest latency).
    Poll,
}

impl IoMode {
    pub fn from_cmdline(value: Option<&str>) -> Self {
        match value {
            Some("poll") => IoMode::Poll,
            _ => IoMode::Irq,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            IoMode::Irq => "irq",
            IoMode::Poll => "poll",
        }
    }
}

#[derive(Debug)]
pub enum Event {
    Blk(blk::Completion),
    Timer { tag: u64 },
}

#[derive(Default, Debug, Clone, Copy)]
pub struct ReactorStats {
    pub turns: u64,
    pub halts: u64,
    pub completions: u64,
}

pub struct Reactor {
    transport: &'static str,
    pub blk: Option<BlkDevice<KernelHal>>,
    pub net: Option<NetStack>,
    mode: IoMode,
    /// (deadline ns, tag); few, so a plain vector.
    timers: Vec<(u64, u64)>,
    pub stats: ReactorStats,
}

impl Reactor {
    pub fn new(devs: Devices, requested: IoMode) -> Self {
        // Without a routed interrupt, halting could sleep through a
        // completion: fall back to polling. With no device at all there
        // is nothing to sleep through (the timer and the console have
        // their own interrupts): halt, rather than spin through a wait.
        let no_devices = devs.blk.is_none() && devs.net.is_none();
        let mode = if devs.interrupts || no_devices {
            requested
        } else {
            IoMode::Poll
        };
        if mode != requested {
            log::warn!("device interrupts are not routed here; using poll mode");
        }
        let mut r = Self {
            transport: if devs.transport.is_empty() {
                "no virtio devices"
            } else {
                devs.transport
            },
            blk: devs.blk,
            net: devs.net.map(|n| NetStack::new(n, time::now_ns())),
            mode,
            timers: Vec::new(),
            stats: ReactorStats::default(),
        };
        // The block queue interrupts only while the loop halts (see
        // `idle_until`): a completion found by a poll, as after a
        // submission, costs no interrupt, EOI or acknowledgement.
        if let Some(b) = &mut r.blk {
            b.set_interrupts(false);
        }
        if let Some(n) = &mut r.net {
            n.set_interrupts(mode == IoMode::Irq);
        }
        r
    }

    pub fn transport(&self) -> &'static str {
        self.transport
    }

    pub fn mode(&self) -> IoMode {
        self.mode
    }

    /// Queues a block request; its completion arrives as `Event::Blk` with
    /// `tag`. Fails at once (`QueueFull`, range or alignment) rather than wait.
    ///
    /// # Safety
    /// As `BlkDevice::submit`: a read's or write's buffer stays valid and
    /// untouched until the completion with this tag is returned.
    pub unsafe fn submit_blk(&mut self, tag: u64, req: &blk::Request) -> Result<(), BlkError> {
        let dev = self.blk.as_mut().ok_or(BlkError::Unsupported)?;
        crate::count_marks::block_submitting();
        // SAFETY: forwarded to the caller.
        unsafe { dev.submit(tag, req) }?;
        crate::count_marks::block_submitted();
        Ok(())
    }

    /// [`submit_blk`](Self::submit_blk) of a request whose data pieces
    /// `fill` writes in place ([`blk::BlkDevice::submit_with`]).
    ///
    /// # Safety
    /// As [`submit_blk`](Self::submit_blk), for the pieces `fill` gives.
    pub unsafe fn submit_blk_with(
        &mut self,
        tag: u64,
        kind: blk::Kind,
        sector: u64,
        fill: impl FnOnce(&mut blk::Segments) -> Result<(), BlkError>,
    ) -> Result<(), BlkError> {
        let dev = self.blk.as_mut().ok_or(BlkError::Unsupported)?;
        crate::count_marks::block_submitting();
        // SAFETY: forwarded to the caller.
        unsafe { dev.submit_with(tag, kind, sector, fill) }?;
        crate::count_marks::block_submitted();
        Ok(())
    }

    /// An `Event::Timer { tag }` at `deadline_ns` (kernel clock).
    pub fn add_timer(&mut self, deadline_ns: u64, tag: u64) {
        self.timers.push((deadline_ns, tag));
    }

    /// One turn without waiting: appends what completed to `events`.
    pub fn poll(&mut self, events: &mut Vec<Event>) {
        self.stats.turns += 1;
        let before = events.len();
        if self.mode == IoMode::Irq && devices::take_io_pending() {
            // virtio-mmio lowers its line only when acknowledged; do it
            // before reaping so a completion after the reap raises it again.
            if let Some(b) = &mut self.blk {
                b.ack_interrupt();
            }
            if let Some(n) = &mut self.net {
                n.ack_interrupt();
            }
        }
        if let Some(b) = &mut self.blk {
            while let Some(c) = b.poll() {
                crate::count_marks::block_reaped();
                events.push(Event::Blk(c));
            }
        }
        // The clock only when something runs on it (it is a TSC read and a
        // 128-bit scale: visible on the block path under TCG).
        if self.net.is_none() && self.timers.is_empty() {
            self.stats.completions += (events.len() - before) as u64;
            return;
        }
        let now = time::now_ns();
        if let Some(n) = &mut self.net {
            n.poll(now);
        }
        let mut i = 0;
        while i < self.timers.len() {
            if self.timers[i].0 <= now {
                let (_, tag) = self.timers.swap_remove(i);
                events.push(Event::Timer { tag });
            } else {
                i += 1;
            }
        }
        self.stats.completions += (events.len() - before) as u64;
    }

    /// Runs turns until at least one event is in `events`.
    pub fn wait(&mut self, events: &mut Vec<Event>) {
        loop {
            self.poll(events);
            if !events.is_empty() {
                return;
            }
            self.idle();
        }
    }

    /// Serves the network (and timers) until `done` returns true. `done` is
    /// asked after every turn, before any halt: a turn may have made it true.
    pub fn run_until(&mut self, mut done: impl FnMut(&mut Self) -> bool) {
        let mut events = Vec::new();
        loop {
            events.clear();
            self.poll(&mut events);
            if done(self) {
                return;
            }
            if events.is_empty() {
                self.idle();
            }
        }
    }

    /// Nothing to do: wait for the next interrupt or deadline.
    fn idle(&mut self) {
        self.idle_until(None);
    }

    /// Waits for the next interrupt, or until `deadline` (kernel clock) or
    /// the reactor's own next deadline; returns at once in poll mode.
    pub fn idle_until(&mut self, deadline: Option<u64>) {
        if self.mode == IoMode::Poll {
            core::hint::spin_loop();
            return;
        }
        let net_deadline = match self.net.as_mut() {
            Some(n) => n.next_deadline(time::now_ns()),
            None => None,
        };
        let deadline = self
            .timers
            .iter()
            .map(|t| t.0)
            .chain(net_deadline)
            .chain(deadline)
            .min();
        crate::interrupts::without(|| {
            if let Some(d) = deadline {
                time::arm(d);
            }
            // The block device may interrupt while the CPU sleeps. The
            // flag is stored before the used ring is read again, and the
            // device stores the ring before it reads the flag (virtio's
            // barrier on both sides): a completion either shows below or
            // raises the interrupt that ends the halt.
            if let Some(b) = &mut self.blk {
                b.set_interrupts(true);
            }
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
            // Re-check with interrupts masked: a completion that landed
            // after the last poll must not be slept through.
            let ready = devices::io_pending()
                || self.blk.as_ref().is_some_and(|b| b.has_completion())
                || self.net.as_ref().is_some_and(|n| n.has_rx())
                || crate::console::input_for_reader();
            if !ready {
                self.stats.halts += 1;
                crate::count_marks::halting();
                cpu::wait_for_interrupt();
            }
            if let Some(b) = &mut self.blk {
                b.set_interrupts(false);
            }
        });
    }
}
