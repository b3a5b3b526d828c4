//! Errors of the host CLI, each tied to the exit status `ringos` ends with.

use std::fmt;

use ringos_proto::exit;

/// Why `ringos` could not do its job.
#[derive(Debug)]
pub enum Error {
    /// QEMU, qboot, the toolchain or the guest image is missing, or the
    /// image failed to build: exit status `exit::host::CANNOT_START`.
    CannotStart(String),
    /// A VM ran but not as the caller needed (a probe boot that failed);
    /// `exit_code` is the status the run itself maps to.
    Failed { message: String, exit_code: i32 },
    /// Host I/O, such as writing a result file: exit status 1.
    Io(String),
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit status of `ringos` for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::CannotStart(_) => exit::host::CANNOT_START,
            Error::Failed { exit_code, .. } => *exit_code,
            Error::Io(_) => 1,
        }
    }

    /// The same error (and exit status) with its message rewritten by `f`.
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Error {
        match self {
            Error::CannotStart(m) => Error::CannotStart(f(m)),
            Error::Failed { message, exit_code } => Error::Failed {
                message: f(message),
                exit_code,
            },
            Error::Io(m) => Error::Io(f(m)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::CannotStart(m) | Error::Io(m) => f.write_str(m),
            Error::Failed { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}
