//! `kiln inspect` and `kiln diff` for people: what an image is made of (its
//! digest and whether the manifest agrees, partitions, kernel, command line,
//! root hash, os-release, recipe, SOURCE_DATE_EPOCH, packages, layers, boot-test
//! verdicts), and how two images differ.

use std::io::{self, Write};

use crate::read::diff::ImageDiff;
use crate::read::inspect::Inspection;
use crate::util::printable::PrintableExt as _;

use super::human;

/// `kiln inspect`: one fact a line, then the packages, layers and verdicts.
pub fn inspection(mut out: impl Write, i: &Inspection) -> io::Result<()> {
    if let Some(m) = &i.manifest {
        writeln!(out, "{} {}", m.name.printable(), m.version.printable())?;
    }
    if let Some(d) = &i.digest {
        let check = match i.digest_verified {
            Some(true) => " (matches the manifest)",
            Some(false) => " (DOES NOT MATCH the manifest)",
            None => "",
        };
        writeln!(out, "digest   {}{check}", d.printable())?;
    }
    if let Some(disk) = &i.disk {
        writeln!(out, "partitions:")?;
        for p in &disk.partitions {
            writeln!(
                out,
                "  {} {:<20} {} {:>10} at {:>10}  {}",
                p.index,
                p.name.printable(),
                p.type_guid.printable(),
                human(p.size),
                p.offset,
                p.uuid.printable()
            )?;
        }
        if let Some(k) = &disk.kernel_version {
            writeln!(out, "kernel   {}", k.printable())?;
        }
        if let Some(c) = &disk.cmdline {
            writeln!(out, "cmdline  {}", c.printable())?;
        }
        if let Some(r) = &disk.root_hash {
            writeln!(out, "roothash {}", r.printable())?;
        }
        if let Some(os) = &disk.os_release {
            if let Some(pretty) = os.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")) {
                writeln!(out, "os       {}", pretty.trim_matches('"').printable())?;
            }
        }
    }
    if let Some(m) = &i.manifest {
        writeln!(
            out,
            "recipe   {} {}",
            m.recipe.file.printable(),
            m.recipe.digest.printable()
        )?;
        if let Some(d) = &m.disk {
            match &d.uki_signature {
                Some(sig) => writeln!(
                    out,
                    "uki      signed for Secure Boot by {} (certificate {})",
                    sig.signer.printable(),
                    sig.cert_fingerprint.printable()
                )?,
                None => writeln!(out, "uki      not signed for Secure Boot")?,
            }
            if let Some(pcr) = &d.pcr11_sha256 {
                writeln!(out, "pcr11    {} (predicted, sha256 bank)", pcr.printable())?;
            }
        }
        match m.epoch_source {
            Some(src) => writeln!(
                out,
                "SOURCE_DATE_EPOCH {} ({})",
                m.source_date_epoch,
                serde_json::to_value(src)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            )?,
            None => writeln!(out, "SOURCE_DATE_EPOCH {}", m.source_date_epoch)?,
        }
        let packages: Vec<&crate::model::deb::DebPackage> =
            m.layers.iter().flat_map(|l| &l.packages).collect();
        if !packages.is_empty() {
            writeln!(out, "packages ({}):", packages.len())?;
            for p in packages {
                writeln!(
                    out,
                    "  {:<32} {:<28} {}",
                    p.name.printable(),
                    p.version.printable(),
                    p.architecture.printable()
                )?;
            }
        }
        writeln!(out, "layers:")?;
        for l in &m.layers {
            writeln!(
                out,
                "  {:<8} {:<24} {} {}",
                l.kind.printable(),
                l.name.printable(),
                l.digest.printable(),
                human(l.size)
            )?;
        }
    } else {
        writeln!(
            out,
            "(no manifest beside the image: layer list unavailable)"
        )?;
    }
    if i.verdicts.is_empty() {
        writeln!(out, "verdicts: none (not boot-tested with this store)")?;
    } else {
        writeln!(out, "verdicts:")?;
        for v in &i.verdicts {
            let outcome = if v.passed {
                "PASS".to_string()
            } else {
                format!(
                    "FAIL ({})",
                    v.failed_check.as_deref().unwrap_or("?").printable()
                )
            };
            let secure = if v.secure_boot { ", Secure Boot" } else { "" };
            writeln!(
                out,
                "  {}  {outcome}  {:.1}s on {}{secure}",
                v.started_at.printable(),
                v.duration_secs,
                v.accel.printable()
            )?;
        }
    }
    Ok(())
}

/// `kiln diff`: [`ImageDiff::human`], one line per difference and a summary.
pub fn diff(mut out: impl Write, d: &ImageDiff) -> io::Result<()> {
    write!(out, "{}", d.human())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{text, EMPTY};
    use super::*;
    use crate::model::disk::PartitionInfo;
    use crate::model::manifest::Manifest;
    use crate::read::diff::{FileChanges, Side};
    use crate::read::disk::DiskReport;
    use crate::read::imagefs::Origin;
    use crate::store::verdict::Verdict;

    fn manifest(epoch_source: Option<&str>, packages: bool) -> Manifest {
        let packages = if packages {
            serde_json::json!([
                {"name": "busybox", "version": "1:1.35.0-4+b3", "architecture": "amd64", "sha256": EMPTY},
                {"name": "tzdata", "version": "2024a-0+deb12u1", "architecture": "all", "sha256": EMPTY}
            ])
        } else {
            serde_json::json!([])
        };
        let mut m = serde_json::json!({
            "schema": "kiln.manifest/v1",
            "name": "hello",
            "version": "1.0",
            "recipe": {"file": "hello.toml", "digest": EMPTY},
            "source_date_epoch": 1700000000,
            "layers": [
                {"name": "base/busybox", "kind": "base", "key": EMPTY, "digest": EMPTY,
                 "diff_id": EMPTY, "size": 1_200_000, "packages": packages},
                {"name": "app/hello", "kind": "app", "key": EMPTY, "digest": EMPTY,
                 "diff_id": EMPTY, "size": 300}
            ],
            "image": {"format": "raw", "file": "hello-1.0.raw", "digest": EMPTY, "size": 64 << 20},
            "builder": {"name": "kiln", "version": "0.1.0", "layer_format": 1}
        });
        if let Some(src) = epoch_source {
            m["epoch_source"] = src.into();
        }
        serde_json::from_value(m).unwrap()
    }

    fn verdict(passed: bool, failed_check: Option<&str>) -> Verdict {
        Verdict {
            schema: "kiln.verdict/v1".into(),
            image_digest: EMPTY.parse().unwrap(),
            image: "hello 1.0".into(),
            passed,
            failed_check: failed_check.map(Into::into),
            checks: Vec::new(),
            phases: Default::default(),
            duration_secs: 9.96,
            qemu_version: "QEMU emulator version 7.2.15".into(),
            firmware: "OVMF_CODE_4M.fd".into(),
            accel: "tcg".into(),
            started_at: "2024-05-01T12:00:00Z".into(),
            kiln_version: "0.1.0".into(),
            console_log: None,
            secure_boot: false,
        }
    }

    fn disk() -> DiskReport {
        DiskReport {
            partitions: vec![PartitionInfo {
                index: 1,
                name: "esp".into(),
                type_guid: "c12a7328-f81f-11d2-ba4b-00a0c93ec93b".parse().unwrap(),
                uuid: "0f2c7a8e-6a39-4d2b-9d0e-6f6c1b7d2a11".parse().unwrap(),
                offset: 1 << 20,
                size: 32 << 20,
                sha256: EMPTY.parse().unwrap(),
            }],
            cmdline: Some("console=ttyS0 roothash=ab".into()),
            root_hash: Some("ab".into()),
            kernel_version: Some("6.1.0-21-cloud-amd64".into()),
            os_release: Some("ID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n".into()),
        }
    }

    const DIGEST_LINE: &str =
        "digest   sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const DISK_LINES: &str = "partitions:\n\
        \x20 1 esp                  c12a7328-f81f-11d2-ba4b-00a0c93ec93b   32.0 MiB at    1048576  0f2c7a8e-6a39-4d2b-9d0e-6f6c1b7d2a11\n\
        kernel   6.1.0-21-cloud-amd64\n\
        cmdline  console=ttyS0 roothash=ab\n\
        roothash ab\n\
        os       Debian GNU/Linux 12 (bookworm)\n";
    const RECIPE_LINE: &str = "recipe   hello.toml sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n";
    const PACKAGE_LINES: &str = "packages (2):\n\
        \x20 busybox                          1:1.35.0-4+b3                amd64\n\
        \x20 tzdata                           2024a-0+deb12u1              all\n";
    const LAYER_LINES: &str = "layers:\n\
        \x20 base     base/busybox             sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 1.1 MiB\n\
        \x20 app      app/hello                sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 300 B\n";
    const NO_VERDICTS: &str = "verdicts: none (not boot-tested with this store)\n";

    #[test]
    fn inspection_table() {
        let from_file = Inspection {
            manifest_path: Some("out/hello-1.0.manifest.json".into()),
            manifest: Some(manifest(Some("derived"), true)),
            digest: Some(EMPTY.into()),
            digest_verified: Some(true),
            disk: Some(disk()),
            verdicts: vec![verdict(true, None), verdict(false, Some("shutdown"))],
        };
        let store = || Inspection {
            manifest_path: None,
            manifest: Some(manifest(None, false)),
            digest: Some(EMPTY.into()),
            digest_verified: None,
            disk: None,
            verdicts: Vec::new(),
        };
        let from_store = store();
        let without_manifest = Inspection {
            manifest_path: None,
            manifest: None,
            digest: Some(EMPTY.into()),
            digest_verified: None,
            disk: Some(disk()),
            verdicts: vec![verdict(false, None)],
        };
        let tampered = Inspection {
            digest_verified: Some(false),
            ..store()
        };
        let mut signed_manifest = manifest(None, false);
        signed_manifest.disk = Some(crate::model::disk::tests::signed_sample());
        let mut secure_verdict = verdict(true, None);
        secure_verdict.secure_boot = true;
        let signed = Inspection {
            manifest: Some(signed_manifest),
            verdicts: vec![secure_verdict],
            ..store()
        };
        let cases = [
            (
                &from_file,
                format!(
                    "hello 1.0\n{DIGEST_LINE} (matches the manifest)\n{DISK_LINES}{RECIPE_LINE}\
                     SOURCE_DATE_EPOCH 1700000000 (derived)\n{PACKAGE_LINES}{LAYER_LINES}\
                     verdicts:\n\
                     \x20 2024-05-01T12:00:00Z  PASS  10.0s on tcg\n\
                     \x20 2024-05-01T12:00:00Z  FAIL (shutdown)  10.0s on tcg\n"
                ),
            ),
            (
                &from_store,
                format!(
                    "hello 1.0\n{DIGEST_LINE}\n{RECIPE_LINE}SOURCE_DATE_EPOCH 1700000000\n\
                     {LAYER_LINES}{NO_VERDICTS}"
                ),
            ),
            (
                &without_manifest,
                format!(
                    "{DIGEST_LINE}\n{DISK_LINES}\
                     (no manifest beside the image: layer list unavailable)\n\
                     verdicts:\n\
                     \x20 2024-05-01T12:00:00Z  FAIL (?)  10.0s on tcg\n"
                ),
            ),
            (
                &tampered,
                format!(
                    "hello 1.0\n{DIGEST_LINE} (DOES NOT MATCH the manifest)\n{RECIPE_LINE}\
                     SOURCE_DATE_EPOCH 1700000000\n{LAYER_LINES}{NO_VERDICTS}"
                ),
            ),
            (
                &signed,
                format!(
                    "hello 1.0\n{DIGEST_LINE}\n{RECIPE_LINE}\
                     uki      signed for Secure Boot by CN=fleet db (certificate sha256:{a})\n\
                     pcr11    {c} (predicted, sha256 bank)\n\
                     SOURCE_DATE_EPOCH 1700000000\n{LAYER_LINES}\
                     verdicts:\n\
                     \x20 2024-05-01T12:00:00Z  PASS  10.0s on tcg, Secure Boot\n",
                    a = "a".repeat(64),
                    c = "c".repeat(64),
                ),
            ),
        ];
        for (i, want) in cases {
            assert_eq!(text(|o| inspection(o, i)), want);
        }
    }

    #[test]
    fn diff_prints_the_report_for_people() {
        let side = |name: &str| Side {
            name: name.into(),
            origin: Origin::Disk,
        };
        let d = ImageDiff {
            a: side("a.raw"),
            b: side("b.raw"),
            identical: true,
            files: FileChanges::default(),
            packages: None,
            boot: Vec::new(),
            disk: None,
        };
        assert_eq!(
            text(|o| diff(o, &d)),
            "--- a.raw (disk)\n+++ b.raw (disk)\n\
             identical: files: 0 added, 0 removed, 0 changed; packages: not compared; boot: 0 changed\n"
        );
    }

    /// Names from two images holding a line break and terminal escape
    /// sequences: the report stays one line per difference, every line
    /// what kiln wrote it as, and no control character reaches the terminal.
    #[test]
    fn diff_quotes_names_from_the_images() {
        use crate::fs::tree::{Meta, Node, NodeKind, Tree};
        use crate::read::imagefs::{Boot, Image, Package};
        use std::sync::Arc;

        const FORGED: &str = "srv/a\n+ forged";
        const CLEAR: &str = "srv/\x1b[2K\x1b[1Aup";
        let file = |t: &mut Tree, path: &str, data: &[u8]| {
            let node = Node {
                kind: NodeKind::File(Arc::new(data.to_vec())),
                meta: Meta::root(0o644, 0),
            };
            t.insert_with_parents(path, node, &Meta::root(0o755, 0))
                .unwrap();
        };
        let image = |name: &str, root: Tree, package: &str, os: &str| Image {
            name: name.into(),
            origin: Origin::Tar,
            root,
            packages: Some(
                [(
                    package.to_string(),
                    Package {
                        version: "1\n+ package evil 1 all".into(),
                        architecture: "all".into(),
                    },
                )]
                .into(),
            ),
            boot: Boot {
                os_release: Some(format!("ID={os}\n")),
                ..Boot::default()
            },
            table: None,
        };
        let (mut ta, mut tb) = (Tree::new(0), Tree::new(0));
        file(&mut ta, FORGED, b"old");
        file(&mut ta, CLEAR, b"same");
        file(&mut tb, CLEAR, b"changed");
        let link = Node {
            kind: NodeKind::Symlink("\x1b]0;title\x07".into()),
            meta: Meta::root(0o777, 0),
        };
        tb.insert_with_parents("srv/link\r", link, &Meta::root(0o755, 0))
            .unwrap();
        let a = image("a\x1b[2K.tar", ta, "pkg\x1b[31m", "debian\x1b[8m");
        let b = image("b.tar", tb, "pkg\n- package x", "debian\r\n~ boot");
        let d = crate::read::diff::diff(&a, &b);
        let shown = text(|o| diff(o, &d));
        assert!(
            !shown.chars().any(|c| c != '\n' && c.is_control()),
            "{shown:?}"
        );
        // One line per difference, each as kiln wrote it: the headers, the
        // removed, added and changed files and packages, the os release,
        // and the verdict.
        let lines: Vec<&str> = shown.lines().collect();
        let kinds = [
            "--- ",
            "+++ ",
            "- /",
            "+ /",
            "~ /",
            "- package pkg",
            "+ package pkg",
            "~ boot os-release ",
        ];
        for l in &lines[..lines.len() - 1] {
            assert!(kinds.iter().any(|k| l.starts_with(k)), "{l:?} in\n{shown}");
        }
        for forged in ["+ forged", "+ package evil", "- package x", "~ boot\n"] {
            assert!(
                !shown.contains(&format!("\n{forged}")),
                "{forged:?} in\n{shown}"
            );
        }
        assert!(lines[0].starts_with("--- a\\x1b[2K.tar "), "{shown}");
        assert!(lines[1].starts_with("+++ b.tar "), "{shown}");
        assert!(
            lines.contains(&"- /srv/a\\n+ forged  file 0644 0:0 3 B"),
            "{shown}"
        );
        assert!(
            lines.contains(&"+ /srv/link\\r  symlink 0777 0:0 -> \\x1b]0;title\\x07"),
            "{shown}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("~ /srv/\\x1b[2K\\x1b[1Aup  size 4 -> 7")),
            "{shown}"
        );
        assert!(lines.last().unwrap().starts_with("differ: "), "{shown}");
    }
}
