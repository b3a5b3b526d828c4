//! What the runtime needs from its host: memory, W^X code memory, and a way
//! to turn faults in generated code into traps.

use crate::vmctx::StoreCtx;

/// Address space a 32-bit linear memory reserves when the platform
/// supports guard pages: 4 GiB for the memory itself plus a 4 GiB guard
/// region, so any `u32` index plus `u32` offset (plus the access size,
/// which starts below the end) lands inside the reservation. Only
/// `[0, current size)` is committed; the rest faults.
pub const GUARDED_RESERVATION: usize = 8 << 30;

/// Services of the machine the runtime runs on (a Linux process when
/// `hosted`, the ringos kernel on bare metal). Memory is page-granular.
pub trait Platform: Sync {
    /// Reserves `len` bytes of inaccessible address space.
    fn reserve(&self, len: usize) -> Option<*mut u8>;
    /// Makes `[ptr, ptr+len)` of a reservation readable, writable and zeroed.
    fn commit(&self, ptr: *mut u8, len: usize) -> bool;
    /// Returns a reservation (and whatever was committed in it).
    fn release(&self, ptr: *mut u8, len: usize);
    /// Allocates writable (not executable) memory for code.
    fn alloc_code(&self, len: usize) -> Option<*mut u8>;
    /// Flips code memory from writable to executable (W^X).
    fn seal_code(&self, ptr: *mut u8, len: usize) -> bool;
    fn free_code(&self, ptr: *mut u8, len: usize);
    /// Installs the fault handlers that map traps in generated code
    /// (via [`crate::trap::trap_for_pc`]) to the current entry; idempotent.
    fn install_trap_handler(&self);
    /// Publishes the store whose code is running on this thread/CPU (null
    /// when none) so the fault handler finds its jump buffer; returns the
    /// previous one.
    fn swap_current(&self, ctx: *mut StoreCtx) -> *mut StoreCtx;
    /// Whether linear memories use guard regions: each reserves
    /// [`GUARDED_RESERVATION`] bytes of inaccessible address space, the
    /// generated code does no explicit bounds check on loads and stores,
    /// and a fault on one (inside a reservation, at a load/store registered
    /// with the heap out-of-bounds trap code) must become
    /// [`crate::TrapKind::MemoryOutOfBounds`] via
    /// [`crate::trap::memory_trap`].
    fn guard_pages(&self) -> bool {
        false
    }
    /// Page size for reservations.
    fn page_size(&self) -> usize {
        4096
    }
}
