//! The `kiln` command line (the command-line contract in
//! `builder/ARCHITECTURE.md`). All clap code lives here: [`run`] hands each
//! command to one small function that calls into the library and has the
//! result printed by [`render`], as JSON with `--json`, else for people
//! (unless `--quiet`).

mod publishing;
pub mod render;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::build::{self, BuildOptions};
use crate::image::secureboot::UkiSigner;
use crate::publish::release::{self, Releases};
use crate::publish::sign;
use crate::read::inspect;
use crate::registry::cache::{Cache, CacheConfig};
use crate::store::{self, Store};
use crate::upkeep::{fsck, gc};
use crate::util::error::{check_failed, EnvError};
use crate::util::progress::Progress;

pub use render::human;

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
    /// Build the layers of one or more recipes (reusing cached ones) and write the images.
    Build {
        /// The recipe files (several: built in one run, up to --jobs at a
        /// time, layers they share built once; one failing leaves the
        /// others' images intact).
        #[arg(required = true, num_args = 1..)]
        recipes: Vec<PathBuf>,
        /// Output directory.
        #[arg(short, long, default_value = "out")]
        output: PathBuf,
        /// Build twice from nothing, in separate temporary stores, with
        /// different umask, time zone and clock, and compare the outputs byte
        /// for byte; exit 1 naming the first differing partition, file and field.
        #[arg(long)]
        check_reproducible: bool,
        /// With several recipes: how many are built at once (default: the number of cores).
        #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        jobs: Option<u16>,
        /// The layer cache.
        #[command(flatten)]
        cache: CacheArgs,
        /// Sign the UKI for UEFI Secure Boot with this private key (PEM, RSA >= 2048; the db key).
        #[arg(long, value_name = "KEY", requires = "secure_boot_cert")]
        secure_boot_key: Option<PathBuf>,
        /// The certificate of --secure-boot-key (PEM or DER X.509, valid, usable for code signing).
        #[arg(long, value_name = "CERT", requires = "secure_boot_key")]
        secure_boot_cert: Option<PathBuf>,
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
        /// Boot with UEFI Secure Boot enforced: enroll the certificates of this
        /// `kiln keygen --secure-boot` directory (PK.crt, KEK.crt, db.crt), or this one
        /// db certificate, and add a `secure_boot` check that the guest kernel saw it on.
        #[arg(long, value_name = "DIR|CERT")]
        secure_boot: Option<PathBuf>,
        /// Attach a software TPM 2.0 (swtpm) and add a `pcr11` check: the PCR 11 that
        /// kiln-init reads before switching root must equal the manifest's prediction.
        #[arg(long)]
        tpm: bool,
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
    /// xattrs, mtime), packages, kernel command line, root hash, kernel, os-release, and every
    /// partition's digest. Exit 0 when they are the same in every compared respect, 1 when they differ.
    Diff {
        /// The first image: a disk image file (`.raw`), a tar image (`.tar`) or a `sha256:` digest from the store.
        a: String,
        /// The second image, likewise.
        b: String,
    },
    /// Write a minisign-format key pair: the secret key at PATH, the public key at PATH.pub.
    /// With --secure-boot: UEFI Secure Boot PK, KEK and db key pairs in the directory PATH.
    Keygen {
        /// Where the secret key goes (the public key goes to PATH.pub); with
        /// --secure-boot, the directory for PK.key/PK.crt, KEK.key/KEK.crt, db.key/db.crt.
        #[arg(short, long, value_name = "PATH")]
        output: PathBuf,
        /// Store the secret key without a password (for CI keys kept in a secret store).
        #[arg(long, conflicts_with = "secure_boot")]
        unencrypted: bool,
        /// Write self-signed Secure Boot keys (RSA 2048, PEM; keys mode 0600), never overwriting.
        #[arg(long)]
        secure_boot: bool,
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
    /// Remove what the store no longer needs: scratch of dead kiln processes, blobs nothing
    /// references, old cached images, stale records. Waits for a running build.
    Gc {
        /// Keep only the newest N builds of each image name (their manifest, layers and cached
        /// image; "newest" by when a build last produced or reused them). Without it every
        /// build's manifest and layers stay, and the newest two cached images per name.
        #[arg(long, value_name = "N")]
        keep_last: Option<usize>,
        /// Keep whatever a release references: manifest, cached image, layers (the default).
        #[arg(long, overrides_with = "no_keep_released")]
        keep_released: bool,
        /// Do not keep what only releases reference: their cached images, and with --keep-last
        /// their manifests and layers (release stores themselves are never touched).
        #[arg(long)]
        no_keep_released: bool,
        /// Also empty the .deb download cache and the apt indexes kept beside it.
        #[arg(long)]
        debs: bool,
        /// Report what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Another release store whose releases are kept (repeatable; STORE/releases always is).
        #[arg(long = "releases", value_name = "DIR")]
        releases: Vec<PathBuf>,
    },
    /// Check the store: re-hash every blob, cached image and .deb, check every record against
    /// its name and what it points at. Exit 1 naming each bad path.
    Fsck {
        /// Remove the store entries at fault, so the next build recreates them (problems in a
        /// release store are only reported), then check again.
        #[arg(long)]
        repair: bool,
        /// Another release store to check (repeatable; STORE/releases always is).
        #[arg(long = "releases", value_name = "DIR")]
        releases: Vec<PathBuf>,
    },
    /// Print a shell completion script for kiln on stdout (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print kiln's manual page (roff, for man(1)) on stdout; with COMMAND, that command's page.
    Man {
        /// A command (`build`, `test`, …): print `kiln-COMMAND(1)` instead of `kiln(1)`.
        command: Option<String>,
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

/// `kiln build`'s layer cache options.
#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    /// A layer cache shared through an OCI registry: `oci://HOST[:PORT]/REPO`.
    /// Layers are looked up there by key before they are built, and pushed
    /// there after.
    #[arg(long, env = "KILN_CACHE", value_name = "oci://HOST[:PORT]/REPO")]
    pub cache: Option<String>,
    /// Only read from the cache, never push (for untrusted runners).
    #[arg(long, requires = "cache")]
    pub cache_read_only: bool,
    /// Use only cache entries signed with this minisign public key.
    #[arg(long, requires = "cache", value_name = "FILE")]
    pub cache_pubkey: Option<PathBuf>,
    /// Sign the cache entries this runner pushes with this minisign secret key.
    #[arg(
        long,
        requires = "cache",
        conflicts_with = "cache_read_only",
        value_name = "FILE"
    )]
    pub cache_sign_key: Option<PathBuf>,
}

impl CacheArgs {
    /// The cache these options name, if any: keys read now, so a bad one is
    /// bad input before anything is built.
    fn open(&self) -> Result<Option<std::sync::Arc<Cache>>> {
        let Some(url) = self.cache.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let reference = crate::registry::Reference::parse(url)?;
        if reference.tag.is_some() {
            return Err(crate::util::error::InputError {
                file: "(command line)".into(),
                line: None,
                field: Some("--cache".into()),
                message: format!("{url:?}: a cache is a repository, without a tag"),
            }
            .into());
        }
        let pubkey = self
            .cache_pubkey
            .as_deref()
            .map(sign::load_public_key)
            .transpose()?;
        let sign_key = self
            .cache_sign_key
            .as_deref()
            .map(sign::SigningKey::load)
            .transpose()?;
        Ok(Some(std::sync::Arc::new(Cache::new(CacheConfig {
            reference,
            read_only: self.cache_read_only,
            pubkey,
            sign_key,
        }))))
    }
}

impl Cli {
    fn store(&self) -> Store {
        Store::new(self.store.clone().unwrap_or_else(store::default_root))
    }
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let cx = Context {
        store: cli.store(),
        json: cli.json,
        quiet: cli.quiet,
    };
    match &cli.command {
        Command::Build {
            recipes,
            output,
            check_reproducible: true,
            secure_boot_key,
            secure_boot_cert,
            ..
        } => match recipes.as_slice() {
            [recipe] => check_reproducible(
                &cx,
                recipe,
                output,
                signing(secure_boot_key, secure_boot_cert),
            ),
            _ => Err(crate::util::error::InputError {
                file: "(command line)".into(),
                line: None,
                field: Some("--check-reproducible".into()),
                message: "checks one recipe at a time".into(),
            }
            .into()),
        },
        Command::Build {
            recipes,
            output,
            check_reproducible: false,
            jobs,
            cache,
            secure_boot_key,
            secure_boot_cert,
        } => build(
            &cx,
            recipes,
            output,
            *jobs,
            cache.open()?,
            signing(secure_boot_key, secure_boot_cert),
        ),
        Command::Lock { recipe } => lock(&cx, recipe),
        Command::Ls => ls(&cx),
        Command::Test {
            target,
            junit,
            output,
            secure_boot,
            tpm,
        } => test(
            &cx,
            target,
            junit.clone(),
            output,
            secure_boot.as_deref(),
            *tpm,
        ),
        Command::Boot {
            image,
            memory,
            ports,
        } => crate::vm::qemu::boot_interactive(image, *memory, ports),
        Command::Inspect { target } => inspect(&cx, target),
        Command::Diff { a, b } => diff(&cx, a, b),
        Command::Keygen {
            output,
            secure_boot: true,
            ..
        } => {
            let r = crate::image::secureboot::keygen(output)?;
            cx.report(&r, |out| render::release::secure_boot_keygen(out, &r))
        }
        Command::Keygen {
            output,
            unencrypted,
            secure_boot: false,
        } => publishing::keygen(&cx, output, !unencrypted),
        Command::Sign {
            file,
            key,
            signature,
        } => publishing::sign(&cx, file, key, signature.as_deref()),
        Command::Verify {
            file,
            signature,
            pubkey,
        } => publishing::verify(&cx, file, signature.as_deref(), pubkey),
        Command::Publish {
            image,
            channel,
            key,
            to,
        } => publishing::publish(&cx, image, channel, key, to),
        Command::Releases { channel, releases } => {
            publishing::show_releases(&cx, channel.as_deref(), releases.as_deref())
        }
        Command::Promote {
            digest,
            from,
            to,
            releases,
        } => publishing::promote(&cx, digest, from, to, releases.as_deref()),
        Command::Rollback { channel, releases } => {
            publishing::rollback(&cx, channel, releases.as_deref())
        }
        Command::Pull {
            source,
            output,
            pubkey,
        } => publishing::pull(&cx, source, output, pubkey),
        Command::Gc {
            keep_last,
            keep_released: _,
            no_keep_released,
            debs,
            dry_run,
            releases,
        } => gc(
            &cx,
            &gc::GcOptions {
                keep_last: *keep_last,
                keep_released: !no_keep_released,
                releases: cx.release_stores(releases),
                debs: *debs,
                dry_run: *dry_run,
                temp_dir: Some(std::env::temp_dir()),
            },
        ),
        Command::Completions { shell } => completions(*shell, &mut io::stdout().lock()),
        Command::Man { command } => man(command.as_deref(), &mut io::stdout().lock()),
        Command::Fsck { repair, releases } => fsck(
            &cx,
            &fsck::FsckOptions {
                repair: *repair,
                releases: cx.release_stores(releases),
            },
        ),
    }
}

/// What every command needs: the store, and how to report.
struct Context {
    store: Store,
    /// `--json`: print the report as JSON.
    json: bool,
    /// `--quiet`: print no report for people (and no progress).
    quiet: bool,
}

impl Context {
    /// Progress on stderr, hidden with `--json` or `--quiet`.
    fn progress(&self) -> Progress {
        if self.json {
            Progress::hidden()
        } else {
            Progress::new(self.quiet)
        }
    }

    /// Print `value` as JSON with `--json`, else `human` unless `--quiet`.
    fn report(
        &self,
        value: &impl Serialize,
        human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<()> {
        if self.quiet && !self.json {
            return Ok(());
        }
        self.show(value, human)
    }

    /// Print `value` as JSON with `--json`, else `human` even with
    /// `--quiet`: for commands whose report is what they are run for
    /// (`ls`, `inspect`, `releases`).
    fn show(
        &self,
        value: &impl Serialize,
        human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<()> {
        let mut out = io::stdout().lock();
        if self.json {
            render::json(&mut out, value)
        } else {
            human(&mut out).map_err(Into::into)
        }
        .context("writing to stdout")
    }

    /// The store's own release store and `dirs` (each canonical, so a
    /// link the user names is not taken for one inside a release store).
    fn release_stores(&self, dirs: &[PathBuf]) -> Vec<Releases> {
        let given = dirs
            .iter()
            .map(|d| Releases::new(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone())));
        std::iter::once(Releases::of_store(&self.store))
            .chain(given)
            .collect()
    }

    /// The release store: `dir`, else the store's `releases`.
    fn releases(&self, dir: Option<&Path>) -> Releases {
        dir.map_or_else(|| Releases::of_store(&self.store), Releases::new)
    }
}

/// `kiln build --check-reproducible`: two builds from nothing, compared.
fn check_reproducible(
    cx: &Context,
    recipe: &Path,
    output: &Path,
    signing: Option<(&Path, &Path)>,
) -> Result<()> {
    // Bad input fails here, before two builds start.
    crate::input::plan::Plan::new(recipe)?;
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    if let Some((key, cert)) = signing {
        UkiSigner::load(key, cert)?;
        // The builds run in directories of their own.
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        args.extend([
            "--secure-boot-key".into(),
            absolute(key).into_os_string(),
            "--secure-boot-cert".into(),
            absolute(cert).into_os_string(),
        ]);
    }
    let kiln = std::env::current_exe().context("finding the kiln executable")?;
    let report = build::reproducible::check(&kiln, recipe, output, cx.quiet || cx.json, &args)?;
    cx.report(&report, |out| render::build::reproducible(out, &report))?;
    build::reproducible::verdict(&report)
}

/// `--secure-boot-key` and `--secure-boot-cert` (clap requires both or neither).
fn signing<'a>(
    key: &'a Option<PathBuf>,
    cert: &'a Option<PathBuf>,
) -> Option<(&'a Path, &'a Path)> {
    match (key, cert) {
        (Some(k), Some(c)) => Some((k.as_path(), c.as_path())),
        _ => None,
    }
}

/// `kiln build`: one recipe prints its report; several are built in turn
/// and print `{"images": [...], "failed": [...]}`, exit 1 when any failed.
fn build(
    cx: &Context,
    recipes: &[PathBuf],
    output: &Path,
    jobs: Option<u16>,
    cache: Option<std::sync::Arc<Cache>>,
    signing: Option<(&Path, &Path)>,
) -> Result<()> {
    // A bad key or certificate fails before any work.
    let secure_boot = signing
        .map(|(key, cert)| UkiSigner::load(key, cert))
        .transpose()?;
    let opts = BuildOptions {
        out_dir: output.to_path_buf(),
        cache,
        secure_boot,
    };
    if let [recipe] = recipes {
        let mut progress = cx.progress();
        let report = build::build(recipe, &cx.store, &opts, &mut progress)?;
        drop(progress);
        return cx.report(&report, |out| render::build::build(out, &report));
    }
    let mut progress = cx.progress();
    let jobs = jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let all = build::build_many(recipes, &cx.store, &opts, jobs, &mut progress)?;
    drop(progress);
    cx.report(&all, |out| render::build::build_many(out, &all))?;
    if !all.failed.is_empty() {
        let names: Vec<String> = all
            .failed
            .iter()
            .map(|f| f.recipe.display().to_string())
            .collect();
        anyhow::bail!(check_failed(format!(
            "{} of {} recipes failed: {}",
            names.len(),
            recipes.len(),
            names.join(", ")
        )));
    }
    Ok(())
}

/// `kiln lock`.
fn lock(cx: &Context, recipe: &Path) -> Result<()> {
    let mut progress = cx.progress();
    let (path, lock) = build::lock(recipe, &cx.store, &mut progress)?;
    drop(progress);
    cx.report(&render::build::lock_json(&path, &lock), |out| {
        render::build::lock(out, &path, &lock)
    })
}

/// `kiln ls`.
fn ls(cx: &Context) -> Result<()> {
    let listing = inspect::list(&cx.store)?;
    cx.show(&listing, |out| {
        render::store::listing(out, cx.store.root(), &listing)
    })
}

/// `kiln test`: build first when the target is a recipe, then boot and judge.
fn test(
    cx: &Context,
    target: &Path,
    junit: Option<PathBuf>,
    output: &Path,
    secure_boot: Option<&Path>,
    tpm: bool,
) -> Result<()> {
    // Bad keys and a report that cannot be written fail before any build or boot.
    let secure_boot = secure_boot
        .map(crate::vm::secureboot::SecureBootKeys::load)
        .transpose()?;
    if let Some(j) = &junit {
        crate::vm::output::check_output(j)?;
    }
    let image = if target.extension().is_some_and(|e| e == "toml") {
        let mut progress = cx.progress();
        let report = build::build(
            target,
            &cx.store,
            &BuildOptions {
                out_dir: output.to_path_buf(),
                cache: None,
                secure_boot: None,
            },
            &mut progress,
        )?;
        report.image.path
    } else {
        target.to_path_buf()
    };
    let v = crate::vm::boottest::test_image_with(
        &cx.store,
        &image,
        secure_boot,
        tpm,
        !cx.quiet && !cx.json,
    )?;
    let tail = v.console_tail();
    cx.report(&v, |out| render::test::verdict(out, &v, &tail))?;
    if let Some(j) = &junit {
        let mut xml = Vec::new();
        render::test::junit(&mut xml, &v, &tail)?;
        crate::vm::output::write_output(j, &xml)?;
    }
    if !v.passed {
        anyhow::bail!(check_failed(format!(
            "{} failed its boot test: {}",
            v.image,
            v.failed_check.as_deref().unwrap_or("?")
        )));
    }
    Ok(())
}

/// `kiln completions SHELL`: the completion script, generated from the
/// same clap definitions that parse the command line.
fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<()> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "kiln", out);
    out.flush().context("writing to stdout")
}

/// `kiln man [COMMAND]`: the manual page, generated from the clap
/// definitions; with a command, `kiln-COMMAND(1)`.
fn man(command: Option<&str>, out: &mut dyn Write) -> Result<()> {
    let mut kiln = <Cli as clap::CommandFactory>::command();
    // Built, so that each command's page lists the global options too.
    kiln.build();
    let page = match command {
        None => kiln,
        Some(name) => {
            let Some(sub) = kiln.find_subcommand(name) else {
                let names: Vec<&str> = kiln.get_subcommands().map(|c| c.get_name()).collect();
                return Err(crate::util::error::InputError::file(
                    "(command line)",
                    format!("no command {name:?}: one of {}", names.join(", ")),
                )
                .into());
            };
            // Named for its page (kiln-build(1)), and titled as invoked.
            let full = format!("kiln-{name}");
            sub.clone()
                .name(full.clone())
                .bin_name(format!("kiln {name}"))
                .display_name(full)
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    clap_mangen::Man::new(page)
        .render(out)
        .context("writing to stdout")
}

/// `kiln inspect`.
fn inspect(cx: &Context, target: &str) -> Result<()> {
    let info =
        inspect::inspect(&cx.store, target).with_context(|| format!("inspecting {target}"))?;
    cx.show(&info, |out| render::inspect::inspection(out, &info))
}

/// `kiln diff`: exit 1 when the images differ.
fn diff(cx: &Context, a: &str, b: &str) -> Result<()> {
    let ia = crate::read::imagefs::load(&cx.store, a).with_context(|| format!("reading {a}"))?;
    let ib = crate::read::imagefs::load(&cx.store, b).with_context(|| format!("reading {b}"))?;
    let d = crate::read::diff::diff(&ia, &ib);
    cx.report(&d, |out| render::inspect::diff(out, &d))?;
    if !d.identical {
        anyhow::bail!(check_failed(format!("{a} and {b} differ: {}", d.summary())));
    }
    Ok(())
}

/// `kiln gc`: exit 3 when an entry could not be removed.
fn gc(cx: &Context, opts: &gc::GcOptions) -> Result<()> {
    let report = gc::gc(&cx.store, opts)?;
    cx.report(&report, |out| render::upkeep::gc(out, &report))?;
    if let Some(first) = report.failed.first() {
        return Err(EnvError::new(format!(
            "{} could not be removed, the first {}: {}",
            render::upkeep::count(report.failed.len(), "entry"),
            first.path.display(),
            first.error
        ))
        .into());
    }
    Ok(())
}

/// `kiln fsck`: exit 1 when the store is not healthy.
fn fsck(cx: &Context, opts: &fsck::FsckOptions) -> Result<()> {
    let report = fsck::fsck(&cx.store, opts)?;
    cx.show(&report, |out| render::upkeep::fsck(out, &report))?;
    if !report.healthy() {
        anyhow::bail!(check_failed(format!(
            "store {}: {}",
            report.store.display(),
            render::upkeep::count(report.problems.len(), "problem")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
