//! The violation page: for each key that is not linearizable, an inline
//! SVG timeline of its failing window (a lane per process, a bar from call
//! to return, `info` bars fading to the end, the operations the search
//! could not order outlined in red), the longest partial linearization
//! with the state after each step, and the window's table. Self-contained:
//! no scripts, hover shows details through SVG titles and CSS.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write;

use super::model::Arena;
use super::report::{cell, outcome_cell, places, relative, shown_ops};
use super::{KeyResult, Operation, Status, Verdict, Window};
use crate::history::Function;

/// The plot's width in pixels (lanes' labels aside).
const PLOT_WIDTH_PX: f64 = 1000.0;
/// The lanes' labels' width in pixels.
const LABEL_WIDTH_PX: f64 = 90.0;
/// A lane's height in pixels.
const LANE_HEIGHT_PX: f64 = 34.0;
/// A bar's height in pixels.
const BAR_HEIGHT_PX: f64 = 22.0;

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
h2{margin-top:2em}table{border-collapse:collapse;font-size:13px}\
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}\
tr.stuck td{background:#fdd}tr.optional td{color:#777}\
.op:hover rect{stroke:#000;stroke-width:2}.op text{font-size:11px;pointer-events:none}\
ol li{font-family:monospace;font-size:13px}.legend span{display:inline-block;padding:1px 8px;margin-right:6px;border-radius:3px}";

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page for every key of `verdict` that is not linearizable. `place`
/// turns an event index into words (e.g. "line 12").
pub fn violation_html(verdict: &Verdict, place: &dyn Fn(usize) -> String) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>sampan-check: violation</title>\
         <style>{STYLE}</style></head><body><h1>Not linearizable</h1>\
         <p class=\"legend\"><span style=\"background:#7fb3e6\">read</span><span style=\"background:#8fd19e\">write</span>\
         <span style=\"background:#f5c77e\">info (may have happened, at any time after its call)</span>\
         <span style=\"border:2px solid #d00\">could not be ordered</span> #n: place in the longest partial linearization</p>"
    );
    for key in &verdict.keys {
        let KeyResult::NotLinearizable(violation) = &key.result else {
            continue;
        };
        let _ = write!(out, "<h2>Key {}</h2>", esc(&format!("{:?}", key.key)));
        if !violation.diagnoses.is_empty() {
            out.push_str("<ul>");
            for d in &violation.diagnoses {
                let _ = write!(
                    out,
                    "<li>{}</li>",
                    esc(&d.describe(&verdict.operations, place))
                );
            }
            out.push_str("</ul>");
        }
        match &violation.window {
            Some(w) => window_section(&mut out, &verdict.operations, w, place),
            None => out.push_str("<p>No window: the search ran out of time.</p>"),
        }
    }
    out.push_str("</body></html>\n");
    out
}

/// A window's timeline, linearization and table.
fn window_section(
    out: &mut String,
    ops: &[Operation],
    w: &Window,
    place: &dyn Fn(usize) -> String,
) {
    let shown = shown_ops(w, ops);
    let _ = write!(
        out,
        "<p>Shortest failing window: {} operations, from {} state{}. Times are relative to the window's first call.</p>",
        shown.len(),
        if w.starts_known {
            "the initial (absent)"
        } else {
            "an unknown"
        },
        if w.minimal {
            ""
        } else {
            " (not minimal: the search ran out of time)"
        }
    );
    timeline(out, ops, w, &shown);
    linearization(out, ops, w);
    table(out, ops, w, &shown, place);
}

/// `get`, `put x`… for a bar's label.
fn label(op: &Operation) -> String {
    let f = format!("{:?}", op.f).to_lowercase();
    match (op.f, op.status) {
        (Function::Get, Status::Ok) => format!("get → {}", outcome_cell(op)),
        (Function::Get | Function::Del, _) => f,
        _ => format!("{f} {}", cell(&op.input)),
    }
}

/// The SVG timeline.
fn timeline(out: &mut String, ops: &[Operation], w: &Window, shown: &[usize]) {
    let processes: Vec<u64> = shown
        .iter()
        .map(|&id| ops[id].process)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let t0 = shown
        .iter()
        .map(|&id| ops[id].call)
        .min()
        .unwrap_or(w.start)
        .min(w.start);
    let t_last = shown
        .iter()
        .map(|&id| ops[id].ret.unwrap_or(ops[id].call))
        .max()
        .unwrap_or(w.end)
        .max(w.end);
    let span = (t_last.saturating_sub(t0) as f64 * 1.05).max(1.0);
    let x = |t: u64| LABEL_WIDTH_PX + (t.saturating_sub(t0) as f64) / span * PLOT_WIDTH_PX;
    let height = LANE_HEIGHT_PX * processes.len() as f64 + 30.0;
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\">\
         <defs><linearGradient id=\"fade\"><stop offset=\"0\" stop-color=\"#f5c77e\"/>\
         <stop offset=\"1\" stop-color=\"#f5c77e\" stop-opacity=\"0.05\"/></linearGradient></defs>",
        LABEL_WIDTH_PX + PLOT_WIDTH_PX + 10.0
    );
    for (lane, p) in processes.iter().enumerate() {
        let y = LANE_HEIGHT_PX * lane as f64 + 20.0;
        let _ = write!(
            out,
            "<text x=\"4\" y=\"{}\" font-size=\"12\">process {p}</text>\
             <line x1=\"{LABEL_WIDTH_PX}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#eee\"/>",
            y + BAR_HEIGHT_PX / 2.0 + 4.0,
            LABEL_WIDTH_PX + PLOT_WIDTH_PX,
            y + BAR_HEIGHT_PX / 2.0,
            y + BAR_HEIGHT_PX / 2.0
        );
    }
    let end_x = x(w.end);
    let _ = write!(
        out,
        "<line x1=\"{end_x}\" x2=\"{end_x}\" y1=\"10\" y2=\"{height}\" stroke=\"#d00\" stroke-dasharray=\"4 3\"/>\
         <text x=\"{}\" y=\"12\" font-size=\"11\" fill=\"#d00\">impossible from here</text>",
        end_x + 3.0
    );
    let stuck: HashSet<usize> = w.stuck.iter().copied().collect();
    let order = places(w);
    for &id in shown {
        let op = &ops[id];
        let lane = processes.iter().position(|&p| p == op.process).unwrap_or(0);
        let y = LANE_HEIGHT_PX * lane as f64 + 20.0;
        let x1 = x(op.call);
        let x2 = match op.ret {
            Some(r) => x(r).max(x1 + 3.0),
            None => LABEL_WIDTH_PX + PLOT_WIDTH_PX,
        };
        let fill = match (op.status, op.f) {
            (Status::Info, _) => "url(#fade)",
            (_, Function::Get) => "#7fb3e6",
            _ => "#8fd19e",
        };
        let stroke = if stuck.contains(&id) {
            "stroke=\"#d00\" stroke-width=\"3\""
        } else {
            ""
        };
        let number = order.get(&id).map(|n| format!("#{n} ")).unwrap_or_default();
        let title = format!(
            "process {} {}\nin: {}\nout: {}\ncall {} return {}",
            op.process,
            format!("{:?}", op.f).to_lowercase(),
            cell(&op.input),
            outcome_cell(op),
            relative(op.call, w.start),
            op.ret.map_or_else(|| "?".into(), |r| relative(r, w.start))
        );
        let _ = write!(
            out,
            "<g class=\"op\"><title>{}</title><rect x=\"{x1:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"{BAR_HEIGHT_PX}\" rx=\"3\" fill=\"{fill}\" {stroke}/>\
             <text x=\"{:.1}\" y=\"{}\">{}</text></g>",
            esc(&title),
            x2 - x1,
            x1 + 3.0,
            y + 15.0,
            esc(&format!("{number}{}", label(op)))
        );
    }
    out.push_str("</svg>");
}

/// The longest partial linearization, with the state after each step.
fn linearization(out: &mut String, ops: &[Operation], w: &Window) {
    let _ = write!(
        out,
        "<h3>Longest partial linearization ({} steps)</h3><ol>",
        w.longest.len()
    );
    let mut arena = Arena::new();
    let mut state = Some(if w.starts_known {
        Arena::ABSENT
    } else {
        Arena::UNKNOWN
    });
    for &id in &w.longest {
        let op = &ops[id];
        state = state.and_then(|s| arena.step(s, &op.kind));
        let after = match state {
            Some(s) => arena
                .text(s)
                .map_or_else(|| "absent".into(), |t| format!("{t:?}")),
            None => "?".into(),
        };
        let _ = write!(
            out,
            "<li>process {}: {} ⇒ state {}</li>",
            op.process,
            esc(&label(op)),
            esc(&after)
        );
    }
    out.push_str("</ol>");
    if !w.stuck.is_empty() {
        let names: Vec<String> = w
            .stuck
            .iter()
            .map(|&id| format!("process {}: {}", ops[id].process, label(&ops[id])))
            .collect();
        let _ = write!(
            out,
            "<p>Then none of these could come next: {}</p>",
            esc(&names.join("; "))
        );
    }
}

/// The window's operations as a table.
fn table(
    out: &mut String,
    ops: &[Operation],
    w: &Window,
    shown: &[usize],
    place: &dyn Fn(usize) -> String,
) {
    out.push_str(
        "<h3>Operations</h3><table><tr><th>#</th><th>process</th><th>f</th><th>in</th><th>out</th>\
         <th>call</th><th>return</th><th>where</th></tr>",
    );
    let stuck: HashSet<usize> = w.stuck.iter().copied().collect();
    let mandatory: HashSet<usize> = w.mandatory.iter().copied().collect();
    let order = places(w);
    for &id in shown {
        let op = &ops[id];
        let class = if stuck.contains(&id) {
            "stuck"
        } else if !mandatory.contains(&id) {
            "optional"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            order.get(&id).map_or_else(|| "-".into(), |n| n.to_string()),
            op.process,
            format!("{:?}", op.f).to_lowercase(),
            esc(&cell(&op.input)),
            esc(&outcome_cell(op)),
            relative(op.call, w.start),
            op.ret.map_or_else(|| "?".into(), |r| relative(r, w.start)),
            esc(&place(op.event_call)),
        );
    }
    out.push_str("</table>");
}
