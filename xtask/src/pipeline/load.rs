//! Read pipeline.yaml: parse it (the only place serde_yaml is used), index the
//! positions of its nodes, and turn parser errors into pointed diagnostics.

use std::path::Path;

use anyhow::Context;

use super::check;
use super::diagnostic::{error_in_file, Diagnostic, Source};
use super::model::Pipeline;
use super::raw::RawPipeline;
use super::spans::{child, IndexError, Span, Spans};
use super::suggest;

const SYNTAX_HELP: &str =
    "check the indentation (spaces, not tabs) and that brackets and quotes are closed";

/// Read, parse and check the pipeline file at `path`. Errors about its content
/// are [`Diagnostic`]s.
pub fn load(path: &Path) -> anyhow::Result<Pipeline> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the pipeline file {}", path.display()))?;
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve the folder of {}", path.display()))?;
    let source = parse_spans(path, text)?;
    let raw = match serde_yaml::from_str::<RawPipeline>(&source.text) {
        Ok(raw) => raw,
        Err(err) => return Err(shape_error(&source, &err).into()),
    };
    Ok(check::check(raw, source, dir)?)
}

/// Index the file; a syntax error is reported with serde_yaml's wording when it
/// agrees the text is not YAML.
fn parse_spans(path: &Path, text: String) -> Result<Source, Diagnostic> {
    match Spans::build(&text) {
        Ok(spans) => {
            let second_document = spans.second_document();
            let source = Source {
                path: path.to_path_buf(),
                text,
                spans,
            };
            match second_document {
                Some(at) => Err(source.error_at(
                    at,
                    "the pipeline file holds more than one YAML document",
                    Some("keep one document: remove this `---` and what follows, or merge it into the first".into()),
                )),
                None => Ok(source),
            }
        }
        Err(error) => {
            let source = Source {
                path: path.to_path_buf(),
                text,
                spans: Spans::default(),
            };
            Err(match error {
                IndexError::Syntax { at, info } => {
                    match serde_yaml::from_str::<serde_yaml::Value>(&source.text) {
                        Err(err) => syntax_error(&source, &err),
                        Ok(_) => source.error_at(
                            at,
                            format!("invalid YAML: {info}"),
                            Some(SYNTAX_HELP.into()),
                        ),
                    }
                }
                IndexError::DuplicateKey {
                    parent,
                    key,
                    first,
                    second,
                } => duplicate_key(&source, &parent, &key, first, second),
            })
        }
    }
}

fn duplicate_key(
    source: &Source,
    parent: &str,
    key: &str,
    first: Span,
    second: Span,
) -> Diagnostic {
    let (message, help) = match parent {
        "functions" => (
            format!("function `{key}` is declared twice"),
            format!(
                "function names are unique: rename or remove one (the first is at line {})",
                first.line
            ),
        ),
        "targets" => (
            format!("target `{key}` is declared twice"),
            format!(
                "target names are unique: rename or remove one (the first is at line {})",
                first.line
            ),
        ),
        _ => (
            format!("key `{key}` appears twice in {}", place(parent)),
            format!("keep one of them (the first is at line {})", first.line),
        ),
    };
    source.error_at(second, message, Some(help))
}

/// A libyaml syntax error: its problem as the message, its context as help.
fn syntax_error(source: &Source, err: &serde_yaml::Error) -> Diagnostic {
    let text = err.to_string();
    let (problem, _, rest) = split_mark(&text);
    let context = rest.strip_prefix(", ").map(|context| {
        let (what, at, _) = split_mark(context);
        let at = at.map(|(line, col)| format!(" that starts at {line}:{col}"));
        format!("{what}{}", at.unwrap_or_default())
    });
    let help = match context {
        Some(context) => {
            format!("{context}: check its indentation and that its brackets and quotes are closed")
        }
        None => SYNTAX_HELP.to_string(),
    };
    let message = format!("invalid YAML: {problem}");
    match err.location() {
        // A syntax error is a point, not a token.
        Some(location) => source.error_at(
            Span {
                line: location.line(),
                col: location.column(),
                width: 1,
            },
            message,
            Some(help),
        ),
        None => error_in_file(&source.path, message, Some(help)),
    }
}

/// A valid YAML document that does not have the pipeline's shape: unknown or
/// missing key, wrong type, unknown variant.
fn shape_error(source: &Source, err: &serde_yaml::Error) -> Diagnostic {
    if serde_yaml::from_str::<serde_yaml::Value>(&source.text).is_err() {
        return syntax_error(source, err);
    }
    let text = err.to_string();
    let (text, _, _) = split_mark(&text);
    let (path, message) = match text.split_once(": ") {
        Some((path, message)) if !path.contains(char::is_whitespace) => (path, message),
        _ => (".", text),
    };
    let path = if path == "." { "" } else { path };

    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let allowed = backticked(expected);
        let listed: Vec<String> = allowed.iter().map(|name| format!("`{name}`")).collect();
        let mut help = match suggest::closest(key, allowed.iter().map(String::as_str)) {
            Some(close) => format!("did you mean `{close}`? "),
            None => String::new(),
        };
        help.push_str(&format!("{} accepts: {}", place(path), listed.join(", ")));
        let message = format!("unknown key `{key}` in {}", place(path));
        return match source.spans.key(&child(path, key)) {
            Some(span) => source.error_at(span, message, Some(help)),
            None => at_location(source, err, message, Some(help)),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (value, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let known: Vec<String> = backticked(expected)
            .iter()
            .map(|name| format!("`{name}`"))
            .collect();
        let (what, kinds, more) = if path.starts_with("targets.") && path.ends_with(".kind") {
            ("target kind", "kinds", "")
        } else if path == "parameters.detector.model" {
            ("detector model", "models", " (`cargo xtask model --help` says what each is)")
        } else {
            ("value", "kinds", "")
        };
        let mut help = match suggest::closest(value, backticked(expected).iter().map(String::as_str)) {
            Some(close) => format!("did you mean `{close}`? "),
            None => String::new(),
        };
        help.push_str(&format!("known {kinds}: {}{more}", known.join(", ")));
        let message = format!("unknown {what} `{value}` at `{path}`");
        return at_path(source, err, path, message, Some(help));
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let key = rest.trim_end_matches('`');
        let message = format!("{} is missing `{key}`", place(path));
        let help = Some(format!("add `{key}:` to {}", place(path)));
        return match source.spans.key(path).filter(|_| !path.is_empty()) {
            Some(span) => source.error_at(span, message, help),
            None => at_location(source, err, message, help),
        };
    }
    for kind in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(kind) {
            let (found, expected) = rest
                .rsplit_once(", expected ")
                .unwrap_or((rest, "another value"));
            let expected = friendly(expected);
            let message = format!("{} must be {expected}, found {found}", place(path));
            let help = Some(format!("write {expected} here"));
            return at_path(source, err, path, message, help);
        }
    }
    at_path(
        source,
        err,
        path,
        format!("{} ({})", message, place(path)),
        None,
    )
}

/// Point at the node at `path` when indexed, else at serde_yaml's location.
fn at_path(
    source: &Source,
    err: &serde_yaml::Error,
    path: &str,
    message: String,
    help: Option<String>,
) -> Diagnostic {
    match source.spans.value(path).filter(|_| !path.is_empty()) {
        Some(span) => source.error_at(span, message, help),
        None => at_location(source, err, message, help),
    }
}

fn at_location(
    source: &Source,
    err: &serde_yaml::Error,
    message: String,
    help: Option<String>,
) -> Diagnostic {
    match err.location() {
        Some(location) => {
            let point = Span::point(location.line(), location.column());
            let indexed = source.spans.at(point.line, point.col);
            source.error_at(indexed.unwrap_or(point), message, help)
        }
        None => error_in_file(&source.path, message, help),
    }
}

/// `"where"` for messages: `` `functions.transcribe` `` or `the top level`.
fn place(path: &str) -> String {
    if path.is_empty() {
        "the top level".to_string()
    } else {
        format!("`{path}`")
    }
}

/// Split `"text at line N column M, rest"` into `("text", Some((N, M)), ", rest")`.
fn split_mark(text: &str) -> (&str, Option<(usize, usize)>, &str) {
    let Some(at) = text.find(" at line ") else {
        return (text, None, "");
    };
    let (head, tail) = text.split_at(at);
    let tail = &tail[" at line ".len()..];
    let line_len = tail
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(tail.len());
    let (line, tail) = tail.split_at(line_len);
    let Some(tail) = tail.strip_prefix(" column ") else {
        return (head, None, tail);
    };
    let col_len = tail
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(tail.len());
    let (col, rest) = tail.split_at(col_len);
    (head, line.parse().ok().zip(col.parse().ok()), rest)
}

/// The names between backticks in serde's "expected one of `a`, `b`".
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// serde's Rust-flavoured expectations in pipeline words.
fn friendly(expected: &str) -> String {
    match expected {
        "u8" => "a whole number from 0 to 255".to_string(),
        "u16" => "a whole number from 0 to 65535".to_string(),
        "u32" | "u64" | "usize" => "a whole number".to_string(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "a sequence" => "a list".to_string(),
        "a map" => "a mapping".to_string(),
        other if other.starts_with("struct ") => "a mapping".to_string(),
        other => other.to_string(),
    }
}

/// One rendered manifest (a YAML document) as JSON, for deploy to apply:
/// the tool's other YAML reader, kept here beside the first.
pub fn parse_manifest(text: &str) -> anyhow::Result<serde_json::Value> {
    let value: serde_json::Value = serde_yaml::from_str(text)?;
    anyhow::ensure!(value.is_object(), "the document is not a mapping");
    Ok(value)
}
