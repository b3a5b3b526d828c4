//! `wasi:cli/stdin` over bytes the embedder receives (the kernel's serial
//! port, this process's stdin): each `read-via-stream` is a device end
//! ([`crate::component::device`]) that [`Stdin`], an I/O source of the
//! loop, fills from what has arrived. Unlike `ringos:blk` the bytes are
//! copied into the guest's buffer: they come from a buffer of the
//! embedder's, not from a DMA engine.
//!
//! A guest copy waits as any stream copy does until input is there; only
//! then is its buffer taken for the transfer, which ends in the same turn.
//! So a `cancel` of a read waiting for input completes at once.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use ringos_abi::{ValType, Value};

use crate::component::device::{DeviceWork, IoSource, IoTurn};
use crate::component::{HostCx, HostElem};

/// What an [`Input`] has for a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// This many bytes were put in the buffer (at least one).
    Bytes(usize),
    /// Nothing yet; more may come.
    Nothing,
    /// The input ended; nothing more comes.
    End,
}

/// Where stdin's bytes come from. `read` never blocks.
pub trait Input {
    fn read(&self, buf: &mut [u8]) -> Received;
    /// Whether a guest read waits for input now (the embedder may then
    /// wake its idle loop for arriving bytes).
    fn wanted(&self, _waiting: bool) {}
}

/// Bytes taken from the input but not yet read by the guest, at most.
const BUFFERED: usize = 64 << 10;

/// `wasi:cli/stdin` and the loop's I/O source for it. Give the embedder's
/// store the same `Rc` with `add_io`.
pub struct Stdin {
    input: Box<dyn Input>,
    st: RefCell<State>,
    /// `result<_, error-code>`, made once.
    status_t: HostElem,
}

#[derive(Default)]
struct State {
    buf: VecDeque<u8>,
    /// The input said `End` (what is in `buf` is still read).
    ended: bool,
    /// Device ends given out, with their status future's token.
    ends: Vec<(u64, u64)>,
    /// Ends whose guest copy waits for input.
    waiting: Vec<u64>,
}

impl Stdin {
    pub fn new(input: Box<dyn Input>) -> Stdin {
        Stdin {
            input,
            st: RefCell::new(State::default()),
            status_t: crate::wasi::status_elem(),
        }
    }

    /// `read-via-stream`: a stream the input fills, and its status.
    pub fn read_via_stream(&self, cx: &mut HostCx<'_>) -> Result<Value, String> {
        let (s, token) = cx.device_stream_to_guest()?;
        let (f, status) = cx.new_future(&self.status_t)?;
        self.st.borrow_mut().ends.push((token, status));
        Ok(Value::tuple(alloc::vec![
            Value::Stream(s),
            Value::Future(f)
        ]))
    }

    /// Takes what the input has, while there is room.
    fn pull(&self) {
        let mut st = self.st.borrow_mut();
        let mut chunk = [0u8; 512];
        while !st.ended && st.buf.len() < BUFFERED {
            let room = chunk.len().min(BUFFERED - st.buf.len());
            match self.input.read(&mut chunk[..room]) {
                Received::Bytes(n) => st.buf.extend(&chunk[..n.min(room)]),
                Received::Nothing => break,
                Received::End => st.ended = true,
            }
        }
    }

    /// Serves end `token` if its guest copy waits and there is input, or
    /// finishes it if the input ended or the guest dropped it; `true` if
    /// it made progress.
    fn serve(&self, cx: &mut HostCx<'_>, token: u64) -> Result<bool, String> {
        let (ready, ended) = {
            let st = self.st.borrow();
            (!st.buf.is_empty(), st.ended)
        };
        if !ready {
            // All input read and no more coming: the stream ends, and a
            // copy waiting on it sees `DROPPED`. A dropped end goes too.
            let end = cx.device_end_state(token)?;
            if ended || end.dropped {
                self.finish(cx, token)?;
                return Ok(true);
            }
            // Only a copy still waiting (not cancelled) keeps the loop
            // waiting for input.
            let mut st = self.st.borrow_mut();
            st.waiting.retain(|&t| t != token);
            if end.copy_waits {
                st.waiting.push(token);
            }
            return Ok(false);
        }
        self.st.borrow_mut().waiting.retain(|&t| t != token);
        match cx.device_work_of(token)? {
            // Nothing pending (the guest cancelled, or has not read yet).
            None => Ok(false),
            Some(DeviceWork::Closed(t)) => self.finish(cx, t).map(|()| true),
            Some(DeviceWork::Transfer(t)) => {
                // SAFETY: the guest lent these `t.len` bytes of its memory
                // for this transfer (`device::Transfer`); no one else
                // touches them until `transferred`.
                let dst = unsafe { core::slice::from_raw_parts_mut(t.addr, t.len) };
                let n = take_into(&mut self.st.borrow_mut().buf, dst);
                cx.transferred(t.token, n)?;
                Ok(true)
            }
        }
    }

    /// Ends stream `token`: drops the host's end, resolves its status.
    fn finish(&self, cx: &mut HostCx<'_>, token: u64) -> Result<(), String> {
        let status = {
            let mut st = self.st.borrow_mut();
            st.waiting.retain(|&t| t != token);
            let at = st.ends.iter().position(|e| e.0 == token);
            at.map(|i| st.ends.swap_remove(i).1)
        };
        let Some(status) = status else {
            return Ok(());
        };
        cx.close_device_end(token)?;
        cx.write_future(status, Value::ok(None))
    }

    /// Tells the input whether reads wait; returns it.
    fn tell_waiting(&self) -> bool {
        let waiting = !self.st.borrow().waiting.is_empty();
        self.input.wanted(waiting);
        waiting
    }

    fn owns(&self, token: u64) -> bool {
        self.st.borrow().ends.iter().any(|e| e.0 == token)
    }
}

impl IoSource for Stdin {
    fn poll(&self, cx: &mut HostCx<'_>) -> Result<IoTurn, String> {
        let mut turn = IoTurn::default();
        if self.st.borrow().waiting.is_empty() {
            return Ok(turn);
        }
        self.pull();
        let waiting = self.st.borrow().waiting.clone();
        for token in waiting {
            turn.progress |= self.serve(cx, token)?;
        }
        // Reads still waiting for input keep the loop waiting for it
        // rather than reporting a deadlock.
        turn.in_flight = self.tell_waiting();
        Ok(turn)
    }

    fn start_end(&self, cx: &mut HostCx<'_>, token: u64) -> Result<(), String> {
        if !self.owns(token) {
            return Ok(());
        }
        self.pull();
        self.serve(cx, token)?;
        self.tell_waiting();
        Ok(())
    }
}

/// Moves the first bytes of `q` into `buf`, as many as fit; how many.
pub fn take_into(q: &mut VecDeque<u8>, buf: &mut [u8]) -> usize {
    let n = buf.len().min(q.len());
    for (d, b) in buf.iter_mut().zip(q.drain(..n)) {
        *d = b;
    }
    n
}

/// `wasi:cli/stdin` with no input: a stream that ends at once.
pub(crate) fn empty(cx: &mut HostCx<'_>, status_t: &HostElem) -> Result<Value, String> {
    let s = cx.closed_stream(Some(ValType::U8))?;
    let (f, token) = cx.new_future(status_t)?;
    cx.write_future(token, Value::ok(None))?;
    Ok(Value::tuple(alloc::vec![
        Value::Stream(s),
        Value::Future(f)
    ]))
}

/// Bytes given up front, then the end (tests, and input read before the
/// run).
pub struct Bytes(pub RefCell<VecDeque<u8>>);

impl Bytes {
    pub fn new(b: &[u8]) -> Bytes {
        Bytes(RefCell::new(b.iter().copied().collect()))
    }
}

impl Input for Bytes {
    fn read(&self, buf: &mut [u8]) -> Received {
        let mut q = self.0.borrow_mut();
        if q.is_empty() {
            return Received::End;
        }
        Received::Bytes(take_into(&mut q, buf))
    }
}
