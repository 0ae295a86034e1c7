//! Text from outside kiln (a file name in an image, a package name from a
//! manifest, a tag from a registry, a guest's console) shown to a person:
//! every character that a terminal would act on instead of printing is
//! quoted, so such text can neither forge lines (`\n+ forged` in `kiln
//! diff`) nor send escape sequences (`\x1b[2K` clears the line) to the
//! reader's terminal.
//!
//! [`Printable`] is the one mechanism: a [`Display`] wrapper the human
//! renderers put around every value they did not make themselves. It writes
//! `\n`, `\r`, `\t` and `\\` as those two-character escapes, other control
//! characters (C0, DEL, C1) as `\xNN` or `\u{NN}`, and the invisible
//! characters that reorder or break lines (Unicode bidirectional controls,
//! line and paragraph separators, the byte-order mark) as `\u{NNNN}`.
//! Everything else, other scripts included, is shown as it is. `--json`
//! output does not use it: JSON has its own escapes.

use std::fmt::{self, Display, Write as _};

/// `T` as [`Display`] shows it, with characters a terminal acts on quoted
/// (see the module documentation). Width and alignment (`{:<24}`) apply to
/// the quoted text.
#[derive(Debug, Clone, Copy)]
pub struct Printable<T>(pub T);

impl<T: Display> Display for Printable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut quoted = String::new();
        write!(Quoting(&mut quoted), "{}", self.0)?;
        f.pad(&quoted)
    }
}

/// `.printable()` on anything that displays: `name.printable()`,
/// `path.display().printable()`.
pub trait PrintableExt: Display {
    /// This value, quoted for a person's terminal.
    fn printable(&self) -> Printable<&Self> {
        Printable(self)
    }
}

impl<T: Display + ?Sized> PrintableExt for T {}

/// `text` with every character a terminal acts on quoted as [`Printable`]
/// does, except the line breaks (`\n`) that separate its lines, and with
/// backslashes left as they are (so text whose names were quoted already
/// is not quoted twice). For multi-line text kiln shows as lines: an error
/// chain, the tail of a guest's console, a whole report before it reaches
/// the terminal. A `\r` before a line break is dropped (serial consoles
/// end lines with CRLF).
pub fn lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        for part in line.split_inclusive('\\') {
            match part.strip_suffix('\\') {
                Some(head) => {
                    out.push_str(&Printable(head).to_string());
                    out.push('\\');
                }
                None => out.push_str(&Printable(part).to_string()),
            }
        }
    }
    out
}

/// Whether a person's terminal would act on `c` instead of showing it.
pub fn is_quoted(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// A writer that quotes what passes through it.
struct Quoting<'a>(&'a mut String);

impl fmt::Write for Quoting<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '\n' => self.0.push_str("\\n"),
                '\r' => self.0.push_str("\\r"),
                '\t' => self.0.push_str("\\t"),
                '\\' => self.0.push_str("\\\\"),
                c if (c as u32) < 0x80 && is_quoted(c) => write!(self.0, "\\x{:02x}", c as u32)?,
                c if is_quoted(c) => write!(self.0, "\\u{{{:x}}}", c as u32)?,
                c => self.0.push(c),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_table() {
        for (text, want) in [
            ("plain/name.txt", "plain/name.txt"),
            ("héllo wörld 日本", "héllo wörld 日本"),
            ("a\n+ forged", "a\\n+ forged"),
            ("\x1b[2Kclear", "\\x1b[2Kclear"),
            ("cr\rtab\tnul\0del\x7f", "cr\\rtab\\tnul\\x00del\\x7f"),
            ("back\\x1b", "back\\\\x1b"),
            ("c1 \u{9b}2K", "c1 \\u{9b}2K"),
            ("bidi \u{202E}txt.exe", "bidi \\u{202e}txt.exe"),
            ("sep\u{2028}line", "sep\\u{2028}line"),
        ] {
            let shown = Printable(text).to_string();
            assert_eq!(shown, want, "{text:?}");
            assert!(!shown.chars().any(is_quoted_unescaped), "{shown:?}");
        }
    }

    /// Quoted output holds no character a terminal acts on (backslashes
    /// are its own escapes).
    fn is_quoted_unescaped(c: char) -> bool {
        c != '\\' && is_quoted(c)
    }

    #[test]
    fn width_and_alignment_apply_to_the_quoted_text() {
        assert_eq!(format!("[{:<6}]", Printable("a\nb")), "[a\\nb  ]");
        assert_eq!(format!("[{:>5}]", "x".printable()), "[    x]");
    }

    #[test]
    fn lines_keeps_line_breaks_and_quotes_the_rest() {
        for (text, want) in [
            (
                "ok\r\n\x1b[31mred\x1b[0m\nlast",
                "ok\n\\x1b[31mred\\x1b[0m\nlast",
            ),
            // Quoted once already: left as it is.
            ("a\\nb \\x1b", "a\\nb \\x1b"),
            ("tab\tcr\r mid\\", "tab\\tcr\\r mid\\"),
            ("", ""),
            ("\n\n", "\n\n"),
        ] {
            assert_eq!(lines(text), want, "{text:?}");
        }
    }
}
