//! `kiln gc` and `kiln fsck` for people. gc prints one line per category
//! (entries, bytes) and the total; fsck prints each problem as
//! `PATH: what is wrong`, what `--repair` removed, and a summary line.

use std::io::{self, Write};

use crate::upkeep::fsck::FsckReport;
use crate::upkeep::gc::GcReport;
use crate::util::printable::PrintableExt as _;

use super::human;

/// `n` and a noun, plural when `n` is not 1 (`1 problem`, `3 memo entries`).
pub fn count(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else if let Some(stem) = one
        .strip_suffix('y')
        .filter(|s| !s.ends_with(['a', 'e', 'o', 'u']))
    {
        format!("{n} {stem}ies")
    } else {
        format!("{n} {one}s")
    }
}

/// `kiln gc`: each category's entries and bytes, the total, what stays,
/// and any entry that could not be removed.
pub fn gc(mut out: impl Write, r: &GcReport) -> io::Result<()> {
    let dry = if r.dry_run {
        " (dry run: nothing removed)"
    } else {
        ""
    };
    writeln!(out, "store {}{dry}", r.store.display().printable())?;
    for c in &r.removed {
        writeln!(
            out,
            "  {:<10} {:>6} {:>10}",
            c.category.name(),
            c.count,
            human(c.bytes)
        )?;
    }
    let (removed, freed, kept) = if r.dry_run {
        ("would remove", "freeing", "would keep")
    } else {
        ("removed", "freed", "kept")
    };
    writeln!(
        out,
        "{removed} {}, {freed} {}",
        count(r.count, "entry"),
        human(r.bytes)
    )?;
    writeln!(
        out,
        "{kept} {}, {}, {}",
        count(r.kept.builds, "build"),
        count(r.kept.images, "image"),
        count(r.kept.blobs, "blob")
    )?;
    for f in &r.failed {
        writeln!(
            out,
            "cannot remove {}: {}",
            f.path.display().printable(),
            f.error.printable()
        )?;
    }
    Ok(())
}

/// `kiln fsck`: what `--repair` removed, each remaining problem, and a
/// summary of what was checked.
pub fn fsck(mut out: impl Write, r: &FsckReport) -> io::Result<()> {
    for p in &r.repaired {
        writeln!(
            out,
            "removed {} ({})",
            p.path.display().printable(),
            p.problem.printable()
        )?;
    }
    for p in &r.problems {
        writeln!(
            out,
            "{}: {}",
            p.path.display().printable(),
            p.problem.printable()
        )?;
    }
    let c = &r.checked;
    let not_repairable = r.problems.iter().filter(|p| !p.repairable).count();
    let state = if r.problems.is_empty() {
        "healthy".to_string()
    } else if not_repairable == 0 {
        count(r.problems.len(), "problem")
    } else {
        format!(
            "{} ({not_repairable} not repairable)",
            count(r.problems.len(), "problem")
        )
    };
    writeln!(
        out,
        "store {}: {state}; checked {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}",
        r.store.display().printable(),
        count(c.blobs, "blob"),
        count(c.keys, "key"),
        count(c.manifests, "manifest"),
        count(c.images, "cached image"),
        count(c.builds, "build"),
        count(c.outputs, "output stamp"),
        count(c.memo, "memo entry"),
        count(c.checked, "blob check stamp"),
        count(c.verdicts, "verdict"),
        count(c.debs, ".deb"),
        count(c.releases, "release entry"),
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::tests::text;
    use super::*;
    use crate::upkeep::fsck::{Checked, Problem};
    use crate::upkeep::gc::{Category, Failure, Kept, Removed};

    #[test]
    fn count_table() {
        for (n, one, want) in [
            (0, "problem", "0 problems"),
            (1, "problem", "1 problem"),
            (2, "memo entry", "2 memo entries"),
            (1, "memo entry", "1 memo entry"),
            (3, ".deb", "3 .debs"),
            (2, "key", "2 keys"),
        ] {
            assert_eq!(count(n, one), want);
        }
    }

    fn gc_report(dry_run: bool, failed: Vec<Failure>) -> GcReport {
        let removed: Vec<Removed> = Category::ALL
            .iter()
            .map(|&category| {
                let (count, bytes) = match category {
                    Category::Scratch => (23, 3 << 30),
                    Category::Blobs => (1, 4096),
                    _ => (0, 0),
                };
                Removed {
                    category,
                    count,
                    bytes,
                    paths: Vec::new(),
                }
            })
            .collect();
        GcReport {
            store: PathBuf::from("/var/cache/kiln"),
            dry_run,
            removed,
            count: 24,
            bytes: (3 << 30) + 4096,
            kept: Kept {
                builds: 1,
                images: 2,
                blobs: 5,
            },
            failed,
        }
    }

    #[test]
    fn gc_table() {
        let categories = "  scratch        23    3.0 GiB\n\
                          \x20 outputs         0        0 B\n\
                          \x20 builds          0        0 B\n\
                          \x20 manifests       0        0 B\n\
                          \x20 images          0        0 B\n\
                          \x20 keys            0        0 B\n\
                          \x20 memo            0        0 B\n\
                          \x20 blobs           1    4.0 KiB\n\
                          \x20 checked         0        0 B\n\
                          \x20 debs            0        0 B\n";
        let failed = vec![Failure {
            path: PathBuf::from("/out/.kiln-tmp-1-ab"),
            error: "/out/.kiln-tmp-1-ab/proc is a mount point; left alone".into(),
        }];
        for (r, want) in [
            (
                gc_report(false, Vec::new()),
                format!(
                    "store /var/cache/kiln\n{categories}\
                     removed 24 entries, freed 3.0 GiB\n\
                     kept 1 build, 2 images, 5 blobs\n"
                ),
            ),
            (
                gc_report(true, failed),
                format!(
                    "store /var/cache/kiln (dry run: nothing removed)\n{categories}\
                     would remove 24 entries, freeing 3.0 GiB\n\
                     would keep 1 build, 2 images, 5 blobs\n\
                     cannot remove /out/.kiln-tmp-1-ab: /out/.kiln-tmp-1-ab/proc is a mount point; left alone\n"
                ),
            ),
        ] {
            assert_eq!(text(|o| gc(o, &r)), want);
        }
    }

    #[test]
    fn fsck_table() {
        let checked = Checked {
            blobs: 3,
            keys: 1,
            manifests: 1,
            images: 1,
            builds: 1,
            outputs: 0,
            memo: 1,
            checked: 2,
            verdicts: 2,
            debs: 0,
            releases: 1,
        };
        let problem = |path: &str, problem: &str, repairable| Problem {
            path: PathBuf::from(path),
            problem: problem.into(),
            repairable,
        };
        let blob = problem(
            "/s/blobs/sha256/ab",
            "is not named by a sha256 digest",
            true,
        );
        let release = problem(
            "/s/releases/hello/1.0/hello-1.0.raw",
            "has no signature (hello-1.0.raw.minisig)",
            false,
        );
        let summary = "checked 3 blobs, 1 key, 1 manifest, 1 cached image, 1 build, \
                       0 output stamps, 1 memo entry, 2 blob check stamps, 2 verdicts, 0 .debs, \
                       1 release entry\n";
        let report = |problems: Vec<Problem>, repaired: Vec<Problem>| FsckReport {
            store: PathBuf::from("/s"),
            checked: checked.clone(),
            problems,
            repaired,
        };
        for (r, want) in [
            (
                report(Vec::new(), Vec::new()),
                format!("store /s: healthy; {summary}"),
            ),
            (
                report(vec![blob.clone()], Vec::new()),
                format!(
                    "/s/blobs/sha256/ab: is not named by a sha256 digest\n\
                     store /s: 1 problem; {summary}"
                ),
            ),
            (
                report(vec![release], vec![blob]),
                format!(
                    "removed /s/blobs/sha256/ab (is not named by a sha256 digest)\n\
                     /s/releases/hello/1.0/hello-1.0.raw: has no signature (hello-1.0.raw.minisig)\n\
                     store /s: 1 problem (1 not repairable); {summary}"
                ),
            ),
        ] {
            assert_eq!(text(|o| fsck(o, &r)), want);
        }
    }
}
