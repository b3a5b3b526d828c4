//! Fixed-point conversion between counter ticks and nanoseconds.

/// `ns = ticks * mult >> 32`, with `mult` = 2^32 * 1e9 / hz.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    hz: u64,
    mult: u128,
}

impl Scale {
    pub const fn from_hz(hz: u64) -> Self {
        let hz = if hz == 0 { 1 } else { hz };
        Self {
            hz,
            mult: (1_000_000_000u128 << 32) / hz as u128,
        }
    }

    /// The frequency KVM's pvclock describes: ns = (tsc <<>> shift) * mul >> 32.
    pub const fn from_pvclock(mul: u32, shift: i8) -> Self {
        let mut hz = (1_000_000_000u128 << 32) / if mul == 0 { 1 } else { mul as u128 };
        if shift >= 0 {
            hz >>= shift as u32;
        } else {
            hz <<= (-(shift as i32)) as u32;
        }
        Self::from_hz(hz as u64)
    }

    /// Ticks counted during `ref_ticks` of a reference clock at `ref_hz`.
    pub const fn measured(ticks: u64, ref_ticks: u64, ref_hz: u64) -> Self {
        let ref_ticks = if ref_ticks == 0 { 1 } else { ref_ticks };
        Self::from_hz((ticks as u128 * ref_hz as u128 / ref_ticks as u128) as u64)
    }

    pub const fn hz(&self) -> u64 {
        self.hz
    }

    pub const fn ticks_to_ns(&self, ticks: u64) -> u64 {
        ((ticks as u128 * self.mult) >> 32) as u64
    }

    pub const fn ns_to_ticks(&self, ns: u64) -> u64 {
        (ns as u128 * self.hz as u128 / 1_000_000_000) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let s = Scale::from_hz(2_900_000_000);
        assert_eq!(s.ticks_to_ns(2_900_000_000), 1_000_000_000 - 1); // floor of fixed point
        assert_eq!(s.ns_to_ticks(1_000_000), 2_900_000);
        let one_ghz = Scale::from_hz(1_000_000_000);
        assert_eq!(one_ghz.ticks_to_ns(12345), 12345);
    }

    #[test]
    fn pvclock_and_measured() {
        // KVM describing a 2 GHz TSC: mul = 2^31, shift 0.
        assert_eq!(Scale::from_pvclock(1 << 31, 0).hz(), 2_000_000_000);
        assert_eq!(Scale::from_pvclock(1 << 31, 1).hz(), 1_000_000_000);
        assert_eq!(Scale::from_pvclock(1 << 31, -1).hz(), 4_000_000_000);
        // 5966 PIT ticks (5 ms) during which 15_000_000 TSC ticks went by.
        let s = Scale::measured(15_000_000, 5966, 1_193_182);
        assert!((2_999_000_000..3_001_000_000).contains(&s.hz()));
    }
}
