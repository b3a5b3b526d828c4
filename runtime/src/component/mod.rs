//! Component Model: validation and a structural look at a component's
//! graph. Canonical functions are never called yet, so a component whose
//! instantiation would run code (a start function, active segments) or link
//! imports is reported as needing real instantiation.

mod core_graph;

pub use core_graph::instantiate as instantiate_core_graph;

use alloc::format;
use alloc::string::{String, ToString};

use wasmparser::{DataKind, ElementKind, Parser, Payload, Validator, WasmFeatures};

/// The reason given for anything that needs a real component instantiation.
pub const NOT_YET: &str = "not yet supported: component instantiation";

/// The features components are validated with: the WASI 0.3.0 baseline
/// (wasmparser's defaults: component model and its async ABI on; stackful
/// async, more async built-ins, threading and error-context off).
pub fn features() -> WasmFeatures {
    WasmFeatures::default() | WasmFeatures::COMPONENT_MODEL | WasmFeatures::CM_ASYNC
}

/// Whether `bytes` start with a component (not a core module) header.
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

/// Validates a component (or module) binary with [`features`].
pub fn validate(bytes: &[u8]) -> Result<(), String> {
    validate_with(bytes, features())
}

/// Whether `bytes` validate only with features beyond [`features`]: a
/// later proposal (threads, fixed-length lists, stackful async, ...).
pub fn needs_later_proposal(bytes: &[u8]) -> bool {
    validate(bytes).is_err() && validate_with(bytes, WasmFeatures::all()).is_ok()
}

fn validate_with(bytes: &[u8], features: WasmFeatures) -> Result<(), String> {
    Validator::new_with_features(features)
        .validate_all(bytes)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// What instantiating a valid component would take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Instantiation runs no code and links nothing: the structure alone
    /// (already checked by validation) is the whole instantiation.
    Structural,
    /// Instantiation needs the real thing; the string says why.
    NeedsInstantiation(String),
}

/// Validates `bytes` and says whether a structural instantiation suffices.
pub fn plan(bytes: &[u8]) -> Result<Plan, String> {
    validate(bytes)?;
    let mut depth = 0u32;
    for p in Parser::new(0).parse_all(bytes) {
        let p = p.map_err(|e| e.to_string())?;
        let why = match p {
            Payload::Version { .. } => {
                depth += 1;
                None
            }
            Payload::End(_) => {
                depth = depth.saturating_sub(1);
                None
            }
            Payload::ComponentImportSection(s) if depth == 1 && s.count() > 0 => {
                Some("imports to link".to_string())
            }
            Payload::StartSection { .. } => Some("a core start function".to_string()),
            Payload::ComponentStartSection { .. } => Some("a component start function".into()),
            Payload::DataSection(s) => {
                let mut active = false;
                for d in s {
                    let d = d.map_err(|e| e.to_string())?;
                    active |= matches!(d.kind, DataKind::Active { .. });
                }
                active.then(|| "active data segments".to_string())
            }
            Payload::ElementSection(s) => {
                let mut active = false;
                for e in s {
                    let e = e.map_err(|e| e.to_string())?;
                    active |= matches!(e.kind, ElementKind::Active { .. });
                }
                active.then(|| "active element segments".to_string())
            }
            _ => None,
        };
        if let Some(why) = why {
            return Ok(Plan::NeedsInstantiation(format!("{NOT_YET} ({why})")));
        }
    }
    Ok(Plan::Structural)
}
