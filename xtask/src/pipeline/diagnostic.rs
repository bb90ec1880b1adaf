//! A pipeline error that points into the file (STYLE.md section 3):
//!
//! ```text
//! error: the queue worker's ack_wait 30m is not longer than the longest call 1h 30m 32s
//!   --> pipeline.yaml:18:13
//! 18 |   ack_wait: 30m
//!    |             ^^^
//! help: raise it to >= 1h 30m 33s
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use super::spans::{Span, Spans};

/// What went wrong, where, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    /// The file, as the user named it.
    pub path: PathBuf,
    /// 1-based line; 0 when the error has no position in the file.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// Number of `^` under the source line (at least 1).
    pub width: usize,
    /// The text of line `line`, without its newline.
    pub source_line: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn into_warning(self) -> Warning {
        Warning(self)
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, label: &str) -> fmt::Result {
        write!(f, "{label}: {}", self.message)?;
        if self.line == 0 {
            write!(f, "\n  --> {}", self.path.display())?;
        } else {
            let gutter = " ".repeat(self.line.to_string().len());
            write!(
                f,
                "\n{gutter}--> {}:{}:{}",
                self.path.display(),
                self.line,
                self.col
            )?;
            write!(f, "\n{} |", self.line)?;
            if !self.source_line.is_empty() {
                write!(f, " {}", self.source_line)?;
            }
            let indent = " ".repeat(self.col.saturating_sub(1));
            write!(f, "\n{gutter} | {indent}{}", "^".repeat(self.width.max(1)))?;
        }
        if let Some(help) = &self.help {
            write!(f, "\nhelp: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, "error")
    }
}

/// What is worth saying about the file but does not stop the command,
/// shown like an error under `warning:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning(pub Diagnostic);

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write(f, "warning")
    }
}

/// The pipeline file's text and the positions of its nodes, to point errors at.
pub struct Source {
    /// The file, as the user named it.
    pub path: PathBuf,
    pub text: String,
    pub spans: Spans,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// An error pointing at `span`.
    pub fn error_at(
        &self,
        span: Span,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        // Tabs shown as one space keep the caret under the right character.
        let source_line = self
            .text
            .lines()
            .nth(span.line.saturating_sub(1))
            .unwrap_or("")
            .replace('\t', " ");
        let width = if span.width > 0 {
            span.width
        } else {
            token_width(&source_line, span.col)
        };
        Diagnostic {
            message: message.into(),
            path: self.path.clone(),
            line: span.line,
            col: span.col,
            width,
            source_line,
            help,
        }
    }

    /// An error pointing at the value at `path` (e.g. `functions.transcribe.timeout`).
    pub fn error_at_value(
        &self,
        path: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        match self.spans.value(path) {
            Some(span) => self.error_at(span, message, help),
            None => self.error_anywhere(message, help),
        }
    }

    /// An error pointing at the key of the entry at `path` (e.g. `functions.transcribe`).
    pub fn error_at_key(
        &self,
        path: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        match self.spans.key(path) {
            Some(span) => self.error_at(span, message, help),
            None => self.error_anywhere(message, help),
        }
    }

    /// An error about the file as a whole.
    pub fn error_anywhere(&self, message: impl Into<String>, help: Option<String>) -> Diagnostic {
        error_in_file(&self.path, message, help)
    }
}

/// An error about `path` with no position in it.
pub fn error_in_file(path: &Path, message: impl Into<String>, help: Option<String>) -> Diagnostic {
    Diagnostic {
        message: message.into(),
        path: path.to_path_buf(),
        line: 0,
        col: 0,
        width: 0,
        source_line: String::new(),
        help,
    }
}

/// Width of the token starting at 1-based `col`: up to the end of the line or
/// a comment, trailing blanks removed; at least 1.
fn token_width(line: &str, col: usize) -> usize {
    let rest: String = line.chars().skip(col.saturating_sub(1)).collect();
    let rest = rest.split(" #").next().unwrap_or("");
    rest.trim_end().chars().count().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_style_guide() {
        let diag = Diagnostic {
            message: "the queue worker's ack_wait 30m is not longer than the longest call 1h 30m 32s".into(),
            path: "pipeline.yaml".into(),
            line: 18,
            col: 13,
            width: 3,
            source_line: "  ack_wait: 30m".into(),
            help: Some("raise it to >= 1h 30m 33s".into()),
        };
        assert_eq!(
            diag.to_string(),
            "error: the queue worker's ack_wait 30m is not longer than the longest call 1h 30m 32s\n  \
             --> pipeline.yaml:18:13\n\
             18 |   ack_wait: 30m\n   \
             |             ^^^\n\
             help: raise it to >= 1h 30m 33s"
        );
    }

    #[test]
    fn token_width_stops_at_comments() {
        assert_eq!(token_width("  a: 12s # note", 6), 3);
        assert_eq!(token_width("  a:", 5), 1);
    }
}
