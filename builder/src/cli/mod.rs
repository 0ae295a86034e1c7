//! The `kiln` command line (DESIGN.md, "The command-line contract"). All clap
//! code lives here; every command is a call into the library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::build::{self, BuildOptions};
use crate::publish::release::{self, Releases};
use crate::publish::sign;
use crate::read::inspect;
use crate::store::{self, Store};
use crate::util::progress::Progress;

/// kiln bakes minimal, bootable, read-only OS disk images from layered recipes.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about)]
pub struct Cli {
    /// The store (default: $KILN_STORE, else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln).
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No progress output.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// kiln's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the layers of a recipe (reusing cached ones) and write the image.
    Build {
        /// The recipe file.
        recipe: PathBuf,
        /// Output directory.
        #[arg(short, long, default_value = "out")]
        output: PathBuf,
        /// Build twice from nothing, in separate temporary stores, with
        /// different umask, time zone and clock, and compare the outputs byte
        /// for byte; exit 1 naming the first differing partition, file and field.
        #[arg(long)]
        check_reproducible: bool,
    },
    /// Pin every Debian package of a recipe's layers: write NAME.lock beside the recipe.
    Lock {
        /// The recipe file.
        recipe: PathBuf,
    },
    /// List the layers and images in the store, with sizes.
    Ls,
    /// Boot an image (or build a recipe, then boot it) in QEMU and judge it by the recipe's [test] checks.
    Test {
        /// A disk image (`NAME-VERSION.raw`, its manifest beside it) or a recipe (`.toml`).
        target: PathBuf,
        /// Write a JUnit XML report here.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Output directory when TARGET is a recipe.
        #[arg(short, long, default_value = "out")]
        output: PathBuf,
    },
    /// Boot an image in QEMU with the serial console on this terminal (the image is never written).
    Boot {
        /// The disk image (`NAME-VERSION.raw`).
        image: PathBuf,
        /// Guest memory in MiB.
        #[arg(long, default_value_t = 512)]
        memory: u32,
        /// Forward a free host port to this guest TCP port (repeatable).
        #[arg(short = 'p', long = "port")]
        ports: Vec<u16>,
    },
    /// Show what an image (a file, its manifest, or a store digest) is made of.
    Inspect {
        /// An image file, a manifest file, or a `sha256:` digest from the store.
        target: String,
    },
    /// Compare two images: files added, removed and changed (kind, size, sha256, mode, owner,
    /// xattrs, mtime), packages, kernel command line, root hash, kernel, os-release.
    /// Exit 0 when they are the same in every compared respect, 1 when they differ.
    Diff {
        /// The first image: a disk image file (`.raw`), a tar image (`.tar`) or a `sha256:` digest from the store.
        a: String,
        /// The second image, likewise.
        b: String,
    },
    /// Write a minisign-format key pair: the secret key at PATH, the public key at PATH.pub.
    Keygen {
        /// Where the secret key goes (the public key goes to PATH.pub).
        #[arg(short, long, value_name = "PATH")]
        output: PathBuf,
        /// Store the secret key without a password (for CI keys kept in a secret store).
        #[arg(long)]
        unencrypted: bool,
    },
    /// Sign a file (minisign, prehashed); the trusted comment names its image.
    Sign {
        /// The file to sign.
        file: PathBuf,
        /// The secret key (password from $KILN_KEY_PASSWORD or a prompt).
        #[arg(short, long)]
        key: PathBuf,
        /// Where the signature goes (default FILE.minisig).
        #[arg(short = 'x', long)]
        signature: Option<PathBuf>,
    },
    /// Verify a file's minisign signature (exit 1 when it does not verify).
    Verify {
        /// The signed file.
        file: PathBuf,
        /// The signature (default FILE.minisig).
        #[arg(short = 'x', long)]
        signature: Option<PathBuf>,
        /// The public key (`PATH.pub` from keygen, or minisign's).
        #[arg(short, long)]
        pubkey: PathBuf,
    },
    /// Publish a tested image: sign its files into the release store and append it to a channel.
    Publish {
        /// The image file (`NAME-VERSION.raw`, its manifest beside it or in the store).
        image: PathBuf,
        /// The channel (e.g. canary, stable).
        #[arg(short, long)]
        channel: String,
        /// The secret key.
        #[arg(short, long)]
        key: PathBuf,
        /// A release store directory (default STORE/releases) and/or `oci://HOST[:PORT]/REPO` (repeatable).
        #[arg(long = "to")]
        to: Vec<String>,
    },
    /// A channel's release history and current release (every channel without --channel).
    Releases {
        /// The channel.
        #[arg(short, long)]
        channel: Option<String>,
        /// The release store (default STORE/releases).
        #[arg(long, value_name = "DIR")]
        releases: Option<PathBuf>,
    },
    /// Make a release of one channel current on another.
    Promote {
        /// The image digest (`sha256:…`, or a unique prefix).
        digest: String,
        /// The channel it was released on.
        #[arg(long)]
        from: String,
        /// The channel it becomes current on.
        #[arg(long)]
        to: String,
        /// The release store (default STORE/releases).
        #[arg(long, value_name = "DIR")]
        releases: Option<PathBuf>,
    },
    /// Make a channel's previous release current again (recorded as a new history entry).
    Rollback {
        /// The channel.
        #[arg(short, long)]
        channel: String,
        /// The release store (default STORE/releases).
        #[arg(long, value_name = "DIR")]
        releases: Option<PathBuf>,
    },
    /// Fetch an image from an OCI registry, verifying its digests and signature before writing it.
    Pull {
        /// `oci://HOST[:PORT]/REPO:TAG`.
        source: String,
        /// Output directory.
        #[arg(short, long, default_value = "out")]
        output: PathBuf,
        /// The public key its signature must verify with.
        #[arg(short, long)]
        pubkey: PathBuf,
    },
}

impl Cli {
    fn store(&self) -> Store {
        Store::new(self.store.clone().unwrap_or_else(store::default_root))
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let store = cli.store();
    match &cli.command {
        Command::Build {
            recipe,
            output,
            check_reproducible: true,
        } => {
            // Bad input fails here, before two builds start.
            crate::input::plan::Plan::new(recipe)?;
            let kiln = std::env::current_exe().context("finding the kiln executable")?;
            let report =
                crate::build::reproducible::check(&kiln, recipe, output, cli.quiet || cli.json)?;
            if cli.json {
                print_json(&report)?;
            } else if !cli.quiet {
                for b in &report.builds {
                    println!(
                        "build  umask {} TZ {:<18} clock {:<6} {:>6.1} s  {}",
                        b.conditions.umask,
                        b.conditions.tz,
                        b.conditions.faketime.as_deref().unwrap_or("real"),
                        b.seconds,
                        b.digest
                    );
                }
                match &report.difference {
                    None => {
                        println!("reproducible: {} files identical", report.files.len());
                        if let Some(p) = &report.image {
                            println!("image  {}", p.display());
                        }
                    }
                    Some(d) => println!("NOT reproducible: {d}"),
                }
            }
            crate::build::reproducible::verdict(&report)?;
        }
        Command::Build {
            recipe,
            output,
            check_reproducible: false,
        } => {
            let mut progress = if cli.json {
                Progress::hidden()
            } else {
                Progress::new(cli.quiet)
            };
            let report = build::build(
                recipe,
                &store,
                &BuildOptions {
                    out_dir: output.clone(),
                },
                &mut progress,
            )?;
            drop(progress);
            if cli.json {
                print_json(&report)?;
            } else if !cli.quiet {
                println!("{} {}", report.image.name, report.image.version);
                for l in &report.layers {
                    println!(
                        "  {:<8} {:<24} {} {}",
                        l.kind,
                        l.name,
                        &l.digest[..19],
                        if l.cached { "cached" } else { "built" }
                    );
                }
                println!("image  {}", report.image.path.display());
                println!("digest {}", report.image.digest);
                println!("size   {}", human(report.image.size));
            }
        }
        Command::Lock { recipe } => {
            let mut progress = if cli.json {
                Progress::hidden()
            } else {
                Progress::new(cli.quiet)
            };
            let (path, lock) = build::lock(recipe, &store, &mut progress)?;
            drop(progress);
            if cli.json {
                print_json(&serde_json::json!({"lock": path, "layers": lock.layers}))?;
            } else if !cli.quiet {
                for l in &lock.layers {
                    println!("  {:<24} {} packages", l.name, l.packages.len());
                }
                println!("wrote {}", path.display());
            }
        }
        Command::Ls => {
            let listing = inspect::list(&store)?;
            if cli.json {
                print_json(&listing)?;
            } else {
                println!("store {}", store.root().display());
                println!("LAYERS");
                for l in &listing.layers {
                    println!(
                        "  {:<8} {:<24} {} {:>10}",
                        l.kind,
                        l.name,
                        &l.digest[..19],
                        human(l.size)
                    );
                }
                println!("IMAGES");
                for i in &listing.images {
                    println!(
                        "  {:<16} {:<10} {} {:>10}",
                        i.name,
                        i.version,
                        &i.digest[..19],
                        human(i.size)
                    );
                }
                println!("total {}", human(listing.total_bytes));
            }
        }
        Command::Test {
            target,
            junit,
            output,
        } => {
            let image = if target.extension().is_some_and(|e| e == "toml") {
                let mut progress = if cli.json {
                    Progress::hidden()
                } else {
                    Progress::new(cli.quiet)
                };
                let report = build::build(
                    target,
                    &store,
                    &BuildOptions {
                        out_dir: output.clone(),
                    },
                    &mut progress,
                )?;
                report.image.path
            } else {
                target.clone()
            };
            let v = crate::vm::boottest::test_image(&store, &image, junit.clone())?;
            if cli.json {
                print_json(&v)?;
            } else if !cli.quiet {
                crate::vm::boottest::print_human(&v);
            }
            if !v.passed {
                anyhow::bail!(crate::util::error::CheckFailed {
                    message: format!(
                        "{} failed its boot test: {}",
                        v.image,
                        v.failed_check.as_deref().unwrap_or("?")
                    )
                });
            }
        }
        Command::Boot {
            image,
            memory,
            ports,
        } => {
            crate::vm::qemu::boot_interactive(image, *memory, ports)?;
        }
        Command::Inspect { target } => {
            let info =
                inspect::inspect(&store, target).with_context(|| format!("inspecting {target}"))?;
            if cli.json {
                print_json(&info)?;
            } else {
                inspect::print_human(&info);
            }
        }
        Command::Diff { a, b } => {
            let ia =
                crate::read::imagefs::load(&store, a).with_context(|| format!("reading {a}"))?;
            let ib =
                crate::read::imagefs::load(&store, b).with_context(|| format!("reading {b}"))?;
            let d = crate::read::diff::diff(&ia, &ib);
            if cli.json {
                print_json(&d)?;
            } else if !cli.quiet {
                print!("{}", d.human());
            }
            if !d.identical {
                anyhow::bail!(crate::util::error::CheckFailed {
                    message: format!("{a} and {b} differ: {}", d.summary()),
                });
            }
        }
        Command::Keygen {
            output,
            unencrypted,
        } => {
            let r = sign::keygen(output, !unencrypted)?;
            if cli.json {
                print_json(&r)?;
            } else if !cli.quiet {
                println!("secret key {}", r.secret_key.display());
                println!("public key {}", r.public_key.display());
                println!("key id     {}", r.key_id);
            }
        }
        Command::Sign {
            file,
            key,
            signature,
        } => {
            let r = sign::sign(&store, file, key, signature.as_deref())?;
            if cli.json {
                print_json(&r)?;
            } else if !cli.quiet {
                println!("signature {}", r.signature.display());
                println!("key id    {}", r.key_id);
                println!("trusted   {}", r.trusted_comment.replace('\t', " "));
            }
        }
        Command::Verify {
            file,
            signature,
            pubkey,
        } => {
            let pk = sign::load_public_key(pubkey)?;
            let sig = signature.clone().unwrap_or_else(|| sign::sig_path(file));
            let v = sign::verify_file(file, &sig, &pk)?;
            if cli.json {
                print_json(&v)?;
            } else if !cli.quiet {
                println!("{}: signature OK, key id {}", file.display(), v.key_id);
                println!("trusted {}", v.trusted_comment.replace('\t', " "));
            }
        }
        Command::Publish {
            image,
            channel,
            key,
            to,
        } => {
            let (oci, dirs): (Vec<_>, Vec<_>) =
                to.iter().cloned().partition(|t| t.starts_with("oci://"));
            if dirs.len() > 1 {
                return Err(crate::util::error::InputError::file(
                    "(command line)",
                    "at most one --to DIR",
                )
                .into());
            }
            let releases = dirs
                .first()
                .map_or_else(|| Releases::of_store(&store), Releases::new);
            let opts = release::PublishOptions {
                image: image.clone(),
                channel: channel.clone(),
                key: key.clone(),
                releases,
                oci,
            };
            let r = release::publish(&store, &opts)?;
            if cli.json {
                print_json(&r)?;
            } else if !cli.quiet {
                println!("{} {} {}", r.name, r.version, r.digest);
                println!("verdict  {}", r.verdict);
                for f in &r.files {
                    let state = if f.existed {
                        "already published"
                    } else {
                        "signed"
                    };
                    println!("  {} ({state})", f.path.display());
                }
                match &r.entry {
                    Some(e) => println!(
                        "channel  {} #{} now current (key {})",
                        e.channel, e.seq, e.key_id
                    ),
                    None => println!("channel  {channel}: already current"),
                }
                for o in &r.oci {
                    println!("pushed   {}", o.reference);
                }
            }
        }
        Command::Releases { channel, releases } => {
            let rel = releases
                .as_ref()
                .map_or_else(|| Releases::of_store(&store), Releases::new);
            let reports = release::releases(&rel, channel.as_deref())?;
            if cli.json {
                match (channel, reports.first()) {
                    (Some(_), Some(r)) => print_json(r)?,
                    _ => print_json(&reports)?,
                }
            } else {
                for r in &reports {
                    print_channel(r);
                }
            }
        }
        Command::Promote {
            digest,
            from,
            to,
            releases,
        } => {
            let rel = releases
                .as_ref()
                .map_or_else(|| Releases::of_store(&store), Releases::new);
            let e = release::promote(&rel, digest, from, to)?;
            let report = release::releases(&rel, Some(to))?.remove(0);
            if cli.json {
                print_json(&report)?;
            } else if !cli.quiet {
                if e.is_none() {
                    println!("{digest} is already current on {to}");
                }
                print_channel(&report);
            }
        }
        Command::Rollback { channel, releases } => {
            let rel = releases
                .as_ref()
                .map_or_else(|| Releases::of_store(&store), Releases::new);
            release::rollback(&rel, channel)?;
            let report = release::releases(&rel, Some(channel))?.remove(0);
            if cli.json {
                print_json(&report)?;
            } else if !cli.quiet {
                print_channel(&report);
            }
        }
        Command::Pull {
            source,
            output,
            pubkey,
        } => {
            let r = crate::publish::oci::pull(source, output, pubkey)?;
            if cli.json {
                print_json(&r)?;
            } else if !cli.quiet {
                println!(
                    "{} {} {} (signature OK, key {})",
                    r.name, r.version, r.digest, r.key_id
                );
                for f in &r.files {
                    println!("  {}", f.display());
                }
            }
        }
    }
    Ok(())
}

/// A channel's history for a person: newest last, the current one marked.
fn print_channel(r: &release::ChannelReport) {
    println!("channel {}", r.channel);
    for e in &r.history {
        let mark = if r.current.as_ref().is_some_and(|c| c.seq == e.seq) {
            "*"
        } else {
            " "
        };
        let how = match (&e.from, &e.replaces) {
            (Some(f), _) => format!("from {f}"),
            (_, Some(d)) => format!("replaces {}", &d[..d.len().min(19)]),
            _ => String::new(),
        };
        let line = format!(
            "{mark} {:>3} {:<8} {:<10} {} {} {} {how}",
            e.seq,
            format!("{:?}", e.action).to_lowercase(),
            e.version,
            &e.digest[..e.digest.len().min(19)],
            e.time,
            e.key_id
        );
        println!("{}", line.trim_end());
    }
}

/// Bytes in IEC units.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
