//! Parsing a validated core module into the facts the translator and the
//! instantiator need.

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;
use wasmparser::{
    ElementItems, ElementKind, ExternalKind, Operator, Parser, Payload, TypeRef, Validator,
    WasmFeatures,
};
pub use wasmparser::{GlobalType, MemoryType, RefType, TableType, ValType};

use crate::Error;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FuncType {
    pub params: Vec<ValType>,
    pub results: Vec<ValType>,
}

#[derive(Clone, Debug)]
pub enum ImportKind {
    Func(u32),
    Table(TableType),
    Memory(MemoryType),
    Global(GlobalType),
    /// An exception tag of this function type (params only).
    Tag(u32),
}

#[derive(Clone, Debug)]
pub struct Import {
    pub module: String,
    pub name: String,
    pub kind: ImportKind,
}

/// A Wasm 2.0 constant expression (a single instruction).
#[derive(Clone, Copy, Debug)]
pub enum ConstExpr {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    RefNull,
    RefFunc(u32),
    GlobalGet(u32),
}

#[derive(Clone, Debug)]
pub enum ElemMode {
    Passive,
    Declared,
    Active { table: u32, offset: ConstExpr },
}

#[derive(Clone, Debug)]
pub struct ElemSegment {
    pub mode: ElemMode,
    pub ty: RefType,
    pub items: Vec<ConstExpr>,
}

#[derive(Clone, Debug)]
pub struct DataSegment {
    /// `Some(offset)` for an active segment (of memory `memory`).
    pub offset: Option<ConstExpr>,
    pub memory: u32,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct Export {
    pub name: String,
    pub kind: ExternalKind,
    pub index: u32,
}

/// Everything about a module except its compiled code.
#[derive(Default, Debug)]
pub struct ModuleInfo {
    pub types: Vec<FuncType>,
    pub imports: Vec<Import>,
    /// Type index of every function, imports first.
    pub funcs: Vec<u32>,
    pub num_imported_funcs: u32,
    pub tables: Vec<TableType>,
    pub num_imported_tables: u32,
    /// Initial element of each local table.
    pub table_inits: Vec<ConstExpr>,
    pub memories: Vec<MemoryType>,
    pub num_imported_memories: u32,
    pub globals: Vec<GlobalType>,
    pub num_imported_globals: u32,
    pub global_inits: Vec<ConstExpr>,
    /// Type index of every exception tag, imports first.
    pub tags: Vec<u32>,
    pub num_imported_tags: u32,
    pub exports: Vec<Export>,
    pub start: Option<u32>,
    pub elems: Vec<ElemSegment>,
    pub datas: Vec<DataSegment>,
    /// Byte ranges of local function bodies in the module binary.
    pub bodies: Vec<Range<usize>>,
}

impl ModuleInfo {
    pub fn func_type(&self, func: u32) -> &FuncType {
        &self.types[self.funcs[func as usize] as usize]
    }

    /// The type of tag `tag` (its params are the exception's payload).
    pub fn tag_type(&self, tag: u32) -> &FuncType {
        &self.types[self.tags[tag as usize] as usize]
    }
}

/// Wasm 2.0 plus exception handling (tags, `try_table`, `throw`,
/// `throw_ref`, exnref); SIMD validates but is rejected by the translator.
pub fn features() -> WasmFeatures {
    WasmFeatures::WASM2 | WasmFeatures::EXCEPTIONS
}

/// What modules inside components may use: [`features`] plus multiple
/// memories (the component-model tests link several).
pub fn component_module_features() -> WasmFeatures {
    features() | WasmFeatures::MULTI_MEMORY
}

use crate::module_err as err;

fn const_expr(e: &wasmparser::ConstExpr<'_>) -> Result<ConstExpr, Error> {
    let mut r = e.get_operators_reader();
    let c = match r.read().map_err(err)? {
        Operator::I32Const { value } => ConstExpr::I32(value),
        Operator::I64Const { value } => ConstExpr::I64(value),
        Operator::F32Const { value } => ConstExpr::F32(value.bits()),
        Operator::F64Const { value } => ConstExpr::F64(value.bits()),
        Operator::RefNull { .. } => ConstExpr::RefNull,
        Operator::RefFunc { function_index } => ConstExpr::RefFunc(function_index),
        Operator::GlobalGet { global_index } => ConstExpr::GlobalGet(global_index),
        op => {
            return Err(Error::Unsupported(alloc::format!(
                "constant expression {op:?}"
            )))
        }
    };
    match r.read().map_err(err)? {
        Operator::End => Ok(c),
        _ => Err(Error::Unsupported("extended constant expression".into())),
    }
}

/// Validates `bytes` and collects its structure.
pub fn parse(bytes: &[u8]) -> Result<ModuleInfo, Error> {
    parse_with(bytes, features())
}

/// [`parse`] with other features (modules inside components may use
/// multiple memories).
pub fn parse_with(bytes: &[u8], features: WasmFeatures) -> Result<ModuleInfo, Error> {
    Validator::new_with_features(features)
        .validate_all(bytes)
        .map_err(err)?;
    let mut m = ModuleInfo::default();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(err)? {
            Payload::TypeSection(s) => {
                for ty in s.into_iter_err_on_gc_types() {
                    let f = ty.map_err(err)?;
                    m.types.push(FuncType {
                        params: f.params().to_vec(),
                        results: f.results().to_vec(),
                    });
                }
            }
            Payload::ImportSection(s) => {
                for imp in s.into_imports() {
                    let imp = imp.map_err(err)?;
                    let kind = match imp.ty {
                        TypeRef::Func(t) => {
                            m.funcs.push(t);
                            m.num_imported_funcs += 1;
                            ImportKind::Func(t)
                        }
                        TypeRef::Table(t) => {
                            m.tables.push(t);
                            m.num_imported_tables += 1;
                            ImportKind::Table(t)
                        }
                        TypeRef::Memory(t) => {
                            m.memories.push(t);
                            m.num_imported_memories += 1;
                            ImportKind::Memory(t)
                        }
                        TypeRef::Global(t) => {
                            m.globals.push(t);
                            m.num_imported_globals += 1;
                            ImportKind::Global(t)
                        }
                        TypeRef::Tag(t) => {
                            m.tags.push(t.func_type_idx);
                            m.num_imported_tags += 1;
                            ImportKind::Tag(t.func_type_idx)
                        }
                        other => {
                            return Err(Error::Unsupported(alloc::format!("import {other:?}")))
                        }
                    };
                    m.imports.push(Import {
                        module: imp.module.into(),
                        name: imp.name.into(),
                        kind,
                    });
                }
            }
            Payload::FunctionSection(s) => {
                for t in s {
                    m.funcs.push(t.map_err(err)?);
                }
            }
            Payload::TableSection(s) => {
                for t in s {
                    let t = t.map_err(err)?;
                    m.tables.push(t.ty);
                    m.table_inits.push(match &t.init {
                        wasmparser::TableInit::RefNull => ConstExpr::RefNull,
                        wasmparser::TableInit::Expr(e) => const_expr(e)?,
                    });
                }
            }
            Payload::MemorySection(s) => {
                for t in s {
                    m.memories.push(t.map_err(err)?);
                }
            }
            Payload::GlobalSection(s) => {
                for g in s {
                    let g = g.map_err(err)?;
                    m.globals.push(g.ty);
                    m.global_inits.push(const_expr(&g.init_expr)?);
                }
            }
            Payload::TagSection(s) => {
                for t in s {
                    m.tags.push(t.map_err(err)?.func_type_idx);
                }
            }
            Payload::ExportSection(s) => {
                for e in s {
                    let e = e.map_err(err)?;
                    m.exports.push(Export {
                        name: e.name.into(),
                        kind: e.kind,
                        index: e.index,
                    });
                }
            }
            Payload::StartSection { func, .. } => m.start = Some(func),
            Payload::ElementSection(s) => {
                for e in s {
                    let e = e.map_err(err)?;
                    let mode = match e.kind {
                        ElementKind::Passive => ElemMode::Passive,
                        ElementKind::Declared => ElemMode::Declared,
                        ElementKind::Active {
                            table_index,
                            offset_expr,
                        } => ElemMode::Active {
                            table: table_index.unwrap_or(0),
                            offset: const_expr(&offset_expr)?,
                        },
                    };
                    let (ty, items) = match e.items {
                        ElementItems::Functions(fs) => (
                            RefType::FUNCREF,
                            fs.into_iter()
                                .map(|f| f.map(ConstExpr::RefFunc).map_err(err))
                                .collect::<Result<Vec<_>, _>>()?,
                        ),
                        ElementItems::Expressions(ty, es) => (
                            ty,
                            es.into_iter()
                                .map(|e| const_expr(&e.map_err(err)?))
                                .collect::<Result<Vec<_>, _>>()?,
                        ),
                    };
                    m.elems.push(ElemSegment { mode, ty, items });
                }
            }
            Payload::DataSection(s) => {
                for d in s {
                    let d = d.map_err(err)?;
                    let (offset, memory) = match d.kind {
                        wasmparser::DataKind::Passive => (None, 0),
                        wasmparser::DataKind::Active {
                            offset_expr,
                            memory_index,
                        } => (Some(const_expr(&offset_expr)?), memory_index),
                    };
                    m.datas.push(DataSegment {
                        offset,
                        memory,
                        bytes: d.data.to_vec(),
                    });
                }
            }
            Payload::CodeSectionEntry(body) => {
                let r = body.range();
                m.bodies.push(r.start as usize..r.end as usize);
            }
            _ => {}
        }
    }
    Ok(m)
}
