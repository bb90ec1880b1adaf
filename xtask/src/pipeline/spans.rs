//! Where every key and value of the pipeline file is: a path -> position index
//! built from the YAML parser's events (serde_yaml has no spanned values).
//! Paths use serde_yaml's spelling: `functions.transcribe.timeout`, `dag.steps[1]`.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, Span as YamlSpan};

/// A position in the file: 1-based line and column (in characters) and the
/// width in characters, 0 when it spans several lines or is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub line: usize,
    pub col: usize,
    pub width: usize,
}

impl Span {
    /// A point at a 1-based line and column.
    pub fn point(line: usize, col: usize) -> Span {
        Span {
            line,
            col,
            width: 0,
        }
    }

    fn from_yaml(span: YamlSpan) -> Span {
        let single_line = span.start.line() == span.end.line();
        Span {
            line: span.start.line(),
            col: span.start.col() + 1,
            width: if single_line { span.len() } else { 0 },
        }
    }
}

/// The key (for mapping entries) and the value of one node.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub key: Option<Span>,
    pub value: Span,
}

/// Why the index could not be built.
#[derive(Debug)]
pub enum IndexError {
    /// The YAML parser rejected the text.
    Syntax { at: Span, info: String },
    /// A mapping holds the same key twice.
    DuplicateKey {
        parent: String,
        key: String,
        first: Span,
        second: Span,
    },
}

/// Every node of the document by path.
#[derive(Debug, Default)]
pub struct Spans {
    nodes: HashMap<String, Node>,
    /// Where each document of the stream starts.
    documents: Vec<Span>,
}

impl Spans {
    pub fn build(text: &str) -> Result<Spans, IndexError> {
        let mut events = Vec::new();
        for item in Parser::new_from_str(text) {
            match item {
                Ok((event, span)) => events.push((event, span)),
                Err(err) => {
                    let at = Span {
                        line: err.marker().line(),
                        col: err.marker().col() + 1,
                        width: 1,
                    };
                    return Err(IndexError::Syntax {
                        at,
                        info: err.info().to_string(),
                    });
                }
            }
        }
        let mut walker = Walker {
            events: &events,
            at: 0,
            spans: Spans::default(),
        };
        while walker.at < events.len() {
            match &events[walker.at].0 {
                Event::DocumentStart(_) => {
                    walker
                        .spans
                        .documents
                        .push(Span::from_yaml(events[walker.at].1));
                    walker.at += 1;
                }
                Event::MappingStart(..)
                | Event::SequenceStart(..)
                | Event::Scalar(..)
                | Event::Alias(_) => walker.node(String::new(), None)?,
                _ => walker.at += 1,
            }
        }
        Ok(walker.spans)
    }

    /// The node at `path` (`""` is the document root).
    pub fn get(&self, path: &str) -> Option<Node> {
        self.nodes.get(path).copied()
    }

    /// The key of the entry at `path`, or its value when it has no key.
    pub fn key(&self, path: &str) -> Option<Span> {
        self.get(path).map(|node| node.key.unwrap_or(node.value))
    }

    /// The value at `path`.
    pub fn value(&self, path: &str) -> Option<Span> {
        self.get(path).map(|node| node.value)
    }

    /// Where a second YAML document starts, if the file has more than one.
    pub fn second_document(&self) -> Option<Span> {
        self.documents.get(1).copied()
    }

    /// The key or value that starts at 1-based `line` and `col`, if any.
    pub fn at(&self, line: usize, col: usize) -> Option<Span> {
        let starts_here = |span: &Span| span.line == line && span.col == col;
        self.nodes
            .values()
            .flat_map(|node| node.key.into_iter().chain([node.value]))
            .filter(starts_here)
            .max_by_key(|span| span.width)
    }
}

/// The path of `key` inside the mapping at `parent`.
pub fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

struct Walker<'e, 'i> {
    events: &'e [(Event<'i>, YamlSpan)],
    at: usize,
    spans: Spans,
}

impl Walker<'_, '_> {
    /// Record the node starting at the current event under `path` and move past it.
    fn node(&mut self, path: String, key: Option<Span>) -> Result<(), IndexError> {
        let (event, start) = &self.events[self.at];
        self.at += 1;
        let mut end = *start;
        match event {
            Event::MappingStart(..) => end = self.mapping(&path)?,
            Event::SequenceStart(..) => end = self.sequence(&path)?,
            _ => {}
        }
        let value = Span::from_yaml(YamlSpan::new(start.start, end.end));
        self.spans.nodes.insert(path, Node { key, value });
        Ok(())
    }

    /// Walk the entries of a mapping up to its end; returns the end's span.
    fn mapping(&mut self, path: &str) -> Result<YamlSpan, IndexError> {
        let mut seen: HashMap<String, Span> = HashMap::new();
        loop {
            let (event, span) = &self.events[self.at];
            match event {
                Event::MappingEnd => {
                    self.at += 1;
                    return Ok(*span);
                }
                Event::Scalar(name, ..) => {
                    let key = Span::from_yaml(*span);
                    if let Some(first) = seen.insert(name.to_string(), key) {
                        return Err(IndexError::DuplicateKey {
                            parent: path.to_string(),
                            key: name.to_string(),
                            first,
                            second: key,
                        });
                    }
                    self.at += 1;
                    self.node(child(path, name), Some(key))?;
                }
                // A complex key (mapping or sequence as a key): index it under a
                // path no lookup uses, then its value likewise.
                _ => {
                    self.node(format!("{path}.?"), None)?;
                    self.node(format!("{path}.?"), None)?;
                }
            }
        }
    }

    /// Walk the items of a sequence up to its end; returns the end's span.
    fn sequence(&mut self, path: &str) -> Result<YamlSpan, IndexError> {
        let mut index = 0;
        loop {
            let (event, span) = &self.events[self.at];
            if let Event::SequenceEnd = event {
                self.at += 1;
                return Ok(*span);
            }
            self.node(format!("{path}[{index}]"), None)?;
            index += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "a:\n  b: 12s\n  c: [x, 'y']\nd: { e: 1 }\n";

    #[test]
    fn spans_point_at_keys_and_values() {
        let spans = Spans::build(TEXT).unwrap();
        assert_eq!(
            spans.key("a.b"),
            Some(Span {
                line: 2,
                col: 3,
                width: 1
            })
        );
        assert_eq!(
            spans.value("a.b"),
            Some(Span {
                line: 2,
                col: 6,
                width: 3
            })
        );
        assert_eq!(
            spans.value("a.c[1]"),
            Some(Span {
                line: 3,
                col: 10,
                width: 3
            })
        );
        assert_eq!(
            spans.value("a.c"),
            Some(Span {
                line: 3,
                col: 6,
                width: 8
            })
        );
        assert_eq!(
            spans.value("d"),
            Some(Span {
                line: 4,
                col: 4,
                width: 8
            })
        );
        assert_eq!(
            spans.value("d.e"),
            Some(Span {
                line: 4,
                col: 9,
                width: 1
            })
        );
    }

    #[test]
    fn duplicate_key_names_both_places() {
        let Err(IndexError::DuplicateKey {
            parent,
            key,
            first,
            second,
        }) = Spans::build("f:\n  x: 1\n  x: 2\n")
        else {
            panic!("duplicate not found");
        };
        assert_eq!((parent.as_str(), key.as_str()), ("f", "x"));
        assert_eq!((first.line, second.line), (2, 3));
    }

    #[test]
    fn syntax_error_has_a_position() {
        let Err(IndexError::Syntax { at, .. }) = Spans::build("a: [b\n") else {
            panic!("syntax error not found");
        };
        assert_eq!(at.line, 2);
    }
}
