//! Text views of typed OTLP values, so SQL can write
//! `attributes['http.route'] = '/cart'` and `body LIKE '%timeout%'`.
//!
//! Storage keeps every attribute value with its type (a struct with one
//! field set, see `docs/schema.md`). Queries see them as strings: strings as
//! they are, numbers and booleans in their usual text form, bytes as hex,
//! arrays and maps as their OTLP JSON.

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, MapArray, StringArray, StringBuilder, StructArray};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, Int64Type};

/// Whether `dt` is the typed OTLP value struct.
pub fn is_any_value(dt: &DataType) -> bool {
    matches!(dt, DataType::Struct(f) if f.len() == 6 && f[0].name() == "string" && f[5].name() == "json")
}

/// Whether `dt` is an attribute map of typed values.
pub fn is_typed_map(dt: &DataType) -> bool {
    match dt {
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(f) => f.len() == 2 && is_any_value(f[1].data_type()),
            _ => false,
        },
        _ => false,
    }
}

/// The text type a typed column is shown as (other types unchanged).
pub fn text_type(dt: &DataType) -> DataType {
    if is_any_value(dt) {
        DataType::Utf8
    } else if is_typed_map(dt) {
        DataType::Map(text_entries(), false)
    } else {
        dt.clone()
    }
}

fn text_entries() -> FieldRef {
    Arc::new(Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, true),
        ])),
        false,
    ))
}

/// Converts a typed value or map column to its text form; other columns
/// are returned as they are.
pub fn to_text(array: &ArrayRef) -> ArrayRef {
    let dt = array.data_type();
    if is_any_value(dt) {
        Arc::new(values_text(array.as_struct()))
    } else if is_typed_map(dt) {
        Arc::new(map_text(array.as_map()))
    } else {
        array.clone()
    }
}

fn map_text(map: &MapArray) -> MapArray {
    let entries = map.entries();
    let values = values_text(entries.column(1).as_struct());
    let DataType::Struct(fields) = text_entries().data_type().clone() else {
        unreachable!("entries are a struct")
    };
    let entries = StructArray::new(
        fields,
        vec![entries.column(0).clone(), Arc::new(values)],
        None,
    );
    MapArray::new(
        text_entries(),
        map.offsets().clone(),
        entries,
        map.nulls().cloned(),
        false,
    )
}

/// The text of each typed value (null when no field is set).
pub fn values_text(s: &StructArray) -> StringArray {
    let string = s.column(0).as_string::<i32>();
    let int = s.column(1).as_primitive::<Int64Type>();
    let double = s.column(2).as_primitive::<Float64Type>();
    let boolean = s.column(3).as_boolean();
    let bytes = s.column(4).as_binary::<i32>();
    let json = s.column(5).as_string::<i32>();
    let mut out = StringBuilder::with_capacity(s.len(), s.len() * 8);
    let mut buf = String::new();
    for i in 0..s.len() {
        if s.is_null(i) {
            out.append_null();
        } else if string.is_valid(i) {
            out.append_value(string.value(i));
        } else if int.is_valid(i) {
            buf.clear();
            let _ = write!(buf, "{}", int.value(i));
            out.append_value(&buf);
        } else if double.is_valid(i) {
            buf.clear();
            let _ = write!(buf, "{}", double.value(i));
            out.append_value(&buf);
        } else if boolean.is_valid(i) {
            out.append_value(if boolean.value(i) { "true" } else { "false" });
        } else if bytes.is_valid(i) {
            buf.clear();
            for b in bytes.value(i) {
                let _ = write!(buf, "{b:02x}");
            }
            out.append_value(&buf);
        } else if json.is_valid(i) {
            out.append_value(json.value(i));
        } else {
            out.append_null();
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use collector::schema::Table;

    #[test]
    fn every_typed_column_has_a_text_form() {
        for table in Table::ALL {
            for f in table.schema().fields() {
                let t = text_type(f.data_type());
                assert!(
                    !is_typed_map(&t) && !is_any_value(&t),
                    "{table}.{}",
                    f.name()
                );
            }
        }
        let spans = Table::Spans.schema();
        let attrs = spans.field_with_name("attributes").unwrap();
        assert!(is_typed_map(attrs.data_type()));
    }
}

/// Physical expression showing a typed value or map column as text (used by
/// the table scan, so filters and projections above it see strings).
#[derive(Debug, Eq)]
pub struct TextExpr {
    arg: Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    out: DataType,
}

impl TextExpr {
    /// Text of `arg`, whose text type is `out`.
    pub fn new(arg: Arc<dyn datafusion::physical_expr::PhysicalExpr>, out: DataType) -> Self {
        TextExpr { arg, out }
    }
}

impl PartialEq for TextExpr {
    fn eq(&self, other: &Self) -> bool {
        self.arg.eq(&other.arg)
    }
}

impl std::hash::Hash for TextExpr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.arg.hash(state);
    }
}

impl std::fmt::Display for TextExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "text({})", self.arg)
    }
}

impl datafusion::physical_expr::PhysicalExpr for TextExpr {
    fn data_type(&self, _: &arrow::datatypes::Schema) -> datafusion::common::Result<DataType> {
        Ok(self.out.clone())
    }

    fn nullable(&self, _: &arrow::datatypes::Schema) -> datafusion::common::Result<bool> {
        Ok(true)
    }

    fn evaluate(
        &self,
        batch: &arrow::array::RecordBatch,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        let v = self.arg.evaluate(batch)?.into_array(batch.num_rows())?;
        Ok(datafusion::logical_expr::ColumnarValue::Array(to_text(&v)))
    }

    fn children(&self) -> Vec<&Arc<dyn datafusion::physical_expr::PhysicalExpr>> {
        vec![&self.arg]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
    ) -> datafusion::common::Result<Arc<dyn datafusion::physical_expr::PhysicalExpr>> {
        Ok(Arc::new(TextExpr::new(
            children[0].clone(),
            self.out.clone(),
        )))
    }

    fn fmt_sql(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "text({})", self.arg)
    }
}
