//! Text and picture forms of a [`Profile`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::Profile;

/// Folded stacks, one `root;…;leaf count` line per stack: the input of
/// `flamegraph.pl`, inferno and speedscope. `;` inside a frame becomes `_`.
pub fn folded(profile: &Profile) -> String {
    let mut out = String::new();
    for s in &profile.stacks {
        let frames: Vec<String> = s.frames.iter().map(|f| f.replace(';', "_")).collect();
        out.push_str(&frames.join(";"));
        out.push_str(&format!(" {}\n", s.value));
    }
    out
}

/// A flame graph SVG (inferno).
pub fn svg(profile: &Profile, title: &str) -> std::io::Result<Vec<u8>> {
    let text = folded(profile);
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = "samples".into();
    let mut out = Vec::new();
    if profile.stacks.is_empty() {
        // inferno refuses empty input; an empty picture is the honest answer.
        let empty = format!(
            r#"<?xml version="1.0" standalone="no"?><svg xmlns="http://www.w3.org/2000/svg" width="1200" height="60"><text x="600" y="24" text-anchor="middle">{title}</text><text x="600" y="48" text-anchor="middle">no samples in this range</text></svg>"#
        );
        return Ok(empty.into_bytes());
    }
    inferno::flamegraph::from_lines(&mut opts, text.lines(), &mut out)?;
    Ok(out)
}

/// One row of Grafana's flame graph data frame: a node of the call tree in
/// depth-first order, with its depth, total and self samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NestedSetRow {
    /// Depth (0 is the root, `total`).
    pub level: usize,
    /// Samples in this node and below.
    pub value: u64,
    /// Samples with this node as the leaf.
    #[serde(rename = "self")]
    pub self_value: u64,
    /// The frame.
    pub label: String,
}

#[derive(Default)]
struct Node {
    value: u64,
    self_value: u64,
    children: BTreeMap<String, Node>,
}

/// The call tree as nested-set rows (the shape Grafana's flame graph
/// panel reads: `level`, `value`, `self`, `label`), children in name
/// order as flame graphs draw them.
pub fn nested_set(profile: &Profile) -> Vec<NestedSetRow> {
    let mut root = Node::default();
    for s in &profile.stacks {
        root.value += s.value;
        let mut node = &mut root;
        for f in &s.frames {
            node = node.children.entry(f.clone()).or_default();
            node.value += s.value;
        }
        node.self_value += s.value;
    }
    let mut rows = Vec::new();
    walk(&root, "total", 0, &mut rows);
    rows
}

fn walk(node: &Node, label: &str, level: usize, rows: &mut Vec<NestedSetRow>) {
    rows.push(NestedSetRow {
        level,
        value: node.value,
        self_value: node.self_value,
        label: label.to_string(),
    });
    for (name, child) in &node.children {
        walk(child, name, level + 1, rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::Stack;

    fn profile() -> Profile {
        let s = |frames: &[&str], value| Stack {
            frames: frames.iter().map(|f| f.to_string()).collect(),
            value,
        };
        Profile::from_stacks(
            [
                s(&["app", "main", "work"], 3),
                s(&["app", "main"], 1),
                s(&["app", "main", "a;b"], 2),
            ],
            10,
            0,
            1,
        )
    }

    #[test]
    fn folded_lines_escape_semicolons() {
        assert_eq!(
            folded(&profile()),
            "app;main 1\napp;main;a_b 2\napp;main;work 3\n"
        );
    }

    #[test]
    fn nested_set_totals_and_self() {
        let rows = nested_set(&profile());
        let got: Vec<(usize, u64, u64, &str)> = rows
            .iter()
            .map(|r| (r.level, r.value, r.self_value, r.label.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (0, 6, 0, "total"),
                (1, 6, 0, "app"),
                (2, 6, 1, "main"),
                (3, 2, 2, "a;b"),
                (3, 3, 3, "work"),
            ]
        );
    }

    #[test]
    fn svg_names_the_frames() {
        let text = String::from_utf8(svg(&profile(), "t").unwrap()).unwrap();
        assert!(text.starts_with("<?xml") || text.contains("<svg"));
        assert!(text.contains("work"));
        let empty = svg(&Profile::default(), "t").unwrap();
        assert!(String::from_utf8(empty).unwrap().contains("svg"));
    }
}
