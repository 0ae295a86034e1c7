//! The mutation engine: a seeded, deterministic generator of damaged
//! copies of valid inputs, and the loop that feeds them to a target.
//!
//! Each case takes a seed input (made by kiln's own encoders, or a file of
//! the corpus) and applies one to four mutations: bit flips, bytes set to
//! edge values, 16/32/64-bit little-endian edge values (0, 1, the maxima,
//! the sign bits, the input's length in bytes, sectors and blocks, the old
//! value plus or minus a little) written at random offsets or at the offsets
//! of known fields ("aims", taken from the format tables), ASCII octal
//! numbers in wide fields (tar), truncation, and chunks copied over other
//! chunks. Half the cases then have the format's checksums redone
//! (GPT CRC32s, the ext4 superblock crc32c, tar header sums), so that the
//! damage reaches past the checksum checks into the code behind them.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::alloc;

/// A reader under test.
pub struct Target {
    /// Name: the corpus directory and the test's name.
    pub name: &'static str,
    /// Valid inputs to mutate.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// (offset, length) of the fields worth aiming at in a seed.
    pub aims: fn(&[u8]) -> Vec<(usize, usize)>,
    /// Redoes the checksums of a mutated input, if the format has any.
    pub fixup: Option<fn(&mut [u8])>,
    /// Runs the reader: any result is fine, a panic is a failure.
    pub run: fn(&[u8]),
}

/// splitmix64: small, fast, and the same sequence everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Edge values for a little-endian field of `width` bytes holding `old`,
/// in an input of `len` bytes.
fn interesting(rng: &mut Rng, width: usize, old: u64, len: usize) -> u64 {
    let max = if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    };
    let len = len as u64;
    let v = match rng.below(14) {
        0 => 0,
        1 => 1,
        2 => max,
        3 => max - 1,
        4 => max >> 1,
        5 => (max >> 1) + 1,
        6 => len,
        7 => len / 512,
        8 => len / 4096,
        9 => len / 512 + 1 + rng.below(4) as u64,
        10 => old.wrapping_add(1 + rng.below(16) as u64),
        11 => old.wrapping_sub(1 + rng.below(16) as u64),
        12 => 1u64 << rng.below(8 * width.min(8)),
        _ => rng.next(),
    };
    v & max
}

/// Writes `v` little-endian into `b[at..at + width]` (clipped to `b`).
fn put_le(b: &mut [u8], at: usize, width: usize, v: u64) {
    for (i, byte) in v.to_le_bytes().iter().take(width).enumerate() {
        if let Some(x) = b.get_mut(at + i) {
            *x = *byte;
        }
    }
}

fn get_le(b: &[u8], at: usize, width: usize) -> u64 {
    let mut v = [0u8; 8];
    for (i, x) in v.iter_mut().take(width).enumerate() {
        *x = b.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(v)
}

/// One mutation of `b`.
fn mutate_once(rng: &mut Rng, b: &mut Vec<u8>, aims: &[(usize, usize)]) {
    if b.is_empty() {
        b.push(rng.next() as u8);
        return;
    }
    let len = b.len();
    let aim = (!aims.is_empty())
        .then(|| aims[rng.below(aims.len())])
        .filter(|&(at, _)| at < len);
    match rng.below(10) {
        0 => {
            let at = rng.below(len);
            b[at] ^= 1 << rng.below(8);
        }
        1 => {
            let at = rng.below(len);
            b[at] = [0, 1, 0x7f, 0x80, 0xff, b' ', b'0', b'7'][rng.below(8)];
        }
        2 => {
            let width = [2, 4, 8][rng.below(3)];
            let at = rng.below(len);
            let v = interesting(rng, width, get_le(b, at, width), len);
            put_le(b, at, width, v);
        }
        3..=5 => match aim {
            Some((at, width)) if width <= 8 && width.is_power_of_two() => {
                let v = interesting(rng, width, get_le(b, at, width), len);
                put_le(b, at, width, v);
            }
            Some((at, width)) => {
                let end = (at + width).min(len);
                match rng.below(3) {
                    // ASCII octal, as tar stores numbers.
                    0 => {
                        let digits = [b'0', b'7', b'1'][rng.below(3)];
                        b[at..end].fill(digits);
                    }
                    1 => b[at..end].fill([0, 0xff][rng.below(2)]),
                    _ => {
                        let i = at + rng.below(end - at);
                        b[i] ^= 1 << rng.below(8);
                    }
                }
            }
            None => {
                let at = rng.below(len);
                b[at] ^= 0xff;
            }
        },
        6 => {
            let keep = match aim {
                Some((at, _)) if rng.below(2) == 0 => at,
                _ => rng.below(len),
            };
            b.truncate(keep);
        }
        7 => {
            let n = 1 + rng.below(len.min(4096));
            let from = rng.below(len - n + 1);
            let to = rng.below(len - n + 1);
            b.copy_within(from..from + n, to);
        }
        8 => {
            let n = 1 + rng.below(len.min(64));
            let at = rng.below(len - n + 1);
            for x in &mut b[at..at + n] {
                *x = rng.next() as u8;
            }
        }
        _ => {
            if let Some((at, width)) = aim {
                let i = at + rng.below(width.max(1));
                if let Some(x) = b.get_mut(i) {
                    *x ^= 1 << rng.below(8);
                }
            }
        }
    }
}

/// A damaged copy of `seed`.
pub fn mutate(rng: &mut Rng, seed: &[u8], aims: &[(usize, usize)], t: &Target) -> Vec<u8> {
    let mut b = seed.to_vec();
    let n = 1 + [0, 0, 0, 0, 1, 1, 2, 3][rng.below(8)];
    for _ in 0..n {
        mutate_once(rng, &mut b, aims);
    }
    if let Some(fix) = t.fixup {
        if rng.below(2) == 0 {
            fix(&mut b);
        }
    }
    b
}

/// The largest single allocation a reader may make for an input of `len`
/// bytes: 256 MiB, or 64 times the input.
pub fn allocation_bound(len: usize) -> usize {
    (256 << 20).max(len.saturating_mul(64))
}

/// The corpus directory of `target`.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target)
}

/// The files of `target`'s corpus, sorted by name.
pub fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(corpus_dir(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, b)
        })
        .collect()
}

/// Runs one input; on a panic or an oversized allocation, saves the input
/// and fails naming the target, seed and case.
fn run_case(t: &Target, input: &[u8], seed: u64, case: u64, origin: &str) {
    alloc::reset(t.name, seed, case);
    let outcome = catch_unwind(AssertUnwindSafe(|| (t.run)(input)));
    let largest = alloc::largest();
    let bound = allocation_bound(input.len());
    let why = match outcome {
        Err(_) => "panicked".to_string(),
        Ok(()) if largest > bound => {
            format!(
                "allocated {largest} bytes at once (bound {bound} for {} bytes)",
                input.len()
            )
        }
        Ok(()) => return,
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("{}-{seed:x}-{case}.bin", t.name));
    let _ = std::fs::write(&file, input);
    panic!(
        "fuzz {}: {origin} {why}; input saved as {} (add it to {} once fixed); \
         rerun with KILN_FUZZ_SEED={seed:#x}",
        t.name,
        file.display(),
        corpus_dir(t.name).display()
    );
}

/// What a run did.
pub struct Summary {
    pub cases: u64,
    pub seed: u64,
    pub elapsed: Duration,
}

/// Runs every corpus file of `t`, then mutated cases: `cases` of them from
/// a fixed seed, or, with `KILN_FUZZ_SECS=N`, as many as fit in N seconds
/// from a seed taken from the clock (or `KILN_FUZZ_SEED`).
pub fn run(t: &Target, cases: u64) -> Summary {
    let start = Instant::now();
    let corpus = corpus(t.name);
    for (i, (path, input)) in corpus.iter().enumerate() {
        run_case(
            t,
            input,
            0,
            i as u64,
            &format!("corpus file {}", path.display()),
        );
    }
    let secs: Option<u64> = std::env::var("KILN_FUZZ_SECS")
        .ok()
        .map(|s| s.parse().expect("KILN_FUZZ_SECS is a number of seconds"));
    let seed = match std::env::var("KILN_FUZZ_SEED") {
        Ok(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16)
            .expect("KILN_FUZZ_SEED is a hexadecimal number"),
        Err(_) if secs.is_some() => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        // A fixed run for plain `cargo test`: the same cases every time.
        Err(_) => 0x6b69_6c6e ^ t.name.len() as u64,
    };
    let mut seeds = (t.seeds)();
    seeds.extend(corpus.into_iter().map(|(_, b)| b));
    let aims: Vec<Vec<(usize, usize)>> = seeds.iter().map(|s| (t.aims)(s)).collect();
    let mut rng = Rng::new(seed);
    let deadline = secs.map(|s| start + Duration::from_secs(s));
    let mut case = 0;
    loop {
        let done = match deadline {
            Some(d) => Instant::now() >= d,
            None => case >= cases,
        };
        if done {
            break;
        }
        let k = rng.below(seeds.len());
        let input = mutate(&mut rng, &seeds[k], &aims[k], t);
        run_case(t, &input, seed, case, &format!("case {case}"));
        case += 1;
    }
    let s = Summary {
        cases: case,
        seed,
        elapsed: start.elapsed(),
    };
    eprintln!(
        "fuzz {}: {} cases in {:.1} s ({:.0}/s), seed {:#x}",
        t.name,
        s.cases,
        s.elapsed.as_secs_f64(),
        s.cases as f64 / s.elapsed.as_secs_f64().max(1e-9),
        s.seed
    );
    s
}
