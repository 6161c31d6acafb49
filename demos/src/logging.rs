//! Log output for the node binaries: levels per module from `RUST_LOG`
//! (env_logger's syntax: `info,sampan_net=warn`), and the line format from
//! `SAMPAN_LOG_FORMAT`:
//!
//! - `text` (the default): env_logger's `[time LEVEL target] message`;
//! - `kv`: `ts=... level=info target=sampan::host msg="..."` (logfmt);
//! - `json`: one object per line, `{"ts":...,"level":...,"target":...,"msg":...}`.
//!
//! Timestamps are UTC, RFC 3339 with milliseconds. An unknown format falls
//! back to `text`, and says so on the first line.

use std::io::Write;

/// The variable that picks the format.
pub const FORMAT_VAR: &str = "SAMPAN_LOG_FORMAT";

/// A log line's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// env_logger's default.
    Text,
    /// logfmt: `key=value` pairs.
    KeyValue,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The format `name` names (`text`, `kv`, `json`).
    pub fn parse(name: &str) -> Option<LogFormat> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Some(LogFormat::Text),
            "kv" | "logfmt" => Some(LogFormat::KeyValue),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Starts logging to stderr at `default_level` (unless `RUST_LOG` says
/// otherwise), in the format `SAMPAN_LOG_FORMAT` names; returns it.
pub fn init(default_level: &str) -> LogFormat {
    let asked = std::env::var(FORMAT_VAR).unwrap_or_default();
    let format = LogFormat::parse(&asked);
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level));
    match format.unwrap_or(LogFormat::Text) {
        LogFormat::Text => {}
        LogFormat::KeyValue => {
            builder.format(|out, record| {
                writeln!(
                    out,
                    "ts={} level={} target={} msg={}",
                    now(),
                    record.level().as_str().to_ascii_lowercase(),
                    record.target(),
                    quoted(&record.args().to_string())
                )
            });
        }
        LogFormat::Json => {
            builder.format(|out, record| {
                writeln!(
                    out,
                    "{{\"ts\":\"{}\",\"level\":\"{}\",\"target\":{},\"msg\":{}}}",
                    now(),
                    record.level().as_str().to_ascii_lowercase(),
                    crate::json::string(record.target()),
                    crate::json::string(&record.args().to_string())
                )
            });
        }
    }
    builder.init();
    if format.is_none() {
        log::warn!("{FORMAT_VAR}={asked:?} is not text, kv or json: logging as text");
    }
    format.unwrap_or(LogFormat::Text)
}

/// Now, UTC, RFC 3339 with milliseconds.
fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// `s` as a logfmt value: quoted, with `"` and `\` escaped and control
/// characters written as `\n`, `\t` or `\u{..}`.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_values_are_escaped() {
        assert_eq!(LogFormat::parse("JSON"), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse("kv"), Some(LogFormat::KeyValue));
        assert_eq!(LogFormat::parse(""), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse("xml"), None);
        assert_eq!(quoted("a \"b\"\n\\"), "\"a \\\"b\\\"\\n\\\\\"");
        let j = crate::json::string("line\n\"q\"\u{1}");
        let back: String = serde_json::from_str(&j).expect("valid JSON");
        assert_eq!(back, "line\n\"q\"\u{1}");
    }
}
