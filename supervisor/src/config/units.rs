//! Value types that appear in the config file: memory sizes (`"1G"`), durations
//! (`"5s"`), signal names (`"SIGTERM"`), `instances` (`4` or `"max"`) and
//! `autorestart`. Each parses strictly and names what it expected on failure.
//!
//! Sizes use PM2's binary meaning (`1G` = 1024³ bytes), not the decimal meaning
//! of the `bytesize` crate, because users bring their PM2 values with them.

use std::fmt;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::scale::MAX_INSTANCES;

/// A byte count written as `"512M"`, `"1G"`, `"1GiB"` or a plain integer of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(text: &str) -> Result<Size, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        if digits.is_empty() {
            return Err(format!(
                "invalid size {text:?}: expected a number with an optional unit K, M, G or T (binary, as PM2), e.g. \"512M\" or \"1G\""
            ));
        }
        let n: u64 = digits.parse().map_err(|_| format!("invalid size {text:?}: number too large"))?;
        let mult: u64 = match unit {
            "" | "B" => 1,
            "K" | "KiB" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            "T" | "TiB" => 1 << 40,
            _ => {
                return Err(format!(
                    "invalid size {text:?}: unknown unit {unit:?}, expected K, M, G or T (or KiB, MiB, GiB, TiB)"
                ));
            }
        };
        n.checked_mul(mult).map(Size).ok_or_else(|| format!("invalid size {text:?}: too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(1u64 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
        for (mult, unit) in units {
            if self.0 >= mult && self.0.is_multiple_of(mult) {
                return write!(f, "{}{unit}", self.0 / mult);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"512M\" or \"1G\", or a number of bytes")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v).map(Size).map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                Size::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration written the humantime way: `"100ms"`, `"5s"`, `"1m 30s"`; an integer is
/// milliseconds, as in PM2 (`kill_timeout = 3000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"100ms\", \"5s\" or \"1m\", or whole milliseconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Span, E> {
                humantime::parse_duration(v).map(Span).map_err(|e| {
                    E::custom(format!("invalid duration {v:?}: {e}; expected e.g. \"100ms\", \"5s\", \"1m\""))
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Span, E> {
                u64::try_from(v).map(|ms| Span(Duration::from_millis(ms))).map_err(|_| {
                    E::custom(format!("a duration cannot be negative ({v}); an integer is milliseconds, e.g. 3000"))
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Span, E> {
                Ok(Span(Duration::from_millis(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Span, E> {
                Err(E::custom(format!(
                    "{v} is not a duration: write whole milliseconds (3000) or a unit (\"3s\", \"1.5s\")"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A strftime format for log timestamps, checked when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat(pub String);

impl<'de> Deserialize<'de> for DateFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use chrono::format::{Item, StrftimeItems};
        let s = String::deserialize(d)?;
        if super::pm2::is_moment(&s) {
            return Err(de::Error::custom(format!(
                "log_date_format {s:?} is PM2's moment.js format; layer4 takes strftime: {:?}",
                super::pm2::moment_to_strftime(&s)
            )));
        }
        if StrftimeItems::new(&s).any(|item| matches!(item, Item::Error)) {
            return Err(de::Error::custom(format!(
                "invalid log_date_format {s:?}: use strftime fields such as \"%Y-%m-%d %H:%M:%S%.3f\""
            )));
        }
        Ok(DateFormat(s))
    }
}

/// A signal name: `"SIGTERM"`, `"TERM"`, `"SIGINT"`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalName(pub Signal);

impl SignalName {
    pub fn parse(text: &str) -> Result<SignalName, String> {
        let upper = text.trim().to_ascii_uppercase();
        if let Ok(n) = upper.parse::<i32>() {
            return Signal::try_from(n).map(SignalName).map_err(|_| format!("unknown signal number {n}"));
        }
        let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
        full.parse::<Signal>()
            .map(SignalName)
            .map_err(|_| format!("unknown signal {text:?}, expected a name such as \"SIGTERM\" or \"SIGINT\""))
    }
}

impl Serialize for SignalName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for SignalName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SignalName::parse(&s).map_err(de::Error::custom)
    }
}

/// `instances = 4` or `instances = "max"` (one per CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instances {
    Count(u32),
    Max,
}

impl Instances {
    pub fn resolve(self) -> u32 {
        match self {
            Instances::Count(n) => n,
            Instances::Max => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        }
    }
}

impl<'de> Deserialize<'de> for Instances {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Instances;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive number of instances or \"max\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Instances, E> {
                match u32::try_from(v) {
                    Ok(n) if (1..=MAX_INSTANCES).contains(&n) => Ok(Instances::Count(n)),
                    _ => Err(E::custom(format!("instances must be between 1 and {MAX_INSTANCES} or \"max\", got {v}"))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Instances, E> {
                if v == "max" {
                    Ok(Instances::Max)
                } else {
                    Err(E::custom(format!("instances must be a number or \"max\", got {v:?}")))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// When an exited instance is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Autorestart {
    /// Restart unless the exit code is in `stop_exit_codes` (PM2's `autorestart = true`).
    OnFailure,
    /// Restart after every exit.
    Always,
    /// Never restart (PM2's `autorestart = false`).
    Never,
}

impl<'de> Deserialize<'de> for Autorestart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Autorestart;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, \"on-failure\", \"always\" or \"never\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Autorestart, E> {
                Ok(if v { Autorestart::OnFailure } else { Autorestart::Never })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Autorestart, E> {
                match v {
                    "on-failure" => Ok(Autorestart::OnFailure),
                    "always" => Ok(Autorestart::Always),
                    "never" => Ok(Autorestart::Never),
                    _ => Err(E::custom(format!(
                        "autorestart must be true, false, \"on-failure\", \"always\" or \"never\", got {v:?}"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// An environment value: TOML strings, integers, floats and booleans are all accepted
/// and passed to the process as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvValue(pub String);

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = EnvValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvValue, E> {
                if v.contains('\0') {
                    return Err(E::custom("environment values cannot contain NUL"));
                }
                Ok(EnvValue(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary_like_pm2() {
        assert_eq!(Size::parse("1G"), Ok(Size(1 << 30)));
        assert_eq!(Size::parse("512M"), Ok(Size(512 << 20)));
        assert_eq!(Size::parse("64KiB"), Ok(Size(64 << 10)));
        assert_eq!(Size::parse("1000"), Ok(Size(1000)));
        assert_eq!(Size(1 << 30).to_string(), "1G");
    }

    #[test]
    fn bad_sizes_are_rejected_with_the_unit_named() {
        let err = Size::parse("1GB?").unwrap_err();
        assert!(err.contains("unknown unit \"GB?\""), "{err}");
        assert!(Size::parse("G").is_err());
        assert!(Size::parse("-1G").is_err());
        assert!(Size::parse("99999999999999T").is_err());
    }

    #[test]
    fn signals_accept_short_and_long_names() {
        assert_eq!(SignalName::parse("TERM").unwrap().0, Signal::SIGTERM);
        assert_eq!(SignalName::parse("sigint").unwrap().0, Signal::SIGINT);
        assert!(SignalName::parse("SIGFOO").is_err());
    }
}
