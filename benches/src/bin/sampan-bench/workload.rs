//! What each request is: the key space split over the databases, the key
//! distributions (uniform, Zipfian) and the commands of each workload.

use crate::args::{Distribution, Workload};
use crate::resp::encode;
use bytes::{Bytes, BytesMut};
use std::io::Write;

/// Members per sorted set in the `zadd` workload.
const ZSET_MEMBERS: u64 = 1_000;

/// A small, fast random number generator (splitmix64): each connection
/// has its own, seeded from `--seed` and its index, so runs repeat.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for stream `stream` of `seed`.
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xA24B_AED4_963E_E407));
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform integer in [0, n) (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// A Zipfian distribution over ranks 0..n (0 the most frequent), by Gray
/// et al.'s method ("Quickly generating billion-record synthetic
/// databases", SIGMOD 1994), as YCSB draws it.
#[derive(Debug, Clone, Copy)]
pub struct Zipf {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl Zipf {
    /// The distribution over `n` ranks (n >= 1) with skew `theta` in (0, 1).
    pub fn new(n: u64, theta: f64) -> Zipf {
        let zetan = zeta(n, theta);
        let zeta2 = zeta(2.min(n), theta);
        let eta = if n <= 2 {
            1.0
        } else {
            (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan)
        };
        Zipf {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
        }
    }

    /// A rank, from a uniform `u` in [0, 1).
    pub fn sample(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        let r = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.n - 1)
    }
}

/// A 64-bit mix of a key id (for the database a key belongs to).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    z = (z ^ (z >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    z ^ (z >> 33)
}

/// The key ids 0..keys split over the databases by hash, each database's
/// ids in a fixed random order (so a Zipfian rank's hot keys are
/// scattered, as YCSB's scrambled Zipfian), with each database's
/// distribution.
#[derive(Debug)]
pub struct KeySpace {
    per_db: Vec<Vec<u64>>,
    zipf: Vec<Option<Zipf>>,
}

impl KeySpace {
    /// Splits `keys` ids over `dbs` databases.
    pub fn new(keys: u64, dbs: u64, dist: Distribution, theta: f64, seed: u64) -> KeySpace {
        let mut per_db: Vec<Vec<u64>> = vec![Vec::new(); dbs as usize];
        for k in 0..keys {
            per_db[(mix(k) % dbs) as usize].push(k);
        }
        let mut rng = Rng::new(seed, u64::MAX);
        for ids in &mut per_db {
            for i in (1..ids.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                ids.swap(i, j);
            }
        }
        let zipf = per_db
            .iter()
            .map(|ids| {
                (dist == Distribution::Zipf && !ids.is_empty())
                    .then(|| Zipf::new(ids.len() as u64, theta))
            })
            .collect();
        KeySpace { per_db, zipf }
    }

    /// The key ids of database `db`.
    pub fn ids(&self, db: u64) -> &[u64] {
        &self.per_db[db as usize]
    }

    /// A key id of database `db` drawn from the distribution (None if the
    /// database has no keys).
    pub fn draw(&self, db: u64, rng: &mut Rng) -> Option<u64> {
        let ids = &self.per_db[db as usize];
        if ids.is_empty() {
            return None;
        }
        let rank = match &self.zipf[db as usize] {
            Some(z) => z.sample(rng.next_f64()),
            None => rng.below(ids.len() as u64),
        };
        Some(ids[rank as usize])
    }
}

/// The kind of a request, for judging its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A read that should find its key (GET, HGET): a nil is a miss.
    Read,
    /// Anything else: any non-error reply is fine.
    Other,
}

/// The key prefix of a workload: workloads whose values do not mix
/// (strings, counters, hashes, lists, sorted sets) use their own keys,
/// so runs against the same server do not collide with WRONGTYPE.
fn prefix(w: Workload) -> &'static [u8] {
    match w {
        Workload::Set | Workload::Get | Workload::Mixed => b"key:",
        Workload::Append => b"append:",
        Workload::Incr => b"counter:",
        Workload::Hset | Workload::Hget => b"hash:",
        Workload::List => b"list:",
        Workload::Zadd => b"zset:",
    }
}

/// Writes the name of key `id` (`key:000000012345`, as redis-benchmark's
/// `-r` keys) into `out`.
pub fn key_name(w: Workload, id: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(prefix(w));
    let _ = write!(out, "{id:012}");
}

/// A connection's stream of commands.
pub struct Generator {
    workload: Workload,
    read_ratio: f64,
    db: u64,
    value: Bytes,
    rng: Rng,
    push_next: bool,
    key: Vec<u8>,
    num: Vec<u8>,
}

impl Generator {
    /// The commands of connection `stream`, on database `db`.
    pub fn new(
        workload: Workload,
        read_ratio: f64,
        value_size: usize,
        db: u64,
        seed: u64,
        stream: u64,
    ) -> Generator {
        Generator {
            workload,
            read_ratio,
            db,
            value: value(value_size, seed),
            rng: Rng::new(seed, stream),
            push_next: true,
            key: Vec::with_capacity(32),
            num: Vec::with_capacity(24),
        }
    }

    /// Whether the workload needs every key written before it starts.
    pub fn needs_preload(workload: Workload) -> bool {
        matches!(workload, Workload::Get | Workload::Mixed | Workload::Hget)
    }

    /// Appends the command that writes key `id` before the run.
    pub fn preload(&mut self, id: u64, buf: &mut BytesMut) {
        key_name(self.workload, id, &mut self.key);
        if self.workload == Workload::Hget {
            encode(buf, &[b"HSET", &self.key, b"f", &self.value]);
        } else {
            encode(buf, &[b"SET", &self.key, &self.value]);
        }
    }

    /// Appends the next command to `buf`; what kind it is.
    pub fn next(&mut self, keys: &KeySpace, buf: &mut BytesMut) -> Op {
        let id = keys.draw(self.db, &mut self.rng).unwrap_or(0);
        key_name(self.workload, id, &mut self.key);
        let (k, v) = (&self.key[..], &self.value[..]);
        match self.workload {
            Workload::Set => encode(buf, &[b"SET", k, v]),
            Workload::Get => {
                encode(buf, &[b"GET", k]);
                return Op::Read;
            }
            Workload::Mixed => {
                if self.rng.next_f64() < self.read_ratio {
                    encode(buf, &[b"GET", k]);
                    return Op::Read;
                }
                encode(buf, &[b"SET", k, v]);
            }
            Workload::Append => encode(buf, &[b"APPEND", k, v]),
            Workload::Incr => encode(buf, &[b"INCR", k]),
            Workload::Hset => encode(buf, &[b"HSET", k, b"f", v]),
            Workload::Hget => {
                encode(buf, &[b"HGET", k, b"f"]);
                return Op::Read;
            }
            Workload::List => {
                if self.push_next {
                    encode(buf, &[b"LPUSH", k, v]);
                } else {
                    encode(buf, &[b"RPOP", k]);
                }
                self.push_next = !self.push_next;
            }
            Workload::Zadd => {
                let score = self.rng.below(1_000_000);
                let member = self.rng.below(ZSET_MEMBERS);
                self.num.clear();
                let _ = write!(self.num, "{score}");
                let score_len = self.num.len();
                let _ = write!(self.num, "m:{member}");
                let (s, m) = self.num.split_at(score_len);
                encode(buf, &[b"ZADD", &self.key, s, m]);
            }
        }
        Op::Other
    }

    /// The next key id and whether it is a read, for the native client
    /// (set, get and mixed).
    pub fn next_native(&mut self, keys: &KeySpace) -> (u64, bool) {
        let id = keys.draw(self.db, &mut self.rng).unwrap_or(0);
        let read = match self.workload {
            Workload::Get => true,
            Workload::Mixed => self.rng.next_f64() < self.read_ratio,
            _ => false,
        };
        (id, read)
    }

    /// The value written.
    pub fn value(&self) -> &Bytes {
        &self.value
    }
}

/// A value of `size` printable bytes (not all one byte: compression would
/// flatter a store that compresses).
pub fn value(size: usize, seed: u64) -> Bytes {
    let mut rng = Rng::new(seed, 7);
    let v: Vec<u8> = (0..size).map(|_| b'a' + (rng.below(26) as u8)).collect();
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_low_ranks_and_stays_in_range() {
        let z = Zipf::new(1_000, 0.99);
        let mut rng = Rng::new(1, 1);
        let mut counts = vec![0u32; 1_000];
        for _ in 0..200_000 {
            let r = z.sample(rng.next_f64());
            counts[r as usize] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[500]);
        // Rank 0 of 1,000 at theta 0.99 takes about 1/zeta(1000) ~ 13%.
        let share = f64::from(counts[0]) / 200_000.0;
        assert!((0.10..0.17).contains(&share), "{share}");
        let tiny = Zipf::new(1, 0.99);
        assert_eq!(tiny.sample(0.999), 0);
    }

    #[test]
    fn every_key_belongs_to_one_database() {
        let ks = KeySpace::new(10_000, 3, Distribution::Uniform, 0.99, 1);
        let mut all: Vec<u64> = (0..3).flat_map(|d| ks.ids(d).to_vec()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10_000).collect::<Vec<_>>());
        for d in 0..3 {
            assert!(ks.ids(d).len() > 3_000, "db {d}: {}", ks.ids(d).len());
            let mut rng = Rng::new(2, d);
            let id = ks.draw(d, &mut rng).expect("keys");
            assert!(ks.ids(d).contains(&id));
        }
    }

    #[test]
    fn commands_are_framed_with_their_keys() {
        let ks = KeySpace::new(10, 1, Distribution::Uniform, 0.99, 1);
        let mut g = Generator::new(Workload::Zadd, 0.0, 4, 0, 1, 0);
        let mut buf = BytesMut::new();
        g.next(&ks, &mut buf);
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.starts_with("*4\r\n$4\r\nZADD\r\n$17\r\nzset:0000000000"),
            "{text}"
        );
        assert!(text.contains("m:"), "{text}");
        let mut g = Generator::new(Workload::List, 0.0, 4, 0, 1, 0);
        buf.clear();
        g.next(&ks, &mut buf);
        g.next(&ks, &mut buf);
        let text = String::from_utf8_lossy(&buf);
        assert!(text.contains("LPUSH") && text.contains("RPOP"), "{text}");
    }
}
