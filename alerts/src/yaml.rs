//! A YAML tree that remembers where every node came from, so that a spec
//! error can name the file, line and field instead of "invalid document".

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One YAML node and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What the node holds.
    pub kind: Kind,
    /// Line of the node's first character.
    pub line: usize,
}

/// The shape of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A plain or quoted scalar, kept as written.
    Scalar {
        /// The text.
        value: String,
        /// Whether the scalar was quoted (then `~`/`null` are strings).
        quoted: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(String, Node)>),
}

/// A YAML syntax error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SyntaxError {
    /// Line of the error (1-based).
    pub line: usize,
    /// What the parser found.
    pub message: String,
}

/// Parses every document of `text`.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| SyntaxError {
        line: e.marker().line(),
        message: e.info().to_string(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.docs)
}

/// Builds [`Node`]s from parser events with an explicit stack.
#[derive(Default)]
struct Builder {
    docs: Vec<Node>,
    stack: Vec<(Node, Option<String>)>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        let Some((parent, pending_key)) = self.stack.last_mut() else {
            self.docs.push(node);
            return;
        };
        match &mut parent.kind {
            Kind::Seq(items) => items.push(node),
            Kind::Map(entries) => match pending_key.take() {
                Some(key) => entries.push((key, node)),
                None => match node.kind {
                    Kind::Scalar { value, .. } => *pending_key = Some(value),
                    _ => self.fail(node.line, "mapping keys must be plain strings"),
                },
            },
            Kind::Scalar { .. } => unreachable!("scalars are never on the stack"),
        }
    }

    fn fail(&mut self, line: usize, message: &str) {
        self.error.get_or_insert(SyntaxError {
            line,
            message: message.to_string(),
        });
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(value, style, ..) => {
                let quoted = !matches!(style, TScalarStyle::Plain);
                self.push_value(Node {
                    kind: Kind::Scalar { value, quoted },
                    line,
                });
            }
            Event::SequenceStart(..) => self.stack.push((
                Node {
                    kind: Kind::Seq(Vec::new()),
                    line,
                },
                None,
            )),
            Event::MappingStart(..) => self.stack.push((
                Node {
                    kind: Kind::Map(Vec::new()),
                    line,
                },
                None,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    self.push_value(node);
                }
            }
            Event::Alias(_) => {
                self.fail(line, "YAML aliases (*name) are not supported in SLO files")
            }
            _ => {}
        }
    }
}

/// A problem with one field of a document, located precisely.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {field}: {message}")]
pub struct FieldError {
    /// Line of the offending node.
    pub line: usize,
    /// Dotted path of the field, e.g. `slos[1].objective`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A node together with its dotted path, for precise errors.
#[derive(Debug, Clone)]
pub struct Field<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> Field<'a> {
    /// The root of a document.
    pub fn root(node: &'a Node) -> Field<'a> {
        Field {
            node,
            path: String::new(),
        }
    }

    /// The node.
    pub fn node(&self) -> &'a Node {
        self.node
    }

    /// Line of the node.
    pub fn line(&self) -> usize {
        self.node.line
    }

    /// Dotted path of the node.
    pub fn path(&self) -> &str {
        if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        }
    }

    /// An error about this node.
    pub fn error(&self, message: impl Into<String>) -> FieldError {
        FieldError {
            line: self.node.line,
            field: self.path().to_string(),
            message: message.into(),
        }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The mapping entries, or an error when this is not a mapping.
    pub fn entries(&self) -> Result<Vec<(&'a str, Field<'a>)>, FieldError> {
        match &self.node.kind {
            Kind::Map(entries) => Ok(entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str(),
                        Field {
                            node: v,
                            path: self.child_path(k),
                        },
                    )
                })
                .collect()),
            _ => Err(self.error("expected a mapping")),
        }
    }

    /// A field of a mapping, if present (and not null).
    pub fn get(&self, key: &str) -> Result<Option<Field<'a>>, FieldError> {
        let Kind::Map(entries) = &self.node.kind else {
            return Err(self.error("expected a mapping"));
        };
        Ok(entries
            .iter()
            .find(|(k, _)| k == key)
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| Field {
                node: v,
                path: self.child_path(k),
            }))
    }

    /// A required field of a mapping.
    pub fn req(&self, key: &str) -> Result<Field<'a>, FieldError> {
        self.get(key)?.ok_or_else(|| FieldError {
            line: self.node.line,
            field: self.child_path(key),
            message: "is required".to_string(),
        })
    }

    /// Rejects keys not in `known` (typos would otherwise be silently ignored).
    pub fn only(&self, known: &[&str]) -> Result<(), FieldError> {
        for (key, field) in self.entries()? {
            if !known.contains(&key) {
                return Err(field.error(format!(
                    "unknown field (expected one of: {})",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The items of a sequence.
    pub fn items(&self) -> Result<Vec<Field<'a>>, FieldError> {
        match &self.node.kind {
            Kind::Seq(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, node)| Field {
                    node,
                    path: format!("{}[{i}]", self.path),
                })
                .collect()),
            _ => Err(self.error("expected a list")),
        }
    }

    /// The scalar's text.
    pub fn str(&self) -> Result<&'a str, FieldError> {
        match &self.node.kind {
            Kind::Scalar { value, .. } => Ok(value),
            _ => Err(self.error("expected a string")),
        }
    }

    /// The scalar as a number.
    pub fn f64(&self) -> Result<f64, FieldError> {
        let s = self.str()?;
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| self.error(format!("expected a number, found {s:?}")))
    }

    /// The scalar as a boolean.
    pub fn bool(&self) -> Result<bool, FieldError> {
        match self.str()? {
            "true" | "True" | "TRUE" => Ok(true),
            "false" | "False" | "FALSE" => Ok(false),
            s => Err(self.error(format!("expected true or false, found {s:?}"))),
        }
    }

    /// A mapping of strings to strings (labels, annotations).
    pub fn string_map(&self) -> Result<Vec<(String, String)>, FieldError> {
        self.entries()?
            .into_iter()
            .map(|(k, v)| Ok((k.to_string(), v.str()?.to_string())))
            .collect()
    }
}

impl Node {
    /// Whether the node is an unquoted null (`~`, `null` or empty).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, quoted: false } if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_paths_point_at_the_field() {
        let docs = parse_documents("a: 1\nslos:\n  - name: x\n    objective: abc\n").unwrap();
        let root = Field::root(&docs[0]);
        let slo = &root.req("slos").unwrap().items().unwrap()[0];
        let err = slo.req("objective").unwrap().f64().unwrap_err();
        assert_eq!(err.line, 4);
        assert_eq!(err.field, "slos[0].objective");
        let missing = slo.req("sli").unwrap_err();
        assert_eq!(missing.field, "slos[0].sli");
        assert_eq!(missing.line, 3);
    }

    #[test]
    fn several_documents_and_syntax_errors() {
        assert_eq!(parse_documents("a: 1\n---\nb: 2\n").unwrap().len(), 2);
        let err = parse_documents("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.line >= 2, "{err}");
    }
}
