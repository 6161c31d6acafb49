//! The one JSON piece the demo binaries write by hand: a string literal
//! (`sampan-cli --json` output and `SAMPAN_LOG_FORMAT=json` log lines).

use std::fmt::Write;

/// `s` as a JSON string literal (RFC 8259 escaping: `"`, `\`, and control
/// characters as `\n`, `\r`, `\t` or `\u00XX`).
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
