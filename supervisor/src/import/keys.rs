//! An imported app's keys as PM2 reads them: each option under its main name,
//! its aliases (`err_file` for `error_file`) and its camelCase spelling
//! (`maxMemoryRestart`), taken once, in PM2's order (the main name first, an
//! exact spelling before camelCase). What was not taken is what `options`
//! turns into comments, so no key of the file is dropped without one.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::options;

/// The keys of one PM2 app in snake_case, each taken once.
pub struct Keys<'a> {
    /// (spelling in the file, PM2's snake_case name, value).
    pub(super) entries: Vec<(&'a str, String, &'a Value)>,
    taken: BTreeSet<usize>,
    /// Other spellings given beside the one used: (spelling, value, the one used).
    pub(super) shadowed: Vec<(&'a str, &'a Value, &'a str)>,
}

impl<'a> Keys<'a> {
    pub fn new(app: &'a Map<String, Value>) -> Keys<'a> {
        let entries = app.iter().map(|(k, v)| (k.as_str(), options::snake(k), v)).collect();
        Keys { entries, taken: BTreeSet::new(), shadowed: Vec::new() }
    }

    /// The value of `name` under its first spelling that is set, PM2's order; the
    /// other spellings are taken too (and noted).
    pub fn take(&mut self, name: &str) -> Option<(&'a str, &'a Value)> {
        let alone = [name];
        let names = options::ALIASES.iter().find(|a| a[0] == name).map_or(&alone[..], |a| &a[..]);
        let mut found: Option<(&'a str, &'a Value)> = None;
        // PM2's order: the main name, then each alias; an exact spelling before camelCase.
        let mut order: Vec<(usize, bool, usize)> = Vec::new();
        for (rank, alias) in names.iter().enumerate() {
            for (i, (spelling, snake, _)) in self.entries.iter().enumerate() {
                if snake == alias && !self.taken.contains(&i) {
                    order.push((rank, spelling != alias, i));
                }
            }
        }
        order.sort_unstable();
        for (_, _, i) in order {
            let (spelling, _, value) = self.entries[i];
            self.taken.insert(i);
            match found {
                None if !value.is_null() => found = Some((spelling, value)),
                Some((used, _)) => self.shadowed.push((spelling, value, used)),
                None => {}
            }
        }
        found
    }

    /// `env_NAME` tables, by profile name.
    pub fn profiles(&mut self) -> Vec<(&'a str, String, &'a Value)> {
        let mut out = Vec::new();
        for (i, (spelling, snake, value)) in self.entries.iter().enumerate() {
            if let Some(profile) = snake.strip_prefix("env_").filter(|p| !p.is_empty() && *p != "file")
                && !self.taken.contains(&i)
            {
                self.taken.insert(i);
                out.push((*spelling, profile.to_owned(), *value));
            }
        }
        out
    }

    pub fn rest(&self) -> Vec<(&'a str, &'a Value)> {
        let untaken = self.entries.iter().enumerate().filter(|(i, _)| !self.taken.contains(i));
        untaken.map(|(_, (spelling, _, value))| (*spelling, *value)).collect()
    }
}
