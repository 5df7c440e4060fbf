//! The glob patterns of `ignore_watch`: `*` (any run of characters within one name),
//! `?` (one character), `[abc]`, `[a-z]`, `[!abc]` (or `[^abc]`), `{a,b}`
//! (alternatives), `**` (any number of folders, as a whole part of a pattern with
//! `/`) and `\` (the next character as it is). Written here, in a few lines, rather
//! than linking a regular-expression engine into the resident daemon for it (its
//! code pages are most of the daemon's memory).
//!
//! Bounded: a pattern has at most [`MAX_PATTERN`] characters and its `{}` expand to at
//! most [`MAX_ALTERNATIVES`] patterns; matching a name is O(pattern × name).

/// Characters in one `ignore_watch` pattern at most.
pub const MAX_PATTERN: usize = 256;
/// Patterns one pattern's `{a,b}` may expand to.
pub const MAX_ALTERNATIVES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Star,
    One,
    Class { negated: bool, ranges: Vec<(char, char)> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// `**`: any number of names.
    Deep,
    Name(Vec<Tok>),
}

/// One compiled pattern (one alternative of its braces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    parts: Vec<Part>,
    /// The alternative has a `/`: it matches a path from the app's folder, else any one name.
    pub anchored: bool,
}

/// A pattern's alternatives, compiled, or the sentence that says what is wrong.
pub fn compile(pattern: &str) -> Result<Vec<Glob>, String> {
    if pattern.chars().count() > MAX_PATTERN {
        return Err(format!("longer than {MAX_PATTERN} characters"));
    }
    let mut alternatives = Vec::new();
    expand(pattern, &mut alternatives)?;
    alternatives.iter().map(|p| parse(p)).collect()
}

/// `{a,b}` expanded, innermost first.
fn expand(p: &str, out: &mut Vec<String>) -> Result<(), String> {
    let chars: Vec<char> = p.chars().collect();
    let (mut open, mut escaped) = (None, false);
    for (i, &c) in chars.iter().enumerate() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '{' => open = Some(i),
            '}' if open.is_some() => {
                let start = open.unwrap_or(0);
                let (head, body, tail): (String, String, String) = (
                    chars[..start].iter().collect(),
                    chars[start + 1..i].iter().collect(),
                    chars[i + 1..].iter().collect(),
                );
                for alternative in body.split(',') {
                    expand(&format!("{head}{alternative}{tail}"), out)?;
                    if out.len() > MAX_ALTERNATIVES {
                        return Err(format!("its {{}} expand to more than {MAX_ALTERNATIVES} patterns"));
                    }
                }
                return Ok(());
            }
            _ => {}
        }
    }
    if open.is_some() {
        return Err("an unclosed `{`".into());
    }
    out.push(p.to_owned());
    Ok(())
}

fn parse(p: &str) -> Result<Glob, String> {
    let anchored = p.trim_end_matches('/').contains('/');
    let mut parts: Vec<Part> = Vec::new();
    for name in p.split('/').filter(|n| !n.is_empty()) {
        if name == "**" {
            if parts.last() != Some(&Part::Deep) {
                parts.push(Part::Deep);
            }
            continue;
        }
        let mut toks = Vec::new();
        let mut it = name.chars().peekable();
        while let Some(c) = it.next() {
            toks.push(match c {
                '*' => Tok::Star,
                '?' => Tok::One,
                '\\' => Tok::Lit(it.next().ok_or("a `\\` at the end")?),
                '[' => {
                    let negated = it.next_if(|c| *c == '!' || *c == '^').is_some();
                    let mut ranges = Vec::new();
                    loop {
                        let lo = match it.next() {
                            None => return Err("an unclosed `[`".into()),
                            Some(']') if !ranges.is_empty() => break,
                            Some('\\') => it.next().ok_or("an unclosed `[`")?,
                            Some(c) => c,
                        };
                        // `a-z`; a `-` before the closing `]` is itself (`[a-]`).
                        let hi = if it.peek() == Some(&'-') && it.clone().nth(1).is_some_and(|c| c != ']') {
                            it.next();
                            match it.next() {
                                Some('\\') => it.next().ok_or("an unclosed `[`")?,
                                Some(c) => c,
                                None => return Err("an unclosed `[`".into()),
                            }
                        } else {
                            lo
                        };
                        if hi < lo {
                            return Err(format!("the range `{lo}-{hi}` in `[]` is backwards"));
                        }
                        ranges.push((lo, hi));
                    }
                    Tok::Class { negated, ranges }
                }
                c => Tok::Lit(c),
            });
        }
        parts.push(Part::Name(toks));
    }
    Ok(Glob { parts, anchored })
}

impl Glob {
    /// Whether the names of a path (folders, then the file) match: each part against
    /// each name once (`fits[i][j]`: parts `i..` match names `j..`), so `**` costs
    /// O(parts × names) however many there are.
    pub fn matches(&self, names: &[&str]) -> bool {
        let (p, n) = (self.parts.len(), names.len());
        let chars: Vec<Vec<char>> = names.iter().map(|s| s.chars().collect()).collect();
        let mut fits = vec![vec![false; n + 1]; p + 1];
        fits[p][n] = true;
        for i in (0..p).rev() {
            for j in (0..=n).rev() {
                fits[i][j] = match &self.parts[i] {
                    Part::Deep => fits[i + 1][j] || (j < n && fits[i][j + 1]),
                    Part::Name(toks) => j < n && fits[i + 1][j + 1] && name(toks, &chars[j]),
                };
            }
        }
        fits[0][0]
    }
}

/// One name against one part: `*` backtracks to its last position only.
fn name(toks: &[Tok], s: &[char]) -> bool {
    let (mut t, mut i, mut star, mut mark) = (0, 0, None, 0);
    while i < s.len() {
        let one = |tok: &Tok| match tok {
            Tok::Lit(c) => *c == s[i],
            Tok::One => true,
            Tok::Class { negated, ranges } => ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s[i])) != *negated,
            Tok::Star => false,
        };
        if t < toks.len() && one(&toks[t]) {
            t += 1;
            i += 1;
        } else if toks.get(t) == Some(&Tok::Star) {
            star = Some(t);
            mark = i;
            t += 1;
        } else if let Some(st) = star {
            t = st + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    toks[t..].iter().all(|tok| *tok == Tok::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        let names: Vec<&str> = path.split('/').collect();
        compile(p).unwrap().iter().any(|g| g.matches(&names))
    }

    #[test]
    fn stars_classes_braces_and_deep_folders() {
        assert!(m("*.log", "app.log") && !m("*.log", "app.log.1") && m("*.log*", "app.log.1"));
        assert!(m(".*", ".git") && !m(".*", "git"));
        assert!(m("a?c", "abc") && !m("a?c", "ac"));
        assert!(m("[ab]x", "bx") && !m("[!ab]x", "bx") && m("[^ab]x", "cx") && m("[a-c]", "b") && m("[]]", "]"));
        assert!(m("*.{js,ts}", "a.ts") && !m("*.{js,ts}", "a.go") && m("{a,b{c,d}}", "bd"));
        assert!(m("client/img", "client/img") && !m("client/img", "client/img2"));
        assert!(
            m("src/**/*.tmp", "src/x.tmp") && m("src/**/*.tmp", "src/a/b/x.tmp") && !m("src/**/*.tmp", "lib/x.tmp")
        );
        assert!(!m("*", "a/b"), "`*` stays within one name");
        assert!(m("\\*", "*") && !m("\\*", "a"));
        assert!(m("*a*b*c*", "xxaxxbxxcxx") && !m("*a*b*c*", "xxaxxcxxbxx"));
        assert!(m("[a-]", "-") && m("[a-]", "a") && m("[\\]]", "]") && m("x[\\-]", "x-"));
        assert!(compile("{x,a/b}").unwrap().iter().map(|g| g.anchored).eq([false, true]), "per alternative");
    }

    #[test]
    fn many_deep_parts_match_in_polynomial_time() {
        // 50 `**` between names, against 40 folders: exponential by recursion, instant here.
        let p = vec!["**/x"; 50].join("/") + "/y";
        let path: Vec<&str> = std::iter::repeat_n("x", 40).chain(["z"]).collect();
        let started = std::time::Instant::now();
        assert!(!compile(&p).unwrap()[0].matches(&path));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn broken_and_oversized_patterns_get_a_sentence() {
        assert_eq!(compile("src/[").unwrap_err(), "an unclosed `[`");
        assert_eq!(compile("{a,b").unwrap_err(), "an unclosed `{`");
        assert_eq!(compile("a\\").unwrap_err(), "a `\\` at the end");
        assert!(compile(&"a".repeat(MAX_PATTERN)).is_ok());
        assert!(compile(&"a".repeat(MAX_PATTERN + 1)).unwrap_err().contains("longer than 256"));
        // 4 x 4 x 4 = 64 alternatives: at the limit; one more `{}` is past it.
        assert_eq!(compile("{a,b,c,d}{a,b,c,d}{a,b,c,d}").unwrap().len(), MAX_ALTERNATIVES);
        assert!(compile("{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b}").unwrap_err().contains("more than 64"));
        assert_eq!(compile("[z-a]").unwrap_err(), "the range `z-a` in `[]` is backwards");
    }
}
