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
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            // ureq's byte-level wire trace would dump whole blobs (and, for
            // requests kiln does not wrap, headers): never on by `-v`.
            tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
                .unwrap_or_else(|_| format!("{level},ureq_proto=off").into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    // kiln gives its own files explicit modes; the tools it runs (mmdebstrap,
    // apt, dpkg and maintainer scripts) create files as the umask says, so
    // they get Debian's usual 022 and the caller's umask never reaches an image.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    if let Err(err) = kiln::cli::run(cli) {
        eprintln!("{}", kiln::util::error::report(&err));
        std::process::exit(kiln::util::error::exit_code(&err));
    }
}
