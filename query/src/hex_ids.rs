//! Lets SQL compare trace and span ids with hex strings:
//! `WHERE trace_id = '4bf92f3577b34da6a3ce929d0e0e4736'`.
//!
//! Ids are stored as `fixed_size_binary`, which keeps files small and lets the
//! bloom filter prune. Left alone, DataFusion would compare the string's
//! UTF-8 bytes; this rule decodes hex literals compared with a binary column
//! into binary literals before type coercion, so the comparison is exact and
//! still prunes.

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ExprSchema, Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule; runs first.
#[derive(Debug, Default)]
pub struct HexIdLiterals;

impl AnalyzerRule for HexIdLiterals {
    fn name(&self) -> &str {
        "hex_id_literals"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let mut schema = DFSchema::empty();
            for input in node.inputs() {
                schema.merge(input.schema());
            }
            node.map_expressions(|e| e.transform_up(|e| rewrite(e, &schema)))
        })
        .map(|t| t.data)
    }
}

fn id_width(e: &Expr, schema: &DFSchema) -> Option<i32> {
    let Expr::Column(c) = e else { return None };
    match schema.field_from_column(c).ok()?.data_type() {
        DataType::FixedSizeBinary(n) => Some(*n),
        _ => None,
    }
}

fn hex_literal(e: &Expr, width: i32) -> Option<Expr> {
    let Expr::Literal(
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)),
        _,
    ) = e
    else {
        return None;
    };
    let bytes = decode_hex(s)?;
    (bytes.len() == usize::try_from(width).ok()?)
        .then(|| Expr::Literal(ScalarValue::FixedSizeBinary(width, Some(bytes)), None))
}

fn rewrite(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    match &e {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(
                op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
            ) =>
        {
            let new = if let Some(w) = id_width(left, schema) {
                hex_literal(right, w)
                    .map(|r| Expr::BinaryExpr(BinaryExpr::new(left.clone(), *op, Box::new(r))))
            } else if let Some(w) = id_width(right, schema) {
                hex_literal(left, w)
                    .map(|l| Expr::BinaryExpr(BinaryExpr::new(Box::new(l), *op, right.clone())))
            } else {
                None
            };
            Ok(new.map_or_else(|| Transformed::no(e.clone()), Transformed::yes))
        }
        Expr::InList(list) => {
            let Some(w) = id_width(&list.expr, schema) else {
                return Ok(Transformed::no(e));
            };
            let decoded: Option<Vec<Expr>> = list.list.iter().map(|l| hex_literal(l, w)).collect();
            Ok(match decoded {
                Some(items) => {
                    Transformed::yes(Expr::InList(datafusion::logical_expr::expr::InList::new(
                        list.expr.clone(),
                        items,
                        list.negated,
                    )))
                }
                None => Transformed::no(e),
            })
        }
        _ => Ok(Transformed::no(e)),
    }
}

/// Lower-case hex of `bytes` (how ids are shown).
pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes a hex string (either case); `None` when it is not hex.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::decode_hex;

    #[test]
    fn decodes_hex_of_either_case_and_refuses_the_rest() {
        assert_eq!(decode_hex("0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex("é1"), None);
    }
}
