//! `l4ctl import`: a PM2 ecosystem file (`ecosystem.config.js`, `.cjs`, `.mjs`,
//! `.json`, `.yaml`/`.yml`, `process.json`) turned into a commented `layer4.toml`.
//!
//! Reading is per format ([`node`] evaluates JavaScript; JSON and YAML are parsed
//! here, both bounded); [`app`] maps every PM2 option of one app to its layer4 key
//! or to a comment that says why there is none and what to do; [`emit`] renders
//! the TOML. The result is checked by the same `config::parse` that `l4ctl start`
//! uses before it is written, so an import never writes a file `start` refuses.
//! The output is written with mode 0600 (an ecosystem file's `env` often holds
//! secrets), atomically, and never replaces an existing file without `--force`.

mod app;
pub mod emit;
mod keys;
mod logs;
mod node;
mod options;
pub mod program;
#[cfg(test)]
mod tests;
mod timing;
mod triggers;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest ecosystem file read (JSON and YAML; JavaScript is `node`'s to read).
pub const MAX_FILE: u64 = 4 << 20;
/// How long `node` may take to evaluate a JavaScript file, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an import did not happen: each is one sentence for the user.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: not a PM2 ecosystem file name: expected .js, .cjs, .mjs, .json, .yaml or .yml")]
    UnknownFormat { file: String },
    #[error(
        "evaluating {file} needs Node.js (`node` on PATH), as PM2 does: install it, or give the same config as ecosystem.json"
    )]
    NoNode { file: String },
    #[error("{file}: node did not finish evaluating it within {}; does the file wait on something (a server, a timer, a promise that never settles)?", humantime::format_duration(*.timeout))]
    NodeTimeout { file: String, timeout: Duration },
    #[error("{file}: evaluating it threw: {message}{}", if .at.is_empty() { String::new() } else { format!(" ({at})") })]
    Threw { file: String, message: String, at: String },
    #[error("{file}: node exited ({status}) before handing over the config; its error is printed above")]
    NodeFailed { file: String, status: String },
    #[error("{file}: larger than {} MiB", .limit >> 20)]
    TooLarge { file: String, limit: u64 },
    #[error("{file}:{line}:{column}: {message}")]
    Syntax { file: String, line: usize, column: usize, message: String },
    #[error("{file}: {message}")]
    Shape { file: String, message: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{file} exists: pass --force to replace it, or -o another file")]
    Exists { file: String },
    #[error(
        "the imported config does not load (a bug in l4ctl import; please report it with the ecosystem file):\n{0}"
    )]
    Invalid(String),
}

/// What `l4ctl import` was asked.
#[derive(Debug, Clone)]
pub struct ImportArgs {
    pub file: PathBuf,
    /// Where to write; `-` is stdout. Default: `layer4.toml` beside the ecosystem file.
    pub output: Option<PathBuf>,
    pub force: bool,
    pub timeout: Duration,
}

/// Import, write, and say where (the path written, or `None` for stdout).
pub fn run(args: &ImportArgs) -> Result<Option<PathBuf>, ImportError> {
    let file = crate::config::absolute(&args.file);
    let folder = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let output = match &args.output {
        Some(p) if p.as_os_str() == "-" => None,
        Some(p) => Some(crate::config::absolute(p)),
        None => Some(folder.join("layer4.toml")),
    };
    // Printed (`-o -`), the paths are relative to the current folder, where a
    // shell redirect puts the file.
    let out_folder = match &output {
        Some(o) => o.parent().unwrap_or(&folder).to_path_buf(),
        None => crate::config::absolute(Path::new(".")),
    };
    let ecosystem = read(&file, args.timeout)?;
    let text = convert(&ecosystem, &file, &out_folder)?;
    let check_path = out_folder.join("layer4.toml");
    crate::config::parse(&check_path, &text, None).map_err(|e| ImportError::Invalid(e.to_string()))?;
    match output {
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|e| ImportError::Io { what: "stdout".into(), source: e })?;
            Ok(None)
        }
        Some(path) => {
            write_new(&path, &text, args.force)?;
            Ok(Some(path))
        }
    }
}

/// What runs for `script` in `cwd`, as PM2 picks it: `(script, args)` with the
/// interpreter in front (`l4ctl start app.js` runs `node app.js`).
pub fn resolve_program(
    script: &str,
    interpreter: Option<&serde_json::Value>,
    args: Vec<String>,
    cwd: &Path,
) -> Result<program::Program, String> {
    program::resolve(script, interpreter, Vec::new(), args, cwd)
}

/// The TOML text for an ecosystem value read from `file`, with paths relative to `out_folder`.
pub fn convert(ecosystem: &serde_json::Value, file: &Path, out_folder: &Path) -> Result<String, ImportError> {
    let name = file.display().to_string();
    let shape = |message: &str| ImportError::Shape { file: name.clone(), message: message.to_owned() };
    let (apps, rest) = match ecosystem {
        serde_json::Value::Array(apps) => (apps.clone(), serde_json::Map::new()),
        serde_json::Value::Object(top) => match top.get("apps") {
            Some(serde_json::Value::Array(apps)) => (apps.clone(), top.clone()),
            Some(one @ serde_json::Value::Object(_)) => (vec![one.clone()], top.clone()),
            Some(_) => return Err(shape("`apps` must be a list of apps")),
            None if top.contains_key("script") => (vec![ecosystem.clone()], serde_json::Map::new()),
            None => return Err(shape("no `apps`: expected { apps: [ { name, script, ... } ] }")),
        },
        _ => return Err(shape("expected an object with `apps` (module.exports = { apps: [...] })")),
    };
    if apps.is_empty() {
        return Err(shape("`apps` is empty"));
    }
    let base = file.parent().unwrap_or(Path::new("/"));
    let mut header = vec![
        format!(
            "layer4 config imported from {} by `l4ctl import`. Every PM2 option is either a key below or a comment saying why layer4 has none and what to do instead (README \"Coming from PM2\").",
            file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        ),
        "Paths are relative to this file (PM2's are relative to the folder pm2 ran in; this import took the ecosystem file's folder). Options PM2 left unset keep layer4's defaults. Check it with `l4ctl start layer4.toml`.".to_owned(),
    ];
    for (key, value) in &rest {
        if key != "apps" {
            header.push(options::top_level(key, value));
        }
    }
    let mut sections = Vec::new();
    let mut taken = app::Taken::default();
    for (i, app) in apps.iter().enumerate() {
        let serde_json::Value::Object(app) = app else {
            return Err(shape(&format!("app {} is not an object", i + 1)));
        };
        let converted = app::convert(app, base, out_folder, &mut taken);
        sections.extend(converted.map_err(|m| shape(&format!("app {}: {m}", i + 1)))?);
    }
    if sections.iter().any(|s| s.lines.iter().any(|l| matches!(l, emit::Line::Key { key, .. } if key == "port"))) {
        header.push(
            "Nginx in front: add an [nginx] section (README \"Nginx\") and `l4ctl nginx reload` renders the upstream from the live instances, one server per instance port.".to_owned(),
        );
    }
    Ok(emit::render(&header, &sections))
}

/// The ecosystem value in `file`, by its extension.
fn read(file: &Path, timeout: Duration) -> Result<serde_json::Value, ImportError> {
    let name = file.display().to_string();
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or_default();
    match ext {
        "js" | "cjs" | "mjs" => node::evaluate(file, timeout),
        "json" => {
            let text = read_text(file)?;
            serde_json::from_str(&text).map_err(|e| ImportError::Syntax {
                file: name,
                line: e.line(),
                column: e.column(),
                message: format!(
                    "{e} (PM2 also reads JavaScript: a file with comments or trailing commas can be renamed ecosystem.config.js with `module.exports =` before it)"
                ),
            })
        }
        "yaml" | "yml" => {
            let text = read_text(file)?;
            serde_saphyr::from_str::<serde_json::Value>(&text).map_err(|e| {
                let (line, column) = e.location().map(|l| (l.line() as usize, l.column() as usize)).unwrap_or((1, 1));
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
                // "line 2 column 12: unclosed bracket": the place is already in front.
                let message =
                    first.split_once(": ").filter(|(at, _)| at.starts_with("line ")).map_or(first, |(_, m)| m);
                ImportError::Syntax { file: name, line, column, message: message.to_owned() }
            })
        }
        _ => Err(ImportError::UnknownFormat { file: name }),
    }
}

fn read_text(file: &Path) -> Result<String, ImportError> {
    let name = file.display().to_string();
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| ImportError::Io { what: name.clone(), source: e })?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(ImportError::TooLarge { file: name, limit: MAX_FILE });
    }
    String::from_utf8(bytes).map_err(|_| ImportError::Shape { file: name, message: "not UTF-8 text".to_owned() })
}

/// Write `path` with mode 0600 through a temporary file in the same folder and a
/// rename, so a failed write never leaves half a file; an existing file (or
/// symlink, which is replaced, never followed) only with `force`.
fn write_new(path: &Path, text: &str, force: bool) -> Result<(), ImportError> {
    let name = path.display().to_string();
    let io = |e: std::io::Error| ImportError::Io { what: name.clone(), source: e };
    let folder = path.parent().unwrap_or(Path::new("."));
    if !force && path.symlink_metadata().is_ok() {
        return Err(ImportError::Exists { file: name });
    }
    // tempfile creates it with mode 0600.
    let mut tmp = tempfile::Builder::new().prefix(".layer4.toml.").tempfile_in(folder).map_err(io)?;
    tmp.write_all(text.as_bytes()).and_then(|()| tmp.as_file().sync_all()).map_err(io)?;
    if force {
        tmp.persist(path).map_err(|e| io(e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| match e.error.kind() {
            std::io::ErrorKind::AlreadyExists => ImportError::Exists { file: name.clone() },
            _ => io(e.error),
        })?;
    }
    Ok(())
}
