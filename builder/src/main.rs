//! The `kiln` binary: logging, argument parsing, error printing, exit codes.

use clap::Parser;

fn main() {
    let cli = match kiln::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                kiln::util::error::EXIT_BAD_INPUT
            } else {
                kiln::util::error::EXIT_OK
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    kiln::cli::logging::init(cli.quiet, cli.verbose);
    // kiln gives its own files explicit modes; the tools it runs (mmdebstrap,
    // apt, dpkg and maintainer scripts) create files as the umask says, so
    // they get Debian's usual 022 and the caller's umask never reaches an image.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    if let Err(err) = kiln::cli::run(cli) {
        // Errors name paths, layers and files from images: quoted for the
        // terminal, their own line breaks kept.
        let text = kiln::util::printable::lines(&kiln::util::error::report(&err));
        eprintln!("{text}");
        std::process::exit(kiln::util::error::exit_code(&err));
    }
}
