//! Rules of the async state machines, mostly after the component-model
//! conformance tests (`test/async/*.wast`) and definitions.py.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::error::Trap;
use crate::events::{pack_copy_result, CopyResult, CopyState, EventCode, SubtaskState, BLOCKED};
use crate::handles::{Dropped, ResourceHandle};
use crate::memory::Handles;
use crate::types::{ResourceType, ValType};
use crate::values::{CoreVal, Value};

/// A copier that records how many elements each copy moved.
#[derive(Default)]
struct Rec(Vec<u32>, CountOnly);

impl CopyElems<HostBuffer> for Rec {
    fn copy(&mut self, src: &mut HostBuffer, dst: &mut HostBuffer, n: u32) -> Result<(), Trap> {
        self.0.push(n);
        self.1.copy(src, dst, n)
    }
}

fn vals(n: u32) -> HostBuffer {
    HostBuffer::readable((0..n).map(|i| Value::U8(i as u8)).collect())
}

const U8: Option<&ValType> = Some(&ValType::U8);

/// An element type as the ends hold it.
fn rc(t: Option<&ValType>) -> Option<alloc::rc::Rc<ValType>> {
    t.cloned().map(alloc::rc::Rc::new)
}

struct Env {
    inst: Instance,
    store: SharedStore<HostBuffer>,
    rec: Rec,
}

impl Env {
    fn new() -> Self {
        Env {
            inst: Instance::new(0, None),
            store: SharedStore::new(),
            rec: Rec::default(),
        }
    }
    fn stream(&mut self) -> (u32, u32) {
        let p = self
            .inst
            .canon_stream_new(&mut self.store, rc(U8).as_ref())
            .unwrap();
        (p as u32, (p >> 32) as u32)
    }
    fn copy(&mut self, kind: EndKind, i: u32, buf: HostBuffer) -> Result<Option<u32>, Trap> {
        let c = self.inst.copy(
            &mut self.store,
            kind,
            U8,
            i,
            true,
            || Ok(buf),
            &mut self.rec,
        )?;
        assert_eq!(c.notice, None, "same-instance notices are applied");
        Ok(c.payload)
    }
    fn read(&mut self, i: u32, n: u32) -> Result<Option<u32>, Trap> {
        self.copy(EndKind::ReadableStream, i, HostBuffer::writable(n))
    }
    fn write(&mut self, i: u32, n: u32) -> Result<Option<u32>, Trap> {
        self.copy(EndKind::WritableStream, i, vals(n))
    }
    fn state(&self, i: u32) -> CopyState {
        self.inst.copy_end(i).unwrap().state
    }
    fn event(&mut self, i: u32) -> crate::events::Event {
        self.inst.get_pending_event(i, &mut self.store).unwrap()
    }
}

fn done(n: u32) -> Option<u32> {
    Some(pack_copy_result(CopyResult::Completed, n))
}

#[test]
fn stream_partial_copies_report_progress() {
    let mut e = Env::new();
    let (r, w) = e.stream();
    assert_eq!((r, w), (1, 2));
    // a write of 4 waits for a reader
    assert_eq!(e.write(w, 4), Ok(None));
    assert_eq!(e.state(w), CopyState::Copying);
    // a read of 2 takes 2 at once; the writer is told of a partial copy
    assert_eq!(e.read(r, 2), Ok(done(2)));
    assert_eq!(e.state(r), CopyState::Idle);
    assert_eq!(e.inst.has_pending_event(w), Ok(true));
    // another read of 1 before the writer looked: the pending buffer still
    // has 2 left, so 1 more moves and the writer's progress grows
    assert_eq!(e.read(r, 1), Ok(done(1)));
    let ev = e.event(w);
    assert_eq!(
        (ev.code, ev.p1, ev.p2),
        (
            EventCode::StreamWrite,
            w,
            pack_copy_result(CopyResult::Completed, 3)
        )
    );
    // delivery reclaimed the buffer: the writer is idle, nothing pending
    assert_eq!(e.state(w), CopyState::Idle);
    assert_eq!(e.store.stream(1).unwrap().pending_side(), None);
    assert_eq!(e.rec.0, vec![2, 1]);

    // a pending reader of 4 gets 2 from a write of 2
    assert_eq!(e.read(r, 4), Ok(None));
    assert_eq!(e.write(w, 2), Ok(done(2)));
    assert_eq!(e.event(r).p2, pack_copy_result(CopyResult::Completed, 2));
}

#[test]
fn stream_zero_length_copies() {
    let mut e = Env::new();
    let (r, w) = e.stream();
    // zero-length read waits (rendezvous)
    assert_eq!(e.read(r, 0), Ok(None));
    // a zero-length write meets it: completes, the reader keeps waiting
    assert_eq!(e.write(w, 0), Ok(done(0)));
    assert_eq!(e.inst.has_pending_event(r), Ok(false));
    // a real write completes the zero-length read and becomes pending
    assert_eq!(e.write(w, 3), Ok(None));
    assert_eq!(e.event(r).p2, pack_copy_result(CopyResult::Completed, 0));
    // a zero-length read against a pending write completes without moving
    assert_eq!(e.read(r, 0), Ok(done(0)));
    assert!(e.rec.0.is_empty());
    assert_eq!(e.inst.has_pending_event(w), Ok(false));
    assert_eq!(e.read(r, 5), Ok(done(3)));
}

#[test]
fn cancel_returns_progress() {
    let mut e = Env::new();
    let (r, w) = e.stream();
    // cancel of a read nothing reached: CANCELLED, progress 0
    assert_eq!(e.read(r, 4), Ok(None));
    let c = e
        .inst
        .cancel_copy(&mut e.store, EndKind::ReadableStream, U8, r, true)
        .unwrap();
    assert_eq!(c.payload, Some(pack_copy_result(CopyResult::Cancelled, 0)));
    assert_eq!(e.state(r), CopyState::Idle);
    // cancel after a partial copy whose event was not delivered: CANCELLED
    // with what was copied (as the conformance suite expects)
    assert_eq!(e.read(r, 4), Ok(None));
    assert_eq!(e.write(w, 3), Ok(done(3)));
    let c = e
        .inst
        .cancel_copy(&mut e.store, EndKind::ReadableStream, U8, r, true)
        .unwrap();
    assert_eq!(c.payload, Some(pack_copy_result(CopyResult::Cancelled, 3)));
    assert_eq!(e.state(r), CopyState::Idle);
    // ... but a buffer filled to the end stays COMPLETED
    assert_eq!(e.read(r, 2), Ok(None));
    assert_eq!(e.write(w, 2), Ok(done(2)));
    let c = e
        .inst
        .cancel_copy(&mut e.store, EndKind::ReadableStream, U8, r, true)
        .unwrap();
    assert_eq!(c.payload, Some(pack_copy_result(CopyResult::Completed, 2)));
    assert_eq!(e.state(r), CopyState::Idle);
    // ... but an end whose writer dropped keeps DROPPED
    assert_eq!(e.read(r, 4), Ok(None));
    assert_eq!(e.write(w, 2), Ok(done(2)));
    e.inst
        .drop_end(&mut e.store, EndKind::WritableStream, U8, w)
        .unwrap();
    let c = e
        .inst
        .cancel_copy(&mut e.store, EndKind::ReadableStream, U8, r, true)
        .unwrap();
    assert_eq!(c.payload, Some(pack_copy_result(CopyResult::Dropped, 2)));
    // cancelling an end that is not copying traps
    let t = e
        .inst
        .cancel_copy(&mut e.store, EndKind::ReadableStream, U8, r, true)
        .unwrap_err();
    assert_eq!(
        t,
        Trap::CancelNotCopying {
            kind: EndKind::ReadableStream
        }
    );
    assert_ne!(c.payload, Some(BLOCKED));
}

#[test]
fn drop_rules() {
    let mut e = Env::new();
    let (r, w) = e.stream();
    assert_eq!(e.read(r, 4), Ok(None));
    assert_eq!(e.write(w, 2), Ok(done(2)));
    // the read is still copying until its event is delivered
    let t = e
        .inst
        .drop_end(&mut e.store, EndKind::ReadableStream, U8, r)
        .unwrap_err();
    assert_eq!(
        t,
        Trap::DropBusy {
            kind: EndKind::ReadableStream
        }
    );
    let m = format!("{t}");
    assert!(m.contains("cannot remove busy stream") && m.contains("cannot drop busy stream"));
    // a second copy on a copying end traps
    assert_eq!(
        e.read(r, 1),
        Err(Trap::ConcurrentCopy {
            kind: EndKind::ReadableStream
        })
    );
    assert!(format!(
        "{}",
        Trap::ConcurrentCopy {
            kind: EndKind::ReadableStream
        }
    )
    .contains("cannot have concurrent operations active on a future/stream"));
    e.event(r);
    // reader waits; writer drops: reader's copy ends DROPPED, end DONE
    assert_eq!(e.read(r, 4), Ok(None));
    assert_eq!(
        e.inst
            .drop_end(&mut e.store, EndKind::WritableStream, U8, w),
        Ok(None)
    );
    let ev = e.event(r);
    assert_eq!(ev.p2, pack_copy_result(CopyResult::Dropped, 0));
    assert_eq!(e.state(r), CopyState::Done);
    let t = e.read(r, 1).unwrap_err();
    assert_eq!(
        format!("{t}"),
        "cannot read from stream after being notified that the writable end dropped"
    );
    let t = e
        .inst
        .lift_async_value(EndKind::ReadableStream, r, U8)
        .unwrap_err();
    assert_eq!(
        format!("{t}"),
        "cannot lift stream after being notified that the writable end dropped"
    );
    // the last end dropped frees the shared state
    assert_eq!(e.store.streams.live(), 1);
    e.inst
        .drop_end(&mut e.store, EndKind::ReadableStream, U8, r)
        .unwrap();
    assert_eq!(e.store.streams.live(), 0);
    assert_eq!(e.inst.handles.live(), 0);
    // writing after the reader dropped: DROPPED at once, then DONE traps
    let (r, w) = e.stream();
    e.inst
        .drop_end(&mut e.store, EndKind::ReadableStream, U8, r)
        .unwrap();
    assert_eq!(
        e.write(w, 1),
        Ok(Some(pack_copy_result(CopyResult::Dropped, 0)))
    );
    assert!(format!("{}", e.write(w, 1).unwrap_err())
        .contains("cannot write to stream after being notified that the readable end dropped"));
    // wrong kind / wrong element type
    assert!(matches!(
        e.read(w, 1),
        Err(Trap::WrongHandleType { index, .. }) if index == w
    ));
    let t = e
        .inst
        .drop_end(
            &mut e.store,
            EndKind::WritableStream,
            Some(&ValType::U16),
            w,
        )
        .unwrap_err();
    assert!(matches!(t, Trap::WrongHandleType { .. }));
}

#[test]
fn futures() {
    let mut e = Env::new();
    let p = e
        .inst
        .canon_future_new(&mut e.store, rc(U8).as_ref())
        .unwrap();
    let (r, w) = (p as u32, (p >> 32) as u32);
    // futures must write before the writable end drops
    let t = e
        .inst
        .drop_end(&mut e.store, EndKind::WritableFuture, U8, w)
        .unwrap_err();
    assert_eq!(
        format!("{t}"),
        "cannot drop future write end without first writing a value"
    );
    assert_eq!(
        e.copy(EndKind::ReadableFuture, r, HostBuffer::writable(1)),
        Ok(None)
    );
    assert_eq!(e.copy(EndKind::WritableFuture, w, vals(1)), Ok(Some(0)));
    assert_eq!(e.state(w), CopyState::Done);
    let ev = e.event(r);
    assert_eq!((ev.code, ev.p2), (EventCode::FutureRead, 0));
    assert_eq!(e.state(r), CopyState::Done);
    assert!(format!(
        "{}",
        e.copy(EndKind::WritableFuture, w, vals(1)).unwrap_err()
    )
    .contains("cannot write to future after previous write succeeded"));
    assert!(format!(
        "{}",
        e.copy(EndKind::ReadableFuture, r, HostBuffer::writable(1))
            .unwrap_err()
    )
    .contains("cannot read from future after previous read succeeded"));
    assert!(format!(
        "{}",
        e.inst
            .lift_async_value(EndKind::ReadableFuture, r, U8)
            .unwrap_err()
    )
    .contains("cannot lift future after previous read succeeded"));
    e.inst
        .drop_end(&mut e.store, EndKind::WritableFuture, U8, w)
        .unwrap();
    e.inst
        .drop_end(&mut e.store, EndKind::ReadableFuture, U8, r)
        .unwrap();
    assert_eq!(e.store.futures.live(), 0);

    // reader drops first: the write ends DROPPED, then the writer may drop
    let p = e
        .inst
        .canon_future_new(&mut e.store, rc(U8).as_ref())
        .unwrap();
    let (r, w) = (p as u32, (p >> 32) as u32);
    e.inst
        .drop_end(&mut e.store, EndKind::ReadableFuture, U8, r)
        .unwrap();
    assert_eq!(
        e.copy(EndKind::WritableFuture, w, vals(1)),
        Ok(Some(CopyResult::Dropped as u32))
    );
    e.inst
        .drop_end(&mut e.store, EndKind::WritableFuture, U8, w)
        .unwrap();

    // same-instance copies only of numbers
    let ch = Some(&ValType::Char);
    let p = e
        .inst
        .canon_future_new(&mut e.store, rc(ch).as_ref())
        .unwrap();
    let (r, w) = (p as u32, (p >> 32) as u32);
    let c = e
        .inst
        .copy(
            &mut e.store,
            EndKind::ReadableFuture,
            ch,
            r,
            true,
            || Ok(HostBuffer::writable(1)),
            &mut e.rec,
        )
        .unwrap();
    assert_eq!(c.payload, None);
    let t = e
        .inst
        .copy(
            &mut e.store,
            EndKind::WritableFuture,
            ch,
            w,
            true,
            || Ok(HostBuffer::readable(vec![Value::Char('x')])),
            &mut e.rec,
        )
        .unwrap_err();
    assert!(format!("{t}").contains("cannot read from and write to intra-component future"));
}

#[test]
fn cross_instance_and_host_notices() {
    // writer in instance 0, readable end moved to instance 1
    let mut a = Instance::new(0, None);
    let mut b = Instance::new(1, None);
    let mut store: SharedStore<HostBuffer> = SharedStore::new();
    let mut rec = Rec::default();
    let p = a.canon_stream_new(&mut store, rc(None).as_ref()).unwrap();
    let (r, w) = (p as u32, (p >> 32) as u32);
    let shared = a
        .lift_async_value(EndKind::ReadableStream, r, None)
        .unwrap();
    let rb = b
        .lower_async_value(EndKind::ReadableStream, shared, None)
        .unwrap();
    let c = b
        .copy(
            &mut store,
            EndKind::ReadableStream,
            None,
            rb,
            true,
            || Ok(HostBuffer::writable(8)),
            &mut rec,
        )
        .unwrap();
    assert_eq!(c.payload, None);
    // payload-less: only counts move
    let c = a
        .copy(
            &mut store,
            EndKind::WritableStream,
            None,
            w,
            true,
            || Ok(HostBuffer::readable(vec![Value::Record(vec![]); 5])),
            &mut rec,
        )
        .unwrap();
    assert_eq!(c.payload, done(5));
    let n = c.notice.expect("notice for instance 1");
    assert_eq!(
        n,
        Notice::OnCopy {
            side: Side::Guest {
                inst: 1,
                handle: rb
            }
        }
    );
    b.apply_notice(n).unwrap();
    let ev = b.get_pending_event(rb, &mut store).unwrap();
    assert_eq!(ev.p2, pack_copy_result(CopyResult::Completed, 5));

    // a host reader: it gets OnCopyDone with its buffer back
    let s = store.new_stream(None).unwrap();
    let host = Side::Host(7);
    let (c, n) = store
        .stream(s)
        .unwrap()
        .read(host, HostBuffer::writable(2), &mut rec)
        .unwrap();
    assert_eq!((c, n), (Copied::Pending, None));
    let (n, _) = store.stream(s).unwrap().drop_end();
    match n {
        Some(Notice::OnCopyDone {
            side,
            result,
            buffer,
        }) => {
            assert_eq!(
                (side, result, buffer.progress),
                (host, CopyResult::Dropped, 0)
            )
        }
        n => panic!("{n:?}"),
    }
}

#[test]
fn waitable_sets() {
    let mut e = Env::new();
    let (r, w) = e.stream();
    let s = e.inst.canon_waitable_set_new().unwrap();
    e.inst.canon_waitable_join(r, s).unwrap();
    // a sync copy of an end in a set traps
    let t = e
        .inst
        .copy(
            &mut e.store,
            EndKind::ReadableStream,
            U8,
            r,
            false,
            || Ok(HostBuffer::writable(1)),
            &mut e.rec,
        )
        .unwrap_err();
    assert!(format!("{t}")
        .contains("waitable cannot be used synchronously while added to a waitable set"));
    assert!(format!(
        "{}",
        e.inst
            .lift_async_value(EndKind::ReadableStream, r, U8)
            .unwrap_err()
    )
    .contains("cannot lift stream while it's in a waitable set"));
    // nothing pending: poll says NONE
    let mut task = Task::new(1, true, true, true, None, LiftOptions::default());
    let ev = e
        .inst
        .canon_waitable_set_poll(s, &mut task, false, &mut e.store)
        .unwrap();
    assert_eq!(ev.code, EventCode::None);
    assert_eq!(e.read(r, 2), Ok(None));
    assert_eq!(e.inst.set_has_pending_event(s), Ok(false));
    assert_eq!(e.write(w, 1), Ok(done(1)));
    assert_eq!(e.inst.set_has_pending_event(s), Ok(true));
    // a waiter: the set cannot be dropped
    e.inst.canon_waitable_set_wait(s).unwrap();
    let t = e.inst.canon_waitable_set_drop(s).unwrap_err();
    assert!(matches!(t, Trap::WaitableSetNotEmpty { .. }));
    e.inst.canon_waitable_join(r, 0).unwrap();
    let t = e.inst.canon_waitable_set_drop(s).unwrap_err();
    assert!(format!("{t}").contains("cannot drop waitable set with waiters"));
    e.inst.canon_waitable_join(r, s).unwrap();
    let ev = e.inst.wait_end(s, false, &mut e.store).unwrap();
    assert_eq!(
        (ev.code, ev.p1, ev.p2),
        (
            EventCode::StreamRead,
            r,
            pack_copy_result(CopyResult::Completed, 1)
        )
    );
    // a cancelled wait returns TASK_CANCELLED
    e.inst.wait_begin(s).unwrap();
    let ev = e.inst.wait_end(s, true, &mut e.store).unwrap();
    assert_eq!(ev.code, EventCode::TaskCancelled);
    // pending cancellation is delivered by a cancellable poll
    task.start().unwrap();
    assert_eq!(
        task.request_cancellation(false, true),
        Ok(CancelRequest::Pending)
    );
    let ev = e
        .inst
        .canon_waitable_set_poll(s, &mut task, true, &mut e.store)
        .unwrap();
    assert_eq!(ev.code, EventCode::TaskCancelled);
    assert_eq!(task.state, TaskState::CancelDelivered);
    // dropping a joined end removes it from the set; then the set drops
    e.inst
        .drop_end(&mut e.store, EndKind::ReadableStream, U8, r)
        .unwrap();
    e.inst.canon_waitable_set_drop(s).unwrap();
    // a waitable set is not a waitable, a stream end not a set
    assert!(e.inst.canon_waitable_join(w, w).is_err());
    assert!(e.inst.canon_waitable_set_drop(w).is_err());
    // the reader is gone: the write ends DROPPED at once
    assert_eq!(
        e.write(w, 1),
        Ok(Some(pack_copy_result(CopyResult::Dropped, 0)))
    );
    // a synchronous waiter blocks joining and cancelling
    let (r, _w) = e.stream();
    let s = e.inst.canon_waitable_set_new().unwrap();
    let c = e
        .inst
        .copy(
            &mut e.store,
            EndKind::ReadableStream,
            U8,
            r,
            false,
            || Ok(HostBuffer::writable(1)),
            &mut e.rec,
        )
        .unwrap();
    assert_eq!(c.payload, None);
    e.inst.begin_sync_wait(r).unwrap();
    assert_eq!(
        e.inst.canon_waitable_join(r, s),
        Err(Trap::SyncWaiter { index: r })
    );
    assert!(e
        .inst
        .cancel_copy(&mut e.store, EndKind::ReadableStream, U8, r, true)
        .is_err());
    e.inst.end_sync_wait(r).unwrap();
    e.inst.canon_waitable_join(r, s).unwrap();
}

const R: ResourceType = ResourceType(3);

#[test]
fn subtasks() {
    let mut inst = Instance::new(0, None);
    let mut store: SharedStore<HostBuffer> = SharedStore::new();
    let h = inst.canon_resource_new(R, 42).unwrap();
    // lend `h` to the callee while lifting the arguments
    let mut hs = InstanceHandles::new(&mut inst, &[]);
    assert_eq!(hs.lift_borrow(h, R), Ok(42));
    let lenders = core::mem::take(&mut hs.lenders);
    let mut sub = Subtask::new(99);
    for l in lenders {
        sub.add_lender(l).unwrap();
    }
    let i = inst.add_subtask(sub).unwrap();
    // not resolved: drop traps
    let t = inst.canon_subtask_drop(i).unwrap_err();
    assert_eq!(
        format!("{t}"),
        format!(
            "cannot drop a subtask which has not yet resolved (subtask.drop of handle index {i})"
        )
    );
    let s = inst.subtask_mut(i).unwrap();
    s.on_start().unwrap();
    s.on_progress();
    let ev = inst.get_pending_event(i, &mut store).unwrap();
    assert_eq!(
        (ev.code, ev.p1, ev.p2),
        (EventCode::Subtask, i, SubtaskState::Started as u32)
    );
    // the lend holds while unresolved
    assert_eq!(
        inst.canon_resource_drop(R, h),
        Err(Trap::OwnedResourceBorrowed { index: h })
    );
    // cancel: the runtime must call on_cancel; a second cancel traps
    assert_eq!(
        inst.canon_subtask_cancel(i, true, &mut store),
        Ok(SubtaskCancel::CallOnCancel { callee: 99 })
    );
    assert_eq!(
        inst.canon_subtask_cancel(i, true, &mut store),
        Err(Trap::SubtaskCancelRequested { index: i })
    );
    assert_eq!(inst.subtask_cancel_finish(i, &mut store), Ok(None));
    let s = inst.subtask_mut(i).unwrap();
    s.on_resolve(None).unwrap();
    s.on_progress();
    assert_eq!(
        inst.subtask_cancel_finish(i, &mut store),
        Ok(Some(SubtaskState::CancelledBeforeReturned))
    );
    // resolution delivered: the lend ended, cancel traps, drop works
    assert_eq!(
        inst.canon_subtask_cancel(i, true, &mut store),
        Err(Trap::SubtaskResolveDelivered { index: i })
    );
    inst.canon_subtask_drop(i).unwrap();
    assert_eq!(inst.canon_resource_drop(R, h), Ok(Dropped::Own { rep: 42 }));

    // a subtask that returns
    let mut s = Subtask::new(1);
    assert!(
        s.on_resolve(Some(vec![])).is_err(),
        "RETURNED needs STARTED"
    );
    s.on_start().unwrap();
    s.on_resolve(Some(vec![CoreVal::I32(5)])).unwrap();
    assert_eq!(s.state, SubtaskState::Returned);
    inst.deliver_resolve(&mut s).unwrap();
    assert!(s.resolve_delivered());
    // sync cancel of a subtask in a set traps
    let mut s = Subtask::new(2);
    s.on_start().unwrap();
    let i = inst.add_subtask(s).unwrap();
    let ws = inst.canon_waitable_set_new().unwrap();
    inst.canon_waitable_join(i, ws).unwrap();
    assert!(format!(
        "{}",
        inst.canon_subtask_cancel(i, false, &mut store).unwrap_err()
    )
    .contains("waitable cannot be used synchronously while added to a waitable set"));
}

#[test]
fn backpressure_counter() {
    let mut inst = Instance::new(0, None);
    assert_eq!(inst.canon_backpressure_dec(), Err(Trap::Backpressure));
    assert!(!inst.has_backpressure(false));
    inst.canon_backpressure_inc().unwrap();
    assert!(inst.has_backpressure(false));
    assert!(inst.must_wait_to_enter(false));
    inst.canon_backpressure_dec().unwrap();
    for _ in 0..0xffff {
        inst.canon_backpressure_inc().unwrap();
    }
    assert_eq!(inst.canon_backpressure_inc(), Err(Trap::Backpressure));
    assert_eq!(inst.backpressure, 0xffff);
    // implicit backpressure: the exclusive lock
    let mut inst = Instance::new(0, None);
    inst.acquire_exclusive(3).unwrap();
    assert!(inst.has_backpressure(true) && !inst.has_backpressure(false));
    inst.release_exclusive(3).unwrap();
    inst.start_waiting_to_enter();
    assert!(inst.must_wait_to_enter(false));
    inst.stop_waiting_to_enter().unwrap();
    assert!(!inst.must_wait_to_enter(true));
}

#[test]
fn tasks() {
    let mut t = Task::new(
        1,
        true,
        true,
        false,
        Some(ValType::U32),
        LiftOptions::default(),
    );
    assert!(!t.needs_exclusive());
    assert_eq!(t.context_get(1), Ok(0));
    t.context_set(1, 77).unwrap();
    assert_eq!(t.context_get(1), Ok(77));
    assert_eq!(t.context_set(2, 1), Err(Trap::ContextSlot { index: 2 }));
    assert_eq!(t.cancel(), Err(Trap::TaskCancelNotDelivered));
    t.start().unwrap();
    assert_eq!(
        t.check_task_return(Some(&ValType::U64), &LiftOptions::default()),
        Err(Trap::TaskReturnType)
    );
    let other = LiftOptions {
        memory: Some(1),
        ..LiftOptions::default()
    };
    assert_eq!(
        t.check_task_return(Some(&ValType::U32), &other),
        Err(Trap::TaskReturnOptions)
    );
    assert_eq!(t.check_exit(), Err(Trap::TaskNotResolved));
    t.borrows.num_borrows = 1;
    assert!(matches!(t.return_(), Err(Trap::BorrowsRemain { count: 1 })));
    assert!(format!("{}", t.return_().unwrap_err())
        .contains("borrow handles still remain at the end of the call"));
    t.borrows.release().unwrap();
    t.check_task_return(Some(&ValType::U32), &LiftOptions::default())
        .unwrap();
    t.return_().unwrap();
    assert_eq!(t.return_(), Err(Trap::TaskAlreadyResolved));
    t.check_exit().unwrap();

    // a sync-lifted task cannot use task.return / task.cancel
    let mut s = Task::new(2, false, false, false, None, LiftOptions::default());
    assert!(s.needs_exclusive());
    assert!(matches!(
        s.check_task_return(None, &LiftOptions::default()),
        Err(Trap::NotAsyncTask {
            builtin: "task.return"
        })
    ));
    assert!(matches!(
        s.canon_task_cancel(),
        Err(Trap::NotAsyncTask { .. })
    ));
    // a sync-typed task may not block before returning
    assert_eq!(
        format!("{}", s.check_may_block().unwrap_err()),
        "cannot block a synchronous task before returning"
    );

    // cancellation before start is delivered at once
    let mut c = Task::new(3, true, true, true, None, LiftOptions::default());
    assert_eq!(
        c.request_cancellation(false, false),
        Ok(CancelRequest::ResumeImplicit)
    );
    c.canon_task_cancel().unwrap();
    assert_eq!(c.state, TaskState::Resolved);
    let mut c = Task::new(4, true, true, true, None, LiftOptions::default());
    c.start().unwrap();
    assert_eq!(
        c.request_cancellation(true, true),
        Ok(CancelRequest::ResumeCancellable)
    );
    assert!(!c.deliver_pending_cancel(true));
    c.cancel().unwrap();
}

#[test]
fn entering_instances() {
    // 0 is the root, 1 and 2 its children
    let mut insts = vec![
        Instance::new(0, None),
        Instance::new(1, Some(0)),
        Instance::new(2, Some(0)),
    ];
    assert_eq!(entering_set(&insts, 1, Some(2)), vec![1]);
    assert_eq!(entering_set(&insts, 1, None), vec![1, 0]);
    enter_from(&mut insts, 1, None).unwrap();
    assert!(!insts[0].may_enter && !insts[1].may_enter);
    // re-entering the callee (or its parent from outside) traps
    assert_eq!(enter_from(&mut insts, 1, Some(2)), Err(Trap::CannotEnter));
    assert_eq!(enter_from(&mut insts, 2, None), Err(Trap::CannotEnter));
    leave_to(&mut insts, 1, None);
    assert!(may_enter_from(&insts, 2, None));
    // a trapped instance is poisoned
    insts[2].poison();
    assert_eq!(
        format!("{}", enter_from(&mut insts, 2, Some(1)).unwrap_err()),
        "cannot enter component instance"
    );
    // may_leave
    insts[1].may_leave = false;
    let t = insts[1].canon_waitable_set_new().unwrap_err();
    assert_eq!(
        t,
        Trap::MayNotLeave {
            builtin: "waitable-set.new"
        }
    );
}

#[test]
fn handles_share_one_table() {
    let mut inst = Instance::new(0, None);
    let mut store: SharedStore<HostBuffer> = SharedStore::new();
    let res = inst.canon_resource_new(R, 1).unwrap();
    let p = inst
        .canon_stream_new(&mut store, rc(None).as_ref())
        .unwrap();
    let ws = inst.canon_waitable_set_new().unwrap();
    let ec = inst.canon_error_context_new(5).unwrap();
    assert_eq!((res, p as u32, (p >> 32) as u32, ws, ec), (1, 2, 3, 4, 5));
    assert!(matches!(
        inst.handles.get(res),
        Ok(Handle::Resource(ResourceHandle { rep: 1, .. }))
    ));
    // a resource is not a waitable, a set is not a resource
    assert!(inst.canon_waitable_join(res, ws).is_err());
    assert!(matches!(
        inst.canon_resource_rep(R, ws),
        Err(Trap::WrongHandleType { .. })
    ));
    let mut hs = InstanceHandles::new(&mut inst, &[]);
    assert_eq!(hs.lift_error_context(ec), Ok(5));
    assert!(
        hs.lift_stream(3, None).is_err(),
        "a writable end does not lift"
    );
    assert_eq!(hs.lift_stream(2, None), Ok(1));
    assert_eq!(inst.canon_error_context_drop(ec), Ok(5));
    assert_eq!(inst.handles.live(), 3);
}

// ---- elements that hold handles ---------------------------------------

/// `dst.write(src.read(n))` from `w`'s memory and table into `r`'s, as a
/// copy of elements of type `t` (the writer offers `offered`, the reader
/// has room for `room`, `n` move).
fn move_elems(
    w: &mut Instance,
    w_mem: &mut dyn crate::memory::Memory,
    r: &mut Instance,
    r_mem: &mut dyn crate::memory::Memory,
    t: &ValType,
    (offered, room, n): (u64, u64, u32),
) -> Result<(), Trap> {
    use crate::buffers::GuestBuffer;
    use crate::memory::{Cx, Options};
    let mut wh = ElemHandles { inst: w };
    let mut rh = ElemHandles { inst: r };
    let mut wcx = Cx::new(Options::default(), Some(w_mem), None, &mut wh);
    let mut rcx = Cx::new(Options::default(), Some(r_mem), None, &mut rh);
    let mut src = GuestBuffer::new(&wcx, Some(t), 0, offered)?;
    let mut dst = GuestBuffer::new(&rcx, Some(t), 0, room)?;
    copy_guest_values(&mut wcx, &mut src, &mut rcx, &mut dst, Some(t), n)?;
    assert_eq!((src.progress, dst.progress), (n, n));
    Ok(())
}

fn mem_of(words: &[u32]) -> Vec<u8> {
    let mut m: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    m.resize(64, 0xee);
    m
}

fn word(m: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(m[4 * i..4 * i + 4].try_into().unwrap())
}

#[test]
fn own_elements_move_only_the_n_copied() {
    let t = ValType::Own(R);
    let (mut w, mut r) = (Instance::new(0, None), Instance::new(1, None));
    let hs: Vec<u32> = (10..13)
        .map(|rep| w.canon_resource_new(R, rep).unwrap())
        .collect();
    let mut w_mem = mem_of(&hs);
    let mut r_mem = mem_of(&[]);
    // 3 offered, room for 2, 2 move
    move_elems(&mut w, &mut w_mem, &mut r, &mut r_mem, &t, (3, 2, 2)).unwrap();
    // the writer's first two are gone, the third is still its own
    assert_eq!(
        w.canon_resource_rep(R, hs[0]),
        Err(Trap::UnknownHandle(hs[0]))
    );
    assert_eq!(
        w.canon_resource_rep(R, hs[1]),
        Err(Trap::UnknownHandle(hs[1]))
    );
    assert_eq!(w.canon_resource_rep(R, hs[2]), Ok(12));
    // the reader owns two new handles, written where its buffer was
    let (a, b) = (word(&r_mem, 0), word(&r_mem, 1));
    assert_eq!((a, b, word(&r_mem, 2)), (1, 2, 0xeeee_eeee));
    assert_eq!(r.canon_resource_rep(R, a), Ok(10));
    assert_eq!(r.canon_resource_rep(R, b), Ok(11));
    assert!(matches!(
        r.handles.get(a),
        Ok(Handle::Resource(ResourceHandle {
            own: true,
            num_lends: 0,
            ..
        }))
    ));
    assert_eq!(r.canon_resource_drop(R, a), Ok(Dropped::Own { rep: 10 }));
    assert_eq!((w.handles.live(), r.handles.live()), (1, 1));
}

#[test]
fn own_elements_that_cannot_move_trap() {
    let t = ValType::Own(R);
    let other = ResourceType(R.0 + 1);
    let mut w = Instance::new(0, None);
    let mut r = Instance::new(1, None);
    let mut r_mem = mem_of(&[]);
    let mut one = |w: &mut Instance, h: u32| {
        let mut w_mem = mem_of(&[h]);
        move_elems(w, &mut w_mem, &mut r, &mut r_mem, &t, (1, 1, 1))
    };
    // lent to a call in progress (`num_lends != 0`)
    let lent = w.canon_resource_new(R, 1).unwrap();
    let mut ih = InstanceHandles::new(&mut w, &[]);
    assert_eq!(ih.lift_borrow(lent, R), Ok(1));
    assert_eq!(
        one(&mut w, lent),
        Err(Trap::OwnedResourceBorrowed { index: lent })
    );
    // another resource type
    let wrong = w.canon_resource_new(other, 2).unwrap();
    assert_eq!(
        one(&mut w, wrong),
        Err(Trap::ResourceTypeMismatch { index: wrong })
    );
    // a borrow handle is not an own
    let mut scope = crate::handles::BorrowScope::new(7);
    let borrowed = crate::handles::lower_borrow(&mut w.handles, 3, R, false, &mut scope).unwrap();
    assert_eq!(
        one(&mut w, borrowed),
        Err(Trap::NotAnOwnHandle { index: borrowed })
    );
    // not a resource at all, or nothing there
    let ws = w.canon_waitable_set_new().unwrap();
    assert!(matches!(
        one(&mut w, ws),
        Err(Trap::WrongHandleType { index, .. }) if index == ws
    ));
    assert_eq!(one(&mut w, 99), Err(Trap::UnknownHandle(99)));
    // every one of them stayed with the writer
    assert_eq!(w.handles.live(), 4);
    assert_eq!(w.canon_resource_rep(R, lent), Ok(1));
}

#[test]
fn borrow_elements_trap() {
    // validation rejects them; the copy traps rather than lend
    let t = ValType::Borrow(R);
    let (mut w, mut r) = (Instance::new(0, None), Instance::new(1, None));
    let h = w.canon_resource_new(R, 1).unwrap();
    let (mut w_mem, mut r_mem) = (mem_of(&[h]), mem_of(&[]));
    assert!(matches!(
        move_elems(&mut w, &mut w_mem, &mut r, &mut r_mem, &t, (1, 1, 1)),
        Err(Trap::Unsupported(_))
    ));
    assert!(matches!(
        w.handles.get(h),
        Ok(Handle::Resource(ResourceHandle { num_lends: 0, .. }))
    ));
}

#[test]
fn stream_elements_move_readable_ends() {
    let t = ValType::stream(Some(ValType::U8));
    let mut store: SharedStore<HostBuffer> = SharedStore::new();
    let (mut w, mut r) = (Instance::new(0, None), Instance::new(1, None));
    let p = w.canon_stream_new(&mut store, rc(U8).as_ref()).unwrap();
    let (rs, ws) = (p as u32, (p >> 32) as u32);
    let shared = w.copy_end(rs).unwrap().shared;
    let (mut w_mem, mut r_mem) = (mem_of(&[rs]), mem_of(&[]));
    move_elems(&mut w, &mut w_mem, &mut r, &mut r_mem, &t, (1, 1, 1)).unwrap();
    assert_eq!(w.handles.get(rs), Err(Trap::UnknownHandle(rs)));
    let e = r.copy_end(word(&r_mem, 0)).unwrap();
    assert_eq!(
        (e.kind, e.shared, e.t.as_deref(), e.state),
        (EndKind::ReadableStream, shared, U8, CopyState::Idle)
    );
    // a writable end never moves
    let mut w_mem = mem_of(&[ws]);
    assert!(matches!(
        move_elems(&mut w, &mut w_mem, &mut r, &mut r_mem, &t, (1, 1, 1)),
        Err(Trap::WrongHandleType { .. })
    ));
    // nor a readable end in a waitable set, or with a copy in progress
    let p = w.canon_stream_new(&mut store, rc(U8).as_ref()).unwrap();
    let rs = p as u32;
    let set = w.canon_waitable_set_new().unwrap();
    w.canon_waitable_join(rs, set).unwrap();
    let mut w_mem = mem_of(&[rs]);
    assert_eq!(
        move_elems(&mut w, &mut w_mem, &mut r, &mut r_mem, &t, (1, 1, 1)),
        Err(Trap::LiftInWaitableSet {
            kind: EndKind::ReadableStream
        })
    );
    w.canon_waitable_join(rs, 0).unwrap();
    let mut rec = Rec::default();
    let c = w
        .copy(
            &mut store,
            EndKind::ReadableStream,
            U8,
            rs,
            true,
            || Ok(HostBuffer::writable(1)),
            &mut rec,
        )
        .unwrap();
    assert_eq!(c.payload, None);
    assert_eq!(
        move_elems(&mut w, &mut w_mem, &mut r, &mut r_mem, &t, (1, 1, 1)),
        Err(Trap::LiftBusy {
            kind: EndKind::ReadableStream
        })
    );
    // an element stream of another element type
    let p = w.canon_stream_new(&mut store, rc(None).as_ref()).unwrap();
    let mut w_mem = mem_of(&[p as u32]);
    assert!(matches!(
        move_elems(&mut w, &mut w_mem, &mut r, &mut r_mem, &t, (1, 1, 1)),
        Err(Trap::WrongHandleType { .. })
    ));
}

#[test]
fn future_of_own_moves_its_handle() {
    let t = ValType::future(Some(ValType::Own(R)));
    let mut store: SharedStore<HostBuffer> = SharedStore::new();
    let (mut w, mut r) = (Instance::new(0, None), Instance::new(1, None));
    let inner = Some(ValType::Own(R));
    let p = w
        .canon_future_new(&mut store, rc(inner.as_ref()).as_ref())
        .unwrap();
    let (mut w_mem, mut r_mem) = (mem_of(&[p as u32]), mem_of(&[]));
    move_elems(&mut w, &mut w_mem, &mut r, &mut r_mem, &t, (1, 1, 1)).unwrap();
    let e = r.copy_end(word(&r_mem, 0)).unwrap();
    assert_eq!(
        (e.kind, e.t.as_deref()),
        (EndKind::ReadableFuture, inner.as_ref())
    );
    assert_eq!(w.handles.live(), 1, "the writable end stays");
}

/// A [`CopyElemsIn`] that records who called and moves counts.
#[derive(Default)]
struct Calls(Vec<(u32, u32)>);

impl CopyElemsIn<HostBuffer> for Calls {
    fn copy_in(
        &mut self,
        caller: &mut Instance,
        src: &mut HostBuffer,
        dst: &mut HostBuffer,
        n: u32,
    ) -> Result<(), Trap> {
        self.0.push((caller.id, n));
        CountOnly.copy(src, dst, n)
    }
}

#[test]
fn copy_moving_handles_hands_the_caller_to_the_copier() {
    let t = Some(ValType::Own(R));
    let mut store: SharedStore<HostBuffer> = SharedStore::new();
    let (mut a, mut b) = (Instance::new(0, None), Instance::new(1, None));
    let p = a
        .canon_stream_new(&mut store, rc(t.as_ref()).as_ref())
        .unwrap();
    let rs = p as u32;
    // `b` holds the writable end (as if it had been made there)
    let shared = a.copy_end(rs).unwrap().shared;
    let ws = b
        .handles
        .add(Handle::CopyEnd(CopyEnd::new(
            EndKind::WritableStream,
            shared,
            rc(t.as_ref()),
        )))
        .unwrap();
    let mut calls = Calls::default();
    // b offers 3: nothing moves
    let c = b
        .copy_moving_handles(
            &mut store,
            EndKind::WritableStream,
            t.as_ref(),
            ws,
            true,
            || Ok(vals(3)),
            &mut calls,
        )
        .unwrap();
    assert_eq!((c.payload, calls.0.len()), (None, 0));
    // a reads 2: the copier runs once, with `a` as the caller
    let c = a
        .copy_moving_handles(
            &mut store,
            EndKind::ReadableStream,
            t.as_ref(),
            rs,
            true,
            || Ok(HostBuffer::writable(2)),
            &mut calls,
        )
        .unwrap();
    assert_eq!(c.payload, Some(pack_copy_result(CopyResult::Completed, 2)));
    assert_eq!(calls.0, vec![(0, 2)]);
    let notice = c.notice.unwrap();
    assert!(matches!(
        notice,
        Notice::OnCopy {
            side: Side::Guest { inst: 1, .. }
        }
    ));
    // b takes its partial-copy event (the buffer goes back: b is idle)
    b.apply_notice(notice).unwrap();
    assert_eq!(
        b.get_pending_event(ws, &mut store).unwrap().p2,
        pack_copy_result(CopyResult::Completed, 2)
    );
    // the other order: a waits to read 4, b writes 1: the writer calls
    let c = a
        .copy_moving_handles(
            &mut store,
            EndKind::ReadableStream,
            t.as_ref(),
            rs,
            true,
            || Ok(HostBuffer::writable(4)),
            &mut calls,
        )
        .unwrap();
    assert_eq!(c.payload, None);
    let c = b
        .copy_moving_handles(
            &mut store,
            EndKind::WritableStream,
            t.as_ref(),
            ws,
            true,
            || Ok(vals(1)),
            &mut calls,
        )
        .unwrap();
    assert_eq!(c.payload, Some(pack_copy_result(CopyResult::Completed, 1)));
    assert_eq!(calls.0, vec![(0, 2), (1, 1)]);
    // within one instance, a copy of handles traps before the copier runs
    let p = a
        .canon_stream_new(&mut store, rc(t.as_ref()).as_ref())
        .unwrap();
    let (rs, ws) = (p as u32, (p >> 32) as u32);
    let mut step = |a: &mut Instance, store: &mut SharedStore<HostBuffer>, kind, i, buf| {
        a.copy_moving_handles(store, kind, t.as_ref(), i, true, || Ok(buf), &mut calls)
    };
    step(&mut a, &mut store, EndKind::WritableStream, ws, vals(1)).unwrap();
    assert_eq!(
        step(
            &mut a,
            &mut store,
            EndKind::ReadableStream,
            rs,
            HostBuffer::writable(1)
        )
        .unwrap_err(),
        Trap::IntraComponentCopy { stream: true }
    );
}

#[test]
fn which_types_hold_handles() {
    let holds = [
        ValType::Own(R),
        ValType::Borrow(R),
        ValType::stream(None),
        ValType::future(Some(ValType::U8)),
        ValType::ErrorContext,
        ValType::list(ValType::record([
            ("a", ValType::U8),
            ("r", ValType::Own(R)),
        ])),
        ValType::option(ValType::stream(Some(ValType::U8))),
        ValType::result(None, Some(ValType::Own(R))),
        ValType::Tuple(vec![ValType::String, ValType::Own(R)]),
    ];
    let plain = [
        ValType::U8,
        ValType::String,
        ValType::list(ValType::Tuple(vec![ValType::U32, ValType::String])),
        ValType::enum_(["a", "b"]),
        ValType::flags(["x"]),
    ];
    assert!(holds.iter().all(ValType::contains_handle));
    assert!(!plain.iter().any(ValType::contains_handle));
}
