//! Rows in PostgreSQL's COPY text format, as `sinks/copy_text.py` defines them.
//!
//! `CopyEncoder(types, fallback)` encodes the values it knows how to (str, int, bool, None,
//! bytes, instants of years 1970 - 9999) and hands any other row to `fallback`, the pure-Python
//! encoder of the same types: the Python one stays the definition, this one only its fast path.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyInt, PyString, PyTuple};

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Bool,
    Us,
    Bytea,
}

const US: i64 = 1_000_000;
/// 9999-12-31T00:00:00Z, `pipeline.timeutil.MAX_US`.
const MAX_US: i64 = 253_402_214_400 * US;

/// Why a row goes to the Python encoder.
struct Unusual;

#[pyclass(frozen)]
struct CopyEncoder {
    kinds: Vec<Kind>,
    fallback: Py<PyAny>,
}

fn escape_into(out: &mut Vec<u8>, text: &str) {
    for &b in text.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

fn push_2(out: &mut Vec<u8>, n: u32) {
    out.push(b'0' + (n / 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD HH:MM:SS.ffffff+00`, as `sinks.copy_text.Instants` writes it.
fn instant_into(out: &mut Vec<u8>, us: i64) {
    let (second, micro) = (us.div_euclid(US), us.rem_euclid(US));
    let (days, in_day) = (second.div_euclid(86_400), second.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    out.extend_from_slice(format!("{year:04}").as_bytes());
    out.push(b'-');
    push_2(out, month);
    out.push(b'-');
    push_2(out, day);
    out.push(b' ');
    push_2(out, (in_day / 3600) as u32);
    out.push(b':');
    push_2(out, (in_day / 60 % 60) as u32);
    out.push(b':');
    push_2(out, (in_day % 60) as u32);
    out.extend_from_slice(format!(".{micro:06}+00").as_bytes());
}

fn value_into(out: &mut Vec<u8>, kind: Kind, value: &Bound<'_, PyAny>) -> Result<(), Unusual> {
    if value.is_none() {
        out.extend_from_slice(b"\\N");
        return Ok(());
    }
    match kind {
        Kind::Text => {
            let text = value.cast::<PyString>().map_err(|_| Unusual)?;
            escape_into(out, text.to_str().map_err(|_| Unusual)?);
        }
        Kind::Int => {
            // Exactly int (a bool is written as Python's str() writes it: by the fallback).
            if !value.is_exact_instance_of::<PyInt>() {
                return Err(Unusual);
            }
            let n: i64 = value.extract().map_err(|_| Unusual)?;
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Kind::Bool => {
            let flag = if value.is_exact_instance_of::<PyBool>() {
                value.is_truthy().map_err(|_| Unusual)?
            } else {
                return Err(Unusual);
            };
            out.push(if flag { b't' } else { b'f' });
        }
        Kind::Us => {
            if !value.is_exact_instance_of::<PyInt>() {
                return Err(Unusual);
            }
            let us: i64 = value.extract().map_err(|_| Unusual)?;
            if !(0..=MAX_US).contains(&us) {
                return Err(Unusual);
            }
            instant_into(out, us);
        }
        Kind::Bytea => {
            let bytes = value.cast::<PyBytes>().map_err(|_| Unusual)?;
            out.extend_from_slice(b"\\\\x");
            for &b in bytes.as_bytes() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
        }
    }
    Ok(())
}

impl CopyEncoder {
    fn line(&self, row: &Bound<'_, PyTuple>) -> Result<Vec<u8>, Unusual> {
        if row.len() != self.kinds.len() {
            return Err(Unusual);
        }
        let mut out = Vec::with_capacity(32 * self.kinds.len());
        for (i, (kind, value)) in self.kinds.iter().zip(row.iter()).enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            value_into(&mut out, *kind, &value)?;
        }
        out.push(b'\n');
        Ok(out)
    }
}

#[pymethods]
impl CopyEncoder {
    #[new]
    fn new(types: Vec<String>, fallback: Py<PyAny>) -> PyResult<Self> {
        let kinds = types
            .iter()
            .map(|t| match t.as_str() {
                "text" | "json" => Ok(Kind::Text),
                "int" => Ok(Kind::Int),
                "bool" => Ok(Kind::Bool),
                "us" => Ok(Kind::Us),
                "bytea" => Ok(Kind::Bytea),
                other => Err(PyValueError::new_err(format!("unknown column type {other:?}"))),
            })
            .collect::<PyResult<Vec<Kind>>>()?;
        Ok(CopyEncoder { kinds, fallback })
    }

    /// The row as one COPY line (bytes, ending in a newline).
    fn __call__(&self, py: Python<'_>, row: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if let Ok(tuple) = row.cast::<PyTuple>() {
            if let Ok(line) = self.line(tuple) {
                return Ok(PyBytes::new(py, &line).into_any().unbind());
            }
        }
        self.fallback.call1(py, (row,))
    }
}

#[pymodule]
fn dpu_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CopyEncoder>()?;
    Ok(())
}
