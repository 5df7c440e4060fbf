//! Diagnostics for config files: every problem found, each with `file:line:col`.
//!
//! Parsing never stops at the first error. `collect` deserializes a table, and
//! when serde rejects one key it records the error, removes that key and tries
//! again, so one run reports every bad key of every app.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
    }
}

/// Maps byte offsets of one file to line and column and gathers diagnostics.
#[derive(Debug)]
pub struct Report<'a> {
    pub file: &'a Path,
    pub source: &'a str,
    pub diagnostics: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    pub fn new(file: &'a Path, source: &'a str) -> Self {
        Report { file, source, diagnostics: Vec::new() }
    }

    pub fn push(&mut self, span: Range<usize>, message: impl Into<String>) {
        let offset = span.start.min(self.source.len());
        let before = &self.source[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        self.diagnostics.push(Diagnostic { file: self.file.to_path_buf(), line, column, message: message.into() });
    }

    pub fn push_toml(&mut self, err: &toml::de::Error, fallback: Range<usize>) {
        let message = super::suggest::unknown_field(err.message().trim_end());
        self.push(err.span().unwrap_or(fallback), message);
    }

    /// Deserialize `value` as `T`, recording every rejected key. Returns `None`
    /// when any error was found, so later checks do not work on partial data.
    pub fn collect<T: DeserializeOwned>(&mut self, value: &Spanned<DeValue<'_>>) -> Option<T> {
        let mut current = value.clone();
        let mut removed: Vec<String> = Vec::new();
        let mut failed = false;
        // Each pass removes one key, so the loop ends after at most one pass per key.
        loop {
            match T::deserialize(ValueDeserializer::from(current.clone())) {
                Ok(v) => return if failed { None } else { Some(v) },
                Err(err) => {
                    let span = err.span().unwrap_or(current.span());
                    let missing_removed =
                        removed.iter().any(|k| err.message().contains(&format!("missing field `{k}`")));
                    if !missing_removed {
                        self.push_toml(&err, current.span());
                    }
                    failed = true;
                    let DeValue::Table(table) = current.get_mut() else { return None };
                    match key_at(table, &span) {
                        Some(key) if !missing_removed => {
                            table.remove(key.as_str());
                            removed.push(key);
                        }
                        _ => return None,
                    }
                }
            }
        }
    }
}

/// The key of `table` whose key or value span contains `span`.
fn key_at(table: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    table.iter().find_map(|(k, v)| {
        let ks = k.span();
        let vs = v.span();
        let inside = |r: &Range<usize>| r.start <= span.start && span.end <= r.end.max(r.start + 1);
        (inside(&ks) || inside(&vs)).then(|| k.get_ref().to_string())
    })
}

/// All problems found in one or more files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
