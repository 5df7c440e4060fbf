//! What PM2 users write, understood: PM2's `log_date_format` is a moment.js format
//! (`YYYY-MM-DD HH:mm:ss`), layer4's is strftime (`%Y-%m-%d %H:%M:%S`). A moment.js
//! format is refused with its strftime equivalent in the sentence (rather than printed
//! literally at the start of every line), and `l4ctl import` converts it.

/// moment.js tokens, longest first, and their strftime fields (chrono's).
const TOKENS: &[(&str, &str)] = &[
    ("YYYY", "%Y"),
    ("YY", "%y"),
    ("MMMM", "%B"),
    ("MMM", "%b"),
    ("MM", "%m"),
    ("M", "%-m"),
    ("DDDD", "%j"),
    ("DD", "%d"),
    ("Do", "%-d"),
    ("D", "%-d"),
    ("dddd", "%A"),
    ("ddd", "%a"),
    ("HH", "%H"),
    ("H", "%-H"),
    ("hh", "%I"),
    ("h", "%-I"),
    ("mm", "%M"),
    ("m", "%-M"),
    ("ss", "%S"),
    ("s", "%-S"),
    ("SSS", "%3f"),
    ("A", "%p"),
    ("a", "%P"),
    ("ZZ", "%z"),
    ("Z", "%:z"),
    ("X", "%s"),
];

/// Tokens only a moment.js format has: a strftime format never holds them without `%`.
const TELLTALE: &[&str] = &["YYYY", "MM", "DD", "HH", "mm", "ss", "SSS"];

/// Whether `format` is a moment.js format rather than strftime (text in `[...]`, which
/// moment.js prints as it is, does not count).
pub fn is_moment(format: &str) -> bool {
    let mut outside = String::new();
    let mut rest = format;
    while let Some(open) = rest.find('[') {
        outside.push_str(&rest[..open]);
        match rest[open..].find(']') {
            Some(close) => rest = &rest[open + close + 1..],
            None => {
                rest = &rest[open..];
                break;
            }
        }
    }
    outside.push_str(rest);
    !outside.contains('%') && TELLTALE.iter().any(|t| outside.contains(t))
}

/// The strftime equivalent of a moment.js format (`[text]` is literal text).
pub fn moment_to_strftime(format: &str) -> String {
    let mut out = String::new();
    let mut rest = format;
    'outer: while let Some(c) = rest.chars().next() {
        if c == '['
            && let Some(end) = rest.find(']')
        {
            out.push_str(&rest[1..end].replace('%', "%%"));
            rest = &rest[end + 1..];
            continue;
        }
        for (token, field) in TOKENS {
            if let Some(after) = rest.strip_prefix(token) {
                out.push_str(field);
                rest = after;
                continue 'outer;
            }
        }
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pm2_date_formats_convert_to_strftime() {
        for (moment, strftime) in [
            ("YYYY-MM-DD HH:mm:ss", "%Y-%m-%d %H:%M:%S"),
            ("YYYY-MM-DD HH:mm:ss Z", "%Y-%m-%d %H:%M:%S %:z"),
            ("YYYY-MM-DDTHH:mm:ss.SSSZZ", "%Y-%m-%dT%H:%M:%S.%3f%z"),
            ("DD/MM/YY hh:mm A", "%d/%m/%y %I:%M %p"),
            ("[at] HH:mm [100%]", "at %H:%M 100%%"),
        ] {
            assert!(is_moment(moment), "{moment}");
            assert_eq!(moment_to_strftime(moment), strftime, "{moment}");
        }
        assert!(!is_moment("%Y-%m-%d %H:%M:%S%.3f"));
        assert!(!is_moment("[app]"), "no date token: literal text, not a moment format");
    }
}
