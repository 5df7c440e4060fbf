//! What an imported app runs: PM2's script, interpreter and arguments as one
//! layer4 `script` + `args`.
//!
//! PM2 picks the interpreter by extension (`.js` node, `.py` python3, ...) and,
//! for any other file, runs it with `node` unless it is a binary
//! (`resolveInterpreter`); `interpreter: "none"` runs the script itself. The
//! imported app names the interpreter in `script` and puts the interpreter's
//! arguments, the script and the app's arguments in `args`.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// `script`, `args` and the comments that explain them.
#[derive(Debug, Default)]
pub struct Program {
    pub script: String,
    pub args: Vec<String>,
    /// Set when the script became an argument of its interpreter.
    pub interpreter: Option<String>,
    pub notes: Vec<String>,
}

impl Program {
    /// `script` as written runs as it is: an `interpreter = "none"` is needed when its
    /// extension would pick one.
    pub fn needs_interpreter_none(&self) -> bool {
        crate::config::pm2::interpreter_for(&self.script).is_some()
    }
}

/// Resolve what PM2 would run for `script` in `app_dir`.
pub fn resolve(
    script: &str,
    interpreter: Option<&Value>,
    interpreter_args: Vec<String>,
    args: Vec<String>,
    app_dir: &Path,
) -> Result<Program, String> {
    let mut p = Program::default();
    let chosen = match interpreter {
        Some(Value::String(i)) if i == "none" => None,
        Some(Value::String(i)) => Some(i.clone()),
        Some(other) => return Err(format!("`interpreter` must be a program name or path, got {other}")),
        None => crate::config::pm2::interpreter_for(script)
            .map(str::to_owned)
            .or_else(|| sniff(script, app_dir, &mut p.notes)),
    };
    match chosen {
        Some(interpreter) => {
            let mut all = interpreter_args;
            all.push(script.to_owned());
            all.extend(args);
            p.script = interpreter.clone();
            p.args = all;
            p.interpreter = Some(interpreter);
        }
        None => {
            // PM2 looks in the app's folder before PATH; layer4 looks a bare name up on PATH only.
            let local = !script.contains('/') && app_dir.join(script).is_file();
            p.script = if local { format!("./{script}") } else { script.to_owned() };
            p.args = args;
            if !interpreter_args.is_empty() {
                p.notes.push("PM2 interpreter_args without an interpreter: PM2 ignores them; left out.".to_owned());
            }
        }
    }
    Ok(p)
}

/// PM2's rule for a script with no known extension: a text file runs with node,
/// a binary on its own. `None` (run it) when it is a binary or cannot be found.
fn sniff(script: &str, app_dir: &Path, notes: &mut Vec<String>) -> Option<String> {
    let path = find(script, app_dir);
    let Some(path) = path else {
        notes.push(format!(
            "{script:?} was not found when importing: it runs as a program; PM2 would run a text file with node (then set script = \"node\" and put the file in args)."
        ));
        return None;
    };
    let mut head = Vec::new();
    let read = std::fs::File::open(&path).and_then(|f| f.take(8192).read_to_end(&mut head));
    let binary = read.is_err() || head.starts_with(b"\x7fELF") || head.contains(&0);
    let text_with_shebang = head.starts_with(b"#!");
    if binary {
        return None;
    }
    if text_with_shebang {
        notes.push(format!("{script:?} starts with #!: it runs as a program (PM2 would have run it with node unless interpreter = \"none\")."));
        return None;
    }
    notes.push(format!(
        "{script:?} has no extension PM2 knows and is text: PM2 ran it with node, and so does this app."
    ));
    Some("node".to_owned())
}

fn find(script: &str, app_dir: &Path) -> Option<PathBuf> {
    let local = app_dir.join(script);
    if local.is_file() {
        return Some(local);
    }
    if script.contains('/') {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(script)).find(|c| c.is_file())
}

/// `args` as PM2 takes them: a list, or one string split as a shell would (quotes kept together).
pub fn words(v: Option<&Value>, key: &str) -> Result<Vec<String>, String> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(format!("`{key}` must hold strings")),
            })
            .collect(),
        Some(Value::String(text)) => Ok(split(text)),
        Some(_) => Err(format!("`{key}` must be a string or a list of strings")),
    }
}

pub fn split(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, c) => word.push(c),
        }
    }
    if started || !word.is_empty() {
        words.push(word);
    }
    words
}
