//! The class names an Ultralytics ONNX export carries in its metadata.
//!
//! Ultralytics writes `names` as Python's `repr` of a dict from class index to name:
//! `{0: 'person', 1: 'bicycle', ...}`. That is neither JSON nor YAML (single-quoted strings
//! with backslash escapes, integer keys), and the grammar is this small, so it is parsed here
//! rather than through a Python-literal crate: integer keys, `'...'` or `"..."` strings with
//! Python's escapes, an optional trailing comma. The keys must be exactly `0..n`, in any order.

use anyhow::{bail, ensure, Result};

/// Key of the metadata property in tract's model properties.
pub const PROPERTY: &str = "onnx.metadata_props.names";

/// The names in class order.
pub fn parse(text: &str) -> Result<Vec<String>> {
    let mut parser = Parser { chars: text.char_indices().peekable(), text };
    let entries = parser.dict()?;
    let mut names: Vec<Option<String>> = vec![None; entries.len()];
    for (key, name) in entries {
        ensure!(key < names.len(), "class {key} is out of range: {} names should be numbered 0 to {}", names.len(), names.len() - 1);
        ensure!(names[key].is_none(), "class {key} is named twice");
        names[key] = Some(name);
    }
    Ok(names.into_iter().map(|name| name.expect("every key below the count is present once")).collect())
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    text: &'a str,
}

impl Parser<'_> {
    fn dict(&mut self) -> Result<Vec<(usize, String)>> {
        self.expect('{')?;
        let mut entries = Vec::new();
        loop {
            self.skip_space();
            if self.eat('}') {
                break;
            }
            let key = self.integer()?;
            self.skip_space();
            self.expect(':')?;
            self.skip_space();
            let name = self.string()?;
            entries.push((key, name));
            self.skip_space();
            if self.eat('}') {
                break;
            }
            self.expect(',')?;
        }
        self.skip_space();
        if let Some((at, c)) = self.chars.next() {
            bail!("unexpected `{c}` after the closing `}}` at offset {at}");
        }
        Ok(entries)
    }

    fn integer(&mut self) -> Result<usize> {
        let start = self.offset();
        let mut digits = String::new();
        while let Some(&(_, c)) = self.chars.peek().filter(|(_, c)| c.is_ascii_digit()) {
            digits.push(c);
            self.chars.next();
        }
        ensure!(!digits.is_empty(), "expected a class number at offset {start}, found {}", self.found(start));
        Ok(digits.parse()?)
    }

    fn string(&mut self) -> Result<String> {
        let start = self.offset();
        let quote = match self.chars.next() {
            Some((_, q @ ('\'' | '"'))) => q,
            _ => bail!("expected a quoted class name at offset {start}, found {}", self.found(start)),
        };
        let mut name = String::new();
        loop {
            match self.chars.next() {
                None => bail!("the class name starting at offset {start} is not closed"),
                Some((_, c)) if c == quote => return Ok(name),
                Some((at, '\\')) => name.push(self.escape(at)?),
                Some((_, c)) => name.push(c),
            }
        }
    }

    /// The character of the escape sequence whose backslash is at offset `at`.
    fn escape(&mut self, at: usize) -> Result<char> {
        let hex = |parser: &mut Self, digits: usize| -> Result<char> {
            let code: String = (0..digits).filter_map(|_| parser.chars.next().map(|(_, c)| c)).collect();
            u32::from_str_radix(&code, 16)
                .ok()
                .filter(|_| code.len() == digits)
                .and_then(char::from_u32)
                .ok_or_else(|| anyhow::anyhow!("bad escape `\\{code}` at offset {at}"))
        };
        Ok(match self.chars.next() {
            Some((_, c @ ('\\' | '\'' | '"'))) => c,
            Some((_, 'n')) => '\n',
            Some((_, 't')) => '\t',
            Some((_, 'r')) => '\r',
            Some((_, '0')) => '\0',
            Some((_, 'x')) => hex(self, 2)?,
            Some((_, 'u')) => hex(self, 4)?,
            Some((_, 'U')) => hex(self, 8)?,
            Some((_, c)) => bail!("unknown escape `\\{c}` at offset {at}"),
            None => bail!("the text ends inside an escape at offset {at}"),
        })
    }

    fn skip_space(&mut self) {
        while self.chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    }

    fn eat(&mut self, wanted: char) -> bool {
        self.chars.next_if(|&(_, c)| c == wanted).is_some()
    }

    fn expect(&mut self, wanted: char) -> Result<()> {
        let at = self.offset();
        ensure!(self.eat(wanted), "expected `{wanted}` at offset {at}, found {}", self.found(at));
        Ok(())
    }

    fn offset(&mut self) -> usize {
        self.chars.peek().map_or(self.text.len(), |&(at, _)| at)
    }

    /// A few characters from `at`, for errors.
    fn found(&self, at: usize) -> String {
        match self.text[at..].chars().take(12).collect::<String>() {
            rest if rest.is_empty() => "the end".to_string(),
            rest => format!("`{rest}`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_ultralytics_dict() {
        assert_eq!(parse("{0: 'person', 1: 'bicycle', 2: 'traffic light'}").unwrap(), ["person", "bicycle", "traffic light"]);
    }

    #[test]
    fn takes_both_quotes_escapes_any_order_and_a_trailing_comma() {
        let text = r#"{ 1: "o'clock", 0: 'it\'s', 2: 'caf\xe9 \u00e9\\', }"#;
        assert_eq!(parse(text).unwrap(), ["it's", "o'clock", "café é\\"]);
        assert_eq!(parse("{}").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn gaps_and_repeats_are_errors() {
        assert_eq!(parse("{0: 'a', 2: 'c'}").unwrap_err().to_string(), "class 2 is out of range: 2 names should be numbered 0 to 1");
        assert_eq!(parse("{0: 'a', 0: 'b'}").unwrap_err().to_string(), "class 0 is named twice");
    }

    #[test]
    fn malformed_text_says_where() {
        for (text, error) in [
            ("['person', 'bicycle']", "expected `{` at offset 0, found `['person', '`"),
            ("{0: person}", "expected a quoted class name at offset 4, found `person}`"),
            ("{0: 'person'", "expected `,` at offset 12, found the end"),
            ("{0: 'person}", "the class name starting at offset 4 is not closed"),
            ("{'a': 'person'}", "expected a class number at offset 1, found `'a': 'person`"),
            ("{0: 'a\\q'}", "unknown escape `\\q` at offset 6"),
            ("{0: 'a'} x", "unexpected `x` after the closing `}` at offset 9"),
        ] {
            assert_eq!(parse(text).unwrap_err().to_string(), error, "{text}");
        }
    }
}
