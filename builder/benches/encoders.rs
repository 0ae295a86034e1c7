//! Encoder benchmarks: kiln's layer packer ([`kiln::fs::layer::pack`]) against
//! `tar --sort=name -c | zstd -3`, and kiln's ext4 writer
//! ([`kiln::fs::ext4::build`]) against `mkfs.ext4 -d`, on the same tree.
//!
//! `scripts/bench.sh` prepares the trees and calls this through
//! `cargo bench -p kiln --bench encoders -- ARGS`:
//!
//! - `--dir DIR`: the tree extracted on disk (what the reference tools read);
//! - `--tar FILE`: read kiln's tree from this tar (`kiln::fs::layer::read_tar`);
//!   without it the tree is read from `--dir` with `kiln::input::files::read_dir_tree`;
//! - `--label NAME`: names the rows; `--reps N` (default 5): timed runs per
//!   side, after one untimed warm-up run; `--work DIR`: scratch space for the
//!   ext4 images (default: a temporary directory).
//!
//! Every comparison prints one tab-separated line on stdout,
//! `ROW <label> <kiln seconds> <reference seconds> <kiln/reference> <note>`,
//! times being medians. Ratios are printed, never asserted (STYLE.md): they
//! are targets to read, not tests. kiln starts from its in-memory tree while
//! the tools read the directory (from the page cache after the warm-up); the
//! time kiln takes to read the tree is given in the note.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kiln::fs::ext4::{self, Ext4Options};
use kiln::fs::tree::Tree;

/// SOURCE_DATE_EPOCH for trees read from a directory and for the ext4 image
/// (the hello recipe's value, so both trees get the same times).
const SDE: i64 = 1_700_000_000;
/// Free space kiln leaves in the ext4 image, as the hello recipe asks.
const MARGIN_PERCENT: u32 = 10;
/// ext4 block size, the only one kiln writes.
const BLOCK: usize = 4096;

struct Args {
    dir: PathBuf,
    tar: Option<PathBuf>,
    label: String,
    reps: usize,
    work: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut dir = None;
    let mut tar = None;
    let mut label = String::from("tree");
    let mut reps = 5;
    let mut work = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--tar" => tar = Some(PathBuf::from(value()?)),
            "--label" => label = value()?,
            "--reps" => reps = value()?.parse().context("--reps")?,
            "--work" => work = Some(PathBuf::from(value()?)),
            // cargo bench passes --bench to harness-less targets.
            "--bench" => {}
            other => bail!("unknown argument {other:?} (see the header of benches/encoders.rs)"),
        }
    }
    if reps == 0 {
        bail!("--reps must be at least 1");
    }
    Ok(Args {
        dir: dir.context("--dir DIR is required")?,
        tar,
        label,
        reps,
        work,
    })
}

/// Median wall time of `reps` runs of `f`, after one untimed warm-up run.
fn median<T>(reps: usize, mut f: impl FnMut() -> Result<T>) -> Result<Duration> {
    std::hint::black_box(f()?);
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        std::hint::black_box(f()?);
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Run an external command, failing with its stderr; returns its stdout.
fn run(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

fn row(label: &str, what: &str, kiln: Duration, reference: Duration, note: &str) {
    let (k, r) = (kiln.as_secs_f64(), reference.as_secs_f64());
    println!("ROW\t{label}: {what}\t{k:.4}\t{r:.4}\t{:.2}\t{note}", k / r);
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Write an image the way a disk file holds it: all-zero blocks as holes.
fn write_sparse(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    for (i, block) in bytes.chunks(BLOCK).enumerate() {
        if block.iter().any(|&b| b != 0) {
            f.seek(SeekFrom::Start((i * BLOCK) as u64))?;
            f.write_all(block)?;
        }
    }
    f.set_len(bytes.len() as u64)?;
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let label = args.label.as_str();
    let scratch;
    let work = match &args.work {
        Some(w) => w.clone(),
        None => {
            scratch = tempfile::tempdir()?;
            scratch.path().to_path_buf()
        }
    };

    let t = Instant::now();
    let tree: Tree = match &args.tar {
        Some(tar) => {
            let f =
                std::fs::File::open(tar).with_context(|| format!("opening {}", tar.display()))?;
            kiln::fs::layer::read_tar(std::io::BufReader::new(f), i64::MAX)
                .with_context(|| format!("reading {}", tar.display()))?
        }
        None => kiln::input::files::read_dir_tree(&args.dir, SDE)
            .with_context(|| format!("reading {}", args.dir.display()))?,
    };
    let read_time = t.elapsed();
    eprintln!(
        "bench {label}: {} entries, {:.1} MiB of file data, read in {:.2} s",
        tree.len(),
        mib(tree.content_bytes()),
        read_time.as_secs_f64()
    );

    // (a) layer packing.
    let packed = kiln::fs::layer::pack(&tree)?;
    let kiln_pack = median(args.reps, || kiln::fs::layer::pack(&tree))?;
    let tar_zstd = |dir: &Path| {
        run(Command::new("sh")
            .args([
                "-c",
                "set -e; tar --sort=name -cf - -C \"$1\" . | zstd -3 -q -c",
                "sh",
            ])
            .arg(dir))
    };
    let ref_blob = tar_zstd(&args.dir)?;
    let ref_pack = median(args.reps, || tar_zstd(&args.dir))?;
    row(
        label,
        "layer pack vs tar|zstd -3",
        kiln_pack,
        ref_pack,
        &format!(
            "blob {:.1} MiB vs {:.1} MiB; tar {:.1} MiB; kiln's tree read {:.2} s not included",
            mib(packed.blob.len() as u64),
            mib(ref_blob.len() as u64),
            mib(packed.tar_size),
            read_time.as_secs_f64()
        ),
    );

    // (b) ext4: kiln sizes the image; mkfs.ext4 gets the same size.
    let opts = Ext4Options {
        uuid: *b"kiln-bench-uuid!",
        hash_seed: *b"kiln-bench-seed!",
        label: "root".into(),
        timestamp: SDE,
        margin_percent: MARGIN_PERCENT,
        extra_bytes: 0,
    };
    let image = ext4::build(&tree, &opts).context("kiln ext4 build")?;
    let size = image.bytes.len() as u64;
    let kiln_ext4 = median(args.reps, || Ok(ext4::build(&tree, &opts)?))?;
    let kiln_img = work.join(format!("{label}-kiln.ext4"));
    let kiln_ext4_written = median(args.reps, || {
        let img = ext4::build(&tree, &opts)?;
        write_sparse(&kiln_img, &img.bytes)
    })?;
    let mkfs_img = work.join(format!("{label}-mkfs.ext4"));
    let mkfs = || -> Result<()> {
        // A fresh file each run, as kiln's writer starts from nothing too.
        match std::fs::remove_file(&mkfs_img) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&args.dir)
            .args(["-b", "4096", "-O", "^has_journal"])
            .arg(&mkfs_img)
            .arg(format!("{}k", size / 1024)))
        .with_context(|| format!("mkfs.ext4 -d {} into {} bytes", args.dir.display(), size))?;
        Ok(())
    };
    let mkfs_time = median(args.reps, mkfs)?;
    let note = format!(
        "{:.1} MiB image, {} of {} blocks used by kiln",
        mib(size),
        image.used_blocks,
        image.blocks
    );
    row(
        label,
        "ext4 build vs mkfs.ext4 -d",
        kiln_ext4,
        mkfs_time,
        &note,
    );
    row(
        label,
        "ext4 build+write vs mkfs.ext4 -d",
        kiln_ext4_written,
        mkfs_time,
        "kiln's image written to a sparse file, as mkfs.ext4 writes its own",
    );
    Ok(())
}
