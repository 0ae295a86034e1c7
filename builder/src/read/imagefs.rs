//! What an image holds, read back for comparison (`kiln diff`): the root
//! filesystem as a [`Tree`], the installed packages, and what boots it
//! (kernel command line, dm-verity root hash, kernel release, os-release,
//! the UKI's digest).
//!
//! Three kinds of argument:
//! - a GPT disk image file (`NAME-VERSION.raw`): the root partition (found
//!   by its UAPI DPS type) read with [`ext4::read`], the UKI from the ESP;
//! - a tar image file (`NAME-VERSION.tar`, `format = "tar"`): the composed
//!   root as it is;
//! - a store digest (`sha256:HEX`, as `kiln inspect` takes it): the layers
//!   the store's manifest lists, composed as the build composed them, minus
//!   what [`disk::assemble`] moves into the UKI, plus the `lost+found` the
//!   ext4 writer adds, so that it compares equal to the disk image file it
//!   names; boot facts from the manifest.
//!
//! Packages come from dpkg's status file in the root when there is one (the
//! truth of what is installed, and the same source whichever kind the
//! argument is), else from the manifest's layer package lists (the store's
//! manifest of the digest, or the image file's manifest as
//! [`locate`](crate::read::locate) finds it).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::fs::layer::sha256_digest;
use crate::fs::tree::Tree;
use crate::fs::{ext4, gpt, layer};
use crate::image::disk::{self, UKI_ESP_PATH};
use crate::model::deb;
use crate::model::disk::PartitionInfo;
use crate::model::manifest::Manifest;
use crate::read::locate;
use crate::store::Store;
use crate::util::digest::Digest;
use crate::util::error::InputError;

/// Offset of the primary GPT header's signature (`EFI PART`, LBA 1).
const GPT_SIGNATURE_AT: u64 = gpt::SECTOR_SIZE;
/// The primary GPT header's signature (UEFI 2.10, 5.3.2).
const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
/// Where a POSIX tar header has its magic (`ustar`), and the magic.
const TAR_MAGIC_AT: usize = 257;
const TAR_MAGIC: &[u8; 5] = b"ustar";
/// A qcow2 file's first bytes.
const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";

/// What an image file is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A GPT disk.
    Disk,
    /// A tar archive.
    Tar,
}

/// Tell a disk image from a tar image; anything else is an [`InputError`]
/// naming `path`.
pub fn file_kind(path: &Path) -> Result<FileKind> {
    let shown = path.display().to_string();
    let mut f = locate::regular_file(path)?;
    let mut head =
        vec![0u8; (GPT_SIGNATURE_AT as usize + GPT_SIGNATURE.len()).max(TAR_MAGIC_AT + 5)];
    let n = f
        .read(&mut head)
        .map_err(|e| InputError::file(&shown, format!("cannot read: {e}")))?;
    let head = &head[..n];
    let at = GPT_SIGNATURE_AT as usize;
    if head.get(at..at + GPT_SIGNATURE.len()) == Some(&GPT_SIGNATURE[..]) {
        Ok(FileKind::Disk)
    } else if head.get(TAR_MAGIC_AT..TAR_MAGIC_AT + TAR_MAGIC.len()) == Some(&TAR_MAGIC[..]) {
        Ok(FileKind::Tar)
    } else if head.starts_with(QCOW2_MAGIC) {
        Err(InputError::file(
            shown,
            "a qcow2 image: compare the .raw image built beside it",
        )
        .into())
    } else {
        Err(InputError::file(
            shown,
            "neither a GPT disk image, a tar image nor a sha256: digest",
        )
        .into())
    }
}

/// What kind of argument an image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A GPT disk image file.
    Disk,
    /// A tar of the composed root.
    Tar,
    /// A manifest in the store, its layers composed.
    Store,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    /// Version, epoch included.
    pub version: String,
    /// Debian architecture.
    pub architecture: String,
}

/// What boots the image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Boot {
    /// The kernel command line in the UKI.
    pub cmdline: Option<String>,
    /// dm-verity root hash (from the command line).
    pub root_hash: Option<String>,
    /// Kernel release (`.uname`).
    pub kernel: Option<String>,
    /// `.osrel`.
    pub os_release: Option<String>,
    /// `sha256:` of the UKI.
    pub uki: Option<String>,
}

/// A disk's partition table as `kiln diff` compares it: every partition
/// with the digest of its bytes, so that a partition whose contents are not
/// compared file by file (the verity hash tree, the ESP's FAT) still counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The GPT's disk GUID.
    pub disk_guid: uuid::Uuid,
    /// The partitions in table order.
    pub partitions: Vec<PartitionInfo>,
    /// `sha256:` of the bytes outside the partitions (MBR, both GPTs, gaps),
    /// when known: a disk image file says, a manifest does not.
    pub outside_sha256: Option<String>,
}

/// An image, read back.
#[derive(Debug, Clone)]
pub struct Image {
    /// The argument as given.
    pub name: String,
    /// Where it came from.
    pub origin: Origin,
    /// The root filesystem (for a disk: what the root partition holds).
    pub root: Tree,
    /// Installed packages by name; `None` when nothing says.
    pub packages: Option<BTreeMap<String, Package>>,
    /// Boot facts; all `None` for a tar image.
    pub boot: Boot,
    /// The partition table; `None` for a tar image.
    pub table: Option<Table>,
}

/// Read an image file (disk or tar) or a store digest. Bad arguments (no
/// such file, not an image, a digest the store lacks) are [`InputError`]s
/// naming the argument.
pub fn load(store: &Store, target: &str) -> Result<Image> {
    if target.starts_with("sha256:") {
        return from_store(store, target);
    }
    let path = Path::new(target);
    if file_kind(path)? == FileKind::Disk {
        from_disk(store, target, path)
    } else {
        let root = read_tar_file(path)?;
        let packages = packages(&root, || file_manifest(store, path))?;
        Ok(Image {
            name: target.to_string(),
            origin: Origin::Tar,
            root,
            packages,
            boot: Boot::default(),
            table: None,
        })
    }
}

/// The tree of a tar image file; a tar that does not read is an
/// [`InputError`] naming the file.
pub fn read_tar_file(path: &Path) -> Result<Tree> {
    let f = std::fs::File::open(path)
        .map_err(|e| InputError::file(path.display().to_string(), format!("cannot open: {e}")))?;
    layer::read_tar(std::io::BufReader::new(f), i64::MAX).map_err(|e| {
        InputError::file(
            path.display().to_string(),
            format!("not a readable tar image: {e:#}"),
        )
        .into()
    })
}

fn from_disk(store: &Store, target: &str, path: &Path) -> Result<Image> {
    let bad = |m: String| InputError::file(target, m);
    let disk = crate::read::disk::read_disk_file(path).map_err(|e| bad(format!("{e:#}")))?;
    let parts = &disk.partitions;
    let find = |t: uuid::Uuid| parts.iter().find(|(p, _)| p.type_guid == t).map(|(_, d)| d);
    let root_part = find(gpt::ROOT_X86_64_TYPE)
        .ok_or_else(|| bad("the disk has no x86-64 root partition (UAPI DPS type)".into()))?;
    let root = ext4::read(root_part).map_err(|e| bad(format!("root partition: {e}")))?;
    let mut boot = Boot::default();
    if let Some(esp) = find(gpt::ESP_TYPE) {
        let uki = crate::read::disk::read_uki(esp).map_err(|e| bad(format!("ESP: {e:#}")))?;
        if let Some(uki) = uki {
            let facts =
                crate::read::disk::uki_facts(&uki).map_err(|e| bad(format!("ESP: {e:#}")))?;
            boot.root_hash = facts
                .cmdline
                .as_deref()
                .and_then(crate::read::disk::cmdline_root_hash);
            boot.cmdline = facts.cmdline;
            boot.kernel = facts.kernel_version;
            boot.os_release = facts.os_release;
            boot.uki = Some(sha256_digest(&uki));
        } else {
            tracing::warn!("{target}: the ESP has no {UKI_ESP_PATH}");
        }
    }
    let packages = packages(&root, || file_manifest(store, path))?;
    Ok(Image {
        name: target.to_string(),
        origin: Origin::Disk,
        root,
        packages,
        boot,
        table: Some(Table {
            disk_guid: disk.disk_guid,
            partitions: disk.partitions.into_iter().map(|(p, _)| p).collect(),
            outside_sha256: Some(disk.outside_sha256),
        }),
    })
}

fn from_store(store: &Store, digest: &str) -> Result<Image> {
    let missing = || {
        InputError::file(
            digest,
            format!(
                "no image with this digest in the store {}",
                store.root().display()
            ),
        )
    };
    let parsed = Digest::parse(digest).map_err(|e| InputError::file(digest, e.to_string()))?;
    let m = locate::from_store(store, &parsed)?
        .ok_or_else(missing)?
        .manifest;
    let mut root = Tree::new(m.source_date_epoch);
    for l in &m.layers {
        let blob = store
            .get_blob(&l.digest.to_string())
            .with_context(|| format!("layer {} of {digest}", l.name))?;
        // A store blob, checked when it entered the store: not bounded.
        let tree = layer::unpack_reader(&mut blob.as_slice())
            .with_context(|| format!("unpacking layer {} ({})", l.name, l.digest))?;
        root.apply_layer(&tree)
            .with_context(|| format!("applying layer {}", l.name))?;
    }
    let mut boot = Boot::default();
    let table = m.disk.as_ref().map(|d| Table {
        disk_guid: d.disk_guid,
        partitions: d.partitions.clone(),
        outside_sha256: None,
    });
    if let Some(d) = &m.disk {
        boot = Boot {
            cmdline: Some(d.cmdline.clone()),
            root_hash: Some(d.root_hash.to_string()),
            kernel: Some(d.kernel_version.clone()),
            os_release: Some(
                String::from_utf8_lossy(disk::os_release(&root))
                    .trim_end_matches('\0')
                    .to_string(),
            ),
            uki: Some(d.uki_digest.to_string()),
        };
        root = ext4::as_built(&disk::root_filesystem_tree(&root), m.source_date_epoch);
    }
    let packages = packages(&root, move || Ok(Some(m)))?;
    Ok(Image {
        name: digest.to_string(),
        origin: Origin::Store,
        root,
        packages,
        boot,
        table,
    })
}

/// An image file's manifest, as [`locate`] finds it.
fn file_manifest(store: &Store, path: &Path) -> Result<Option<Manifest>> {
    let digest = Digest::of_file(path)?;
    Ok(locate::locate(store, path, &digest)?
        .found
        .map(|f| f.manifest))
}

/// Installed packages: dpkg's status in the root, else the lists of the
/// manifest `manifest` gives (called only then: it may hash the image).
fn packages(
    root: &Tree,
    manifest: impl FnOnce() -> Result<Option<Manifest>>,
) -> Result<Option<BTreeMap<String, Package>>> {
    let status = deb::dpkg_status(root);
    if !status.is_empty() {
        return Ok(Some(
            deb::parse_dpkg_status(&status)
                .into_iter()
                .filter(|e| e.is_installed())
                .map(|e| {
                    (
                        e.package,
                        Package {
                            version: e.version,
                            architecture: e.architecture,
                        },
                    )
                })
                .collect(),
        ));
    }
    let Some(m) = manifest()? else {
        return Ok(None);
    };
    Ok(Some(
        m.layers
            .iter()
            .flat_map(|l| &l.packages)
            .map(|p| {
                (
                    p.name.clone(),
                    Package {
                        version: p.version.clone(),
                        architecture: p.architecture.clone(),
                    },
                )
            })
            .collect(),
    ))
}
