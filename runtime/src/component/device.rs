//! Device-backed host ends (DESIGN 6): a `stream<u8>` whose bytes a device
//! moves by DMA straight between the guest's linear memory and the
//! hardware. The runtime does not know the device. When a guest copy waits
//! on such an end, the embedder's [`IoSource`] gets it as a [`Transfer`]:
//! the host address and length of the guest's bytes. It reports back with
//! [`HostCx::transferred`] how many moved. No runtime code touches the
//! bytes, so nothing is copied on the way.
//!
//! While the device owns the guest's buffer, the stream's shared state
//! is marked busy: a `cancel` then completes when the transfer does
//! (`BLOCKED` first, as the spec allows). A guest cannot drop an end
//! while its copy is pending, so the buffer cannot disappear under the
//! device.

use alloc::rc::Rc;
use alloc::string::String;

use ringos_abi::concurrency::{SharedStore, Side};
use ringos_abi::ValType;

use super::builtins::deliver;
use super::host::HostCx;
use super::state::{InstId, RtBuffer, State, Trapped};
use crate::Store;

/// Which way a device end's bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The device fills the guest's buffer (the guest reads the stream).
    ToGuest,
    /// The device takes the guest's bytes (the guest writes the stream).
    FromGuest,
}

/// A device end, by token.
pub(crate) struct DeviceEnd {
    pub shared: u32,
    pub dir: Direction,
}

/// Guest bytes waiting on a device end. `addr` is the host address of
/// `len` bytes inside the guest's linear memory, valid and left alone by
/// the runtime until [`HostCx::transferred`] is called for `token`.
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    pub token: u64,
    pub dir: Direction,
    pub addr: *mut u8,
    pub len: usize,
}

/// The guest's side of a device end ([`HostCx::device_end_state`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndState {
    pub dropped: bool,
    pub copy_waits: bool,
}

/// What the embedder's I/O turn finds on its device ends.
#[derive(Clone, Copy, Debug)]
pub enum DeviceWork {
    /// A guest copy waits: move its bytes.
    Transfer(Transfer),
    /// The guest dropped its end (a writer is done, or a reader wants no
    /// more): finish and drop the host's end.
    Closed(u64),
}

/// What an I/O turn did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoTurn {
    /// Something completed (the loop may have tasks to run).
    pub progress: bool,
    /// Requests are still in flight: the loop waits for the device rather
    /// than report a deadlock.
    pub in_flight: bool,
}

/// An embedder's source of I/O completions (a virtio device, a file),
/// polled by the loop whenever no task can run.
pub trait IoSource {
    /// Delivers what completed (and retries what the device refused for
    /// lack of room). Errors trap the run.
    fn poll(&self, cx: &mut HostCx<'_>) -> Result<IoTurn, String>;

    /// A guest copy was just left waiting on device end `token`, or the
    /// guest dropped its end: start the transfer, or finish the end, now
    /// if this source serves it ([`HostCx::device_work_of`]). The device
    /// works while the guest goes on to wait (the io_uring model: submit
    /// at the call, reap in the loop).
    fn start_end(&self, cx: &mut HostCx<'_>, token: u64) -> Result<(), String>;
}

impl HostCx<'_> {
    /// A `stream<u8>` the device writes and the guest reads: returns the
    /// shared index (a `Value::Stream` for the guest) and the end's token.
    pub fn device_stream_to_guest(&mut self) -> Result<(u32, u64), String> {
        let mut st = self.sh.get().map_err(|t| t.0)?;
        let u8_t = st
            .byte_type
            .get_or_insert_with(|| Rc::new(ValType::U8))
            .clone();
        let shared = st
            .shared
            .new_stream(Some(u8_t))
            .map_err(|t| Trapped::from(t).0)?;
        Ok((shared, register(&mut st, shared, Direction::ToGuest)))
    }

    /// Takes the readable end of `stream` (a `Value::Stream` a guest
    /// passed) for the device: the guest's writes go to the device.
    pub fn device_stream_from_guest(&mut self, stream: u32) -> Result<u64, String> {
        let mut st = self.sh.get().map_err(|t| t.0)?;
        st.shared.stream(stream).map_err(|t| Trapped::from(t).0)?;
        Ok(register(&mut st, stream, Direction::FromGuest))
    }

    /// What device end `token` has for the device now: the guest's copy
    /// waiting on it (handed out once, then busy until
    /// [`HostCx::transferred`]), or that the guest dropped its end.
    pub fn device_work_of(&mut self, token: u64) -> Result<Option<DeviceWork>, String> {
        let store: *mut Store = self.store;
        let mut st = self.sh.get().map_err(|t| t.0)?;
        let State {
            device_ends,
            shared,
            ..
        } = &mut *st;
        match device_ends.get(&token) {
            Some(end) => work_of(store, shared, token, end),
            None => Ok(None),
        }
    }

    /// What the guest is doing with device end `token`: whether it
    /// dropped its end, and whether a copy of its waits on it. Unlike
    /// [`HostCx::device_work_of`], a waiting copy's buffer is not taken.
    pub fn device_end_state(&mut self, token: u64) -> Result<EndState, String> {
        let mut st = self.sh.get().map_err(|t| t.0)?;
        let Some(shared) = st.device_ends.get(&token).map(|e| e.shared) else {
            return Ok(EndState::default());
        };
        let s = st.shared.stream(shared).map_err(|t| Trapped::from(t).0)?;
        Ok(EndState {
            dropped: s.dropped,
            copy_waits: matches!(s.pending_side(), Some(Side::Guest { .. })),
        })
    }

    /// The transfer of `token` is over with `bytes` moved (at most its
    /// `len`; 0 for a failed one): the guest's copy completes with that
    /// progress and its event is set.
    pub fn transferred(&mut self, token: u64, bytes: usize) -> Result<(), String> {
        let store: *mut Store = self.store;
        let mut st = self.sh.get().map_err(|t| t.0)?;
        let shared = st
            .device_ends
            .get(&token)
            .map(|e| e.shared)
            .ok_or("no such device end")?;
        let s = st.shared.stream(shared).map_err(|t| Trapped::from(t).0)?;
        if !s.host_busy() {
            return Err("a transfer ended that was not started".into());
        }
        if let Some(RtBuffer::Guest { buf, .. }) = s.pending_buffer_mut() {
            let n = u32::try_from(bytes).map_err(|_| "transfer too long")?;
            if n > buf.remain() {
                return Err("a transfer moved more than the guest's buffer holds".into());
            }
            buf.advance(n);
        }
        let notice = s.end_host_transfer();
        deliver(&mut st, store, notice).map_err(|t| t.0)
    }

    /// Drops the host's end of `token` (the data ended, or failed): the
    /// guest's next copy, or the one waiting, sees `DROPPED`.
    pub fn close_device_end(&mut self, token: u64) -> Result<(), String> {
        let store: *mut Store = self.store;
        let mut st = self.sh.get().map_err(|t| t.0)?;
        let Some(end) = st.device_ends.remove(&token) else {
            return Ok(());
        };
        let (notice, last) = st
            .shared
            .stream(end.shared)
            .map_err(|t| Trapped::from(t).0)?
            .drop_end();
        deliver(&mut st, store, notice).map_err(|t| t.0)?;
        if last {
            st.shared
                .streams
                .remove(end.shared)
                .map_err(|t| Trapped::from(t).0)?;
        }
        Ok(())
    }
}

/// What device end `token` (`end`) has for the device, if anything: the
/// guest's waiting copy (marked busy from here on), or its drop.
fn work_of(
    store: *mut Store,
    shared: &mut SharedStore<RtBuffer>,
    token: u64,
    end: &DeviceEnd,
) -> Result<Option<DeviceWork>, String> {
    let s = shared.stream(end.shared).map_err(|t| Trapped::from(t).0)?;
    if s.host_busy() {
        return Ok(None);
    }
    if s.dropped {
        return Ok(Some(DeviceWork::Closed(token)));
    }
    let guest_waits = matches!(s.pending_side(), Some(Side::Guest { .. }));
    let Some(RtBuffer::Guest { buf, opts, .. }) = s.pending_buffer_mut() else {
        return Ok(None);
    };
    // A zero-length copy asks whether the device end is ready: it is
    // handed out too (`len` 0), and completes at once.
    if !guest_waits {
        return Ok(None);
    }
    let Some(mem) = opts.memory else {
        return Err("a stream<u8> copy without a memory".into());
    };
    // SAFETY: the store outlives this call; the definition is read only
    // (base and length of the guest's memory).
    let def = unsafe { &*(*store).memory_def(mem) };
    let start = buf.ptr + u64::from(buf.progress);
    let len = u64::from(buf.remain());
    // stream.read/write checked the range when the copy began, and linear
    // memory never shrinks; checked again all the same.
    if start.checked_add(len).is_none_or(|end| end > def.len) {
        return Err("a device transfer outside the guest's memory".into());
    }
    s.begin_host_transfer();
    Ok(Some(DeviceWork::Transfer(Transfer {
        token,
        dir: end.dir,
        // SAFETY: in bounds of the memory (checked above).
        addr: unsafe { def.base.add(start as usize) },
        len: len as usize,
    })))
}

/// The device end on the other side of `inst`'s stream end `i`, if a
/// device serves it.
pub(crate) fn device_end_serving(st: &State, inst: InstId, i: u32) -> Option<u64> {
    if st.device_ends.is_empty() {
        return None;
    }
    let shared = st.insts.get(inst)?.copy_end(i).ok()?.shared;
    st.device_ends
        .iter()
        .find(|(_, e)| e.shared == shared)
        .map(|(&t, _)| t)
}

fn register(st: &mut State, shared: u32, dir: Direction) -> u64 {
    let token = st.new_token();
    st.device_ends.insert(token, DeviceEnd { shared, dir });
    token
}
