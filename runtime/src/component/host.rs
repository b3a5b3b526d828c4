//! Host-side ends of streams and futures: what a host import (WASI in the
//! hosted mode, devices in the kernel) holds when a guest hands it a
//! stream, or when it hands the guest a future. Guest copies meet a host
//! end in the shared state like any other; the notices for the host's
//! side land here (`notice`) and drive the host's reads and writes.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;

use ringos_abi::concurrency::{Copied, HostBuffer, Notice, Side};
use ringos_abi::events::CopyResult;
use ringos_abi::{ValType, Value};

use super::builtins::{deliver, Copier};
use super::state::{Resolution, RtBuffer, Shared, State, Trapped};
use crate::Store;

/// Elements a host read asks for at a time.
const CHUNK: u32 = 4096;

/// Gets every chunk a host-read stream delivers.
pub type OnData = Box<dyn FnMut(&[Value])>;

/// Runs when a host-read stream ends (the writer dropped).
pub type OnEnd = Box<dyn FnOnce(&mut State, *mut Store) -> Result<(), Trapped>>;

/// A host end, by token (`Side::Host(token)`).
pub enum HostEnd {
    /// The host reads a stream a guest writes.
    StreamReader {
        shared: u32,
        on_data: OnData,
        on_end: Option<OnEnd>,
    },
    /// The host writes a future a guest reads.
    FutureWriter { shared: u32 },
}

/// What a host function gets: the store, to call back into Wasm, and the
/// component state, to make and use stream/future ends.
pub struct HostCx<'a> {
    pub store: &'a mut Store,
    pub(crate) sh: &'a Shared,
}

impl HostCx<'_> {
    /// Reads the stream `s` (a `Value::Stream` a guest passed) until its
    /// writer drops: `on_data` gets every chunk, `on_end` runs at the end.
    pub fn read_stream(&mut self, s: u32, on_data: OnData, on_end: OnEnd) -> Result<(), String> {
        let store: *mut Store = self.store;
        let mut st = self.sh.get().map_err(|t| t.0)?;
        let t = &st.shared.stream(s).map_err(|t| Trapped::from(t).0)?.t;
        refuse_handles(t.as_deref()).map_err(|t| t.0)?;
        let token = st.new_token();
        st.host_ends.insert(
            token,
            HostEnd::StreamReader {
                shared: s,
                on_data,
                on_end: Some(on_end),
            },
        );
        issue_read(&mut st, store, token).map_err(|t| t.0)
    }

    /// A future of element type `t` that the host writes with
    /// [`write_future`]; returns the shared index (a `Value::Future` for
    /// the guest) and the host's token.
    pub fn new_future(&mut self, t: &HostElem) -> Result<(u32, u64), String> {
        let mut st = self.sh.get().map_err(|t| t.0)?;
        new_future(&mut st, t).map_err(|t| t.0)
    }

    /// A stream of element type `t` that the host already closed (reads
    /// see the end at once): an empty stdin.
    pub fn closed_stream(&mut self, t: Option<ValType>) -> Result<u32, String> {
        let mut st = self.sh.get().map_err(|t| t.0)?;
        let s = st
            .shared
            .new_stream(t.map(Rc::new))
            .map_err(|t| Trapped::from(t).0)?;
        let _ = st
            .shared
            .stream(s)
            .map_err(|t| Trapped::from(t).0)?
            .drop_end();
        Ok(s)
    }

    /// A pending reply that a loop timer completes (with no result) once
    /// the waiter's clock reaches `deadline_ns`; needs a waiter
    /// ([`super::ComponentStore::set_waiter`]).
    pub fn sleep_until(&mut self, deadline_ns: u64) -> Result<super::call::HostReply, String> {
        let mut st = self.sh.get().map_err(|t| t.0)?;
        if st.waiter.is_none() {
            return Err("timers need the embedder's clock (no waiter set)".into());
        }
        let token = st.new_token();
        st.timers.push((deadline_ns, token));
        Ok(super::call::HostReply::Pending(token))
    }

    /// The waiter's clock, if the embedder set one.
    pub fn now_ns(&mut self) -> Option<u64> {
        let w = self.sh.get().ok()?.waiter.clone()?;
        Some(w.now_ns())
    }

    /// Completes the pending host call `token` with `result`.
    pub fn complete(&mut self, token: u64, result: Option<Value>) -> Result<(), String> {
        super::sched::complete_host_call(self.store, self.sh, token, Resolution::Returned(result))
            .map_err(|t| t.0)
    }

    /// Writes the future of `token` (see [`HostCx::new_future`]).
    pub fn write_future(&mut self, token: u64, v: Value) -> Result<(), String> {
        let store: *mut Store = self.store;
        let mut st = self.sh.get().map_err(|t| t.0)?;
        write_future(&mut st, store, token, v).map_err(|t| t.0)
    }
}

/// The element type of a host end (`None`: no elements), checked once
/// when made rather than per end: a host end cannot hold elements that
/// carry handles (`own` resources, stream/future ends, error contexts),
/// as the host has no handle table to move them into or out of.
#[derive(Clone, Debug)]
pub struct HostElem(Option<Rc<ValType>>);

impl HostElem {
    pub fn new(t: Option<ValType>) -> Result<HostElem, String> {
        refuse_handles(t.as_ref()).map_err(|t| t.0)?;
        Ok(HostElem(t.map(Rc::new)))
    }
}

fn refuse_handles(t: Option<&ValType>) -> Result<(), Trapped> {
    match t {
        Some(t) if t.contains_handle() => Err(Trapped::new(
            "not supported: a host end of a stream or future whose elements hold handles",
        )),
        _ => Ok(()),
    }
}

impl State {
    pub fn new_token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }
}

/// A future the host writes.
pub fn new_future(st: &mut State, t: &HostElem) -> Result<(u32, u64), Trapped> {
    let shared = st.shared.new_future(t.0.clone())?;
    let token = st.new_token();
    st.host_ends.insert(token, HostEnd::FutureWriter { shared });
    Ok((shared, token))
}

/// The host writes its future; the host end is dropped once the value is
/// taken.
pub fn write_future(
    st: &mut State,
    store: *mut Store,
    token: u64,
    v: Value,
) -> Result<(), Trapped> {
    let Some(HostEnd::FutureWriter { shared }) = st.host_ends.get(&token) else {
        return Err(Trapped::new("no such host future"));
    };
    let shared = *shared;
    let f = st.shared.future(shared)?;
    let t = f.t.clone();
    let mut copier = Copier {
        store,
        t: t.as_deref(),
    };
    let buf = RtBuffer::Host(HostBuffer::readable(alloc::vec![v]));
    let (copied, n) = f.write(Side::Host(token), buf, &mut copier)?;
    deliver(st, store, n)?;
    if let Copied::Done { .. } = copied {
        drop_future_writer(st, store, token)?;
    }
    Ok(())
}

fn drop_future_writer(st: &mut State, store: *mut Store, token: u64) -> Result<(), Trapped> {
    if let Some(HostEnd::FutureWriter { shared }) = st.host_ends.remove(&token) {
        let (n, last) = st.shared.future(shared)?.drop_end();
        deliver(st, store, n)?;
        if last {
            st.shared.futures.remove(shared)?;
        }
    }
    Ok(())
}

fn stream_of(st: &State, token: u64) -> Option<u32> {
    match st.host_ends.get(&token) {
        Some(HostEnd::StreamReader { shared, .. }) => Some(*shared),
        _ => None,
    }
}

fn feed(st: &mut State, token: u64, buf: RtBuffer) {
    if let (Some(HostEnd::StreamReader { on_data, .. }), RtBuffer::Host(h)) =
        (st.host_ends.get_mut(&token), buf)
    {
        if !h.values.is_empty() {
            on_data(&h.values);
        }
    }
}

/// Reads until the stream has nothing pending (then a notice resumes).
fn issue_read(st: &mut State, store: *mut Store, token: u64) -> Result<(), Trapped> {
    loop {
        let Some(shared) = stream_of(st, token) else {
            return Ok(());
        };
        let s = st.shared.stream(shared)?;
        let t = s.t.clone();
        let mut copier = Copier {
            store,
            t: t.as_deref(),
        };
        let buf = RtBuffer::Host(HostBuffer::writable(CHUNK));
        let (copied, n) = s.read(Side::Host(token), buf, &mut copier)?;
        deliver(st, store, n)?;
        match copied {
            Copied::Pending => return Ok(()),
            Copied::Done { result, buffer } => {
                feed(st, token, buffer);
                if result != CopyResult::Completed {
                    return end_stream(st, store, token);
                }
            }
        }
    }
}

/// The writer is gone: run `on_end`, drop the host's readable end.
fn end_stream(st: &mut State, store: *mut Store, token: u64) -> Result<(), Trapped> {
    let Some(HostEnd::StreamReader { shared, on_end, .. }) = st.host_ends.remove(&token) else {
        return Ok(());
    };
    if let Some(f) = on_end {
        f(st, store)?;
    }
    let (n, last) = st.shared.stream(shared)?.drop_end();
    deliver(st, store, n)?;
    if last {
        st.shared.streams.remove(shared)?;
    }
    Ok(())
}

/// A notice for a host end.
pub(crate) fn notice(
    st: &mut State,
    store: *mut Store,
    token: u64,
    n: Notice<RtBuffer>,
) -> Result<(), Trapped> {
    match (st.host_ends.get(&token), n) {
        (Some(HostEnd::StreamReader { shared, .. }), Notice::OnCopy { .. }) => {
            let shared = *shared;
            if let Some((_, buf)) = st.shared.stream(shared)?.reclaim() {
                feed(st, token, buf);
            }
            issue_read(st, store, token)
        }
        (Some(HostEnd::StreamReader { .. }), Notice::OnCopyDone { result, buffer, .. }) => {
            feed(st, token, buffer);
            match result {
                CopyResult::Completed => issue_read(st, store, token),
                _ => end_stream(st, store, token),
            }
        }
        (Some(HostEnd::FutureWriter { .. }), _) => drop_future_writer(st, store, token),
        _ => Ok(()),
    }
}
