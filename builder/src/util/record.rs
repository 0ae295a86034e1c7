//! Reading a record kiln wrote (a JSON file, a memo entry) back from a
//! directory anyone may have touched: a regular file only, never through a
//! symbolic link, opened without blocking (a FIFO or device under a
//! record's name cannot hang kiln), and at most [`MAX_RECORD`] bytes.
//! [`parse_json`] then reads it into its type, whose typed fields (digests,
//! GUIDs) refuse a malformed value there and then, and names the field.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest record (a JSON file, a memo entry) read into memory. kiln's
/// records are a few KiB; a manifest with thousands of packages stays far
/// below this.
pub const MAX_RECORD: u64 = 16 << 20;

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A symbolic link: never followed.
    #[error("is a symbolic link (kiln never writes one)")]
    Symlink,
    /// A directory, a device, a FIFO…
    #[error("is not a regular file")]
    NotAFile,
    /// Larger than [`MAX_RECORD`].
    #[error("is {size} bytes, more than any record kiln writes ({} MiB at most)", MAX_RECORD >> 20)]
    TooLarge {
        /// Its size.
        size: u64,
    },
    /// Reading failed.
    #[error("cannot be read")]
    Io(#[from] io::Error),
}

impl ReadError {
    /// Whether removing the file is the cure (it is not when the file
    /// could not be read at all: that is a permission or disk problem).
    pub fn is_bad_content(&self) -> bool {
        !matches!(self, ReadError::Io(_))
    }
}

/// JSON that does not read as the record's type: the field that failed
/// (`layers[0].digest`; `None` for the whole document) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
pub struct JsonError {
    /// The path of the field, as serde_path_to_error spells it.
    pub field: Option<String>,
    /// What is wrong with it (serde_json's message, with line and column).
    pub message: String,
}

impl JsonError {
    /// The error as bad input read from `file` (exit code 2).
    pub fn in_file(self, file: impl Into<String>) -> crate::util::error::InputError {
        crate::util::error::InputError {
            file: file.into(),
            line: None,
            field: self.field,
            message: self.message,
        }
    }
}

/// Parse a record's JSON into `T`, naming the field that does not fit.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        JsonError {
            field: (field != ".").then_some(field),
            message: e.into_inner().to_string(),
        }
    })?;
    // Bytes after the document are refused, as serde_json::from_slice does.
    de.end().map_err(|e| JsonError {
        field: None,
        message: e.to_string(),
    })?;
    Ok(v)
}

/// Read a record: a regular file, not through a link, at most [`MAX_RECORD`] bytes.
pub fn read_record(path: &Path) -> Result<Vec<u8>, ReadError> {
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let f = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => return Err(ReadError::Symlink),
        Err(e) => return Err(e.into()),
    };
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(ReadError::NotAFile);
    }
    if m.len() > MAX_RECORD {
        return Err(ReadError::TooLarge { size: m.len() });
    }
    let mut out = Vec::with_capacity(m.len() as usize);
    f.take(MAX_RECORD + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_RECORD {
        return Err(ReadError::TooLarge {
            size: out.len() as u64,
        });
    }
    Ok(out)
}
