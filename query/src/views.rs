//! Strings as views inside the engine, plain strings outside it.
//!
//! Tables scan string columns as `Utf8View`: DataFusion's Parquet reader
//! then points each value into its page's dictionary instead of copying it,
//! and grouping hashes the short inline views (a `GROUP BY service_name`
//! over 15 M spans took half the time, `docs/benchmarks.md`). Results and
//! the readers built on the engine (PromQL, profiles, SLOs) take plain
//! `Utf8`, as the stored files and buffered rows hold it.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;

/// The type a stored column is scanned as: strings as views.
pub fn scan_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8 => DataType::Utf8View,
        other => other.clone(),
    }
}

/// `schema` with string views as plain strings.
pub fn plain_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8View => f.as_ref().clone().with_data_type(DataType::Utf8),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A batch of `rows` rows of `schema` from `columns`, each cast to its
/// field's type where it differs (`rows` matters when there are no
/// columns, as for `count(*)`).
pub fn conform<'a>(
    columns: impl IntoIterator<Item = &'a ArrayRef>,
    schema: &SchemaRef,
    rows: usize,
) -> Result<RecordBatch, ArrowError> {
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| match c.data_type() == f.data_type() {
            true => Ok(c.clone()),
            false => arrow::compute::cast(c, f.data_type()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, StringArray};

    #[test]
    fn views_come_back_as_the_same_plain_strings() {
        let plain = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let viewed = Arc::new(Schema::new(vec![Field::new(
            "s",
            scan_type(&DataType::Utf8),
            true,
        )]));
        let values: ArrayRef = Arc::new(StringArray::from(vec![
            Some("frontend"),
            None,
            Some("a name longer than twelve bytes"),
        ]));
        let as_views = conform([&values], &viewed, 3).unwrap();
        assert_eq!(as_views.column(0).data_type(), &DataType::Utf8View);
        assert_eq!(plain_schema(&viewed), plain);
        let back = conform(as_views.columns(), &plain, 3).unwrap();
        assert_eq!(back.column(0).as_string::<i32>(), values.as_string::<i32>());
        assert_eq!(
            conform([], &Arc::new(Schema::empty()), 7)
                .unwrap()
                .num_rows(),
            7
        );
    }
}
