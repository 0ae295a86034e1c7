//! Disk assembly: composed root → ext4 root filesystem → dm-verity hash tree →
//! initramfs → UKI → FAT ESP → GPT disk, all offline, in memory and without
//! privileges (ARCHITECTURE.md "Read-only image", "Disk layout", "Boot chain").
//!
//! Every identifier is derived from content so that the same inputs give the
//! same bytes: the ext4 UUID and hash seed from the layer digests, the verity
//! salt and uuid from the same, the verity data/hash partition UUIDs from
//! the root hash (UAPI Discoverable Partitions Specification), and the disk
//! and ESP GUIDs from a seed over the root hash and the UKI, as
//! systemd-repart derives them.

use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::fs::ext4::{self, Ext4Options};
use crate::fs::gpt::{self, PartitionSpec, ATTR_READ_ONLY};
use crate::fs::kmod::{kernel_image_path, ModuleIndex, MODULE_DIRS};
use crate::fs::tree::{Node, NodeKind, Tree};
use crate::fs::{fat, uki, verity};
use crate::image::initramfs;
use crate::image::secureboot::{self, UkiSigner};
use crate::input::recipe::Recipe;
use crate::model::disk::{DiskInfo, PartitionInfo};
use crate::util::digest::HexDigest;
use crate::util::error::InputError;
use crate::util::memo::Memo;

/// Where systemd-boot-efi puts the UKI stub; the base layer must carry it.
pub const STUB_PATH: &str = "usr/lib/systemd/boot/efi/linuxx64.efi.stub";
/// The UKI's place on the ESP: the removable-media default boot path (UEFI 2.10, 3.5.1.1).
pub const UKI_ESP_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
/// GPT partition labels.
pub const ESP_LABEL: &str = "esp";
/// Root partition label.
pub const ROOT_LABEL: &str = "root-x86-64";
/// Root verity partition label.
pub const VERITY_LABEL: &str = "root-x86-64-verity";

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

fn file_bytes<'a>(root: &'a Tree, path: &str) -> Option<&'a [u8]> {
    resolve_file(root, path).map(|(_, d)| d)
}

/// A regular file of the tree, symlinks followed: its path and bytes.
fn resolve_file<'a>(root: &'a Tree, path: &str) -> Option<(String, &'a [u8])> {
    match root.resolve(path)? {
        (
            path,
            Node {
                kind: NodeKind::File(d),
                ..
            },
        ) => Some((path, d.as_slice())),
        _ => None,
    }
}

/// What boots, from the composed root: the kernel (its path and bytes) and
/// the UKI stub. (The rest goes on the root filesystem,
/// [`root_filesystem_tree`].)
fn boot_files<'a>(
    root: &'a Tree,
    kver: &str,
    recipe_file: &Path,
) -> Result<(String, &'a [u8], &'a [u8])> {
    let kernel_path = kernel_image_path(root, kver).ok_or_else(|| {
        InputError::file(
            recipe_file.display().to_string(),
            format!(
                "the composed root has modules for kernel {kver} but no kernel image: looked \
                 for /boot/vmlinuz-{kver}, /usr/lib/modules/{kver}/vmlinuz and \
                 /lib/modules/{kver}/vmlinuz; keep boot/vmlinuz-* in the base layer's strip.keep"
            ),
        )
    })?;
    let (kernel_path, kernel) = resolve_file(root, &kernel_path)
        .with_context(|| format!("/{kernel_path} is not a regular file"))?;
    let stub = file_bytes(root, STUB_PATH)
        .with_context(|| format!("the composed root has no UKI stub /{STUB_PATH}: add systemd-boot-efi to the base layer"))?;
    Ok((kernel_path, kernel, stub))
}

/// The memo kind of [`kernel_sha256`].
const LAYER_FILE_SHA256: &str = "layer-file-sha256";

/// The sha256 of the kernel at `path`, which the PCR 11 prediction needs.
/// When the root holds it as the layer blob `layer` has it, the digest is
/// memoised under that blob's digest and the path (a layer's files are a
/// pure function of its blob), so a rebuild of the layers above does not
/// hash the kernel again.
fn kernel_sha256(
    kernel: &[u8],
    path: &str,
    layer: Option<&str>,
    memo: &dyn Memo,
) -> Result<[u8; 32]> {
    let hash = || Ok(Sha256::digest(kernel).to_vec());
    let digest = match layer {
        Some(layer) => memo.memo(
            LAYER_FILE_SHA256,
            format!("{layer}\0{path}").as_bytes(),
            &hash,
        )?,
        None => hash()?,
    };
    digest.try_into().map_err(|d: Vec<u8>| {
        crate::internal_err!("memoised sha256 of /{path} is {} bytes long", d.len())
    })
}

/// The composed root without what moves into the UKI (kernels, initrds,
/// their System.map and config, the EFI stubs): what the root partition holds.
pub fn root_filesystem_tree(root: &Tree) -> Tree {
    let mut rest = root.clone();
    rest.retain(|p, _| {
        !(p.starts_with("boot/vmlinuz-")
            || p.starts_with("boot/initrd.img-")
            || p.starts_with("boot/System.map-")
            || p.starts_with("boot/config-")
            || p.starts_with("usr/lib/systemd/boot/efi/")
            || MODULE_DIRS.iter().any(|d| {
                p.strip_prefix(d)
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|r| r.ends_with("/vmlinuz") && !r[..r.len() - 8].contains('/'))
            }))
    });
    rest
}

/// The os-release a UKI built from `root` carries in `.osrel`.
pub fn os_release(root: &Tree) -> &[u8] {
    file_bytes(root, "etc/os-release")
        .or_else(|| file_bytes(root, "usr/lib/os-release"))
        .unwrap_or(b"ID=kiln\n")
}

/// The root filesystem of the composed `root` (ext4, identified by
/// `ident`) and its dm-verity hash tree.
fn root_partitions(
    recipe: &Recipe,
    root: &Tree,
    ident: &[u8; 32],
    sde: i64,
) -> Result<(ext4::Ext4Image, verity::VerityHash)> {
    let mut tree = root_filesystem_tree(root);
    crate::image::volatile::add(&mut tree, sde)
        .context("adding the tmpfiles.d file for directories under tmpfs mounts")?;
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&ident[..16]);
    let mut hash_seed = [0u8; 16];
    hash_seed.copy_from_slice(&ident[16..]);
    let fs = ext4::build(
        &tree,
        &Ext4Options {
            uuid,
            hash_seed,
            label: "root".into(),
            timestamp: sde,
            margin_percent: recipe.disk.root_margin_percent,
            extra_bytes: recipe.disk.root_extra_mib << 20,
        },
    )
    .context("writing the ext4 root filesystem")?;
    let salt = sha(&[b"kiln verity salt", ident]);
    let mut vuuid = [0u8; 16];
    vuuid.copy_from_slice(&sha(&[b"kiln verity uuid", ident])[..16]);
    let vh = verity::build(&fs.bytes, &salt, vuuid).context("building the dm-verity hash tree")?;
    Ok((fs, vh))
}

/// Assemble the disk image of a composed root into `out` (a new file), and
/// return the manifest's disk section and the image's `sha256:`. With a
/// `signer`, the UKI is signed for Secure Boot before it goes on the ESP.
/// `layer_of` names the layer blob a file of the root comes from unchanged,
/// where one does (for memoising digests of big files, [`kernel_sha256`]).
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    recipe: &Recipe,
    root: &Tree,
    layer_digests: &[String],
    sde: i64,
    init: &initramfs::Init,
    memo: &dyn Memo,
    layer_of: &dyn Fn(&str) -> Option<String>,
    signer: Option<&UkiSigner>,
    out: &Path,
) -> Result<(DiskInfo, String)> {
    let mut clock = std::time::Instant::now();
    let mut lap = |what: &str| {
        tracing::debug!(step = what, elapsed = ?clock.elapsed(), "disk assembly");
        clock = std::time::Instant::now();
    };
    let idx = ModuleIndex::new(root).map_err(|e| -> anyhow::Error {
        InputError::file(
            recipe.path.display().to_string(),
            format!(
                "{e}: an image boots the one kernel of its layers; its base layer installs it \
                 (a linux-image-* package in [debian] packages, e.g. linux-image-cloud-amd64, \
                 with usr/lib/modules/** and boot/vmlinuz-* kept by [strip])"
            ),
        )
        .into()
    })?;
    let kver = idx.kver.clone();
    let (kernel_path, kernel, stub) = boot_files(root, &kver, &recipe.path)?;
    let kernel_layer = layer_of(&kernel_path);

    // Root filesystem, identified by what it is made of.
    let ident = sha(&[
        b"kiln ext4",
        layer_digests.join(",").as_bytes(),
        &sde.to_le_bytes(),
    ]);
    // Beside the root filesystem and its hash tree: the initramfs (built,
    // or found in the memo) and the sha256 of the kernel, which the PCR 11
    // prediction measures (most of the UKI's bytes; the rest are hashed
    // once the UKI is made).
    let (root_parts, initrd, linux_digest) = std::thread::scope(|s| {
        let initrd =
            s.spawn(|| initramfs::build(root, &recipe.boot.initrd_modules, init, sde, memo));
        let linux_digest =
            s.spawn(|| kernel_sha256(kernel, &kernel_path, kernel_layer.as_deref(), memo));
        let root_parts = root_partitions(recipe, root, &ident, sde);
        (root_parts, initrd.join(), linux_digest.join())
    });
    let (fs, vh) = root_parts?;
    let initrd = initrd.map_err(|_| crate::internal_err!("the initramfs thread panicked"))??;
    let linux_digest =
        linux_digest.map_err(|_| crate::internal_err!("the hashing thread panicked"))??;
    let root_hash = hex::encode(vh.root_hash);

    lap("root filesystem, verity, initramfs");
    // UKI. The kernel is not copied into it: the UKI stays in pieces
    // ([`uki::Built`]) until it is written into the ESP.
    let cmdline = format!(
        "{} roothash={root_hash} kiln.init={}",
        recipe.boot.cmdline, recipe.boot.init
    );
    let osrel = os_release(root);
    let uki = uki::build_parts(
        stub,
        &uki::UkiParts {
            osrel,
            cmdline: &cmdline,
            uname: Some(&kver),
            linux: kernel,
            initrd: &initrd.bytes,
        },
    )
    .context("building the UKI")?;
    // What systemd-stub will measure (the signature is outside the sections).
    let (pcr11, _) = uki::pcr::predict_pcr11_built(&uki, Some(linux_digest))
        .context("predicting the UKI's PCR 11")?;
    // Signing needs the UKI in one buffer.
    let (signed, uki_signature) = match signer {
        Some(s) => {
            let mut signed = uki.to_vec();
            let sig =
                secureboot::sign_uki(&mut signed, s).context("signing the UKI for Secure Boot")?;
            (Some(signed), Some(sig))
        }
        None => (None, None),
    };
    let uki_pieces: Vec<&[u8]> = match &signed {
        Some(v) => vec![v],
        None => uki.pieces().to_vec(),
    };

    lap("uki");
    // ESP and disk. The seed covers everything the UKI is made of (the
    // layers hold the kernel, stub and modules; the command line names the
    // root hash), so the UKI is hashed beside the ESP's writing.
    let seed = sha(&[
        b"kiln disk seed",
        &ident,
        &vh.root_hash,
        cmdline.as_bytes(),
        &sha(&[&initrd.bytes]),
    ]);
    let volume_id = u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]]);
    // The UKI's own digest runs on its thread through the ESP's building
    // and the disk's writing (which hashes the image and each partition on
    // two more): on 2 cores the hashing is most of this step.
    let (root_uuid, verity_uuid) = gpt::verity_partition_uuids(&vh.root_hash);
    let disk_guid = gpt::derive_disk_uuid(&seed);
    let (layout, uki_digest) = std::thread::scope(|s| -> Result<_> {
        let digest = s.spawn(|| {
            let mut h = Sha256::new();
            uki_pieces.iter().for_each(|p| h.update(p));
            crate::util::digest::Digest::finish(h)
        });
        let esp = fat::build_esp_pieces(&[(UKI_ESP_PATH, &uki_pieces)], volume_id, "ESP", sde)
            .context("writing the ESP")?;
        let esp = esp.pieces();
        let (root, hash) = ([&fs.bytes[..]], [&vh.hash_image[..]]);
        let parts = [
            PartitionSpec {
                type_guid: gpt::ESP_TYPE,
                part_guid: gpt::derive_uuid(&seed, gpt::ESP_TYPE, 0),
                name: ESP_LABEL,
                data: &esp,
                attributes: 0,
            },
            PartitionSpec {
                type_guid: gpt::ROOT_X86_64_TYPE,
                part_guid: root_uuid,
                name: ROOT_LABEL,
                data: &root,
                attributes: ATTR_READ_ONLY,
            },
            PartitionSpec {
                type_guid: gpt::ROOT_X86_64_VERITY_TYPE,
                part_guid: verity_uuid,
                name: VERITY_LABEL,
                data: &hash,
                attributes: ATTR_READ_ONLY,
            },
        ];
        let mut file =
            std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let layout = gpt::write_disk(&mut file, disk_guid, &parts)
            .with_context(|| format!("writing the disk {}", out.display()))?;
        let uki_digest = digest
            .join()
            .map_err(|_| crate::internal_err!("the hashing thread panicked"))?;
        Ok((layout, uki_digest))
    })?;

    lap("disk");
    let partitions = layout
        .partitions
        .iter()
        .map(|l| -> Result<_> {
            Ok(PartitionInfo {
                index: l.index,
                name: l.name.clone(),
                type_guid: l.type_guid,
                uuid: l.part_guid,
                offset: l.offset,
                size: l.size,
                sha256: crate::util::digest::Digest::parse_prefixed(&l.sha256)?,
            })
        })
        .collect::<Result<_>>()?;
    let info = DiskInfo {
        kernel_version: kver,
        cmdline,
        root_hash: HexDigest(vh.root_hash),
        initrd_modules: initrd.modules,
        // The sha256 of the file on the ESP.
        uki_digest,
        init_digest: init.digest,
        partitions,
        disk_guid,
        uki_signature,
        pcr11_sha256: Some(HexDigest(pcr11)),
    };
    Ok((info, layout.digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A memo that counts the computations it runs and keeps nothing.
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    impl Memo for Counting {
        fn memo(
            &self,
            kind: &str,
            input: &[u8],
            f: &dyn Fn() -> Result<Vec<u8>>,
        ) -> Result<Vec<u8>> {
            assert_eq!(kind, LAYER_FILE_SHA256);
            assert_eq!(input, b"sha256:layer\0boot/vmlinuz");
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            f()
        }
    }

    #[test]
    fn kernel_digest_is_memoised_only_by_its_layer() {
        let want: [u8; 32] = Sha256::digest(b"kernel").into();
        let memo = Counting::default();
        let got = kernel_sha256(b"kernel", "boot/vmlinuz", Some("sha256:layer"), &memo).unwrap();
        assert_eq!(
            (got, memo.0.load(std::sync::atomic::Ordering::SeqCst)),
            (want, 1)
        );
        // No layer holds it unchanged: hashed, not memoised.
        let got = kernel_sha256(b"kernel", "boot/vmlinuz", None, &memo).unwrap();
        assert_eq!(
            (got, memo.0.load(std::sync::atomic::Ordering::SeqCst)),
            (want, 1)
        );
    }
}
