//! How much mmdebstrap or apt has downloaded so far, for the progress line
//! of a layer build ([`crate::util::progress::Transfer`]). apt reports
//! nothing kiln could read while it runs, so the directories it downloads
//! into are looked at four times a second: `.deb` files that appear in an
//! archive directory, and whatever grows in a `partial/` directory (apt
//! downloads there, then moves the file into place).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::progress::Transfer;

/// How often the directories are looked at.
const POLL: Duration = Duration::from_millis(250);

/// A directory apt downloads into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// An archive directory (`/var/cache/apt/archives`): new `.deb` files in
    /// it and everything in its `partial/`.
    Archive(PathBuf),
    /// A directory of partial downloads (`/var/lib/apt/lists/partial`).
    Partial(PathBuf),
}

/// Watches download directories on a thread of its own until dropped.
#[derive(Debug)]
pub struct Downloads {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Downloads {
    /// Start watching. `dirs` is asked again at every look, since some
    /// appear only once the tool has started (mmdebstrap's root); `.deb`
    /// files already in an archive directory now, or named in `ignore`
    /// (copied in, not downloaded), do not count.
    pub fn watch(
        dirs: impl Fn() -> Vec<Watched> + Send + 'static,
        ignore: BTreeSet<String>,
        transfer: Transfer,
    ) -> Downloads {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("kiln-downloads".into())
            .spawn(move || {
                let mut count = Count::new(ignore);
                for d in dirs() {
                    count.skip_present(&d);
                }
                // From the first byte seen to the last: the download's rate.
                let (mut first, mut shown) = (None::<Instant>, 0);
                while !stopping.load(Ordering::Relaxed) {
                    for d in dirs() {
                        count.look(&d);
                    }
                    let total = count.total();
                    if total > shown {
                        let now = Instant::now();
                        let since = *first.get_or_insert(now - POLL);
                        shown = total;
                        transfer.show(total, now - since);
                    }
                    std::thread::sleep(POLL);
                }
            })
            .ok();
        Downloads { stop, thread }
    }
}

impl Drop for Downloads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

/// The largest size each download was seen at, by file name.
#[derive(Debug, Default)]
struct Count {
    ignore: BTreeSet<String>,
    seen: BTreeMap<String, u64>,
}

impl Count {
    fn new(ignore: BTreeSet<String>) -> Self {
        Count {
            ignore,
            seen: BTreeMap::new(),
        }
    }

    fn skip_present(&mut self, d: &Watched) {
        if let Watched::Archive(dir) = d {
            self.ignore.extend(files(dir).into_iter().map(|(n, _)| n));
        }
    }

    fn look(&mut self, d: &Watched) {
        let mut note = |name: String, size: u64| {
            if !self.ignore.contains(&name) {
                let s = self.seen.entry(name).or_default();
                *s = (*s).max(size);
            }
        };
        match d {
            Watched::Archive(dir) => {
                for (name, size) in files(dir) {
                    if name.ends_with(".deb") {
                        note(name, size);
                    }
                }
                for (name, size) in files(&dir.join("partial")) {
                    note(name, size);
                }
            }
            Watched::Partial(dir) => {
                // What apt fetches: Release files and compressed indexes.
                // It decompresses an index in partial/ too, under the
                // index's own name, which is no download.
                for (name, size) in files(dir) {
                    if is_fetched_list(&name) {
                        note(format!("partial/{name}"), size);
                    }
                }
            }
        }
    }

    fn total(&self) -> u64 {
        self.seen.values().sum()
    }
}

/// Whether apt fetches a lists file of this name as it is (rather than
/// making it by decompressing another).
fn is_fetched_list(name: &str) -> bool {
    const FETCHED: &[&str] = &[
        "Release",
        "Release.gpg",
        ".xz",
        ".gz",
        ".bz2",
        ".lzma",
        ".zst",
        ".lz4",
    ];
    FETCHED.iter().any(|s| name.ends_with(s))
}

/// The regular files directly in `dir` with their sizes (none when it is
/// not there, or not yet).
fn files(dir: &Path) -> Vec<(String, u64)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let md = e.metadata().ok().filter(|m| m.is_file())?;
            Some((e.file_name().to_str()?.to_string(), md.len()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_new_debs_and_partial_downloads_once() {
        let dir = tempfile::tempdir().unwrap();
        let archives = dir.path().join("archives");
        std::fs::create_dir_all(archives.join("partial")).unwrap();
        std::fs::write(archives.join("old_1_all.deb"), [0u8; 100]).unwrap();
        std::fs::write(archives.join("lock"), b"").unwrap();
        let d = Watched::Archive(archives.clone());
        let mut c = Count::new(["seeded_1_all.deb".to_string()].into());
        c.skip_present(&d);
        std::fs::write(archives.join("seeded_1_all.deb"), [0u8; 7]).unwrap();
        // Half downloaded, then moved into place whole.
        std::fs::write(archives.join("partial/new_1_all.deb"), [0u8; 10]).unwrap();
        c.look(&d);
        assert_eq!(c.total(), 10);
        std::fs::rename(
            archives.join("partial/new_1_all.deb"),
            archives.join("new_1_all.deb"),
        )
        .unwrap();
        std::fs::write(archives.join("new_1_all.deb"), [0u8; 20]).unwrap();
        c.look(&d);
        assert_eq!(c.total(), 20);
        // An index downloaded compressed, then gone from partial/.
        let lists = dir.path().join("partial");
        std::fs::create_dir_all(&lists).unwrap();
        std::fs::write(lists.join("x_Packages.xz"), [0u8; 5]).unwrap();
        c.look(&Watched::Partial(lists.clone()));
        std::fs::remove_file(lists.join("x_Packages.xz")).unwrap();
        // Decompressed in partial/: no download.
        std::fs::write(lists.join("x_Packages"), [0u8; 50]).unwrap();
        c.look(&Watched::Partial(lists));
        assert_eq!(c.total(), 25);
        // A directory that is not there yet counts nothing.
        c.look(&Watched::Archive(dir.path().join("later")));
        assert_eq!(c.total(), 25);
    }
}
