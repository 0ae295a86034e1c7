//! The `kiln` command line (the command-line contract in
//! `builder/ARCHITECTURE.md`). All clap code lives here: the definitions in
//! [`args`]; [`run`] only dispatches each command to one small function in
//! the module of its family, which calls into the library and has the
//! result printed by [`render`], as JSON with `--json`, else for people
//! (unless `--quiet`).

mod args;
mod building;
mod inspecting;
mod manual;
mod publishing;
pub mod render;
mod testing;
mod upkeep;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::publish::release::Releases;
use crate::store::Store;
use crate::upkeep::{fsck, gc};
use crate::util::progress::Progress;

pub use args::{CacheArgs, Cli, Command};
pub use render::human;

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
            [recipe] => building::check_reproducible(
                &cx,
                recipe,
                output,
                building::signing(secure_boot_key, secure_boot_cert),
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
        } => building::build(
            &cx,
            recipes,
            output,
            *jobs,
            cache.open()?,
            building::signing(secure_boot_key, secure_boot_cert),
        ),
        Command::Lock { recipe } => building::lock(&cx, recipe),
        Command::Ls => inspecting::ls(&cx),
        Command::Test {
            target,
            junit,
            output,
            secure_boot,
            tpm,
        } => testing::test(
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
        Command::Inspect { target } => inspecting::inspect(&cx, target),
        Command::Diff { a, b } => inspecting::diff(&cx, a, b),
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
        } => upkeep::gc(
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
        Command::Completions { shell } => manual::completions(*shell, &mut io::stdout().lock()),
        Command::Man { command } => manual::man(command.as_deref(), &mut io::stdout().lock()),
        Command::Fsck { repair, releases } => upkeep::fsck(
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

#[cfg(test)]
mod tests;
