//! The templates of `templates/`, compiled into the binary, and the
//! environment that renders them: undefined names are errors
//! (`UndefinedBehavior::Strict`), and every `{{ value }}` is written as JSON,
//! which is YAML too: a string is always quoted and escaped (a value can
//! never break out of its scalar), a number or a boolean is bare. In
//! comments, `|comment` writes a string bare, its line breaks made spaces.

use minijinja::value::Value;
use minijinja::{Environment, ErrorKind, Output, State, UndefinedBehavior};
use serde::Serialize;

use crate::pipeline::Diagnostic;

/// Every template, by the name it has in `templates/`.
const TEMPLATES: [(&str, &str); 7] = [
    ("deployment.yaml.j2", include_str!("../../../templates/deployment.yaml.j2")),
    ("service.yaml.j2", include_str!("../../../templates/service.yaml.j2")),
    ("function.yaml.j2", include_str!("../../../templates/function.yaml.j2")),
    ("secret.yaml.j2", include_str!("../../../templates/secret.yaml.j2")),
    ("minio-deployment.yaml.j2", include_str!("../../../templates/minio-deployment.yaml.j2")),
    ("minio-service.yaml.j2", include_str!("../../../templates/minio-service.yaml.j2")),
    ("openfaas-values.yaml.j2", include_str!("../../../templates/openfaas-values.yaml.j2")),
];

pub(super) struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub(super) fn new() -> anyhow::Result<Templates> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(true);
        env.set_debug(true);
        env.set_formatter(json_formatter);
        env.add_filter("comment", comment);
        for (name, source) in TEMPLATES {
            env.add_template(name, source).map_err(|err| diagnostic(&err, source))?;
        }
        Ok(Templates { env })
    }

    /// `name` rendered with `context`.
    pub(super) fn render(&self, name: &str, context: &impl Serialize) -> anyhow::Result<String> {
        let template = self.env.get_template(name)?;
        let source = TEMPLATES.iter().find(|(n, _)| *n == name).map_or("", |(_, source)| source);
        Ok(template.render(Value::from_serialize(context)).map_err(|err| diagnostic(&err, source))?)
    }
}

/// `{{ value }}` as JSON (a YAML flow scalar); `|safe` text as it is.
fn json_formatter(out: &mut Output, _state: &State, value: &Value) -> Result<(), minijinja::Error> {
    let text = if value.is_safe() {
        value.to_string()
    } else {
        serde_json::to_string(value).map_err(|err| minijinja::Error::new(ErrorKind::BadSerialization, err.to_string()))?
    };
    out.write_str(&text).map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "cannot write the output"))
}

/// `text` for a YAML comment: bare, on one line.
fn comment(text: String) -> Value {
    Value::from_safe_string(text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect())
}

/// A template error pointing into `templates/<name>` (STYLE.md section 3).
fn diagnostic(err: &minijinja::Error, source: &str) -> Diagnostic {
    let name = err.name().unwrap_or("?");
    let line = err.line().unwrap_or(0);
    let source_line = source.lines().nth(line.saturating_sub(1)).unwrap_or("").to_string();
    let (col, width) = match err.range() {
        Some(range) if range.start <= source.len() => {
            let line_start = source[..range.start].rfind('\n').map_or(0, |at| at + 1);
            let col = source[line_start..range.start].chars().count() + 1;
            let width = source.get(range.clone()).map_or(1, |text| text.lines().next().unwrap_or("").chars().count());
            (col, width.max(1))
        }
        _ => (1, source_line.chars().count().max(1)),
    };
    let help = match err.kind() {
        ErrorKind::UndefinedError => {
            "the template uses a name its context does not have: see the context structs in `xtask/src/render/context.rs`"
        }
        _ => "fix the template; `cargo test -p xtask render` renders every one",
    };
    Diagnostic {
        message: format!("template {name}: {}", err.detail().map_or_else(|| err.kind().to_string(), str::to_string)),
        path: format!("templates/{name}").into(),
        line,
        col: if line == 0 { 0 } else { col },
        width,
        source_line: if line == 0 { String::new() } else { source_line },
        help: Some(help.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_json_and_undefined_names_point_into_the_template() {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_debug(true);
        env.set_keep_trailing_newline(true);
        env.set_formatter(json_formatter);
        env.add_filter("comment", comment);
        let out = env
            .render_str("a: {{ s }}\nb: {{ n }}\n# {{ s|comment }}\n", serde_json::json!({"s": "x: \"y\"\n# z", "n": 8080}))
            .unwrap();
        assert_eq!(out, "a: \"x: \\\"y\\\"\\n# z\"\nb: 8080\n# x: \"y\" # z\n");

        let source = "kind: Deployment\nname: {{ stage.memory_limit }}\n";
        env.add_template("t.yaml.j2", source).unwrap();
        let err = env.get_template("t.yaml.j2").unwrap().render(serde_json::json!({"stage": {}})).unwrap_err();
        let diag = diagnostic(&err, source);
        assert_eq!((diag.line, diag.path.display().to_string()), (2, "templates/t.yaml.j2".to_string()));
        assert_eq!(diag.source_line, "name: {{ stage.memory_limit }}");
        assert!(diag.col > 1, "{diag}");
    }
}
