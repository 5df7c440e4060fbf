//! Unknown keys, answered helpfully: serde's "unknown field `instnaces`, expected
//! one of ..." becomes "unknown key `instnaces`: did you mean `instances`?" when one
//! valid key is a small edit away, and a PM2 option that has no layer4 key says
//! what to do instead (the same sentences `l4ctl import` writes). Otherwise the
//! list of valid keys stays.

use super::pm2 as options;

/// The message for a serde error, with a suggestion where one helps.
pub fn unknown_field(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else { return message.to_owned() };
    let Some((field, expected)) = rest.split_once('`') else { return message.to_owned() };
    let valid: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    if let Some(best) = closest(field, &valid) {
        return format!("unknown key `{field}`: did you mean `{best}`?");
    }
    if let Some((_, why)) = options::NO_EQUIVALENT.iter().find(|(k, _)| *k == field || *k == options::snake(field)) {
        return format!("`{field}` is a PM2 option with no layer4 key: {why}");
    }
    message.to_owned()
}

/// The valid key closest to `field`, when it is within a third of its length (at least 1, at most 3 edits).
fn closest<'a>(field: &str, valid: &[&'a str]) -> Option<&'a str> {
    let limit = (field.chars().count() / 3).clamp(1, 3);
    let mut best: Option<(usize, &str)> = None;
    for v in valid {
        let d = distance(field, v);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, v));
        }
    }
    best.map(|(_, v)| v)
}

/// Edit distance with adjacent swaps (`instnaces` is one edit from `instances`).
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::unknown_field;

    #[test]
    fn typos_get_the_key_pm2_options_get_the_way_and_the_rest_keeps_the_list() {
        let list = "expected one of `name`, `script`, `instances`, `port`, `kill_timeout`";
        assert_eq!(
            unknown_field(&format!("unknown field `instnaces`, {list}")),
            "unknown key `instnaces`: did you mean `instances`?"
        );
        assert_eq!(unknown_field(&format!("unknown field `prot`, {list}")), "unknown key `prot`: did you mean `port`?");
        assert!(
            unknown_field(&format!("unknown field `instance_var`, {list}"))
                .starts_with("`instance_var` is a PM2 option with no layer4 key: ")
        );
        assert!(unknown_field(&format!("unknown field `execMode`, {list}")).contains("PM2 option"), "camelCase too");
        let far = format!("unknown field `colour`, {list}");
        assert_eq!(unknown_field(&far), far, "nothing close: the list stays");
        assert_eq!(unknown_field("invalid type: string"), "invalid type: string");
    }
}
