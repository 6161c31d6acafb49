//! Log output for the node binaries: levels per module from `RUST_LOG`
//! (env_logger's syntax: `info,sampan_net=warn`), and the line format from
//! `SAMPAN_LOG_FORMAT`:
//!
//! - `text` (the default): env_logger's `[time LEVEL target] message`;
//! - `kv`: `ts=... level=info target=sampan::host msg="..."` (logfmt);
//! - `json`: one object per line, `{"ts":...,"level":...,"target":...,"msg":...}`.
//!
//! A line about a group carries its `group` and `term` as key-values
//! (`sampan_fiber::group_log!`): fields of their own in `kv` and `json`
//! (`group=3 term=7`, `"group":3,"term":7`), appended as `group=3 term=7`
//! in `text`.
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
                let fields: String = key_values(record)
                    .into_iter()
                    .map(|(k, v)| format!(" {k}={}", logfmt_value(&v)))
                    .collect();
                writeln!(
                    out,
                    "ts={} level={} target={}{fields} msg={}",
                    now(),
                    record.level().as_str().to_ascii_lowercase(),
                    record.target(),
                    quoted(&record.args().to_string())
                )
            });
        }
        LogFormat::Json => {
            builder.format(|out, record| {
                let fields: String = key_values(record)
                    .into_iter()
                    .map(|(k, v)| format!(",{}:{}", crate::json::string(&k), json_value(&v)))
                    .collect();
                writeln!(
                    out,
                    "{{\"ts\":\"{}\",\"level\":\"{}\",\"target\":{}{fields},\"msg\":{}}}",
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

/// A record's key-values (`group`, `term`), in order, as text.
fn key_values(record: &log::Record<'_>) -> Vec<(String, String)> {
    struct Collect(Vec<(String, String)>);
    impl<'kvs> log::kv::VisitSource<'kvs> for Collect {
        fn visit_pair(
            &mut self,
            key: log::kv::Key<'kvs>,
            value: log::kv::Value<'kvs>,
        ) -> Result<(), log::kv::Error> {
            self.0.push((key.to_string(), value.to_string()));
            Ok(())
        }
    }
    let mut c = Collect(Vec::new());
    // Visiting a record's own pairs cannot fail: the visitor never does.
    let _ = record.key_values().visit(&mut c);
    c.0
}

/// A value in logfmt: bare if it is a plain word, else quoted.
fn logfmt_value(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/".contains(c))
    {
        v.to_string()
    } else {
        quoted(v)
    }
}

/// A value in JSON: a number if it is one, else a string.
fn json_value(v: &str) -> String {
    if v.parse::<u64>().is_ok() || v.parse::<i64>().is_ok() {
        v.to_string()
    } else {
        crate::json::string(v)
    }
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
        assert_eq!(logfmt_value("7"), "7");
        assert_eq!(logfmt_value("a b"), "\"a b\"");
        assert_eq!(json_value("7"), "7");
        assert_eq!(json_value("x"), "\"x\"");
    }

    #[test]
    fn a_records_key_values_are_read_in_order() {
        let kvs: [(&str, u64); 2] = [("group", 3), ("term", 7)];
        let record = log::Record::builder()
            .args(format_args!("group 3: leader"))
            .key_values(&kvs)
            .build();
        assert_eq!(
            key_values(&record),
            vec![("group".into(), "3".into()), ("term".into(), "7".into())]
        );
    }
}
