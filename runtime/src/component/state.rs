//! Per-store Component Model state: component instances (their handle
//! table and the flags the canonical ABI checks), resource types, and the
//! borrow scopes of calls in progress.
//!
//! The state sits in an `Rc<RefCell<..>>` shared by the store's host
//! functions (lowered imports, built-ins). No borrow is ever held across a
//! call into Wasm; [`Shared::get`] turns an unexpected re-entry into a trap
//! instead of a panic.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{RefCell, RefMut};

use ringos_abi::handles::{AsResource, ResourceHandle, ScopeId, Table};
use ringos_abi::ResourceType;

use crate::{Error, FuncId, Store, Trap, TrapKind};

/// Index of a component instance in [`State::instances`].
pub type InstId = usize;

/// Why a component-level operation trapped; the message names the rule
/// (and uses the wording the conformance tests look for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trapped(pub String);

impl Trapped {
    pub fn new(msg: impl Into<String>) -> Trapped {
        Trapped(msg.into())
    }

    /// A failed core call: a host function's recorded message, or the core
    /// trap's own (in wasmtime's wording, which the tests use).
    pub fn from_core(store: &mut Store, e: Error) -> Trapped {
        match e {
            Error::Trap(Trap(TrapKind::Host)) => match store.take_trap_message() {
                Some(m) => Trapped(m),
                None => Trapped(TrapKind::Host.message().into()),
            },
            Error::Trap(Trap(TrapKind::Unreachable)) => {
                Trapped("wasm trap: wasm `unreachable` instruction executed".into())
            }
            Error::Trap(t) => Trapped(format!("wasm trap: {t}")),
            e => Trapped(e.to_string()),
        }
    }
}

impl From<ringos_abi::Trap> for Trapped {
    fn from(t: ringos_abi::Trap) -> Trapped {
        Trapped(t.to_string())
    }
}

/// One slot of an instance's handle table.
#[derive(Debug, Clone)]
pub enum Entry {
    Resource(ResourceHandle),
}

impl AsResource for Entry {
    fn as_resource(&self) -> Option<&ResourceHandle> {
        match self {
            Entry::Resource(h) => Some(h),
        }
    }
    fn as_resource_mut(&mut self) -> Option<&mut ResourceHandle> {
        match self {
            Entry::Resource(h) => Some(h),
        }
    }
    fn from_resource(h: ResourceHandle) -> Self {
        Entry::Resource(h)
    }
}

/// A component instance as the canonical ABI sees it
/// (`ComponentInstance`).
#[derive(Default)]
pub struct InstState {
    pub parent: Option<InstId>,
    pub table: Table<Entry>,
    /// Cleared while a call is inside the instance or one of its
    /// descendants; never set again after a trap unwound through it, which
    /// poisons the instance as the spec's abort does.
    pub may_enter: bool,
    /// Cleared while the instance runs `realloc` or `post-return`: it must
    /// not call out then.
    pub may_leave: bool,
    /// The table is lent to a lift/lower in progress.
    pub table_out: bool,
}
/// A resource type made by a component instance (or the host).
pub struct ResourceDef {
    /// The implementing instance (`rt.impl`); `None` for host resources.
    pub inst: Option<InstId>,
    /// The core destructor, called with the rep when an owning handle is
    /// dropped.
    pub dtor: Option<FuncId>,
}

#[derive(Default)]
pub struct State {
    pub instances: Vec<InstState>,
    pub resources: Vec<ResourceDef>,
    /// `Task.num_borrows` of each call in progress, by scope id.
    pub scopes: BTreeMap<ScopeId, u32>,
    next_scope: ScopeId,
}

impl State {
    pub fn new_instance(&mut self, parent: Option<InstId>) -> InstId {
        self.instances.push(InstState {
            parent,
            may_enter: true,
            may_leave: true,
            ..InstState::default()
        });
        self.instances.len() - 1
    }

    /// `self_and_ancestors`.
    fn self_and_ancestors(&self, i: InstId) -> Vec<InstId> {
        let mut v = alloc::vec![i];
        let mut a = self.instances[i].parent;
        while let Some(p) = a {
            v.push(p);
            a = self.instances[p].parent;
        }
        v
    }

    /// `entering_set(caller)`: what a call from `caller` into `callee`
    /// enters.
    fn entering_set(&self, callee: InstId, caller: Option<InstId>) -> Vec<InstId> {
        let mut set = self.self_and_ancestors(callee);
        if let Some(c) = caller {
            let theirs = self.self_and_ancestors(c);
            set.retain(|i| !theirs.contains(i));
        }
        set
    }

    /// `may_enter_from` + `enter_from`: traps if any instance entered is
    /// already running (or poisoned by a trap).
    pub fn enter(&mut self, callee: InstId, caller: Option<InstId>) -> Result<(), Trapped> {
        let set = self.entering_set(callee, caller);
        if set.iter().any(|i| !self.instances[*i].may_enter) {
            return Err(Trapped::new("wasm trap: cannot enter component instance"));
        }
        for i in set {
            self.instances[i].may_enter = false;
        }
        Ok(())
    }

    /// `leave_to`.
    pub fn leave(&mut self, callee: InstId, caller: Option<InstId>) {
        for i in self.entering_set(callee, caller) {
            self.instances[i].may_enter = true;
        }
    }

    pub fn new_resource(&mut self, inst: Option<InstId>, dtor: Option<FuncId>) -> ResourceType {
        self.resources.push(ResourceDef { inst, dtor });
        ResourceType(self.resources.len() as u32 - 1)
    }

    pub fn resource(&self, rt: ResourceType) -> Result<&ResourceDef, Trapped> {
        self.resources
            .get(rt.0 as usize)
            .ok_or_else(|| Trapped::new("unknown resource type"))
    }

    pub fn inst(&mut self, i: InstId) -> &mut InstState {
        &mut self.instances[i]
    }

    pub fn open_scope(&mut self) -> ScopeId {
        self.next_scope = self.next_scope.wrapping_add(1);
        self.scopes.insert(self.next_scope, 0);
        self.next_scope
    }

    /// Ends a call's borrow scope: traps if borrows are still held.
    pub fn close_scope(&mut self, id: ScopeId) -> Result<(), Trapped> {
        match self.scopes.remove(&id) {
            Some(0) | None => Ok(()),
            Some(n) => Err(Trapped(format!(
                "borrow handles still remain at the end of the call ({n} not dropped)"
            ))),
        }
    }

    /// Takes an instance's table for a lift or lower that may run Wasm
    /// (`realloc`); built-ins that find it out trap.
    pub fn take_table(&mut self, i: InstId) -> Result<Table<Entry>, Trapped> {
        let inst = &mut self.instances[i];
        if inst.table_out {
            return Err(Trapped::new(
                "cannot leave component instance (handle table in use)",
            ));
        }
        inst.table_out = true;
        Ok(core::mem::take(&mut inst.table))
    }

    pub fn put_table(&mut self, i: InstId, t: Table<Entry>) {
        let inst = &mut self.instances[i];
        inst.table = t;
        inst.table_out = false;
    }
}

/// The state shared by a component store and its host functions.
#[derive(Clone, Default)]
pub struct Shared(Rc<RefCell<State>>);

impl Shared {
    pub fn get(&self) -> Result<RefMut<'_, State>, Trapped> {
        self.0
            .try_borrow_mut()
            .map_err(|_| Trapped::new("re-entrant use of component state"))
    }
}
