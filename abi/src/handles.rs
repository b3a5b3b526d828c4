//! Handle tables (`Table`) and resource handles (`ResourceHandle`,
//! `canon resource.{new,drop,rep}`, `lift_own`/`lift_borrow`/`lower_own`/
//! `lower_borrow`), with the spec's traps.

use alloc::vec::Vec;

use crate::error::Trap;
use crate::memory::Handles;
use crate::types::ResourceType;

/// `Table.MAX_LENGTH`.
pub const MAX_LENGTH: u32 = (1 << 28) - 1;

/// The spec's `Table`: slot 0 is reserved (never a valid handle), freed
/// indices are reused last-freed-first.
#[derive(Debug, Clone)]
pub struct Table<T> {
    array: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Table<T> {
    pub fn new() -> Self {
        Table {
            array: alloc::vec![None],
            free: Vec::new(),
        }
    }

    /// `get(i)`: traps on an out-of-range index or an empty slot.
    pub fn get(&self, i: u32) -> Result<&T, Trap> {
        self.array
            .get(i as usize)
            .and_then(Option::as_ref)
            .ok_or(Trap::UnknownHandle(i))
    }

    pub fn get_mut(&mut self, i: u32) -> Result<&mut T, Trap> {
        self.array
            .get_mut(i as usize)
            .and_then(Option::as_mut)
            .ok_or(Trap::UnknownHandle(i))
    }

    /// `add(e)`: reuse the most recently freed index, else append (trapping
    /// past `MAX_LENGTH`).
    pub fn add(&mut self, e: T) -> Result<u32, Trap> {
        if let Some(i) = self.free.pop() {
            debug_assert!(self.array[i as usize].is_none());
            self.array[i as usize] = Some(e);
            Ok(i)
        } else {
            let i = self.array.len();
            if i > MAX_LENGTH as usize {
                return Err(Trap::TableFull);
            }
            self.array.push(Some(e));
            Ok(i as u32)
        }
    }

    /// `remove(i)`.
    pub fn remove(&mut self, i: u32) -> Result<T, Trap> {
        self.get(i)?;
        let e = self.array[i as usize].take().expect("checked by get");
        self.free.push(i);
        Ok(e)
    }

    /// Live entries with their indices.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.array
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (i as u32, e)))
    }

    /// Number of live entries.
    pub fn live(&self) -> usize {
        self.array.len() - 1 - self.free.len()
    }
}

/// Identifies a borrow scope (the task a borrow handle was lent to).
pub type ScopeId = u32;

/// `ResourceHandle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceHandle {
    pub rt: ResourceType,
    pub rep: u32,
    pub own: bool,
    /// For borrows: the task whose `num_borrows` counts this handle.
    pub borrow_scope: Option<ScopeId>,
    /// How many in-flight calls have this (own or borrow) handle lent out.
    pub num_lends: u32,
}

impl ResourceHandle {
    pub fn new_own(rt: ResourceType, rep: u32) -> Self {
        ResourceHandle {
            rt,
            rep,
            own: true,
            borrow_scope: None,
            num_lends: 0,
        }
    }
}

/// A table entry that may be a resource handle. The runtime's per-instance
/// entry enum (resource | waitable | waitable-set | error-context)
/// implements this so the functions below work on its table.
pub trait AsResource: Sized {
    fn as_resource(&self) -> Option<&ResourceHandle>;
    fn as_resource_mut(&mut self) -> Option<&mut ResourceHandle>;
    fn from_resource(h: ResourceHandle) -> Self;
}

impl AsResource for ResourceHandle {
    fn as_resource(&self) -> Option<&ResourceHandle> {
        Some(self)
    }
    fn as_resource_mut(&mut self) -> Option<&mut ResourceHandle> {
        Some(self)
    }
    fn from_resource(h: ResourceHandle) -> Self {
        h
    }
}

fn resource<E: AsResource>(
    t: &Table<E>,
    i: u32,
    rt: ResourceType,
) -> Result<&ResourceHandle, Trap> {
    let h = t.get(i)?.as_resource().ok_or(Trap::WrongHandleType {
        index: i,
        expected: "resource handle",
    })?;
    if h.rt != rt {
        return Err(Trap::ResourceTypeMismatch { index: i });
    }
    Ok(h)
}

/// `canon resource.new`: a new owning handle.
pub fn resource_new<E: AsResource>(
    t: &mut Table<E>,
    rt: ResourceType,
    rep: u32,
) -> Result<u32, Trap> {
    t.add(E::from_resource(ResourceHandle::new_own(rt, rep)))
}

/// `canon resource.rep`.
pub fn resource_rep<E: AsResource>(t: &Table<E>, rt: ResourceType, i: u32) -> Result<u32, Trap> {
    Ok(resource(t, i, rt)?.rep)
}

/// What the runtime must do after `canon resource.drop` removed a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// An owning handle: call the resource's destructor (if any) with `rep`
    /// in the implementing instance.
    Own { rep: u32 },
    /// A borrow handle: decrement `num_borrows` of this scope.
    Borrow { scope: Option<ScopeId> },
}

/// `canon resource.drop`: traps on a wrong type or an owned handle that is
/// still lent out.
pub fn resource_drop<E: AsResource>(
    t: &mut Table<E>,
    rt: ResourceType,
    i: u32,
) -> Result<Dropped, Trap> {
    let h = resource(t, i, rt)?;
    if h.num_lends != 0 {
        return Err(Trap::OwnedResourceBorrowed { index: i });
    }
    let h = t.remove(i)?.as_resource().cloned().expect("checked above");
    Ok(if h.own {
        Dropped::Own { rep: h.rep }
    } else {
        Dropped::Borrow {
            scope: h.borrow_scope,
        }
    })
}

/// `lift_own`: moves the handle out of the table; returns its rep.
pub fn lift_own<E: AsResource>(t: &mut Table<E>, i: u32, rt: ResourceType) -> Result<u32, Trap> {
    let h = resource(t, i, rt)?;
    if h.num_lends != 0 {
        return Err(Trap::OwnedResourceBorrowed { index: i });
    }
    if !h.own {
        return Err(Trap::NotAnOwnHandle { index: i });
    }
    let rep = h.rep;
    t.remove(i)?;
    Ok(rep)
}

/// `lift_borrow` + `Subtask.add_lender`: the handle stays, its lend count
/// goes up until [`end_lend`] (at `deliver_resolve`). Returns the rep.
pub fn lift_borrow<E: AsResource>(t: &mut Table<E>, i: u32, rt: ResourceType) -> Result<u32, Trap> {
    let rep = resource(t, i, rt)?.rep;
    let h = t.get_mut(i)?.as_resource_mut().expect("checked above");
    h.num_lends += 1;
    Ok(rep)
}

/// `Subtask.deliver_resolve` for one lender: `num_lends -= 1`.
pub fn end_lend<E: AsResource>(t: &mut Table<E>, i: u32) -> Result<(), Trap> {
    let h = t
        .get_mut(i)?
        .as_resource_mut()
        .ok_or(Trap::WrongHandleType {
            index: i,
            expected: "resource handle",
        })?;
    h.num_lends = h
        .num_lends
        .checked_sub(1)
        .ok_or(Trap::Mismatch("lend count underflow"))?;
    Ok(())
}

/// `lower_own`: a new owning handle in the receiving instance.
pub fn lower_own<E: AsResource>(t: &mut Table<E>, rep: u32, rt: ResourceType) -> Result<u32, Trap> {
    resource_new(t, rt, rep)
}

/// A task's count of borrow handles it was given (`Task.num_borrows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BorrowScope {
    pub id: ScopeId,
    pub num_borrows: u32,
}

impl BorrowScope {
    pub fn new(id: ScopeId) -> Self {
        BorrowScope { id, num_borrows: 0 }
    }
    /// At `task.return` / exit: `trap_if(self.num_borrows > 0)`.
    pub fn check_released(&self) -> Result<(), Trap> {
        if self.num_borrows > 0 {
            return Err(Trap::BorrowsRemain {
                count: self.num_borrows,
            });
        }
        Ok(())
    }
    /// A borrow handle of this scope was dropped.
    pub fn release(&mut self) -> Result<(), Trap> {
        self.num_borrows = self
            .num_borrows
            .checked_sub(1)
            .ok_or(Trap::Mismatch("borrow count underflow"))?;
        Ok(())
    }
}

/// `lower_borrow`: if the receiving instance implements `rt`, the rep
/// itself is passed; else a borrow handle counted in `scope`.
pub fn lower_borrow<E: AsResource>(
    t: &mut Table<E>,
    rep: u32,
    rt: ResourceType,
    receiver_implements_rt: bool,
    scope: &mut BorrowScope,
) -> Result<u32, Trap> {
    if receiver_implements_rt {
        return Ok(rep);
    }
    let i = t.add(E::from_resource(ResourceHandle {
        rt,
        rep,
        own: false,
        borrow_scope: Some(scope.id),
        num_lends: 0,
    }))?;
    scope.num_borrows += 1;
    Ok(i)
}

/// A ready-made [`Handles`] over one instance's resource table for one
/// call: lifted borrows are remembered as lenders, lowered borrows are
/// counted in `scope`. Streams, futures and error contexts trap as
/// unsupported (the runtime's own implementation adds them).
#[derive(Debug, Default)]
pub struct ResourceTable {
    pub table: Table<ResourceHandle>,
    /// Resource types this instance implements (`cx.inst is t.rt.impl`).
    pub implements: Vec<ResourceType>,
    /// Borrow scope of the current task (lowering into this instance).
    pub scope: BorrowScope,
    /// Handles lent by `lift_borrow` during the current call.
    pub lenders: Vec<u32>,
}

impl ResourceTable {
    /// End the current call: release every lend (`deliver_resolve`).
    pub fn end_call(&mut self) -> Result<(), Trap> {
        for i in core::mem::take(&mut self.lenders) {
            end_lend(&mut self.table, i)?;
        }
        Ok(())
    }
}

impl Handles for ResourceTable {
    fn lift_own(&mut self, index: u32, rt: ResourceType) -> Result<u32, Trap> {
        lift_own(&mut self.table, index, rt)
    }
    fn lift_borrow(&mut self, index: u32, rt: ResourceType) -> Result<u32, Trap> {
        let rep = lift_borrow(&mut self.table, index, rt)?;
        self.lenders.push(index);
        Ok(rep)
    }
    fn lower_own(&mut self, rep: u32, rt: ResourceType) -> Result<u32, Trap> {
        lower_own(&mut self.table, rep, rt)
    }
    fn lower_borrow(&mut self, rep: u32, rt: ResourceType) -> Result<u32, Trap> {
        let implements = self.implements.contains(&rt);
        lower_borrow(&mut self.table, rep, rt, implements, &mut self.scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: ResourceType = ResourceType(1);
    const S: ResourceType = ResourceType(2);

    #[test]
    fn table_reserves_zero_and_reuses_lifo() {
        let mut t: Table<&str> = Table::new();
        assert_eq!(t.get(0), Err(Trap::UnknownHandle(0)));
        assert_eq!(t.add("a"), Ok(1));
        assert_eq!(t.add("b"), Ok(2));
        assert_eq!(t.add("c"), Ok(3));
        assert_eq!(t.remove(1), Ok("a"));
        assert_eq!(t.remove(3), Ok("c"));
        assert_eq!(t.get(1), Err(Trap::UnknownHandle(1)));
        assert_eq!(t.remove(1), Err(Trap::UnknownHandle(1)));
        assert_eq!(t.add("d"), Ok(3));
        assert_eq!(t.add("e"), Ok(1));
        assert_eq!(t.add("f"), Ok(4));
        assert_eq!(t.live(), 4);
        assert_eq!(t.get(u32::MAX), Err(Trap::UnknownHandle(u32::MAX)));
        assert_eq!(
            alloc::format!("{}", Trap::UnknownHandle(5)),
            "unknown handle index 5"
        );
    }

    #[test]
    fn resources_own_and_drop() {
        let mut t: Table<ResourceHandle> = Table::new();
        let h = resource_new(&mut t, R, 42).unwrap();
        assert_eq!(h, 1);
        assert_eq!(resource_rep(&t, R, h), Ok(42));
        assert_eq!(
            resource_rep(&t, S, h),
            Err(Trap::ResourceTypeMismatch { index: 1 })
        );
        let msg = alloc::format!("{}", Trap::ResourceTypeMismatch { index: 1 });
        assert!(msg.contains("handle index 1 used with the wrong type"));
        assert_eq!(resource_drop(&mut t, R, h), Ok(Dropped::Own { rep: 42 }));
        assert_eq!(resource_drop(&mut t, R, h), Err(Trap::UnknownHandle(1)));
    }

    #[test]
    fn lend_blocks_drop_and_lift_own() {
        let mut t: Table<ResourceHandle> = Table::new();
        let h = resource_new(&mut t, R, 7).unwrap();
        assert_eq!(lift_borrow(&mut t, h, R), Ok(7));
        assert_eq!(
            resource_drop(&mut t, R, h),
            Err(Trap::OwnedResourceBorrowed { index: h })
        );
        assert_eq!(
            lift_own(&mut t, h, R),
            Err(Trap::OwnedResourceBorrowed { index: h })
        );
        assert!(
            alloc::format!("{}", Trap::OwnedResourceBorrowed { index: h })
                .contains("cannot remove owned resource while borrowed")
        );
        end_lend(&mut t, h).unwrap();
        assert_eq!(lift_own(&mut t, h, R), Ok(7));
        assert_eq!(t.get(h).err(), Some(Trap::UnknownHandle(h)));
    }

    #[test]
    fn borrows_are_scoped() {
        let mut t: Table<ResourceHandle> = Table::new();
        let mut scope = BorrowScope::new(9);
        // the implementing instance gets the rep itself
        assert_eq!(lower_borrow(&mut t, 5, R, true, &mut scope), Ok(5));
        assert_eq!(scope.num_borrows, 0);
        let b = lower_borrow(&mut t, 5, R, false, &mut scope).unwrap();
        assert_eq!(scope.num_borrows, 1);
        assert!(matches!(
            scope.check_released(),
            Err(Trap::BorrowsRemain { count: 1 })
        ));
        // a borrow cannot be lifted as own
        assert_eq!(
            lift_own(&mut t, b, R),
            Err(Trap::NotAnOwnHandle { index: b })
        );
        match resource_drop(&mut t, R, b).unwrap() {
            Dropped::Borrow { scope: Some(9) } => scope.release().unwrap(),
            d => panic!("{d:?}"),
        }
        assert_eq!(scope.check_released(), Ok(()));
    }

    #[test]
    fn resource_table_as_handles() {
        let mut rt = ResourceTable::default();
        let h = rt.lower_own(3, R).unwrap();
        assert_eq!(rt.lift_borrow(h, R), Ok(3));
        assert_eq!(
            rt.lift_own(h, R),
            Err(Trap::OwnedResourceBorrowed { index: h })
        );
        rt.end_call().unwrap();
        assert_eq!(rt.lift_own(h, R), Ok(3));
    }
}
