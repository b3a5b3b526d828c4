mod aliases;
mod canonicals;
mod exports;
mod imports;
mod instances;
mod names;
mod start;
mod types;

pub use self::aliases::*;
pub use self::canonicals::*;
pub use self::exports::*;
pub use self::imports::*;
pub use self::instances::*;
pub use self::names::*;
pub use self::start::*;
pub use self::types::*;
