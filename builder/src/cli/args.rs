//! The clap definitions of kiln's command line: the global options, the
//! commands and their arguments. Shell completions and manual pages are
//! generated from them ([`super::manual`]).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::store::{self, Store};

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

impl Cli {
    pub(super) fn store(&self) -> Store {
        Store::new(self.store.clone().unwrap_or_else(store::default_root))
    }
}
