//! kiln's log on stderr ([`tracing`]): warnings by default, `-v` for more,
//! `-q` for errors only, `$KILN_LOG` to choose. Coloured only when stderr
//! is a terminal and `NO_COLOR` is unset or empty (<https://no-color.org>),
//! so a log kept in a file holds no escape sequences. Every message and
//! field is quoted ([`Printable`]): a name from an image or a registry can
//! neither break a log line nor reach the terminal as an escape sequence.

use std::ffi::OsString;
use std::fmt;
use std::io::IsTerminal as _;

use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::fmt::format::{self, Writer};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

use crate::util::printable::Printable;

/// Install the log for this process, on stderr.
pub fn init(quiet: bool, verbose: u8) {
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR"),
    );
    subscriber(filter(quiet, verbose), std::io::stderr, ansi).init();
}

/// `$KILN_LOG`, else the level `-q` and `-v` select.
fn filter(quiet: bool, verbose: u8) -> EnvFilter {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    // ureq's byte-level wire trace would dump whole blobs (and, for
    // requests kiln does not wrap, headers): never on by `-v`.
    EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| format!("{level},ureq_proto=off").into())
}

/// Whether the log is coloured: on a terminal, unless `NO_COLOR` is set
/// to something.
fn colour(terminal: bool, no_color: Option<OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The log subscriber writing to `writer`, coloured when `ansi`.
fn subscriber<W>(filter: EnvFilter, writer: W, ansi: bool) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(ansi)
        .fmt_fields(format::debug_fn(quoted_field).delimited(" "))
        .finish()
}

/// One field of an event: the message as it is, others as `name=value`,
/// each quoted.
fn quoted_field(
    w: &mut Writer<'_>,
    field: &tracing::field::Field,
    value: &dyn fmt::Debug,
) -> fmt::Result {
    let text = format!("{value:?}");
    if field.name() == "message" {
        write!(w, "{}", Printable(&text))
    } else {
        write!(w, "{field}={}", Printable(&text))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What the log wrote, kept for the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A warning naming `layer`, logged as kiln logs with stderr on a
    /// terminal or not: the bytes written.
    fn warning(terminal: bool, layer: &str) -> Vec<u8> {
        let captured = Captured::default();
        let sink = captured.clone();
        let ansi = colour(terminal, None);
        let sub = subscriber(EnvFilter::new("warn"), move || sink.clone(), ansi);
        tracing::subscriber::with_default(sub, || {
            tracing::warn!(layer = %layer, "layer cache: not using the entry for {layer}");
        });
        let bytes = captured.0.lock().unwrap().clone();
        bytes
    }

    #[test]
    fn the_log_is_coloured_only_on_a_terminal_without_no_color() {
        assert!(!colour(false, None));
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, Some("1".into())));
    }

    #[test]
    fn a_warning_to_a_file_has_no_escape_sequences_and_stays_one_line() {
        let name = "app\n+ forged\x1b[2K\r";
        let text = warning(false, name);
        let shown = String::from_utf8(text.clone()).unwrap();
        assert!(!text.contains(&0x1b), "{shown:?}");
        assert!(!text.contains(&b'\r'), "{shown:?}");
        assert_eq!(shown.matches('\n').count(), 1, "{shown:?}");
        assert!(shown.ends_with('\n'), "{shown:?}");
        assert!(shown.contains("WARN"), "{shown:?}");
        assert!(
            shown.contains(r"layer=app\n+ forged\x1b[2K\r layer cache: not using the entry for app\n+ forged\x1b[2K\r")
                || shown.contains(r"layer cache: not using the entry for app\n+ forged\x1b[2K\r layer=app\n+ forged\x1b[2K\r"),
            "{shown:?}"
        );
        // On a terminal the level is coloured, the names still quoted.
        let coloured = warning(true, name);
        assert!(coloured.contains(&0x1b));
        let coloured = String::from_utf8(coloured).unwrap();
        assert!(coloured.contains(r"\x1b[2K"), "{coloured:?}");
        assert_eq!(coloured.matches('\n').count(), 1, "{coloured:?}");
    }
}
