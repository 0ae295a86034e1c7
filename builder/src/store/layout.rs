//! The store's on-disk layout, declared once (ARCHITECTURE.md "Store
//! layout"): every directory of the store and how its entries are named.
//! Whatever writes the store (builds, `kiln test`, `kiln publish`) and
//! whatever reads it back (`kiln gc`, `kiln fsck`, `kiln ls`) takes its
//! paths from here.
//!
//! ```text
//! STORE/
//!   blobs/sha256/<hex>       Area::Blobs     layer blobs, named by their sha256
//!   keys/<hex>.json          Area::Keys      layer key -> blob digest
//!   images/<hex>.json        Area::Images    image manifests by image digest
//!   images/<hex>.raw                         cached image files
//!   builds/<hex>.json        Area::Builds    image key -> image digest
//!   outputs/<hex>            Area::Outputs   stamps of image files written to -o
//!   memo/<hex>               Area::Memo      digest of a memoised output blob
//!   checked/<hex>            Area::Checked   a blob file's stamp when it last checked out
//!   verdicts/<hex>/<n>.json  Area::Verdicts  boot-test verdicts per image digest
//!   releases/                Area::Releases  the default release store
//!   debs/NAME_VER_ARCH.deb   Area::Debs      download cache of Debian packages
//!   apt-lists/…              Area::AptLists  apt's indexes between runs
//!   firmware/ovmf-vars-<k>.fd Area::Firmware OVMF variables prepared once
//!   tmp/.kiln-tmp-<pid>-<r>/ Area::Tmp       each running kiln's scratch (+ .lock)
//!   lock                     [`LOCK`]        flock(2) held while a build writes
//! ```
//!
//! kiln writes no symbolic link into its store and follows none it finds
//! there: the store's root may be a link (it is where the user put the
//! store), nothing below it is. [`Layout::list`] opens each directory
//! component by component without following a link (`util::walk`) and
//! names the link it meets instead ([`WalkError::Link`]); [`Layout::check`]
//! tells, before a store path is used, that no directory on the way to it
//! is one.

use std::path::{Path, PathBuf};

use crate::util::digest::Digest;
use crate::util::walk::{self, DirEntry, WalkError};

/// The store's write lock, `STORE/lock`.
pub const LOCK: &str = "lock";

/// The extension of records kept as JSON (`keys/`, `images/`, `builds/`, `verdicts/`).
pub const JSON: &str = ".json";

/// The extension of cached image files (`images/<hex>.raw`).
pub const RAW: &str = ".raw";

/// One directory of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Area {
    /// `blobs/sha256/<hex>`.
    Blobs,
    /// `keys/<hex>.json`.
    Keys,
    /// `images/<hex>.json` and `images/<hex>.raw`.
    Images,
    /// `builds/<hex>.json`.
    Builds,
    /// `outputs/<hex>`.
    Outputs,
    /// `memo/<hex>`.
    Memo,
    /// `checked/<hex>`.
    Checked,
    /// `verdicts/<hex>/<n>.json`.
    Verdicts,
    /// `releases/`: a release store of its own layout (`publish::release`).
    Releases,
    /// `debs/NAME_VER_ARCH.deb`.
    Debs,
    /// `apt-lists/`.
    AptLists,
    /// `firmware/`.
    Firmware,
    /// `tmp/`.
    Tmp,
}

/// How the entries of an [`Area`] are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `<hex>`: the 64 hex digits of a digest.
    Hex,
    /// `<hex>.json`.
    HexJson,
    /// `<hex>.json` (manifest) and `<hex>.raw` (image file).
    Image,
    /// `<hex>/` directories of `<n>.json` files.
    HexDir,
    /// Named by what they cache or hold (the area's owner knows).
    Own,
}

impl Area {
    /// Every directory of the store.
    pub const ALL: [Area; 13] = [
        Area::Blobs,
        Area::Keys,
        Area::Images,
        Area::Builds,
        Area::Outputs,
        Area::Memo,
        Area::Checked,
        Area::Verdicts,
        Area::Releases,
        Area::Debs,
        Area::AptLists,
        Area::Firmware,
        Area::Tmp,
    ];

    /// Made by [`crate::store::Store::init`]; the others when first written.
    pub const MADE_AT_INIT: [Area; 5] = [
        Area::Blobs,
        Area::Keys,
        Area::Images,
        Area::Builds,
        Area::Tmp,
    ];

    /// Its path below the store's root.
    pub fn dir(self) -> &'static str {
        match self {
            Area::Blobs => "blobs/sha256",
            Area::Keys => "keys",
            Area::Images => "images",
            Area::Builds => "builds",
            Area::Outputs => "outputs",
            Area::Memo => "memo",
            Area::Checked => "checked",
            Area::Verdicts => "verdicts",
            Area::Releases => "releases",
            Area::Debs => "debs",
            Area::AptLists => "apt-lists",
            Area::Firmware => "firmware",
            Area::Tmp => "tmp",
        }
    }

    /// How its entries are named.
    pub fn naming(self) -> Naming {
        match self {
            Area::Blobs | Area::Outputs | Area::Memo | Area::Checked => Naming::Hex,
            Area::Keys | Area::Builds => Naming::HexJson,
            Area::Images => Naming::Image,
            Area::Verdicts => Naming::HexDir,
            Area::Releases | Area::Debs | Area::AptLists | Area::Firmware | Area::Tmp => {
                Naming::Own
            }
        }
    }

    /// The name of `d`'s entry (for [`Area::Images`], its manifest's).
    pub fn entry_name(self, d: &Digest) -> String {
        match self.naming() {
            Naming::HexJson | Naming::Image => format!("{}{JSON}", d.hex()),
            Naming::Hex | Naming::HexDir | Naming::Own => d.hex(),
        }
    }

    /// The digest an entry of this area is named by, when it is named as
    /// [`Area::entry_name`] names it (exactly 64 lower-case hex digits).
    pub fn digest_of(self, name: &str) -> Option<Digest> {
        let hex = match self.naming() {
            Naming::HexJson | Naming::Image => name.strip_suffix(JSON)?,
            Naming::Hex | Naming::HexDir | Naming::Own => name,
        };
        hex_name(hex)
    }
}

/// The digest a store file is named by: exactly 64 lowercase hex digits.
pub fn hex_name(name: &str) -> Option<Digest> {
    Digest::parse(name).ok().filter(|d| d.hex() == name)
}

/// The digest of a cached image file's name, `<hex>.raw`.
pub fn image_file_digest(name: &str) -> Option<Digest> {
    hex_name(name.strip_suffix(RAW)?)
}

/// A store's layout at its root.
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    root: &'a Path,
}

impl<'a> Layout<'a> {
    /// The layout of the store at `root`.
    pub fn new(root: &'a Path) -> Self {
        Layout { root }
    }

    /// `STORE/<area>`.
    pub fn dir(&self, area: Area) -> PathBuf {
        self.root.join(area.dir())
    }

    /// `STORE/<area>/<entry of d>`.
    pub fn entry(&self, area: Area, d: &Digest) -> PathBuf {
        self.dir(area).join(area.entry_name(d))
    }

    /// `STORE/images/<hex>.raw`.
    pub fn image_file(&self, d: &Digest) -> PathBuf {
        self.dir(Area::Images).join(format!("{}{RAW}", d.hex()))
    }

    /// The entries of an area, sorted by name, without following a link on
    /// the way there (a missing directory has none). Entries that are
    /// links are listed as such ([`walk::Kind::Symlink`]), never entered.
    pub fn list(&self, area: Area) -> Result<Vec<DirEntry>, WalkError> {
        walk::list_below(self.root, Path::new(area.dir()))
    }

    /// The entries of a directory below the root (`rel`, plain names),
    /// as [`Layout::list`] lists an area.
    pub fn list_below(&self, rel: &Path) -> Result<Vec<DirEntry>, WalkError> {
        walk::list_below(self.root, rel)
    }

    /// The store's top level: every entry of the root.
    pub fn top(&self) -> Result<Vec<DirEntry>, WalkError> {
        walk::list_below(self.root, Path::new(""))
    }

    /// Whether `path` (inside the store) is reached through no link: every
    /// directory between the root and it is a directory (`path` itself may
    /// be anything, a link included: removing it removes the link).
    pub fn check(&self, path: &Path) -> Result<(), WalkError> {
        walk::no_link_above(self.root, path)
    }

    /// Every directory of the layout that is a link (or not a directory),
    /// each as the error met on the way to it. The release store is left
    /// to its own checks (`kiln fsck` reports a link there; nothing but
    /// `kiln publish` writes it).
    pub fn linked_dirs(&self) -> Vec<WalkError> {
        let mut out: Vec<WalkError> = Vec::new();
        for area in Area::ALL.into_iter().filter(|a| *a != Area::Releases) {
            if let Err(e) = walk::list_below(self.root, Path::new(area.dir())) {
                // `blobs` met twice (blobs/sha256 is the only nested area) is one.
                if !out.iter().any(|o| o.path() == e.path()) {
                    out.push(e);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_and_their_digests_agree() {
        let d = Digest::of(b"x");
        for area in Area::ALL {
            if area.naming() != Naming::Own {
                assert_eq!(area.digest_of(&area.entry_name(&d)), Some(d), "{area:?}");
            }
        }
        assert_eq!(Area::Keys.entry_name(&d), format!("{}.json", d.hex()));
        assert_eq!(Area::Blobs.entry_name(&d), d.hex());
        assert_eq!(image_file_digest(&format!("{}.raw", d.hex())), Some(d));
        assert_eq!(Area::Keys.digest_of(&d.hex()), None);
        assert_eq!(Area::Blobs.digest_of(&d.hex().to_uppercase()), None);
        let l = Layout::new(Path::new("/s"));
        assert_eq!(
            l.entry(Area::Blobs, &d),
            Path::new("/s/blobs/sha256").join(d.hex())
        );
    }
}
