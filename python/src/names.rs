//! The names the Python side gives what the native module returns, exported by it so that
//! they are written once, beside the code that makes the values: the SymbolInfo fields (from
//! shm-core's one list) and the fields of the tick and terminal tuples.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// The names of `Segment.tick`'s tuple, in its order: MT5's `Tick` fields.
pub(crate) const TICK_FIELDS: [&str; 8] = [
    "time",
    "bid",
    "ask",
    "last",
    "volume",
    "time_msc",
    "flags",
    "volume_real",
];

/// The names of `Segment.terminal`'s tuple, in its order.
pub(crate) const TERMINAL_FIELDS: [&str; 7] = [
    "name",
    "company",
    "build",
    "connected",
    "server",
    "login",
    "confirmed_ns",
];

/// Adds `SYMBOL_INFO_FIELDS`, `TICK_FIELDS` and `TERMINAL_FIELDS` to the module.
pub(crate) fn add(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // MT5's SymbolInfo fields and their Python types, from the one list the segment is
    // written by: the Python named tuple is built from it, never restated.
    let fields: Vec<(&str, &str)> = shm_core::SYMBOL_INFO_FIELDS
        .iter()
        .map(|&(name, kind)| {
            let kind = match kind {
                shm_core::FieldKind::Int => "int",
                shm_core::FieldKind::Bool => "bool",
                shm_core::FieldKind::Float => "float",
                shm_core::FieldKind::Str => "str",
            };
            (name, kind)
        })
        .collect();
    m.add("SYMBOL_INFO_FIELDS", PyTuple::new(py, fields)?)?;
    m.add("TICK_FIELDS", PyTuple::new(py, TICK_FIELDS)?)?;
    m.add("TERMINAL_FIELDS", PyTuple::new(py, TERMINAL_FIELDS)?)?;
    Ok(())
}
