//! `ringos wast`: runs spec-format `.wast` scripts against the hosted runtime.

use std::path::{Path, PathBuf};

use ringos_runtime::hosted::HOSTED;
use ringos_runtime::script::{self, Arg, Command, Exec, Invoke, Located, Pattern};
use wast::core::{AbstractHeapType, HeapType, NanPattern, WastArgCore, WastRetCore};
use wast::lexer::Lexer;
use wast::parser::{self, ParseBuffer};
use wast::{QuoteWat, Wast, WastArg, WastDirective, WastExecute, WastInvoke, WastRet};

pub use ringos_runtime::script::Tally;

/// Stack a script's Wasm may use; the runner thread gets twice that.
const WASM_STACK: usize = 8 << 20;

/// Runs every file, prints one line each and the totals; the exit status.
pub fn run(files: &[PathBuf], verbose: bool) -> i32 {
    let mut total = Tally::default();
    for f in files {
        let t = match run_hosted(f, verbose) {
            Ok(t) => t,
            Err(e) => {
                println!("{}: {e}", f.display());
                Tally {
                    passed: 0,
                    failed: 1,
                }
            }
        };
        println!("{}: {} passed, {} failed", f.display(), t.passed, t.failed);
        total += t;
    }
    println!("{} passed, {} failed", total.passed, total.failed);
    i32::from(total.failed > 0)
}

/// Runs one file on the hosted runtime, on a thread with room for
/// [`WASM_STACK`]; `Err` says why the file could not run at all.
pub fn run_hosted(path: &Path, verbose: bool) -> Result<Tally, String> {
    let path = path.to_path_buf();
    let r = std::thread::Builder::new()
        .stack_size(2 * WASM_STACK + (8 << 20))
        .spawn(move || run_file(&path, verbose))
        .expect("spawn runner thread")
        .join();
    match r {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(format!("error: {e}")),
        Err(_) => Err("runner panicked".into()),
    }
}

fn run_file(path: &Path, verbose: bool) -> Result<Tally, String> {
    let bundle = bundle_file(path)?;
    let mut on_failure = |line: u32, col: u32, why: &str| {
        if verbose {
            println!("  {}:{line}:{col}: {why}", path.display());
        }
    };
    script::run(&HOSTED, &bundle, WASM_STACK, &mut on_failure)
        .map_err(|_| "malformed bundle".to_string())
}

/// Parses a `.wast` file into a spec bundle (`ringos_runtime::script`).
pub fn bundle_file(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    // names.wast uses bidi and other "confusing" characters on purpose.
    let mut lexer = Lexer::new(&text);
    lexer.allow_confusing_unicode(true);
    let buf = ParseBuffer::new_with_lexer(lexer).map_err(|e| e.to_string())?;
    let script = parser::parse::<Wast>(&buf).map_err(|mut e| {
        e.set_path(path);
        e.set_text(&text);
        e.to_string()
    })?;
    let cmds: Vec<Located> = script
        .directives
        .into_iter()
        .map(|d| {
            let (line, col) = d.span().linecol_in(&text);
            Located {
                line: line as u32 + 1,
                col: col as u32 + 1,
                cmd: command(d).unwrap_or_else(Command::Fail),
            }
        })
        .collect();
    Ok(script::encode(&cmds))
}

type R<T = ()> = Result<T, String>;

/// One directive as a bundle command; `Err` becomes a failing command.
fn command(d: WastDirective<'_>) -> R<Command> {
    Ok(match d {
        WastDirective::Module(mut q) => Command::Module {
            name: q.name().map(|i| i.name().to_string()),
            bytes: encode(&mut q)?,
        },
        WastDirective::ModuleDefinition(mut q) => Command::Definition {
            name: q.name().map(|i| i.name().to_string()).unwrap_or_default(),
            bytes: encode(&mut q)?,
        },
        WastDirective::ModuleInstance {
            instance, module, ..
        } => Command::Instance {
            instance: instance.map(|n| n.name().to_string()),
            module: module.map(|m| m.name().to_string()).unwrap_or_default(),
        },
        WastDirective::Register { name, module, .. } => Command::Register {
            name: name.to_string(),
            module: module.map(|m| m.name().to_string()),
        },
        WastDirective::Invoke(i) => Command::Invoke(invoke(&i)),
        WastDirective::AssertReturn { exec, results, .. } => Command::AssertReturn {
            exec: execute(exec)?,
            results: results
                .iter()
                .map(|r| match r {
                    WastRet::Core(w) => pattern(w),
                    _ => Pattern::Never("component values".into()),
                })
                .collect(),
        },
        WastDirective::AssertTrap { exec, message, .. } => Command::AssertTrap {
            exec: execute(exec)?,
            message: message.to_string(),
        },
        WastDirective::AssertExhaustion { call, message, .. } => Command::AssertExhaustion {
            invoke: invoke(&call),
            message: message.to_string(),
        },
        WastDirective::AssertInvalid {
            mut module,
            message,
            ..
        } => Command::AssertInvalid {
            bytes: encode(&mut module)?,
            message: message.to_string(),
        },
        WastDirective::AssertMalformed {
            mut module,
            message,
            ..
        } => match module.encode() {
            // Text that does not even encode is malformed enough.
            Err(_) => Command::Pass,
            Ok(bytes) => Command::AssertMalformed {
                bytes,
                message: message.to_string(),
            },
        },
        WastDirective::AssertUnlinkable {
            mut module,
            message,
            ..
        } => Command::AssertUnlinkable {
            bytes: module.encode().map_err(|e| e.to_string())?,
            message: message.to_string(),
        },
        _ => return Err("directive not supported".into()),
    })
}

fn execute(exec: WastExecute<'_>) -> R<Exec> {
    Ok(match exec {
        WastExecute::Invoke(i) => Exec::Invoke(invoke(&i)),
        WastExecute::Wat(mut w) => Exec::Module(w.encode().map_err(|e| e.to_string())?),
        WastExecute::Get { module, global, .. } => Exec::Get {
            module: module.map(|m| m.name().to_string()),
            global: global.to_string(),
        },
    })
}

fn invoke(i: &WastInvoke<'_>) -> Invoke {
    Invoke {
        module: i.module.map(|m| m.name().to_string()),
        name: i.name.to_string(),
        args: i
            .args
            .iter()
            .map(|a| match a {
                WastArg::Core(WastArgCore::I32(v)) => Arg::I32(*v),
                WastArg::Core(WastArgCore::I64(v)) => Arg::I64(*v),
                WastArg::Core(WastArgCore::F32(v)) => Arg::F32(v.bits),
                WastArg::Core(WastArgCore::F64(v)) => Arg::F64(v.bits),
                WastArg::Core(WastArgCore::RefNull(_)) => Arg::RefNull,
                WastArg::Core(WastArgCore::RefExtern(n)) => Arg::RefExtern(*n),
                _ => Arg::Unsupported,
            })
            .collect(),
    }
}

fn encode(q: &mut QuoteWat<'_>) -> R<Vec<u8>> {
    q.encode().map_err(|e| e.to_string())
}

fn pattern(want: &WastRetCore<'_>) -> Pattern {
    match want {
        WastRetCore::I32(w) => Pattern::I32(*w),
        WastRetCore::I64(w) => Pattern::I64(*w),
        WastRetCore::F32(NanPattern::Value(w)) => Pattern::F32(w.bits),
        WastRetCore::F32(NanPattern::CanonicalNan) => Pattern::F32CanonicalNan,
        WastRetCore::F32(NanPattern::ArithmeticNan) => Pattern::F32ArithmeticNan,
        WastRetCore::F64(NanPattern::Value(w)) => Pattern::F64(w.bits),
        WastRetCore::F64(NanPattern::CanonicalNan) => Pattern::F64CanonicalNan,
        WastRetCore::F64(NanPattern::ArithmeticNan) => Pattern::F64ArithmeticNan,
        WastRetCore::RefNull(ty) => Pattern::RefNull(ty.as_ref().map(is_extern_heap)),
        WastRetCore::RefExtern(n) => Pattern::RefExtern(*n),
        WastRetCore::RefFunc(_) => Pattern::RefFunc,
        WastRetCore::Either(alts) => Pattern::Either(alts.iter().map(pattern).collect()),
        WastRetCore::V128(_) => Pattern::Never("v128 results".into()),
        other => Pattern::Never(format!("unsupported result {other:?}")),
    }
}

fn is_extern_heap(h: &HeapType<'_>) -> bool {
    matches!(
        h,
        HeapType::Abstract {
            ty: AbstractHeapType::Extern | AbstractHeapType::NoExtern,
            ..
        }
    )
}
