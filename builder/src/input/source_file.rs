//! Reading a user's TOML file (recipe or layer) so that every error names the
//! file, the line and the field.
//!
//! Files are read as bytes and checked for UTF-8 first (the offset of the
//! first bad byte gives the line); parse errors from the `toml` crate carry a
//! byte span that is turned into a line and the dotted key path at that line.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::util::error::InputError;

/// A TOML file's text and the name it is reported under.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// How errors name it (the path as given by the user, or resolved).
    pub display: String,
    /// The file's text.
    pub text: String,
}

impl SourceFile {
    /// Read a file; a missing file, an empty file or non-UTF-8 text is an [`InputError`].
    pub fn read(path: &Path) -> Result<Self, InputError> {
        let display = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|e| InputError::file(&display, format!("cannot read file: {e}")))?;
        Self::from_bytes(path, bytes)
    }

    /// Check bytes that were read from `path`.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, InputError> {
        let display = path.display().to_string();
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..valid]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            InputError {
                file: display.clone(),
                line: Some(line),
                field: None,
                message: format!("the file is not valid UTF-8 text (bad byte at offset {valid})"),
            }
        })?;
        if text.trim().is_empty() {
            return Err(InputError::file(&display, "the file is empty"));
        }
        Ok(SourceFile {
            path: path.to_path_buf(),
            display,
            text,
        })
    }

    /// Deserialize the whole file; errors name line and field.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, InputError> {
        toml::from_str(&self.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().to_string();
            // For an unknown key the span is the key itself; name it.
            let field = self.key_path_at(span.start, message.starts_with("unknown field"));
            InputError {
                file: self.display.clone(),
                line: Some(self.line_of(span.start)),
                field,
                message,
            }
        })
    }

    /// An error about the value at `span`, in field `field`.
    pub fn error(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> InputError {
        InputError {
            file: self.display.clone(),
            line: Some(self.line_of(span.start)),
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// The dotted key path of the line holding `offset`: the last `[table]`
    /// header above it plus the key on the line (when the line has one).
    fn key_path_at(&self, offset: usize, with_key: bool) -> Option<String> {
        let line_no = self.line_of(offset);
        let lines: Vec<&str> = self.text.lines().collect();
        let line = lines.get(line_no.saturating_sub(1))?;
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_string())
            .filter(|k| !k.is_empty() && !k.starts_with('['));
        let table = lines[..line_no.saturating_sub(1).min(lines.len())]
            .iter()
            .rev()
            .chain(std::iter::once(line))
            .find_map(|l| {
                let l = l.trim();
                l.starts_with('[').then(|| {
                    l.trim_start_matches('[')
                        .split(']')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_string()
                })
            });
        match (table, key.filter(|_| with_key)) {
            (Some(t), Some(k)) => Some(format!("{t}.{k}")),
            (None, Some(k)) => Some(k),
            (Some(t), None) => Some(t),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        image: Image,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Image {
        name: String,
        #[serde(default)]
        size: u32,
    }

    fn parse(text: &str) -> Result<Doc, InputError> {
        SourceFile::from_bytes(Path::new("r.toml"), text.as_bytes().to_vec())?.parse()
    }

    #[test]
    fn unknown_key_names_line_and_field() {
        let e = parse("[image]\nname = \"a\"\ncolour = 3\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.field.as_deref(), Some("image.colour"));
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn wrong_type_names_line() {
        let e = parse("[image]\nname = \"a\"\nsize = \"big\"\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("invalid type"), "{e}");
    }

    #[test]
    fn not_utf8_names_line() {
        let e = SourceFile::from_bytes(Path::new("r.toml"), b"[image]\nname = \"\xff\"\n".to_vec())
            .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("UTF-8"));
    }

    #[test]
    fn empty_file() {
        let e = SourceFile::from_bytes(Path::new("r.toml"), b"\n  \n".to_vec()).unwrap_err();
        assert!(e.message.contains("empty"));
    }
}
