//! `ringos:blk/disk` (`wit/blk.wit`): the VM's disk as streams and
//! futures, over a [`BlockDevice`] the embedder gives (virtio-blk in the
//! kernel, a file in the hosted mode).
//!
//! A read is a device stream to the guest plus a status future; a write
//! is a device stream from the guest. Each `stream.read` / `stream.write`
//! the guest makes becomes one device request on the guest's own bytes
//! ([`crate::component::device`]): a read lands by DMA in linear memory,
//! a write leaves from it. [`Disk`] is the loop's [`IoSource`]: it starts
//! the requests and turns completions into stream progress and resolved
//! futures.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use ringos_abi::{ValType, Value};

use crate::component::device::{DeviceWork, Direction, IoSource, IoTurn, Transfer};
use crate::component::{Ends, Exports, Func, FuncSig, HostCx, HostElem, Item};
use crate::token_map::TokenMap;

pub const BLOCK: u64 = 512;
/// Bytes one device request moves at most (one `stream.read`/`write` of
/// more moves this much; the guest's next copy continues).
pub const MAX_TRANSFER: usize = 64 << 10;

/// `error-code`, in WIT order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    NoDevice,
    OutOfRange,
    Unaligned,
    ReadOnly,
    Io,
    /// Not in WIT: every request slot is taken; the request is retried
    /// once one completes.
    Busy,
}

impl BlockError {
    fn value(self) -> Value {
        let case = match self {
            BlockError::NoDevice => 0,
            BlockError::OutOfRange => 1,
            BlockError::Unaligned => 2,
            BlockError::ReadOnly => 3,
            BlockError::Io | BlockError::Busy => 4,
        };
        Value::err(Some(Value::enum_case(case)))
    }
}

/// One request on the device. `addr` points into guest memory (see
/// [`Transfer`]); it stays valid until the request's completion.
#[derive(Clone, Copy, Debug)]
pub enum BlockOp {
    Read {
        offset: u64,
        addr: *mut u8,
        len: usize,
    },
    Write {
        offset: u64,
        addr: *const u8,
        len: usize,
    },
    Flush,
}

/// What the embedder's disk does: queue requests, report completions.
pub trait BlockDevice {
    /// Size in bytes (whole blocks; 0: no disk). Fixed for the device's
    /// life: [`Disk`] asks once.
    fn capacity(&self) -> u64;
    fn read_only(&self) -> bool;
    /// Queues `op`; its completion comes from [`BlockDevice::poll`] with
    /// `tag`. Fails at once for a bad request or `Busy` (retried later).
    fn submit(&self, tag: u64, op: BlockOp) -> Result<(), BlockError>;
    /// Appends the completions since the last call: (tag, bytes or error).
    fn poll(&self, done: &mut Vec<(u64, Result<usize, BlockError>)>);
}

/// A read or write in progress (by its device end's token).
struct Stream {
    /// Where the next request starts.
    offset: u64,
    /// Bytes a read still delivers (writes: unbounded).
    remaining: u64,
    /// The status future's host token.
    status: u64,
}

/// The disk service: the `ringos:blk/disk` functions and the loop's I/O
/// source for them.
pub struct Disk {
    dev: Rc<dyn BlockDevice>,
    /// `dev.capacity()`, asked once (every request checks its range).
    capacity: u64,
    state: RefCell<DiskState>,
    /// `result<_, error-code>`, made (and checked) once.
    status_t: HostElem,
}

#[derive(Default)]
struct DiskState {
    streams: TokenMap<Stream>,
    /// Requests at the device (stream copies and flushes).
    in_flight: usize,
    /// Requests the device refused as `Busy`, to try again.
    retry: Vec<(u64, BlockOp)>,
    done: Vec<(u64, Result<usize, BlockError>)>,
    /// Reads whose every byte is delivered, to finish (drop the host's
    /// end, resolve the status) after the guest has seen its data: on the
    /// loop's next I/O turn, or when the guest touches the end again.
    ended: Vec<u64>,
}

fn status_type() -> ValType {
    ValType::result(None, Some(error_code()))
}

fn error_code() -> ValType {
    ValType::enum_(["no-device", "out-of-range", "unaligned", "read-only", "io"])
}

impl Disk {
    pub fn new(dev: Rc<dyn BlockDevice>) -> Rc<Disk> {
        Rc::new(Disk {
            capacity: dev.capacity(),
            dev,
            state: RefCell::new(DiskState::default()),
            status_t: HostElem::new(Some(status_type())).expect("no handles in the status"),
        })
    }

    /// A status future already resolved with `r`.
    fn resolved(&self, cx: &mut HostCx<'_>, r: Value) -> Result<u32, String> {
        let (f, token) = cx.new_future(&self.status_t)?;
        cx.write_future(token, r)?;
        Ok(f)
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        let cap = self.capacity;
        if cap == 0 {
            return Err(BlockError::NoDevice);
        }
        if !offset.is_multiple_of(BLOCK) || !len.is_multiple_of(BLOCK) {
            return Err(BlockError::Unaligned);
        }
        if offset.checked_add(len).is_none_or(|end| end > cap) {
            return Err(BlockError::OutOfRange);
        }
        Ok(())
    }

    fn read(&self, cx: &mut HostCx<'_>, offset: u64, len: u64) -> Result<Ends, String> {
        let (s, token) = cx.device_stream_to_guest()?;
        if let Err(e) = self.check_range(offset, len) {
            cx.close_device_end(token)?;
            let f = self.resolved(cx, e.value())?;
            return Ok(Ends::new(&[s, f]));
        }
        let (f, status) = cx.new_future(&self.status_t)?;
        if len == 0 {
            cx.close_device_end(token)?;
            cx.write_future(status, Value::ok(None))?;
        } else {
            self.state.borrow_mut().streams.insert(
                token,
                Stream {
                    offset,
                    remaining: len,
                    status,
                },
            );
        }
        Ok(Ends::new(&[s, f]))
    }

    fn write(&self, cx: &mut HostCx<'_>, offset: u64, data: u32) -> Result<Value, String> {
        let token = cx.device_stream_from_guest(data)?;
        let check = if self.dev.read_only() && self.capacity > 0 {
            Err(BlockError::ReadOnly)
        } else {
            self.check_range(offset, 0)
        };
        if let Err(e) = check {
            cx.close_device_end(token)?;
            return self.resolved(cx, e.value()).map(Value::Future);
        }
        let (f, status) = cx.new_future(&self.status_t)?;
        self.state.borrow_mut().streams.insert(
            token,
            Stream {
                offset,
                remaining: u64::MAX,
                status,
            },
        );
        Ok(Value::Future(f))
    }

    fn flush(&self, cx: &mut HostCx<'_>) -> Result<Value, String> {
        if self.capacity == 0 {
            return self
                .resolved(cx, BlockError::NoDevice.value())
                .map(Value::Future);
        }
        let (f, token) = cx.new_future(&self.status_t)?;
        // Submitted at the call, as a copy is (a full queue: retried).
        self.submit(cx, token, BlockOp::Flush)?;
        Ok(Value::Future(f))
    }

    /// Ends stream `token`: drops the host's end, resolves its future.
    fn finish(
        &self,
        cx: &mut HostCx<'_>,
        token: u64,
        r: Result<(), BlockError>,
    ) -> Result<(), String> {
        let Some(s) = self.state.borrow_mut().streams.remove(&token) else {
            return Ok(());
        };
        cx.close_device_end(token)?;
        let v = match r {
            Ok(()) => Value::ok(None),
            Err(e) => e.value(),
        };
        cx.write_future(s.status, v)
    }

    /// The request for a guest copy waiting on stream `t.token`.
    fn request(&self, t: &Transfer) -> Result<BlockOp, BlockError> {
        let st = self.state.borrow();
        let s = st.streams.get(&t.token).ok_or(BlockError::Io)?;
        let want = (t.len.min(MAX_TRANSFER) as u64).min(s.remaining);
        let len = (want - want % BLOCK) as usize;
        if len == 0 {
            return Err(BlockError::Unaligned);
        }
        if s.offset
            .checked_add(len as u64)
            .is_none_or(|e| e > self.capacity)
        {
            return Err(BlockError::OutOfRange);
        }
        Ok(match t.dir {
            Direction::ToGuest => BlockOp::Read {
                offset: s.offset,
                addr: t.addr,
                len,
            },
            Direction::FromGuest => BlockOp::Write {
                offset: s.offset,
                addr: t.addr,
                len,
            },
        })
    }

    fn submit(&self, cx: &mut HostCx<'_>, tag: u64, op: BlockOp) -> Result<(), String> {
        match self.dev.submit(tag, op) {
            Ok(()) => {
                self.state.borrow_mut().in_flight += 1;
                Ok(())
            }
            Err(BlockError::Busy) => {
                self.state.borrow_mut().retry.push((tag, op));
                Ok(())
            }
            Err(e) => self.fail(cx, tag, e),
        }
    }

    /// A request failed before or at the device.
    fn fail(&self, cx: &mut HostCx<'_>, tag: u64, e: BlockError) -> Result<(), String> {
        if self.state.borrow().streams.contains_key(&tag) {
            cx.transferred(tag, 0)?;
            self.finish(cx, tag, Err(e))
        } else {
            cx.write_future(tag, e.value())
        }
    }

    fn complete(
        &self,
        cx: &mut HostCx<'_>,
        tag: u64,
        r: Result<usize, BlockError>,
    ) -> Result<(), String> {
        let n = match r {
            Ok(n) => n,
            Err(e) => return self.fail(cx, tag, e),
        };
        let ended = self.state.borrow_mut().streams.get_mut(&tag).map(|s| {
            s.offset += n as u64;
            s.remaining = s.remaining.saturating_sub(n as u64);
            s.remaining == 0
        });
        match ended {
            // The data first: the status follows off the guest's path.
            Some(true) => {
                cx.transferred(tag, n)?;
                self.state.borrow_mut().ended.push(tag);
                Ok(())
            }
            // The guest's copy may want more than one request moved: the
            // next one goes out at once.
            Some(false) => {
                cx.transferred(tag, n)?;
                self.start_end(cx, tag)
            }
            None => cx.write_future(tag, Value::ok(None)),
        }
    }
}

impl IoSource for Disk {
    fn poll(&self, cx: &mut HostCx<'_>) -> Result<IoTurn, String> {
        let mut turn = IoTurn::default();
        // Popped one at a time, so the list keeps its room (the I/O path
        // allocates nothing once warm).
        loop {
            let Some(tag) = self.state.borrow_mut().ended.pop() else {
                break;
            };
            turn.progress = true;
            self.finish(cx, tag, Ok(()))?;
        }
        let mut done = core::mem::take(&mut self.state.borrow_mut().done);
        self.dev.poll(&mut done);
        for (tag, r) in done.drain(..) {
            turn.progress = true;
            self.state.borrow_mut().in_flight -= 1;
            self.complete(cx, tag, r)?;
        }
        self.state.borrow_mut().done = done;
        if !self.state.borrow().retry.is_empty() {
            let retry = core::mem::take(&mut self.state.borrow_mut().retry);
            for (tag, op) in retry {
                self.submit(cx, tag, op)?;
            }
        }
        let st = self.state.borrow();
        turn.in_flight = st.in_flight > 0 || !st.retry.is_empty();
        Ok(turn)
    }

    fn start_end(&self, cx: &mut HostCx<'_>, token: u64) -> Result<(), String> {
        let ended = {
            let mut st = self.state.borrow_mut();
            if !st.streams.contains_key(&token) {
                return Ok(());
            }
            let at = st.ended.iter().position(|&t| t == token);
            at.map(|i| st.ended.swap_remove(i)).is_some()
        };
        if ended {
            return self.finish(cx, token, Ok(()));
        }
        match cx.device_work_of(token)? {
            Some(w) => self.do_work(cx, w),
            None => Ok(()),
        }
    }
}

impl Disk {
    fn do_work(&self, cx: &mut HostCx<'_>, w: DeviceWork) -> Result<(), String> {
        match w {
            // "Ready?": yes, nothing moves.
            DeviceWork::Transfer(t) if t.len == 0 => cx.transferred(t.token, 0),
            DeviceWork::Transfer(t) => match self.request(&t) {
                Ok(op) => self.submit(cx, t.token, op),
                Err(e) => self.fail(cx, t.token, e),
            },
            // The writer finished, or the reader wants no more.
            DeviceWork::Closed(token) => self.finish(cx, token, Ok(())),
        }
    }
}

/// The import name of the interface.
pub const INTERFACE: &str = "ringos:blk/disk@0.1.0";

/// `ringos:blk/disk` over `disk`, keyed by import name. The caller also
/// gives `disk` to the store as an I/O source
/// ([`crate::component::ComponentStore::add_io`]).
pub fn imports(disk: &Rc<Disk>) -> Exports {
    let u64_at = |a: &[Value], i: usize| match a.get(i) {
        Some(Value::U64(v)) => *v,
        _ => 0,
    };
    let (d1, d2, d3, d4) = (disk.clone(), disk.clone(), disk.clone(), disk.clone());
    // Its two u64 parameters' bits.
    let read = move |cx: &mut HostCx<'_>, a: &[u64]| -> Result<Ends, String> {
        d1.read(
            cx,
            a.first().copied().unwrap_or(0),
            a.get(1).copied().unwrap_or(0),
        )
    };
    let write = move |cx: &mut HostCx<'_>, a: &[Value]| -> Result<Option<Value>, String> {
        let Some(Value::Stream(s)) = a.get(1) else {
            return Err("write: expected a stream".into());
        };
        d2.write(cx, u64_at(a, 0), *s).map(Some)
    };
    let flush = move |cx: &mut HostCx<'_>, _: &[Value]| -> Result<Option<Value>, String> {
        d3.flush(cx).map(Some)
    };
    let capacity = move |_: &mut HostCx<'_>, _: &[u64]| -> Result<Option<u64>, String> {
        Ok(Some(d4.capacity))
    };
    let block_size =
        |_: &mut HostCx<'_>, _: &[u64]| -> Result<Option<u64>, String> { Ok(Some(BLOCK)) };
    let status = || ValType::future(Some(status_type()));
    let stream = || ValType::stream(Some(ValType::U8));
    let items: Vec<(&str, Item)> = vec![
        ("error-code", Item::Type(None)),
        (
            "block-size",
            Item::Func(Func::host_scalar(
                FuncSig::new(&[], vec![], Some(ValType::U32)),
                Box::new(block_size),
            )),
        ),
        (
            "capacity",
            Item::Func(Func::host_scalar(
                FuncSig::new(&[], vec![], Some(ValType::U64)),
                Box::new(capacity),
            )),
        ),
        (
            "read",
            Item::Func(Func::host_ends(
                FuncSig::new(
                    &["offset", "len"],
                    vec![ValType::U64, ValType::U64],
                    Some(ValType::Tuple(vec![stream(), status()])),
                ),
                Box::new(read),
            )),
        ),
        (
            "write",
            Item::Func(Func::host(
                FuncSig::new(
                    &["offset", "data"],
                    vec![ValType::U64, stream()],
                    Some(status()),
                ),
                Box::new(write),
            )),
        ),
        (
            "flush",
            Item::Func(Func::host(
                FuncSig::new(&[], vec![], Some(status())),
                Box::new(flush),
            )),
        ),
    ];
    let mut m: Exports = BTreeMap::new();
    m.insert(
        INTERFACE.to_string(),
        Item::Instance(Rc::new(
            items.into_iter().map(|(n, i)| (n.to_string(), i)).collect(),
        )),
    );
    m
}

/// Reads one `ringos:probe/baseline.read` may ask for (more traps).
pub const MAX_BASELINE_READS: u32 = 4096;

/// The import name of the probe hook (`wit/probe.wit`).
pub const PROBE_INTERFACE: &str = "ringos:probe/baseline@0.1.0";

/// `ringos:probe/baseline` over `read`: `read(count)` does that many of
/// the embedder's own reads of the disk, back to back, without the
/// component machinery (the kernel's are timed and become the same-boot
/// reference of `ringos probe blk --component`; the probe component pairs
/// each block of its reads with one of these).
pub fn probe_imports(read: Box<dyn Fn(u32)>) -> Exports {
    let read = move |_: &mut HostCx<'_>, a: &[u64]| -> Result<Option<u64>, String> {
        let count = a.first().copied().unwrap_or(0) as u32;
        // The embedder's reads run inside the call, where no epoch
        // interruption reaches: a guest may not hold the kernel for long.
        if count > MAX_BASELINE_READS {
            return Err(format!(
                "ringos:probe/baseline.read: {count} reads asked for in one call; at most {MAX_BASELINE_READS}"
            ));
        }
        read(count);
        Ok(None)
    };
    let items = [(
        "read".to_string(),
        Item::Func(Func::host_scalar(
            FuncSig::new(&["count"], vec![ValType::U32], None),
            Box::new(read),
        )),
    )];
    let mut m: Exports = BTreeMap::new();
    m.insert(
        PROBE_INTERFACE.to_string(),
        Item::Instance(Rc::new(items.into_iter().collect())),
    );
    m
}

/// A disk that is not there: every request fails `no-device`.
pub struct NoDisk;

impl BlockDevice for NoDisk {
    fn capacity(&self) -> u64 {
        0
    }
    fn read_only(&self) -> bool {
        true
    }
    fn submit(&self, _: u64, _: BlockOp) -> Result<(), BlockError> {
        Err(BlockError::NoDevice)
    }
    fn poll(&self, _: &mut Vec<(u64, Result<usize, BlockError>)>) {}
}
