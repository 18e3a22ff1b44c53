//! Repeats ranges of an array: the kernel that expands a group's resource
//! and scope attribute maps to every row of the group.
//!
//! `take` and `MutableArrayData::extend` both work through per-element or
//! per-call dispatch into every child; a context map is a list of structs of
//! seven leaves, copied for every span, so that dispatch was ~8 % of the
//! server's CPU under load. Here each leaf copies its whole range with one
//! `memcpy` (and one offset pass) per repetition.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, GenericByteArray, MapArray,
    MutableArrayData, PrimitiveArray, StructArray, make_array,
};
use arrow::buffer::{MutableBuffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{
    ArrowPrimitiveType, BinaryType, ByteArrayType, DataType, Float64Type, Int64Type, UInt32Type,
    Utf8Type,
};
use arrow::error::ArrowError;

/// One piece of the output: elements `range` of the input, `times` times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Input elements copied.
    pub range: Range<usize>,
    /// How many copies, one after the other.
    pub times: usize,
}

/// Runs that give row `i` of the output the value of element `rows[i]`;
/// consecutive equal indices (a group's rows) become one run.
pub fn runs_of(rows: &[u32]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for &g in rows {
        let g = g as usize;
        match runs.last_mut() {
            Some(r) if r.range.start == g => r.times += 1,
            _ => runs.push(Run {
                range: g..g + 1,
                times: 1,
            }),
        }
    }
    runs
}

/// The concatenation of every run's elements, each repeated `times` times.
///
/// Fails only when the output's `i32` offsets would overflow (over 2 GiB of
/// strings or entries in one column).
pub fn repeat(array: &dyn Array, runs: &[Run]) -> Result<ArrayRef, ArrowError> {
    let out: ArrayRef = match array.data_type() {
        DataType::Utf8 => Arc::new(bytes::<Utf8Type>(array.as_bytes(), runs)?),
        DataType::Binary => Arc::new(bytes::<BinaryType>(array.as_bytes(), runs)?),
        DataType::Int64 => Arc::new(primitive::<Int64Type>(array.as_primitive(), runs)),
        DataType::Float64 => Arc::new(primitive::<Float64Type>(array.as_primitive(), runs)),
        DataType::UInt32 => Arc::new(primitive::<UInt32Type>(array.as_primitive(), runs)),
        DataType::Boolean => Arc::new(boolean(array.as_boolean(), runs)),
        DataType::Struct(_) => Arc::new(structure(array.as_struct(), runs)?),
        DataType::Map(_, _) => Arc::new(map(array.as_map(), runs)?),
        _ => fallback(array, runs)?,
    };
    Ok(out)
}

fn output_len(runs: &[Run]) -> usize {
    runs.iter().map(|r| r.range.len() * r.times).sum()
}

/// The input's validity bits, repeated; `None` when the input has no nulls.
fn nulls(input: Option<&NullBuffer>, runs: &[Run]) -> Option<NullBuffer> {
    let input = input?;
    let mut out = BooleanBufferBuilder::new(output_len(runs));
    for run in runs {
        let bits = input.inner().slice(run.range.start, run.range.len());
        for _ in 0..run.times {
            out.append_buffer(&bits);
        }
    }
    Some(NullBuffer::new(out.finish()))
}

fn primitive<T: ArrowPrimitiveType>(a: &PrimitiveArray<T>, runs: &[Run]) -> PrimitiveArray<T> {
    let values = a.values();
    let mut out: Vec<T::Native> = Vec::with_capacity(output_len(runs));
    for run in runs {
        let slice = &values[run.range.clone()];
        for _ in 0..run.times {
            out.extend_from_slice(slice);
        }
    }
    PrimitiveArray::new(ScalarBuffer::from(out), nulls(a.nulls(), runs))
        .with_data_type(a.data_type().clone())
}

fn boolean(a: &BooleanArray, runs: &[Run]) -> BooleanArray {
    let mut out = BooleanBufferBuilder::new(output_len(runs));
    for run in runs {
        let bits = a.values().slice(run.range.start, run.range.len());
        for _ in 0..run.times {
            out.append_buffer(&bits);
        }
    }
    BooleanArray::new(out.finish(), nulls(a.nulls(), runs))
}

/// Offsets for `runs` over `offsets`, and the runs of the child elements
/// (or bytes) that the output refers to.
fn offsets(offsets: &[i32], runs: &[Run]) -> Result<(OffsetBuffer<i32>, Vec<Run>), ArrowError> {
    let mut out: Vec<i32> = Vec::with_capacity(output_len(runs) + 1);
    out.push(0);
    let mut end: i64 = 0;
    let mut child = Vec::with_capacity(runs.len());
    for run in runs {
        let (first, last) = (offsets[run.range.start], offsets[run.range.end]);
        for _ in 0..run.times {
            let base = end - i64::from(first);
            for &o in &offsets[run.range.start + 1..=run.range.end] {
                out.push(i32::try_from(base + i64::from(o)).map_err(|_| overflow())?);
            }
            end += i64::from(last - first);
        }
        child.push(Run {
            range: first as usize..last as usize,
            times: run.times,
        });
    }
    // Every offset came from an input offset shifted by a running total, so
    // they are non-decreasing and start at 0.
    Ok((OffsetBuffer::new(ScalarBuffer::from(out)), child))
}

fn overflow() -> ArrowError {
    ArrowError::OffsetOverflowError(i32::MAX as usize)
}

fn bytes<T: ByteArrayType<Offset = i32>>(
    a: &GenericByteArray<T>,
    runs: &[Run],
) -> Result<GenericByteArray<T>, ArrowError> {
    let (offs, byte_runs) = offsets(a.value_offsets(), runs)?;
    let total = *offs.last().unwrap_or(&0) as usize;
    let mut values = MutableBuffer::with_capacity(total);
    for run in &byte_runs {
        let slice = &a.value_data()[run.range.clone()];
        for _ in 0..run.times {
            values.extend_from_slice(slice);
        }
    }
    GenericByteArray::try_new(offs, values.into(), nulls(a.nulls(), runs))
}

fn structure(a: &StructArray, runs: &[Run]) -> Result<StructArray, ArrowError> {
    let columns = a
        .columns()
        .iter()
        .map(|c| repeat(c.as_ref(), runs))
        .collect::<Result<Vec<_>, _>>()?;
    StructArray::try_new(a.fields().clone(), columns, nulls(a.nulls(), runs))
}

fn map(a: &MapArray, runs: &[Run]) -> Result<MapArray, ArrowError> {
    let (offs, entry_runs) = offsets(a.value_offsets(), runs)?;
    let entries = structure(a.entries(), &entry_runs)?;
    let DataType::Map(field, sorted) = a.data_type() else {
        unreachable!("as_map returned a map")
    };
    MapArray::try_new(
        field.clone(),
        offs,
        entries,
        nulls(a.nulls(), runs),
        *sorted,
    )
}

/// Any other type, through arrow's generic (slower) copy.
fn fallback(array: &dyn Array, runs: &[Run]) -> Result<ArrayRef, ArrowError> {
    let data = array.to_data();
    let mut out = MutableArrayData::new(vec![&data], false, output_len(runs));
    for run in runs {
        for _ in 0..run.times {
            out.try_extend(0, run.range.start, run.range.end)?;
        }
    }
    Ok(make_array(out.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::columns::AttributesBuilder;
    use arrow::array::{Int64Array, StringArray, UInt32Array};
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    /// Per-group maps with every value type, an empty map and a missing value.
    fn groups() -> ArrayRef {
        let mut b = AttributesBuilder::default();
        b.append(&[
            kv("s", Value::StringValue("a".into())),
            kv("i", Value::IntValue(7)),
        ]);
        b.append::<KeyValue>(&[]);
        b.append(&[
            kv("d", Value::DoubleValue(1.5)),
            kv("b", Value::BoolValue(true)),
            kv("y", Value::BytesValue(vec![1, 2])),
            KeyValue {
                key: "none".into(),
                ..Default::default()
            },
        ]);
        b.append(&[kv("s", Value::StringValue("longer text".into()))]);
        Arc::new(b.finish())
    }

    fn expected(array: &dyn Array, rows: &[u32]) -> ArrayRef {
        arrow::compute::take(array, &UInt32Array::from(rows.to_vec()), None).unwrap()
    }

    #[test]
    fn repeated_maps_equal_take() {
        let g = groups();
        let rows = [0, 0, 0, 1, 2, 2, 3, 0, 0, 3];
        let out = repeat(g.as_ref(), &runs_of(&rows)).unwrap();
        assert_eq!(out.to_data(), expected(g.as_ref(), &rows).to_data());
        out.to_data().validate_full().unwrap();
    }

    #[test]
    fn sliced_inputs_with_nulls_equal_take() {
        let s = StringArray::from(vec![Some("x"), None, Some("yz"), Some(""), None, Some("w")]);
        let s = s.slice(1, 5);
        let i = Int64Array::from(vec![Some(1), None, Some(3), Some(4), None, Some(6)]).slice(2, 4);
        let rows = [0, 0, 1, 3, 3, 3, 2];
        for a in [&s as &dyn Array, &i] {
            let out = repeat(a, &runs_of(&rows)).unwrap();
            assert_eq!(out.to_data(), expected(a, &rows).to_data());
        }
        let g = groups().slice(1, 3);
        let rows = [2, 2, 0, 1, 1];
        let out = repeat(g.as_ref(), &runs_of(&rows)).unwrap();
        assert_eq!(out.to_data(), expected(g.as_ref(), &rows).to_data());
    }

    #[test]
    fn no_rows_give_an_empty_array_of_the_same_type() {
        let g = groups();
        let out = repeat(g.as_ref(), &runs_of(&[])).unwrap();
        assert_eq!(out.len(), 0);
        assert_eq!(out.data_type(), g.data_type());
    }

    #[test]
    fn offsets_past_i32_are_an_error_not_a_panic() {
        let big = "x".repeat(1 << 20);
        let s = StringArray::from(vec![big.as_str()]);
        let runs = [Run {
            range: 0..1,
            times: 2048,
        }];
        assert!(matches!(
            repeat(&s, &runs),
            Err(ArrowError::OffsetOverflowError(_))
        ));
    }

    #[test]
    fn runs_merge_consecutive_rows_of_a_group() {
        assert_eq!(
            runs_of(&[0, 0, 1, 1, 1, 0]),
            vec![
                Run {
                    range: 0..1,
                    times: 2
                },
                Run {
                    range: 1..2,
                    times: 3
                },
                Run {
                    range: 0..1,
                    times: 1
                },
            ]
        );
    }
}
