//! How a VM ended, and the exit status and message `ringos` gives for it.

use std::time::Duration;

use ringos_proto::{exit, marker};

/// How a VM ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest wrote this status to the debug-exit port.
    Guest(u8),
    /// Still running at the timeout; QEMU was killed.
    TimedOut,
    /// QEMU failed on its own (bad arguments, no KVM, ...): its stderr.
    QemuFailed(String),
    /// QEMU stopped without a guest status: a reset or triple fault under
    /// `-no-reboot`, or QEMU killed by a signal.
    NoGuestStatus,
}

impl Outcome {
    /// Classifies a QEMU that exited by itself. `code` is `None` when QEMU
    /// was killed by a signal; `exit_line` is the value of the last
    /// `EXIT: <status>` line on the console, if any.
    pub fn from_exit(code: Option<i32>, exit_line: Option<u8>, stderr: &str) -> Outcome {
        let Some(c) = code else {
            return Outcome::NoGuestStatus;
        };
        // The process status keeps 8 bits, so statuses >= 128 wrap; the
        // console line has the full value when it agrees with the code.
        if let Some(v) = exit_line {
            if (i32::from(v) << 1 | 1) & 0xff == c {
                return Outcome::Guest(v);
            }
        }
        match c {
            0 => Outcome::NoGuestStatus,
            // QEMU exits 1 on its own errors, which looks like guest status 0;
            // only the guest's EXIT line tells them apart.
            1 => Outcome::QemuFailed(stderr.trim().to_string()),
            _ => match exit::from_qemu_status(c) {
                Some(v) => Outcome::Guest(v),
                None => Outcome::QemuFailed(stderr.trim().to_string()),
            },
        }
    }

    /// The process exit status of `ringos` for this outcome.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Guest(v) => i32::from(*v),
            Outcome::TimedOut => exit::host::TIMEOUT,
            Outcome::QemuFailed(_) => exit::host::CANNOT_START,
            Outcome::NoGuestStatus => exit::host::NO_GUEST_STATUS,
        }
    }

    /// The guest ended with status 0.
    pub fn is_success(&self) -> bool {
        *self == Outcome::Guest(exit::SUCCESS)
    }

    /// One line for stderr, or `None` on success. `timeout` is the one the
    /// VM ran with.
    pub fn message(&self, timeout: Duration) -> Option<String> {
        Some(match self {
            Outcome::Guest(exit::SUCCESS) => return None,
            Outcome::Guest(v) => match exit::describe(*v) {
                // proto's catch-all adds nothing to the number.
                "exit status" => format!("guest exited with status {v}"),
                d => format!("guest exited with status {v} ({d})"),
            },
            Outcome::TimedOut => {
                format!("timed out after {} s; QEMU killed", timeout.as_secs_f64())
            }
            Outcome::QemuFailed(e) if e.is_empty() => {
                "QEMU failed to start (it printed nothing and no guest EXIT line came)".into()
            }
            Outcome::QemuFailed(e) => format!("QEMU failed to start: {}", one_line(e)),
            Outcome::NoGuestStatus => {
                "QEMU stopped without a guest exit status (triple fault or reset?)".into()
            }
        })
    }
}

/// The status on an `EXIT: <status>` line.
pub fn parse_exit_line(line: &str) -> Option<u8> {
    line.strip_prefix(marker::EXIT)?.trim().parse().ok()
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn guest_status_with_exit_line() {
        assert_eq!(Outcome::from_exit(Some(1), Some(0), ""), Outcome::Guest(0));
        assert_eq!(Outcome::from_exit(Some(3), Some(1), ""), Outcome::Guest(1));
        let c = (101 << 1) | 1;
        assert_eq!(
            Outcome::from_exit(Some(c), Some(101), ""),
            Outcome::Guest(101)
        );
        assert_eq!(Outcome::Guest(101).exit_code(), 101);
        assert!(Outcome::Guest(0).is_success());
    }

    #[test]
    fn qemu_error_is_not_guest_zero() {
        let e = "qemu-system-x86_64: -foo: invalid option\n";
        let o = Outcome::from_exit(Some(1), None, e);
        assert_eq!(
            o,
            Outcome::QemuFailed("qemu-system-x86_64: -foo: invalid option".into())
        );
        assert_eq!(o.exit_code(), exit::host::CANNOT_START);
        assert_eq!(
            o.message(T).unwrap(),
            "QEMU failed to start: qemu-system-x86_64: -foo: invalid option"
        );
    }

    #[test]
    fn odd_code_without_exit_line_is_still_the_guest() {
        // Only the guest makes QEMU exit with an odd code other than 1.
        let c = (102 << 1) | 1;
        assert_eq!(Outcome::from_exit(Some(c), None, ""), Outcome::Guest(102));
    }

    #[test]
    fn statuses_past_127_come_from_the_exit_line() {
        // 200 << 1 | 1 = 401, which the OS truncates to 145.
        assert_eq!(
            Outcome::from_exit(Some(145), Some(200), ""),
            Outcome::Guest(200)
        );
        // A line that disagrees with the code loses to the code.
        assert_eq!(Outcome::from_exit(Some(3), Some(7), ""), Outcome::Guest(1));
    }

    #[test]
    fn no_guest_status() {
        for o in [
            Outcome::from_exit(Some(0), None, ""),
            Outcome::from_exit(None, None, ""),
            Outcome::from_exit(None, Some(0), ""),
        ] {
            assert_eq!(o, Outcome::NoGuestStatus);
            assert_eq!(o.exit_code(), exit::host::NO_GUEST_STATUS);
        }
    }

    #[test]
    fn timeout() {
        assert_eq!(Outcome::TimedOut.exit_code(), exit::host::TIMEOUT);
        assert_eq!(
            Outcome::TimedOut.message(T).unwrap(),
            "timed out after 5 s; QEMU killed"
        );
        assert_eq!(
            Outcome::TimedOut
                .message(Duration::from_millis(2500))
                .unwrap(),
            "timed out after 2.5 s; QEMU killed"
        );
    }

    #[test]
    fn messages() {
        assert_eq!(Outcome::Guest(0).message(T), None);
        assert_eq!(
            Outcome::Guest(exit::CPU_EXCEPTION).message(T).unwrap(),
            "guest exited with status 102 (CPU exception)"
        );
        assert_eq!(
            Outcome::Guest(7).message(T).unwrap(),
            "guest exited with status 7"
        );
        assert!(Outcome::NoGuestStatus
            .message(T)
            .unwrap()
            .contains("triple fault"));
    }

    #[test]
    fn exit_lines() {
        assert_eq!(parse_exit_line("EXIT: 0"), Some(0));
        assert_eq!(parse_exit_line("EXIT: 102\r"), Some(102));
        assert_eq!(parse_exit_line("EXIT: x"), None);
        assert_eq!(parse_exit_line("ready: 5 ns"), None);
    }
}
