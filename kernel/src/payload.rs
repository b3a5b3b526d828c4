//! The image's payload: the CLI appends a container (component, args, env,
//! spec bundles; `ringos_proto::payload`) to the kernel ELF as an extra
//! PT_LOAD segment and patches [`RINGOS_PAYLOAD`] to say where it is, so
//! the same kernel binary carries different payloads without a rebuild.

use ringos_proto::payload::{self, Descriptor, Entry};

/// Patched by the CLI (found through the ELF symbol table). In `.data` so
/// the file holds its bytes; read only through `descriptor`.
#[no_mangle]
#[link_section = ".data.ringos_payload"]
pub static RINGOS_PAYLOAD: Descriptor = Descriptor::EMPTY;

fn descriptor() -> Descriptor {
    // SAFETY: a valid static; volatile because the CLI changes its bytes
    // in the file after compilation.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!(RINGOS_PAYLOAD)) }
}

/// Physical (= identity-mapped) address and length of the payload, if the
/// image carries one.
pub fn range() -> Option<(u64, u64)> {
    let d = descriptor();
    (d.magic == payload::DESCRIPTOR_MAGIC
        && d.version == payload::DESCRIPTOR_VERSION
        && d.len > 0
        && d.paddr >= 1 << 20)
        .then_some((d.paddr, d.len))
}

/// The payload's bytes.
pub fn bytes() -> Option<&'static [u8]> {
    let (pa, len) = range()?;
    // SAFETY: the loader put the segment there; `mem::init` reserved its
    // frames (never handed out) and the RAM identity map covers it.
    Some(unsafe { core::slice::from_raw_parts(pa as *const u8, len as usize) })
}

/// The payload's entries (empty without a payload or if it is malformed).
pub fn entries() -> impl Iterator<Item = Entry<'static>> {
    bytes().and_then(payload::entries).into_iter().flatten()
}
