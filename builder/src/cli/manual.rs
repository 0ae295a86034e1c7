//! `kiln completions` and `kiln man`: shell completions and manual pages,
//! generated from the clap definitions ([`super::args`]).

use std::io::Write;

use anyhow::{Context as _, Result};

use super::Cli;

/// `kiln completions SHELL`: the completion script, generated from the
/// same clap definitions that parse the command line.
pub(super) fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<()> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "kiln", out);
    out.flush().context("writing to stdout")
}

/// `kiln man [COMMAND]`: the manual page, generated from the clap
/// definitions; with a command, `kiln-COMMAND(1)`.
pub(super) fn man(command: Option<&str>, out: &mut dyn Write) -> Result<()> {
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
