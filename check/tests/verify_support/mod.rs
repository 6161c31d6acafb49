//! Random linearizable histories for the checker's tests: processes act on
//! a few keys; each operation takes effect at a point of time inside its
//! [call, return] interval, and its result is what a sequential register
//! gives at that point. Some operations end `info` (applied or not, at
//! random), some `fail` (not applied), some never complete.

#![allow(dead_code)]

use sampan_check::history::{Event, EventType, Function};
use serde_json::{Value, json};

pub use sampan_check::rng::Rng;

/// The shape of a generated history.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Operations to generate.
    pub ops: usize,
    /// Concurrent processes.
    pub processes: usize,
    /// Keys: key `i` is a register if `i % 3 == 0`, an append list if 1,
    /// a counter if 2 (gets and dels everywhere; some cas and puts mixed in
    /// on counters so keys mix functions).
    pub keys: usize,
    /// Percent of operations that end `info` (or never complete).
    pub info_percent: u64,
    /// Widest call-to-return interval.
    pub width_max: u64,
    /// Key kinds used: 1 registers only, 3 all.
    pub kinds: usize,
}

/// A generated history: its events, and which events are `ok` reads.
pub struct Generated {
    /// The events, by time.
    pub events: Vec<Event>,
    /// Indices in `events` of the completions of `ok` gets.
    pub ok_reads: Vec<usize>,
}

struct Model {
    values: Vec<Option<String>>,
    kinds: usize,
}

/// What one operation does at its point: its f, invoke value, and the
/// completion (`Some(value)`: ok with it; `None`: fail, not applied).
fn apply(
    rng: &mut Rng,
    model: &mut Model,
    key: usize,
    serial: u64,
    applied: bool,
) -> (Function, Value, Option<Value>) {
    let state = &mut model.values[key];
    let kind = key % model.kinds;
    let roll = rng.below(100);
    let f = match (kind, roll) {
        (_, 0..35) => Function::Get,
        (_, 35..42) => Function::Del,
        (0, 42..75) | (2, 42..50) => Function::Put,
        (0, _) | (2, 50..58) => Function::Cas,
        (1, _) => Function::Append,
        _ => Function::Incr,
    };
    match f {
        Function::Get => (f, Value::Null, Some(json!(state.clone()))),
        Function::Del => {
            let count = json!(u8::from(state.is_some()));
            if applied {
                *state = None;
            }
            let out = if rng.chance(50) { count } else { Value::Null };
            (f, Value::Null, Some(out))
        }
        Function::Put => {
            let value = if kind == 2 {
                (serial % 1000).to_string()
            } else {
                format!("v{serial}")
            };
            if applied {
                *state = Some(value.clone());
            }
            (f, json!(value), Some(json!(value)))
        }
        Function::Append => {
            let token = format!("t{serial} ");
            if applied {
                *state = Some(format!("{}{token}", state.clone().unwrap_or_default()));
            }
            (f, json!(token), Some(json!(token)))
        }
        Function::Cas => {
            let expected = if rng.chance(70) {
                state.clone()
            } else {
                Some(format!("v{}", rng.below(serial + 1)))
            };
            let new = if rng.chance(10) {
                None
            } else {
                Some(format!("v{serial}"))
            };
            let input = json!([expected, new]);
            if expected != *state {
                return (f, input, None);
            }
            if applied {
                *state = new;
            }
            (f, input.clone(), Some(input))
        }
        Function::Incr => {
            let amount = rng.below(5) as i64;
            let old: Option<i64> = match state {
                None => Some(0),
                Some(s) => s.parse().ok(),
            };
            let Some(old) = old else {
                return (f, json!(amount), None);
            };
            let new = old + amount;
            if applied {
                *state = Some(new.to_string());
            }
            let out = if rng.chance(50) {
                json!(new)
            } else {
                json!(new.to_string())
            };
            (f, json!(amount), Some(out))
        }
    }
}

/// Generates a linearizable history of `shape` from `seed`.
pub fn generate(shape: &Shape, seed: u64) -> Generated {
    let mut rng = Rng::new(seed);
    let mut model = Model {
        values: vec![None; shape.keys],
        kinds: shape.kinds.clamp(1, 3),
    };
    // Per process slot: its current id and the time it is free from.
    let mut ids: Vec<u64> = (0..shape.processes as u64).collect();
    let mut free: Vec<u64> = vec![0; shape.processes];
    let mut next_id = shape.processes as u64;
    let mut events: Vec<(u64, usize, Event)> = Vec::new();
    let mut point = 10u64;
    for serial in 0..shape.ops as u64 {
        point += 1 + rng.below(shape.width_max / 4 + 1);
        let ready: Vec<usize> = (0..shape.processes).filter(|&p| free[p] <= point).collect();
        let slot = match ready.len() {
            0 => {
                let p = (0..shape.processes).min_by_key(|&p| free[p]).unwrap_or(0);
                point = free[p];
                p
            }
            n => ready[rng.below(n as u64) as usize],
        };
        let key = rng.below(shape.keys as u64) as usize;
        let info = rng.chance(shape.info_percent);
        let applied = !info || rng.chance(50);
        let (f, input, output) = apply(&mut rng, &mut model, key, serial, applied);
        let call = point - rng.below((point - free[slot]).min(shape.width_max) + 1);
        let ret = point + rng.below(shape.width_max + 1);
        let process = ids[slot];
        let event = |kind, value, time| Event {
            process,
            kind,
            f,
            key: format!("k{key}"),
            value,
            time,
            node: None,
            error: None,
        };
        events.push((
            call,
            events.len(),
            event(EventType::Invoke, input.clone(), call),
        ));
        if info {
            if rng.chance(50) {
                events.push((ret, events.len(), event(EventType::Info, input, ret)));
            }
            ids[slot] = next_id;
            next_id += 1;
        } else {
            match output {
                Some(v) => events.push((ret, events.len(), event(EventType::Ok, v, ret))),
                None => events.push((ret, events.len(), event(EventType::Fail, input, ret))),
            }
        }
        free[slot] = ret + 1;
    }
    events.sort_by_key(|&(time, order, _)| (time, order));
    let events: Vec<Event> = events.into_iter().map(|(_, _, e)| e).collect();
    let ok_reads = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == EventType::Ok && e.f == Function::Get)
        .map(|(i, _)| i)
        .collect();
    Generated { events, ok_reads }
}

/// The size benchmark's history (used by the verdict test and the bench):
/// 100k operations on 10 keys by 12 processes, `info_percent`% of them
/// `info`, over the first `kinds` key kinds; the same for the same
/// arguments.
pub fn hundred_thousand(info_percent: u64, kinds: usize) -> Generated {
    let shape = Shape {
        ops: 100_000,
        processes: 12,
        keys: 10,
        info_percent,
        width_max: 400,
        kinds,
    };
    generate(&shape, 0x5A3F_0001 + info_percent)
}
