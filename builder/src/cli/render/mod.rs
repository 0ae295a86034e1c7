//! What kiln's commands print. Every report is rendered by a function that
//! writes to an `impl Write`: for people (aligned columns, sizes in IEC units,
//! digests shortened to `sha256:` and 12 hex digits) or, with `--json`, as
//! pretty-printed JSON. The command functions in [`crate::cli`] call these
//! with stdout; the tests here call them with a buffer and compare the text
//! byte for byte, because scripts and the QEMU tests read it.

pub mod build;
pub mod inspect;
pub mod release;
pub mod store;
pub mod test;
pub mod upkeep;

use std::io::Write;

use anyhow::Result;

use crate::util::digest::Digest;
use crate::util::printable::Printable;

/// `value` as pretty-printed JSON and a newline (what `--json` prints).
pub fn json(mut out: impl Write, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    writeln!(out, "{text}")?;
    Ok(())
}

/// Bytes in IEC units: `512 B`, `1.5 KiB`, … `2.0 TiB` (one decimal).
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

/// A digest as listings show it: [`Digest::short`]. A string that is not a
/// digest (a damaged store or release entry) is shown whole, never cut, so a
/// person sees what is there ([`Printable`]).
pub fn short_digest(s: &str) -> String {
    Digest::parse(s).map_or_else(|_| Printable(s).to_string(), |d| d.short())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `sha256:` digest of the empty string, for reports in the tests.
    pub(super) const EMPTY: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// What a render function wrote.
    pub(super) fn text(render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
        let mut out = Vec::new();
        render(&mut out).expect("writing to a Vec cannot fail");
        String::from_utf8(out).expect("kiln renders UTF-8")
    }

    #[test]
    fn human_table() {
        for (bytes, want) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (10 << 20, "10.0 MiB"),
            (3 << 30, "3.0 GiB"),
            (5 << 40, "5.0 TiB"),
            (2048 << 40, "2048.0 TiB"),
        ] {
            assert_eq!(human(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn short_digest_table() {
        for (s, want) in [
            (EMPTY, "sha256:e3b0c44298fc"),
            // A bare hex digest (as store file names spell it) gets its prefix.
            (&EMPTY[7..], "sha256:e3b0c44298fc"),
            // Anything else is shown whole: short, empty, not ASCII.
            ("sha256:e3b0", "sha256:e3b0"),
            ("", ""),
            (
                "sha256:é3b0c44298fc1c149afbf4c8",
                "sha256:é3b0c44298fc1c149afbf4c8",
            ),
        ] {
            assert_eq!(short_digest(s), want, "{s}");
        }
    }

    #[test]
    fn json_is_pretty_with_a_newline() {
        let v = serde_json::json!({"b": [1], "a": "x"});
        let mut out = Vec::new();
        json(&mut out, &v).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n  \"a\": \"x\",\n  \"b\": [\n    1\n  ]\n}\n"
        );
    }
}
