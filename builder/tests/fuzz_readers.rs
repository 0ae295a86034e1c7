//! Fuzz tests of every reader of untrusted bytes: GPT disks with their ESP
//! (FAT), UKI (PE) and ext4 root, `kiln diff`'s first-difference search,
//! ext4, FAT, PE/UKI, the dm-verity superblock, layer tars and blobs, image
//! manifests, a registry's OCI JSON and headers, dpkg's status file. No
//! input may make a reader panic, abort or allocate more at once than
//! [`engine::allocation_bound`] allows for its size.
//!
//! Plain `cargo test` runs each target on every file of its corpus
//! (`tests/fuzz-corpus/<target>/`: past crashes, kept as regressions) and
//! on a fixed set of mutated seeds. `KILN_FUZZ_SECS=N` makes it a random
//! run of N seconds per target instead, seeded from the clock (the seed is
//! printed; `KILN_FUZZ_SEED=HEX` replays one); `scripts/fuzz.sh` runs that.
//! A failing input is saved under the target directory's `fuzz-failures/`.
//!
//! Every seed is a valid input: each target's own seeds, and the corpus
//! files named `seed-*`, must be accepted by its reader
//! ([`seeds_are_valid_inputs`]). Beside the fuzz targets, the `roundtrip_*`
//! tests write generated inputs with kiln's writers, read them back with
//! kiln's readers and compare, and have outside tools judge a sample
//! (`fuzz/roundtrip.rs`).
//!
//! The engine is a seeded mutation loop of kiln's own (`fuzz/engine.rs`)
//! rather than libFuzzer or AFL, so it needs no nightly compiler and no
//! instrumentation, and runs wherever the tests run.

mod fuzz;

use std::io::Cursor;

use fuzz::engine::{self, Target};
use fuzz::{roundtrip, seeds, targets};
use kiln_format::gpt::{entry, header};

#[global_allocator]
static ALLOCATOR: fuzz::alloc::Tracking = fuzz::alloc::Tracking;

/// Runs `cases` mutated cases of the target called `name` (plain `cargo
/// test`: a few seconds in all, in a debug build).
fn fuzz(name: &str, cases: u64) {
    let t: &Target = targets::ALL
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"));
    let s = engine::run(t, cases);
    assert!(s.cases > 0, "fuzz {name}: no case ran");
}

/// One test per target, and the list of the targets they run.
macro_rules! fuzz_tests {
    ($($test:ident: $name:literal * $cases:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                fuzz($name, $cases);
            }
        )*
        const TESTED: &[&str] = &[$($name),*];
    };
}

// Disks are hashed partition by partition, slow in a debug build: fewer
// cases there.
fuzz_tests!(
    fuzz_disk: "disk" * 100,
    fuzz_firstdiff: "firstdiff" * 20,
    fuzz_ext4: "ext4" * 500,
    fuzz_fat: "fat" * 500,
    fuzz_uki: "uki" * 500,
    fuzz_verity: "verity" * 500,
    fuzz_tar: "tar" * 500,
    fuzz_layer: "layer" * 500,
    fuzz_manifest: "manifest" * 500,
    fuzz_oci: "oci" * 500,
    fuzz_dpkg_status: "dpkg_status" * 500,
    fuzz_kmod: "kmod" * 300,
    fuzz_modinfo: "modinfo" * 500,
);

/// Every target has a test, and every corpus directory a target.
#[test]
fn every_target_is_tested() {
    let names: Vec<&str> = targets::ALL.iter().map(|t| t.name).collect();
    assert_eq!(names, TESTED);
    let dirs = std::fs::read_dir(engine::corpus_dir("")).expect("corpus directory");
    for d in dirs {
        let d = d.expect("corpus entry").file_name();
        let d = d.to_string_lossy();
        assert!(names.contains(&d.as_ref()), "corpus {d} names no target");
    }
}

/// The seeds a target mutates are valid inputs, so that the damage is
/// what the reader meets: a seed it refuses tests nothing past its first
/// check.
#[test]
fn seeds_are_valid_inputs() {
    for t in targets::ALL {
        let corpus = engine::corpus(t.name).into_iter().filter(|(p, _)| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        });
        let made = (t.seeds)()
            .into_iter()
            .enumerate()
            .map(|(i, b)| (format!("seed {i}").into(), b));
        for (origin, b) in made.chain(corpus) {
            let origin: std::path::PathBuf = origin;
            if let Err(e) = targets::parses(t.name, &b) {
                panic!("fuzz {}: {} is refused: {e}", t.name, origin.display());
            }
        }
    }
}

/// The module object gcc made is read as `modinfo` reads it.
#[test]
fn gcc_module_seed_reads() {
    let (_, ko) = engine::corpus("modinfo")
        .into_iter()
        .find(|(p, _)| p.ends_with("seed-gcc-module.ko"))
        .expect("seed-gcc-module.ko in the corpus");
    let m = kiln::fs::kmod::modinfo("kiln-seed.ko", &ko).expect("modinfo");
    assert_eq!(m.name, "kiln_seed");
    assert_eq!(m.depends, ["dm_mod", "dm_bufio"]);
}

/// Runs `cases` round trips of one writer, each from its own generator.
fn roundtrips(f: fn(&mut engine::Rng, u64), what: &str, cases: u64) {
    for case in 0..cases {
        let mut rng = engine::Rng::new(0x0072_6f75_6e64 ^ ((what.len() as u64) << 40) ^ case);
        f(&mut rng, case);
    }
}

#[test]
fn roundtrip_ext4() {
    roundtrips(roundtrip::ext4_case, "ext4", 24);
}

#[test]
fn roundtrip_tar_and_layer() {
    roundtrips(roundtrip::tar_case, "tar", 24);
}

#[test]
fn roundtrip_fat() {
    roundtrips(roundtrip::fat_case, "fat", 12);
}

#[test]
fn roundtrip_gpt() {
    roundtrips(roundtrip::gpt_case, "gpt", 12);
}

#[test]
fn roundtrip_verity() {
    roundtrips(roundtrip::verity_case, "verity", 12);
}

#[test]
fn roundtrip_cpio() {
    roundtrips(roundtrip::cpio_case, "cpio", 12);
}

/// The crashes the issue reported, as corpus files: each is now an error
/// naming the structure and field (or, for 256-byte entries, which UEFI
/// allows, a table read as it is).
#[test]
fn reported_crashes_are_errors_naming_the_field() {
    let read = |name: &str| {
        let b = std::fs::read(engine::corpus_dir("disk").join(name)).expect("corpus file");
        kiln::read::disk::read_gpt_disk(Cursor::new(&b), b.len() as u64)
    };
    let parts = read("gpt-entry-size-256.bin")
        .expect("256-byte entries are valid")
        .partitions;
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].0.name, "data");
    for (name, want) in [
        (
            "gpt-entry-size-200.bin",
            "field `SizeOfPartitionEntry`: 200 is not 128 * 2^n",
        ),
        (
            "gpt-first-lba-after-last.bin",
            "field `EndingLBA`: 40 is before StartingLBA 60",
        ),
        (
            "gpt-huge-last-lba.bin",
            "field `EndingLBA`: 1099511627776 is outside the usable LBAs",
        ),
        (
            "gpt-huge-last-usable-lba.bin",
            "field `LastUsableLBA`: 1099511627776 is past",
        ),
    ] {
        let e = format!("{:#}", read(name).expect_err(name));
        assert!(e.contains(want), "{name}: {e}");
        assert!(
            e.contains(", and the backup GPT at LBA"),
            "{name}: both tables were tried: {e}"
        );
    }
    let disk = read("ext4-first-data-block-past-blocks-count.bin").expect("the GPT is fine");
    let root = &disk.partitions[0].1;
    let e = kiln::fs::ext4::read(root)
        .expect_err("s_first_data_block")
        .to_string();
    assert!(e.contains("superblock: field `s_first_data_block`"), "{e}");
}

/// The zstd bombs of the layer corpus, each 33 KB of zstd holding 1 GiB of
/// zeros (issue 22): as a file (`truncate -s 1G zeros; tar --format=gnu
/// -cf - zeros | zstd -19`) and as a PAX extended header of that size (a
/// hand-made header, then the zeros, through `zstd -19`). Both are refused
/// once they claim or give more than a blob that size may unpack to
/// ([`kiln::fs::layer::tar_limit`]), with no allocation anywhere near what
/// they hold.
#[test]
fn layer_bombs_are_refused_before_they_take_memory() {
    for (name, want) in [
        (
            "zstd-bomb-1g-file.bin",
            "more than the 16777216 the whole layer may unpack to",
        ),
        (
            "zstd-bomb-1g-pax-header.bin",
            "header declares 1073741824 bytes, more than the 16777216",
        ),
    ] {
        let b = std::fs::read(engine::corpus_dir("layer").join(name)).expect("corpus file");
        fuzz::alloc::reset("layer", 0, 0);
        let e = format!("{:#}", kiln::fs::layer::unpack(&b).expect_err(name));
        let largest = fuzz::alloc::largest();
        assert!(e.contains(want), "{name}: {e}");
        assert!(
            largest <= engine::allocation_bound(b.len()),
            "{name}: allocated {largest} bytes at once"
        );
    }
}

/// Rewrites the hand-made corpus files (`cargo test --test fuzz_readers --
/// --ignored regenerate_corpus`); crash inputs found by fuzzing are added
/// to the corpus by hand.
#[test]
#[ignore = "writes into the source tree"]
fn regenerate_corpus() {
    let write = |target: &str, name: &str, b: &[u8]| {
        let dir = engine::corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(name), b).expect("corpus file");
    };
    write("disk", "gpt-entry-size-256.bin", &seeds::tiny_disk(256));
    let both_headers = |b: &mut Vec<u8>, f: kiln_format::Span, v: u64| {
        let len = b.len();
        for at in [512, len - 512] {
            let bytes = v.to_le_bytes();
            b[at + f.offset..at + f.offset + f.len].copy_from_slice(&bytes[..f.len]);
        }
    };
    let both_entries = |b: &mut Vec<u8>, f: kiln_format::Span, v: u64| {
        let h = kiln_format::gpt::Header::decode(&b[512..1024]).expect("seed header");
        let backup = b.len() - 512 - h.entry_array_len() as usize;
        for at in [1024, backup] {
            b[at + f.offset..at + f.offset + 8].copy_from_slice(&v.to_le_bytes());
        }
    };
    let mut b = seeds::tiny_disk(128);
    both_headers(&mut b, header::SIZE_OF_PARTITION_ENTRY.span(), 200);
    targets::fix_gpt(&mut b);
    write("disk", "gpt-entry-size-200.bin", &b);
    let mut b = seeds::tiny_disk(128);
    both_entries(&mut b, entry::STARTING_LBA.span(), 60);
    both_entries(&mut b, entry::ENDING_LBA.span(), 40);
    targets::fix_gpt(&mut b);
    write("disk", "gpt-first-lba-after-last.bin", &b);
    let mut b = seeds::tiny_disk(128);
    both_entries(&mut b, entry::ENDING_LBA.span(), 1 << 40);
    targets::fix_gpt(&mut b);
    write("disk", "gpt-huge-last-lba.bin", &b);
    let mut b = seeds::tiny_disk(128);
    both_headers(&mut b, header::LAST_USABLE_LBA.span(), 1 << 40);
    targets::fix_gpt(&mut b);
    write("disk", "gpt-huge-last-usable-lba.bin", &b);
    let sb = seeds::ext4_superblock_only(2, 0x7fff_fff0);
    write("ext4", "first-data-block-past-blocks-count.bin", &sb);
    let root = kiln_format::gpt::ROOT_X86_64_TYPE;
    write(
        "disk",
        "ext4-first-data-block-past-blocks-count.bin",
        &seeds::disk(&[(root, "root-x86-64", &sb)], 128),
    );
}
