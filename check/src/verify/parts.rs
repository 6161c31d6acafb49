//! Checking a history file, in parts when it is too big to hold.
//!
//! A history of hours holds tens of millions of events, and an append
//! key's reads carry its whole list: gigabytes of JSON that, as
//! operations, take several times that in memory. A history is
//! linearizable iff each key's is, so a big file is split by key into
//! parts on disk (each key wholly in one part, parts of about `part_bytes`)
//! and the parts are checked one after another; only the operations of
//! keys that fail are kept for the report.
//!
//! The split reads every event once, so the format's per-process rules
//! ([`ProcessRules`]), which span keys, are checked there, in file order;
//! each part then checks its keys as [`check_events`] does.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ops::ProcessRules;
use super::{CheckOptions, HistoryInputError, KeyResult, Verdict, check_events};
use crate::history::{self, Event, HistoryError};

/// The verdict on a history file, with where each event of it is.
#[derive(Debug)]
pub struct FileVerdict {
    /// The verdict. Operations name events by their index among the
    /// file's events (blank lines skipped).
    pub verdict: Verdict,
    /// How many parts the file was checked in (1: it was read whole).
    pub parts: usize,
    /// Event index -> line number, for the events the verdict names.
    lines: HashMap<usize, usize>,
}

impl FileVerdict {
    /// "line N" for an event the verdict names.
    pub fn place(&self, event: usize) -> String {
        match self.lines.get(&event) {
            Some(line) => format!("line {line}"),
            None => format!("event {event}"),
        }
    }
}

/// Why a history file could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckFileError {
    /// It cannot be read, or a line is not an event.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// Its events break the format's rules.
    #[error("history {file}, line {line}: {source}")]
    Input {
        /// The file.
        file: String,
        /// The offending event's line.
        line: usize,
        /// The rule broken.
        source: HistoryInputError,
    },
    /// The parts could not be written or read back.
    #[error("checking {file} in parts: {what} {path}: {source}")]
    Parts {
        /// The history.
        file: String,
        /// What failed.
        what: &'static str,
        /// The part file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Checks the history in `file`: whole when it is at most `part_bytes`
/// long, else in parts of about that size (see the module docs).
pub fn check_file(
    file: &Path,
    opts: &CheckOptions,
    part_bytes: u64,
) -> Result<FileVerdict, CheckFileError> {
    let name = file.display().to_string();
    let size = std::fs::metadata(file)
        .map_err(|source| HistoryError::Io {
            file: name.clone(),
            source,
        })?
        .len();
    let parts = size.div_ceil(part_bytes.max(1)).clamp(1, 4096) as usize;
    if parts == 1 {
        let (events, lines) = history::read_numbered(file)?;
        let verdict = check_events(&events, opts).map_err(|source| CheckFileError::Input {
            file: name.clone(),
            line: lines.get(source.event()).copied().unwrap_or_default(),
            source,
        })?;
        return Ok(FileVerdict {
            verdict,
            parts: 1,
            lines: lines.into_iter().enumerate().collect(),
        });
    }
    let started = Instant::now();
    let dir = PartsDir::create(file)?;
    log::info!(
        "{name}: {:.1} GiB, checked in {parts} parts by key (in {})",
        size as f64 / (1u64 << 30) as f64,
        dir.path.display()
    );
    split(file, &name, size, &dir, parts)?;
    let deadline = started + opts.time_limit;
    let mut merged = Verdict {
        operations: Vec::new(),
        keys: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut lines = HashMap::new();
    for part in 0..parts {
        let path = dir.part(part);
        let (events, places) = read_part(&path, &name)?;
        let opts = CheckOptions {
            time_limit: deadline.saturating_duration_since(Instant::now()),
            ..opts.clone()
        };
        let verdict = check_events(&events, &opts).map_err(|source| CheckFileError::Input {
            file: name.clone(),
            line: places.get(source.event()).map_or(0, |p| p.1),
            source,
        })?;
        drop(events);
        log::info!(
            "{name}: part {} of {parts}: {} keys, {} operations, {:.1}s",
            part + 1,
            verdict.keys.len(),
            verdict.operations.len(),
            verdict.elapsed.as_secs_f64()
        );
        keep(&mut merged, &mut lines, verdict, &places);
        let _ = std::fs::remove_file(&path);
    }
    merged.keys.sort_by(|a, b| a.key.cmp(&b.key));
    merged.elapsed = started.elapsed();
    Ok(FileVerdict {
        verdict: merged,
        parts,
        lines,
    })
}

/// The scratch directory of the parts, beside the history (or in the
/// temporary directory if that is read-only); removed when dropped.
struct PartsDir {
    path: PathBuf,
    history: String,
}

impl PartsDir {
    fn create(file: &Path) -> Result<PartsDir, CheckFileError> {
        let history = file.display().to_string();
        let leaf = format!(
            ".{}.parts-{}",
            file.file_name()
                .map_or_else(|| "history".into(), |n| n.to_string_lossy().into_owned()),
            std::process::id()
        );
        let beside = file.parent().unwrap_or(Path::new(".")).join(&leaf);
        let path = match std::fs::create_dir(&beside) {
            Ok(()) => beside,
            Err(_) => {
                let temp = std::env::temp_dir().join(&leaf);
                std::fs::create_dir(&temp).map_err(|source| CheckFileError::Parts {
                    file: history.clone(),
                    what: "cannot create",
                    path: temp.display().to_string(),
                    source,
                })?;
                temp
            }
        };
        Ok(PartsDir { path, history })
    }

    fn part(&self, n: usize) -> PathBuf {
        self.path.join(format!("part-{n:04}.jsonl"))
    }

    fn io(&self, what: &'static str, path: &Path, source: std::io::Error) -> CheckFileError {
        CheckFileError::Parts {
            file: self.history.clone(),
            what,
            path: path.display().to_string(),
            source,
        }
    }
}

impl Drop for PartsDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            log::warn!("cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Writes each event to its key's part as `EVENT LINE JSON`, checking the
/// per-process rules on the way.
fn split(
    file: &Path,
    name: &str,
    size: u64,
    dir: &PartsDir,
    parts: usize,
) -> Result<(), CheckFileError> {
    let mut writers = Vec::with_capacity(parts);
    for n in 0..parts {
        let path = dir.part(n);
        let f = File::create(&path).map_err(|e| dir.io("cannot create", &path, e))?;
        writers.push(BufWriter::with_capacity(1 << 16, f));
    }
    let input = File::open(file).map_err(|source| HistoryError::Io {
        file: name.to_owned(),
        source,
    })?;
    let input = BufReader::with_capacity(1 << 20, input);
    let mut rules = ProcessRules::default();
    let (mut event, mut read, mut shown) = (0usize, 0u64, 0u64);
    history::read_each(input, name, |number, text, parsed| {
        read += text.len() as u64 + 1;
        rules
            .observe(event, &parsed)
            .map_err(|source| CheckFileError::Input {
                file: name.to_owned(),
                line: number,
                source,
            })?;
        let part = part_of(&parsed.key, parts);
        writeln!(writers[part], "{event} {number} {text}")
            .map_err(|e| dir.io("cannot write", &dir.part(part), e))?;
        event += 1;
        if read - shown >= 1 << 30 {
            shown = read;
            log::info!(
                "{name}: split {:.1} of {:.1} GiB",
                read as f64 / (1u64 << 30) as f64,
                size as f64 / (1u64 << 30) as f64
            );
        }
        Ok::<(), CheckFileError>(())
    })?;
    for (n, mut w) in writers.into_iter().enumerate() {
        w.flush()
            .map_err(|e| dir.io("cannot write", &dir.part(n), e))?;
    }
    Ok(())
}

/// The part a key goes to (a stable hash, so a key is wholly in one).
fn part_of(key: &str, parts: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % parts as u64) as usize
}

/// Where a part's event is in the file: (event index, line).
type Place = (usize, usize);

/// A part's events, each with its place in the file.
fn read_part(path: &Path, name: &str) -> Result<(Vec<Event>, Vec<Place>), CheckFileError> {
    let io = |source| CheckFileError::Parts {
        file: name.to_owned(),
        what: "cannot read",
        path: path.display().to_string(),
        source,
    };
    let input = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
    let (mut events, mut places) = (Vec::new(), Vec::new());
    for text in input.lines() {
        let text = text.map_err(io)?;
        let mut fields = text.splitn(3, ' ');
        let (Some(event), Some(line), Some(json)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(io(std::io::Error::other("a part's line lost its fields")));
        };
        let (Ok(event), Ok(line)) = (event.parse::<usize>(), line.parse::<usize>()) else {
            return Err(io(std::io::Error::other("a part's line lost its numbers")));
        };
        let parsed = serde_json::from_str(json).map_err(|e| HistoryError::Parse {
            file: name.to_owned(),
            line,
            message: e.to_string(),
        })?;
        events.push(parsed);
        places.push((event, line));
    }
    Ok((events, places))
}

/// Adds a part's verdict to `merged`: every key's summary, and the
/// operations of the keys that failed, renumbered (ids into
/// `merged.operations`, events as the file's event indices, whose lines
/// go into `lines`).
fn keep(merged: &mut Verdict, lines: &mut HashMap<usize, usize>, part: Verdict, places: &[Place]) {
    let mut renumber: HashMap<usize, usize> = HashMap::new();
    let operations = part.operations;
    for mut key in part.keys {
        if let KeyResult::NotLinearizable(violation) = &mut key.result {
            for id in &key.ops {
                let mut op = operations[*id].clone();
                op.id = merged.operations.len();
                for event in std::iter::once(&mut op.event_call).chain(op.event_ret.as_mut()) {
                    let (index, line) = places[*event];
                    lines.insert(index, line);
                    *event = index;
                }
                renumber.insert(*id, op.id);
                merged.operations.push(op);
            }
            let new = |id: &mut usize| *id = renumber[&*id];
            key.ops.iter_mut().for_each(new);
            violation.renumber(&new);
        } else {
            key.ops = Vec::new();
        }
        merged.keys.push(key);
    }
}
