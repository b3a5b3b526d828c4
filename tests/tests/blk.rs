//! QEMU tier, block device: the guest writes, flushes and reads back through
//! its own virtio-blk driver and reactor; the host then reads the image file.

use ringos_proto::{disk_pattern, exit, selftest};
use ringos_tests::{console, run, vm, Outcome, TempDisk, MACHINES};

const DISK_BYTES: u64 = 8 << 20;
const SECTOR: usize = 512;

fn check_image(disk: &TempDisk, what: &str) {
    let bytes = disk.bytes();
    let capacity = DISK_BYTES / SECTOR as u64;
    let mut written = vec![false; capacity as usize];
    for (first, n) in selftest::blk_writes(capacity) {
        for s in first..first + n {
            written[s as usize] = true;
            let sector = &bytes[s as usize * SECTOR..(s as usize + 1) * SECTOR];
            for (i, &b) in sector.iter().enumerate() {
                assert_eq!(
                    b,
                    disk_pattern(s, i),
                    "{what}: sector {s} byte {i} in the image file"
                );
            }
        }
    }
    // Nothing else was touched: the refused requests wrote nothing.
    for (s, w) in written.iter().enumerate() {
        if !w {
            let sector = &bytes[s * SECTOR..(s + 1) * SECTOR];
            assert!(
                sector.iter().all(|&b| b == 0),
                "{what}: sector {s} should still be zero"
            );
        }
    }
}

#[test]
fn write_flush_read_back_and_errors_on_both_machines() {
    for m in MACHINES {
        let disk = TempDisk::new(&format!("blk-{m}"), DISK_BYTES);
        let mut cfg = vm(m, "test=blk");
        cfg.disk = Some(disk.path.clone());
        let r = run(&cfg);
        let out = console(&r);
        assert_eq!(r.outcome, Outcome::Guest(exit::SUCCESS), "{m}: {out}");
        assert!(out.contains("blk: flush: Ok(0)"), "{m}: {out}");
        // QD > 1: 16 reads in flight at once, each completion matched to
        // the sector its tag asked for.
        assert!(out.contains("blk: qd16 reads matched 16/16"), "{m}: {out}");
        assert!(out.contains("blk: read past the end: error: sectors 16384..16385 are past the end of the device (16384 sectors)"), "{m}: {out}");
        assert!(
            out.contains(
                "blk: read of 100 bytes: error: length 100 is not a non-zero multiple of 512 bytes"
            ),
            "{m}: {out}"
        );
        assert!(out.contains("blk: ok"), "{m}: {out}");
        check_image(&disk, &m.to_string());
    }
}

#[test]
fn busy_poll_mode_gives_the_same_result() {
    let disk = TempDisk::new("blk-poll", DISK_BYTES);
    let mut cfg = vm(MACHINES[1], "test=blk io=poll");
    cfg.disk = Some(disk.path.clone());
    let r = run(&cfg);
    let out = console(&r);
    assert_eq!(r.outcome, Outcome::Guest(exit::SUCCESS), "{out}");
    assert!(out.contains("io=poll"), "{out}");
    check_image(&disk, "q35 poll");
}

#[test]
fn no_disk_is_a_clear_failure() {
    let r = run(&vm(MACHINES[0], "test=blk"));
    assert_eq!(r.outcome, Outcome::Guest(exit::FAILURE), "{}", console(&r));
    assert!(console(&r).contains("blk: no block device"));
}
