//! The optional `--config` TOML file: a flat table whose keys are the environment
//! variable names in lower case (`port = 3001`, `database_url = "..."`).
//!
//! Only turns the file into raw values with their `file:line:col` origin; the parent
//! module parses and bounds them exactly as it does environment values, so one set of
//! rules applies to both. Unknown keys and non-scalar values are errors.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::{Raw, SettingError, known};

pub(super) fn read(path: &Path, raw: &mut BTreeMap<&'static str, Raw>, errors: &mut Vec<SettingError>) {
    let source = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            errors.push(SettingError { origin: path.display().to_string(), message: format!("cannot read: {e}") });
            return;
        }
    };
    let at = |span: Range<usize>| {
        let before = &source[..span.start.min(source.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{}:{line}:{column}", path.display())
    };
    let (doc, syntax) = DeTable::parse_recoverable(&source);
    for err in &syntax {
        let origin = at(err.span().unwrap_or(0..0));
        errors.push(SettingError { origin, message: err.message().trim_end().to_string() });
    }
    if !syntax.is_empty() {
        return;
    }
    for (key, value) in doc.get_ref().iter() {
        let name = key.get_ref().to_ascii_uppercase();
        let origin = format!("{} ({})", at(value.span()), key.get_ref());
        let Some(name) = known().find(|v| *v == name) else {
            let known: Vec<String> = known().map(|v| v.to_ascii_lowercase()).collect();
            let message = format!("unknown key `{}`; known keys: {}", key.get_ref(), known.join(", "));
            errors.push(SettingError { origin: at(key.span()), message });
            continue;
        };
        let value = match value.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => i.to_string(),
            _ => {
                errors.push(SettingError { origin, message: "must be a string or an integer".to_string() });
                continue;
            }
        };
        raw.insert(name, Raw { value, origin });
    }
}
