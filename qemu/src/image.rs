//! Images with a payload: the kernel ELF plus a container
//! (`ringos_proto::payload`) in a new PT_LOAD segment, without rebuilding
//! the kernel. The kernel finds the payload through its `RINGOS_PAYLOAD`
//! descriptor, which [`embed`] patches in `.data`. The result is still a
//! plain PVH ELF (`qemu-system-x86_64 -kernel image`).

use std::path::{Path, PathBuf};

use ringos_proto::payload::{self, Descriptor};

use crate::{Error, Result};

const PT_LOAD: u32 = 1;
const PF_R: u32 = 4;
const SHT_SYMTAB: u32 = 2;
const PHDR_SIZE: usize = 56;
const SHDR_SIZE: usize = 64;
const SYM_SIZE: usize = 24;
/// The payload's load address is aligned to this.
pub const PAYLOAD_ALIGN: u64 = 2 << 20;

fn bad(why: impl Into<String>) -> Error {
    Error::CannotStart(format!("kernel image: {}", why.into()))
}

fn u16_at(b: &[u8], o: usize) -> Result<u16> {
    Ok(u16::from_le_bytes(
        b.get(o..o + 2)
            .ok_or_else(|| bad("truncated"))?
            .try_into()
            .unwrap(),
    ))
}

fn u32_at(b: &[u8], o: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(
        b.get(o..o + 4)
            .ok_or_else(|| bad("truncated"))?
            .try_into()
            .unwrap(),
    ))
}

fn u64_at(b: &[u8], o: usize) -> Result<u64> {
    Ok(u64::from_le_bytes(
        b.get(o..o + 8)
            .ok_or_else(|| bad("truncated"))?
            .try_into()
            .unwrap(),
    ))
}

fn put_u16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

/// A program header (the fields used here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub kind: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

impl Segment {
    fn to_bytes(self) -> [u8; PHDR_SIZE] {
        let mut b = [0u8; PHDR_SIZE];
        b[0..4].copy_from_slice(&self.kind.to_le_bytes());
        b[4..8].copy_from_slice(&self.flags.to_le_bytes());
        for (i, v) in [
            self.offset,
            self.vaddr,
            self.paddr,
            self.filesz,
            self.memsz,
            self.align,
        ]
        .into_iter()
        .enumerate()
        {
            put_u64(&mut b, 8 + 8 * i, v);
        }
        b
    }
}

/// The program headers of an ELF64 little-endian x86_64 file.
pub fn segments(elf: &[u8]) -> Result<Vec<Segment>> {
    if elf.get(0..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err(bad("not an ELF64 little-endian file"));
    }
    let phoff = u64_at(elf, 0x20)? as usize;
    if u16_at(elf, 0x36)? as usize != PHDR_SIZE {
        return Err(bad("unexpected program header size"));
    }
    let phnum = u16_at(elf, 0x38)? as usize;
    (0..phnum)
        .map(|i| {
            let o = phoff + i * PHDR_SIZE;
            Ok(Segment {
                kind: u32_at(elf, o)?,
                flags: u32_at(elf, o + 4)?,
                offset: u64_at(elf, o + 8)?,
                vaddr: u64_at(elf, o + 16)?,
                paddr: u64_at(elf, o + 24)?,
                filesz: u64_at(elf, o + 32)?,
                memsz: u64_at(elf, o + 40)?,
                align: u64_at(elf, o + 48)?,
            })
        })
        .collect()
}

/// The value (virtual address) of symbol `name` in the ELF symbol table.
pub fn symbol(elf: &[u8], name: &str) -> Result<u64> {
    let shoff = u64_at(elf, 0x28)? as usize;
    let shnum = u16_at(elf, 0x3c)? as usize;
    for i in 0..shnum {
        let sh = shoff + i * SHDR_SIZE;
        if u32_at(elf, sh + 4)? != SHT_SYMTAB {
            continue;
        }
        let (off, size) = (
            u64_at(elf, sh + 24)? as usize,
            u64_at(elf, sh + 32)? as usize,
        );
        let strtab = shoff + u32_at(elf, sh + 40)? as usize * SHDR_SIZE;
        let str_off = u64_at(elf, strtab + 24)? as usize;
        for s in (off..off + size).step_by(SYM_SIZE) {
            let n = str_off + u32_at(elf, s)? as usize;
            let end = elf[n..]
                .iter()
                .position(|&c| c == 0)
                .ok_or_else(|| bad("unterminated symbol name"))?;
            if &elf[n..n + end] == name.as_bytes() {
                return u64_at(elf, s + 8);
            }
        }
    }
    Err(bad(format!("no symbol {name} (is the image stripped?)")))
}

/// File offset of the payload descriptor.
fn descriptor_offset(elf: &[u8], segs: &[Segment]) -> Result<usize> {
    let va = symbol(elf, payload::DESCRIPTOR_SYMBOL)?;
    let s = segs
        .iter()
        .find(|s| {
            s.kind == PT_LOAD && s.vaddr <= va && va + Descriptor::SIZE as u64 <= s.vaddr + s.filesz
        })
        .ok_or_else(|| bad("the payload descriptor is not in a loaded segment"))?;
    Ok((s.offset + (va - s.vaddr)) as usize)
}

/// The kernel's payload descriptor as stored in `elf`.
pub fn descriptor(elf: &[u8]) -> Result<Descriptor> {
    let o = descriptor_offset(elf, &segments(elf)?)?;
    Descriptor::from_bytes(&elf[o..]).ok_or_else(|| bad("truncated descriptor"))
}

/// `kernel_elf` with `container` appended as a new read-only PT_LOAD
/// segment at the first 2 MiB boundary above every segment, the program
/// header table moved to the end of the file, and `RINGOS_PAYLOAD` patched.
pub fn embed(kernel_elf: &[u8], container: &[u8]) -> Result<Vec<u8>> {
    let segs = segments(kernel_elf)?;
    let desc_at = descriptor_offset(kernel_elf, &segs)?;
    let desc = Descriptor::from_bytes(&kernel_elf[desc_at..]).ok_or_else(|| bad("descriptor"))?;
    if desc.magic != payload::DESCRIPTOR_MAGIC || desc.version != payload::DESCRIPTOR_VERSION {
        return Err(bad(
            "the payload descriptor has an unknown magic or version",
        ));
    }
    if desc.len != 0 {
        return Err(bad("the image already carries a payload"));
    }
    let top = segs
        .iter()
        .filter(|s| s.kind == PT_LOAD)
        .map(|s| s.paddr.max(s.vaddr) + s.memsz)
        .max()
        .ok_or_else(|| bad("no loadable segment"))?;
    let paddr = top.next_multiple_of(PAYLOAD_ALIGN);

    let mut out = kernel_elf.to_vec();
    out.resize(out.len().next_multiple_of(4096), 0);
    let offset = out.len() as u64;
    out.extend_from_slice(container);
    out.resize(out.len().next_multiple_of(8), 0);
    let phoff = out.len() as u64;
    let mut all = segs.clone();
    all.push(Segment {
        kind: PT_LOAD,
        flags: PF_R,
        offset,
        vaddr: paddr,
        paddr,
        filesz: container.len() as u64,
        memsz: container.len() as u64,
        align: 4096,
    });
    for s in &all {
        out.extend_from_slice(&s.to_bytes());
    }
    put_u64(&mut out, 0x20, phoff);
    put_u16(
        &mut out,
        0x38,
        u16::try_from(all.len()).map_err(|_| bad("too many segments"))?,
    );
    let d = Descriptor {
        paddr,
        len: container.len() as u64,
        ..desc
    };
    out[desc_at..desc_at + Descriptor::SIZE].copy_from_slice(&d.to_bytes());
    Ok(out)
}

/// A payload container from `(kind, bytes)` entries.
pub fn container<'a>(entries: impl IntoIterator<Item = (u32, &'a [u8])>) -> Vec<u8> {
    let mut c = payload::MAGIC.to_vec();
    for (kind, bytes) in entries {
        c.extend_from_slice(&kind.to_le_bytes());
        c.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        c.extend_from_slice(bytes);
    }
    c
}

/// A [`payload::SPEC_BUNDLE`] entry's bytes: the file name, then the bundle.
pub fn spec_bundle_entry(name: &str, bundle: &[u8]) -> Vec<u8> {
    let mut e = (name.len() as u32).to_le_bytes().to_vec();
    e.extend_from_slice(name.as_bytes());
    e.extend_from_slice(bundle);
    e
}

/// Writes `kernel` with `container` embedded to `out` (creating its
/// directory) and returns `out`.
pub fn write(kernel: &Path, container: &[u8], out: &Path) -> Result<PathBuf> {
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", out.display()));
    let elf = std::fs::read(kernel)
        .map_err(|e| Error::CannotStart(format!("{}: {e}", kernel.display())))?;
    let image = embed(&elf, container)?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(out, image).map_err(io)?;
    Ok(out.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_a_payload_segment_in_the_real_kernel() {
        let path = crate::kernel_image::build(false).expect("building the kernel image");
        let elf = std::fs::read(path).unwrap();
        let before = segments(&elf).unwrap();
        assert_eq!(descriptor(&elf).unwrap(), Descriptor::EMPTY);
        let bundle = spec_bundle_entry("x.wast", b"bundle bytes");
        let c = container([
            (payload::ARGS, &b"a\0b"[..]),
            (payload::SPEC_BUNDLE, &bundle[..]),
        ]);
        let out = embed(&elf, &c).unwrap();

        let after = segments(&out).unwrap();
        assert_eq!(after.len(), before.len() + 1);
        assert_eq!(&after[..before.len()], &before[..]);
        let p = *after.last().unwrap();
        assert_eq!(p.kind, PT_LOAD);
        assert_eq!(p.paddr % PAYLOAD_ALIGN, 0);
        assert_eq!(p.offset % 4096, 0);
        for s in before.iter().filter(|s| s.kind == PT_LOAD) {
            assert!(s.paddr + s.memsz <= p.paddr, "{s:?} overlaps {p:?}");
        }
        let at = p.offset as usize;
        assert_eq!(&out[at..at + p.filesz as usize], &c[..]);
        // The program headers moved to the end; the old bytes are intact.
        assert_eq!(
            u64_at(&out, 0x20).unwrap() as usize + after.len() * PHDR_SIZE,
            out.len()
        );
        let d = descriptor(&out).unwrap();
        assert_eq!((d.paddr, d.len), (p.paddr, c.len() as u64));
        assert_eq!(d.magic, payload::DESCRIPTOR_MAGIC);
        let entries: Vec<_> = payload::entries(&out[at..at + c.len()]).unwrap().collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            payload::split_spec_bundle(entries[1].bytes),
            Some(("x.wast", &b"bundle bytes"[..]))
        );
        assert!(embed(&out, &c).is_err(), "embedding twice");
    }

    #[test]
    fn rejects_non_elf() {
        assert!(embed(b"not an elf at all, sorry", b"").is_err());
    }
}
