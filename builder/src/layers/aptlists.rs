//! apt's package indexes kept between apt runs (`STORE/apt-lists/`), so
//! that a package layer's `apt-get update` does not fetch again the
//! `Packages` files the base layer's mmdebstrap just fetched
//! (ARCHITECTURE.md "Store layout").
//!
//! Nothing kept here is trusted. An index file is kept and handed to apt
//! only while its sha256 is the one its `InRelease` (or `Release`) file
//! lists for it, and the Release files themselves go to apt dated
//! 1970-01-01: apt then always fetches the archive's current Release file
//! and checks its signature, and skips the download of an index only where
//! the current Release file lists the same hashes as the old one (apt's
//! own rule). A stale, damaged or forged file costs a download, never a
//! wrong index.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};

/// apt's list file names for Release files: `HOST_PATH_dists_SUITE_InRelease`.
const RELEASE_SUFFIXES: &[&str] = &["_InRelease", "_Release"];

/// An apt lists file: its name in `/var/lib/apt/lists` and its bytes.
pub type ListFile<'a> = (&'a str, &'a [u8]);

/// The SHA256 section of a Release file: path in the suite
/// (`main/binary-amd64/Packages`) → lowercase hex.
fn release_hashes(release: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut in_sha256 = false;
    for line in release.lines() {
        if let Some(entry) = line.strip_prefix(' ').filter(|_| in_sha256) {
            let mut f = entry.split_whitespace();
            if let (Some(hash), Some(_size), Some(path), None) =
                (f.next(), f.next(), f.next(), f.next())
            {
                if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    out.insert(path.to_string(), hash.to_ascii_lowercase());
                }
            }
        } else {
            in_sha256 = line.trim_end() == "SHA256:";
        }
    }
    out
}

/// The index files among `files` whose sha256 is the one a Release file
/// among them lists, and those Release files: what may be kept and reused.
/// An index file `PREFIX_main_binary-amd64_Packages` belongs to the Release
/// file `PREFIX_InRelease`, as `main/binary-amd64/Packages` (apt's naming).
pub fn verified<'a>(files: &[ListFile<'a>]) -> Vec<ListFile<'a>> {
    let mut out = Vec::new();
    for &(name, data) in files {
        let Some(prefix) = RELEASE_SUFFIXES
            .iter()
            .find_map(|s| name.strip_suffix(s).map(|p| format!("{p}_")))
        else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(data) else {
            continue;
        };
        let hashes = release_hashes(text);
        let mut indexes = Vec::new();
        for &(other, bytes) in files {
            let Some(rest) = other.strip_prefix(&prefix) else {
                continue;
            };
            if RELEASE_SUFFIXES.iter().any(|s| other.ends_with(s)) {
                continue;
            }
            let path = rest.replace('_', "/");
            if hashes.get(&path).map(String::as_str)
                == Some(crate::util::digest::Digest::of(bytes).hex().as_str())
            {
                indexes.push((other, bytes));
            }
        }
        if !indexes.is_empty() {
            out.push((name, data));
            out.extend(indexes);
        }
    }
    out
}

/// Keep the verified files among `files` in `dir` (each written whole under
/// a temporary name in `tmp`, then renamed: a build beside this one sees
/// the old file or the new one).
pub fn save(files: &[ListFile<'_>], dir: &Path, tmp: &Path) -> Result<usize> {
    let keep = verified(files);
    if keep.is_empty() {
        return Ok(0);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut saved = 0;
    for (name, data) in keep {
        let dest = dir.join(name);
        if std::fs::read(&dest).is_ok_and(|old| old == data) {
            continue;
        }
        crate::store::write_atomic(tmp, &dest, data)?;
        saved += 1;
    }
    Ok(saved)
}

/// [`save`] of the apt lists directory `lists` (after `apt-get update`).
pub fn save_dir(lists: &Path, dir: &Path, tmp: &Path) -> Result<usize> {
    let files = read_dir_files(lists)?;
    let refs: Vec<ListFile<'_>> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    save(&refs, dir, tmp)
}

/// Put the files kept in `dir` that still verify into the apt lists
/// directory `lists`, the Release files dated 1970-01-01 so that apt fetches
/// and checks the archive's current ones. Returns how many were put there.
pub fn seed(dir: &Path, lists: &Path) -> Result<usize> {
    let files = match read_dir_files(dir) {
        Ok(f) => f,
        Err(_) if !dir.exists() => return Ok(0),
        Err(e) => return Err(e),
    };
    let refs: Vec<ListFile<'_>> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let keep = verified(&refs);
    for &(name, data) in &keep {
        let path = lists.join(name);
        std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
        if RELEASE_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(SystemTime::UNIX_EPOCH))
                .with_context(|| format!("dating {}", path.display()))?;
        }
    }
    Ok(keep.len())
}

/// The regular files directly in `dir` whose names apt could have written
/// (no `lock`, no `partial/` or `auxfiles/`), by name.
fn read_dir_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name == "lock" || name.starts_with('.') || !e.file_type()?.is_file() {
            continue;
        }
        let data =
            std::fs::read(e.path()).with_context(|| format!("reading {}", e.path().display()))?;
        out.push((name, data));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(data: &[u8]) -> String {
        crate::util::digest::Digest::of(data).hex()
    }

    fn release(entries: &[(&str, &[u8])]) -> String {
        let mut r = String::from(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\nSuite: trixie\nMD5Sum:\n 0123 5 main/binary-amd64/Packages\nSHA256:\n",
        );
        for (path, data) in entries {
            r.push_str(&format!(" {} {:>9} {path}\n", hex(data), data.len()));
        }
        r.push_str("-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----\n");
        r
    }

    const P: &str = "deb.debian.org_debian_dists_trixie_";

    #[test]
    fn only_indexes_their_release_file_vouches_for_are_kept() {
        let packages = b"Package: a\n\nPackage: b\n".as_slice();
        let rel = release(&[
            ("main/binary-amd64/Packages", packages),
            ("main/i18n/Translation-en", b"x"),
        ]);
        let name_rel = format!("{P}InRelease");
        let name_pk = format!("{P}main_binary-amd64_Packages");
        let name_tr = format!("{P}main_i18n_Translation-en");
        let name_other = "security.debian.org_dists_trixie-security_main_binary-amd64_Packages";
        let files = [
            (name_rel.as_str(), rel.as_bytes()),
            (name_pk.as_str(), packages),
            // Listed, but not these bytes.
            (name_tr.as_str(), b"forged".as_slice()),
            // No Release file of its own among the files.
            (name_other, packages),
        ];
        let names: Vec<&str> = verified(&files).iter().map(|(n, _)| *n).collect();
        assert_eq!(names, [name_rel.as_str(), name_pk.as_str()]);
        // A Release file that vouches for nothing here is not kept either.
        assert!(verified(&[(name_rel.as_str(), rel.as_bytes())]).is_empty());
    }

    #[test]
    fn save_then_seed_round_trips_and_dates_the_release_file() {
        let dir = tempfile::tempdir().unwrap();
        let (store, tmp, lists) = (
            dir.path().join("kept"),
            dir.path().join("tmp"),
            dir.path().join("lists"),
        );
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::create_dir_all(&lists).unwrap();
        let packages = b"Package: a\n".as_slice();
        let rel = release(&[("main/binary-amd64/Packages", packages)]);
        let name_rel = format!("{P}InRelease");
        let name_pk = format!("{P}main_binary-amd64_Packages");
        let files = [
            (name_rel.as_str(), rel.as_bytes()),
            (name_pk.as_str(), packages),
        ];
        assert_eq!(save(&files, &store, &tmp).unwrap(), 2);
        // The same bytes again: nothing is rewritten.
        assert_eq!(save(&files, &store, &tmp).unwrap(), 0);
        // Damage the kept index: it is not handed to apt, and its Release
        // file (vouching for nothing left) is not either.
        std::fs::write(store.join(&name_pk), b"Package: evil\n").unwrap();
        assert_eq!(seed(&store, &lists).unwrap(), 0);
        std::fs::write(store.join(&name_pk), packages).unwrap();
        assert_eq!(seed(&store, &lists).unwrap(), 2);
        assert_eq!(std::fs::read(lists.join(&name_pk)).unwrap(), packages);
        let dated = std::fs::metadata(lists.join(&name_rel))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(dated, SystemTime::UNIX_EPOCH);
        // Nothing kept yet is not an error.
        assert_eq!(seed(&dir.path().join("none"), &lists).unwrap(), 0);
    }
}
