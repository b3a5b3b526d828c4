//! Physical frame allocator: one bit per 4 KiB frame (1 = free), with
//! contiguous allocation for DMA buffers and page tables.
//!
//! The bitmap itself is plain memory handed in by the caller, so this file is
//! pure logic and is unit-tested on the host.

pub const FRAME_SIZE: u64 = 4096;

pub struct FrameBitmap<'a> {
    bits: &'a mut [u64],
    /// Frame number where the next search starts (next-fit keeps it fast).
    hint: usize,
    free: usize,
}

impl<'a> FrameBitmap<'a> {
    /// A bitmap covering `bits.len() * 64` frames, all of them in use.
    pub fn new(bits: &'a mut [u64]) -> Self {
        bits.fill(0);
        Self {
            bits,
            hint: 0,
            free: 0,
        }
    }

    /// How many `u64` words a bitmap for memory up to `end` bytes needs.
    pub const fn words_for(end: u64) -> usize {
        (end.div_ceil(FRAME_SIZE) as usize).div_ceil(64)
    }

    pub fn frames(&self) -> usize {
        self.bits.len() * 64
    }

    pub fn free_frames(&self) -> usize {
        self.free
    }

    fn is_free(&self, frame: usize) -> bool {
        self.bits[frame / 64] & (1 << (frame % 64)) != 0
    }

    /// Marks the whole frames inside `[start, end)` free (partial frames at
    /// the edges stay in use). Frames past the bitmap are ignored.
    pub fn add_free(&mut self, start: u64, end: u64) {
        let first = start.div_ceil(FRAME_SIZE) as usize;
        let last = ((end / FRAME_SIZE) as usize).min(self.frames());
        self.set_range(first, last, true);
    }

    /// Marks every frame touching `[start, end)` in use.
    pub fn reserve(&mut self, start: u64, end: u64) {
        let first = (start / FRAME_SIZE) as usize;
        let last = (end.div_ceil(FRAME_SIZE) as usize).min(self.frames());
        self.set_range(first, last, false);
    }

    /// Sets frames `first..last` free or used a word at a time, keeping the
    /// free count exact.
    fn set_range(&mut self, first: usize, last: usize, free: bool) {
        let mut f = first;
        while f < last {
            let (w, b) = (f / 64, f % 64);
            let n = (64 - b).min(last - f);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << b
            };
            let before = (self.bits[w] & mask).count_ones() as usize;
            if free {
                self.bits[w] |= mask;
                self.free += n - before;
            } else {
                self.bits[w] &= !mask;
                self.free -= before;
            }
            f += n;
        }
    }

    /// Allocates `count` physically contiguous frames; returns the physical
    /// address of the first.
    pub fn alloc(&mut self, count: usize) -> Option<u64> {
        if count == 0 || count > self.free {
            return None;
        }
        let n = self.frames();
        // From the hint to the end, then once more from 0.
        for (from, to) in [(self.hint.min(n), n), (0, n)] {
            let mut run_start = from;
            let mut f = from;
            while f < to {
                // Skip fully used words quickly.
                if f % 64 == 0 && self.bits[f / 64] == 0 {
                    f += 64;
                    run_start = f;
                    continue;
                }
                if self.is_free(f) {
                    if f + 1 - run_start == count {
                        self.set_range(run_start, f + 1, false);
                        self.hint = f + 1;
                        return Some(run_start as u64 * FRAME_SIZE);
                    }
                    // A whole free word extends the run in one step.
                    if f % 64 == 0 && self.bits[f / 64] == u64::MAX && f + 64 - run_start < count {
                        f += 64;
                        continue;
                    }
                } else {
                    run_start = f + 1;
                }
                f += 1;
            }
        }
        None
    }

    /// Returns `count` frames starting at `addr` (which `alloc` gave).
    pub fn dealloc(&mut self, addr: u64, count: usize) {
        self.add_free(addr, addr + count as u64 * FRAME_SIZE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_alloc_and_free() {
        let mut words = [0u64; 4]; // 256 frames = 1 MiB
        let mut bm = FrameBitmap::new(&mut words);
        bm.add_free(0x1000, 0x100000);
        assert_eq!(bm.free_frames(), 255);
        bm.reserve(0x8000, 0x9001); // frames 8 and 9
        assert_eq!(bm.free_frames(), 253);
        let a = bm.alloc(7).unwrap();
        assert_eq!(a, 0x1000);
        // 8 frames no longer fit before the reserved hole.
        let b = bm.alloc(8).unwrap();
        assert_eq!(b, 0xa000);
        bm.dealloc(a, 7);
        assert_eq!(bm.free_frames(), 253 - 8);
        assert!(bm.alloc(1000).is_none());
        // Wraps around to the freed space.
        let all = bm.free_frames();
        let mut got = 0;
        while bm.alloc(1).is_some() {
            got += 1;
        }
        assert_eq!(got, all);
        assert_eq!(bm.free_frames(), 0);
    }

    #[test]
    fn partial_frames_stay_reserved() {
        let mut words = [0u64; 1];
        let mut bm = FrameBitmap::new(&mut words);
        bm.add_free(0x800, 0x3800);
        assert_eq!(bm.free_frames(), 2); // frames 1 and 2
        assert_eq!(bm.alloc(2), Some(0x1000));
        assert_eq!(bm.alloc(1), None);
    }

    #[test]
    fn words_needed() {
        assert_eq!(FrameBitmap::words_for(256 << 20), 1024);
        assert_eq!(FrameBitmap::words_for(4096), 1);
        assert_eq!(FrameBitmap::words_for(4097), 1);
    }
}
