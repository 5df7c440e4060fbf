//! Golden files: each PM2 ecosystem file in `golden/` and the `layer4.toml` it
//! imports to (same name, `.toml`). Every golden output must also load with the
//! config parser `l4ctl start` uses. `L4_BLESS=1 cargo test import` rewrites them.

use std::path::{Path, PathBuf};

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/import/golden")
}

fn inputs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden())
        .expect("golden folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e != "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_golden_ecosystem_file_imports_to_its_toml() {
    let bless = std::env::var_os("L4_BLESS").is_some();
    let files = inputs();
    assert!(files.len() >= 12, "a dozen golden files, found {}", files.len());
    let mut failed = Vec::new();
    for input in &files {
        let value = super::read(input, super::DEFAULT_TIMEOUT).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let text = super::convert(&value, input, &golden()).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let expected_path = input.with_extension("toml");
        if let Err(e) = crate::config::parse(&golden().join("layer4.toml"), &text, None) {
            failed.push(format!("{}: the import does not load:\n{e}\n{text}", input.display()));
            continue;
        }
        if bless {
            std::fs::write(&expected_path, &text).expect("bless");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != text {
            failed.push(format!("{} differs from {}:\n{text}", input.display(), expected_path.display()));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn every_pm2_option_in_the_table_appears_in_a_golden_file() {
    let all: String = inputs().iter().map(|p| std::fs::read_to_string(p).expect("read")).collect();
    let mut missing: Vec<&str> =
        super::options::NO_EQUIVALENT.iter().map(|(k, _)| *k).filter(|k| !all.contains(k)).collect();
    missing.extend(super::options::ALIASES.iter().flat_map(|a| a.iter()).filter(|k| !all.contains(*k)).copied());
    assert!(missing.is_empty(), "options no golden file covers: {missing:?}");
}

#[test]
fn args_strings_split_as_a_shell_would() {
    assert_eq!(super::program::split("--a 1  'two words' \"x y\" ''"), ["--a", "1", "two words", "x y", ""]);
}

#[test]
fn a_json_file_of_4_mib_is_read_and_one_byte_more_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("process.json");
    let body = r#"{"apps":[{"script":"a.js"}]}"#;
    let at = format!("{body}{}", " ".repeat(super::MAX_FILE as usize - body.len()));
    std::fs::write(&path, &at).expect("write");
    assert!(super::read(&path, super::DEFAULT_TIMEOUT).is_ok());
    std::fs::write(&path, format!("{at} ")).expect("write");
    let err = super::read(&path, super::DEFAULT_TIMEOUT).expect_err("past the limit");
    assert!(matches!(err, super::ImportError::TooLarge { .. }), "{err}");
}

#[test]
fn what_node_hands_back_is_read_up_to_4_mib_and_refused_past_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.config.js");
    // What the child writes: {"config":{"apps":[{"script":"a.js","env":{"X":"<pad>"}}]}}
    let frame = r#"{"config":{"apps":[{"script":"a.js","env":{"X":""}}]}}"#.len();
    for (pad, ok) in
        [(super::node::MAX_EXPORT as usize - frame, true), (super::node::MAX_EXPORT as usize - frame + 1, false)]
    {
        let js = format!("module.exports = {{ apps: [{{ script: 'a.js', env: {{ X: 'x'.repeat({pad}) }} }}] }};");
        std::fs::write(&path, js).expect("write");
        let got = super::read(&path, super::DEFAULT_TIMEOUT);
        assert_eq!(got.is_ok(), ok, "{pad}: {:?}", got.err());
        if !ok {
            assert!(matches!(got, Err(super::ImportError::TooLarge { .. })));
        }
    }
}

#[test]
fn a_leading_tilde_is_the_home_folder_as_pm2_expands_it() {
    let home = std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    assert_eq!(super::logs::expand_home("~/logs/a.log"), home.join("logs/a.log"));
    assert_eq!(super::logs::expand_home("~"), home);
    assert_eq!(super::logs::expand_home("a/~/b"), std::path::PathBuf::from("a/~/b"));
}
