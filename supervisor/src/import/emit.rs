//! The TOML `l4ctl import` writes: sections of keys and comments, rendered by
//! hand so the comments sit next to the keys they explain (a TOML serializer
//! would drop them). Values go through `toml::Value`'s own rendering, so every
//! string is escaped as TOML wants; keys that are not bare are quoted.

use std::fmt::Write;

/// One line of a section.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// `key = value  # note`.
    Key { key: String, value: toml::Value, note: Option<String> },
    /// `# text`, wrapped at 88 columns.
    Comment(String),
}

/// A `[[apps]]` entry or a `[apps.env...]` table, with the comments that belong to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// `[[apps]]`, `[apps.env]`, `[apps.env_production]`.
    pub header: String,
    pub lines: Vec<Line>,
}

impl Section {
    pub fn new(header: impl Into<String>) -> Section {
        Section { header: header.into(), lines: Vec::new() }
    }
    pub fn key(&mut self, key: &str, value: impl Into<toml::Value>) {
        self.lines.push(Line::Key { key: key.to_owned(), value: value.into(), note: None });
    }
    pub fn key_note(&mut self, key: &str, value: impl Into<toml::Value>, note: impl Into<String>) {
        self.lines.push(Line::Key { key: key.to_owned(), value: value.into(), note: Some(note.into()) });
    }
    pub fn comment(&mut self, text: impl Into<String>) {
        self.lines.push(Line::Comment(text.into()));
    }
}

/// The whole file: a header comment, then the sections in order.
pub fn render(header: &[String], sections: &[Section]) -> String {
    let mut out = String::new();
    for text in header {
        wrap_comment(&mut out, text);
    }
    for section in sections {
        out.push('\n');
        out.push_str(&section.header);
        out.push('\n');
        for line in &section.lines {
            match line {
                Line::Key { key, value, note } => {
                    let _ = write!(out, "{} = {}", toml_key(key), value);
                    if let Some(note) = note {
                        let _ = write!(out, "  # {}", one_line(note));
                    }
                    out.push('\n');
                }
                Line::Comment(text) => wrap_comment(&mut out, text),
            }
        }
    }
    out
}

/// A key as TOML wants it: bare when it can be, else a quoted string.
pub fn toml_key(key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { key.to_owned() } else { toml::Value::String(key.to_owned()).to_string() }
}

/// Text from the PM2 file shown in a comment: one line, at most 120 characters.
pub fn one_line(text: &str) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() > 120 {
        let cut: String = flat.chars().take(117).collect();
        format!("{cut}...")
    } else {
        flat
    }
}

/// `# text` over as many lines as it takes to stay within 88 columns.
fn wrap_comment(out: &mut String, text: &str) {
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut line = String::from("#");
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if line.len() > 1 && line.len() + 1 + word.len() > 88 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_quoted_only_when_they_must_be() {
        assert_eq!(toml_key("NODE_ENV"), "NODE_ENV");
        assert_eq!(toml_key("my.key"), "\"my.key\"");
        assert_eq!(toml_key("a\"b"), "'a\"b'");
        assert_eq!(toml_key(""), "\"\"");
    }

    #[test]
    fn values_and_comments_render_as_toml() {
        let mut s = Section::new("[[apps]]");
        s.key("name", "a\"pp");
        s.key_note("instances", 2i64, "PM2: \"max\"\nnext");
        s.comment("word ".repeat(30));
        let text = render(&["top".to_owned()], &[s]);
        let parsed: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(parsed["apps"][0]["name"].as_str(), Some("a\"pp"));
        assert!(text.lines().all(|l| l.len() <= 90 || !l.starts_with('#')), "{text}");
        assert!(text.contains("instances = 2  # PM2: \"max\" next\n"), "{text}");
    }
}
