//! Error classes that decide kiln's exit code (the command-line contract in
//! `builder/ARCHITECTURE.md`).
//!
//! Most code returns `anyhow::Result` with context; the error raised at the
//! source carries its [`Class`], and `main` looks for it to pick the exit
//! code: 0 success, 1 the thing checked is bad ([`CheckFailed`]), 2 bad input
//! ([`InputError`]), 3 an environment problem ([`EnvError`]), 4 a bug in kiln
//! ([`Internal`]).
//!
//! Raise errors classified: [`input_err!`], [`env_err!`], [`check_err!`],
//! [`internal_err!`] (each `format!`s its message into the class's type), or
//! the types themselves. Errors raised outside kiln have the class of what
//! raised them: `std::io::Error`, nix's `Errno`, ureq's errors and a program's failure
//! ([`crate::util::exec::CommandFailed`]) are the environment's. An error
//! with no class anywhere in its chain is [`Class::Internal`]: kiln did not
//! expect it, so it is a bug, reported as one.
//!
//! A class is the error itself or a `source()` below it: return
//! `Err(InputError { .. }.into())`. A class attached with anyhow's
//! `.context(..)` is not seen (anyhow's chain does not expose context values).

use std::fmt;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the thing checked is bad (a failed boot test, a bad signature).
pub const EXIT_CHECK_FAILED: i32 = 1;
/// Exit code: bad input (recipe, layer file, arguments).
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code: environment problem (a missing tool, an unreachable mirror).
pub const EXIT_ENVIRONMENT: i32 = 3;
/// Exit code: an internal error, a bug in kiln.
pub const EXIT_INTERNAL: i32 = 4;

/// What kind of failure an error is; decides the exit code and how the
/// error is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The thing checked is bad ([`CheckFailed`]).
    CheckFailed,
    /// Bad input ([`InputError`], a bad command line).
    Input,
    /// An environment problem ([`EnvError`], the OS, a program kiln ran).
    Environment,
    /// A bug in kiln ([`Internal`], or an error with no class).
    Internal,
}

impl Class {
    /// The exit code of this class.
    pub fn exit_code(self) -> i32 {
        match self {
            Class::CheckFailed => EXIT_CHECK_FAILED,
            Class::Input => EXIT_BAD_INPUT,
            Class::Environment => EXIT_ENVIRONMENT,
            Class::Internal => EXIT_INTERNAL,
        }
    }

    /// The class of one error of a chain, if it has one.
    fn of(e: &(dyn std::error::Error + 'static)) -> Option<Class> {
        if e.is::<InputError>() || e.is::<clap::Error>() {
            Some(Class::Input)
        } else if e.is::<EnvError>()
            || e.is::<std::io::Error>()
            || e.is::<nix::errno::Errno>()
            || e.is::<ureq::Error>()
            || e.is::<crate::util::exec::CommandFailed>()
        {
            Some(Class::Environment)
        } else if e.is::<CheckFailed>()
            // Bytes that do not decode, from outside kiln's own types: a
            // document, name or number read from an image, a registry or
            // the store. Where such bytes are the user's file, the caller
            // names it with an `InputError`, which is outermost and wins.
            || e.is::<serde_json::Error>()
            || e.is::<std::str::Utf8Error>()
            || e.is::<std::string::FromUtf8Error>()
            || e.is::<std::num::TryFromIntError>()
            || e.is::<std::num::ParseIntError>()
            || e.is::<uuid::Error>()
            || e.is::<hex::FromHexError>()
        {
            Some(Class::CheckFailed)
        } else if e.is::<Internal>() {
            Some(Class::Internal)
        } else {
            None
        }
    }
}

/// Bad input: names the file, the line (when there is one) and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The file at fault, as the user gave it or as resolved from a recipe.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The field (dotted TOML key path) at fault, when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl InputError {
    /// An error about a whole file (no line, no field).
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        InputError {
            file: file.into(),
            line: None,
            field: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InputError {}

/// An environment problem: a missing program (with the package that provides
/// it), a mirror that cannot be reached, a store that cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EnvError {
    /// What is wrong and what to do about it.
    pub message: String,
}

impl EnvError {
    /// A new environment error.
    pub fn new(message: impl Into<String>) -> Self {
        EnvError {
            message: message.into(),
        }
    }
}

/// The thing checked is bad: a failed test, a bad signature, a corrupt store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CheckFailed {
    /// What failed.
    pub message: String,
}

/// A bug in kiln: a state its own code should never reach (a worker thread
/// that panicked, a poisoned lock, a record kiln wrote that it cannot read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Internal {
    /// What went wrong.
    pub message: String,
}

/// An [`InputError`] about file `$file` (no line, no field): `format!`'s
/// arguments after the file.
#[macro_export]
macro_rules! input_err {
    ($file:expr, $($arg:tt)+) => {
        ::anyhow::Error::new($crate::util::error::InputError::file($file, format!($($arg)+)))
    };
}

/// An [`EnvError`] with `format!`'s arguments as its message.
#[macro_export]
macro_rules! env_err {
    ($($arg:tt)+) => {
        ::anyhow::Error::new($crate::util::error::EnvError::new(format!($($arg)+)))
    };
}

/// A [`CheckFailed`] error with `format!`'s arguments as its message.
#[macro_export]
macro_rules! check_err {
    ($($arg:tt)+) => {
        $crate::util::error::check_failed(format!($($arg)+))
    };
}

/// An [`Internal`] error with `format!`'s arguments as its message.
#[macro_export]
macro_rules! internal_err {
    ($($arg:tt)+) => {
        ::anyhow::Error::new($crate::util::error::Internal {
            message: format!($($arg)+),
        })
    };
}

pub use crate::{check_err, env_err, input_err, internal_err};

/// A [`CheckFailed`] error with this message, to return or `bail!` with: the
/// command exits 1 and prints the message.
pub fn check_failed(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(CheckFailed {
        message: message.into(),
    })
}

/// The class of an error chain: the outermost classified error's;
/// [`Class::Internal`] when nothing in the chain has a class.
pub fn class(err: &anyhow::Error) -> Class {
    err.chain().find_map(Class::of).unwrap_or(Class::Internal)
}

/// Pick the exit code for an error chain: the outermost classified error wins.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    class(err).exit_code()
}

/// The line `main` prints for an error: the whole chain, and for an
/// internal error the request to report it.
pub fn report(err: &anyhow::Error) -> String {
    match class(err) {
        Class::Internal => {
            format!("kiln: internal error: {err:#}\nkiln: this is a bug in kiln, please report it")
        }
        _ => format!("kiln: error: {err:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn display_names_file_line_field() {
        let e = InputError {
            file: "recipes/x.toml".into(),
            line: Some(4),
            field: Some("image.version".into()),
            message: "must not be empty".into(),
        };
        assert_eq!(
            e.to_string(),
            "recipes/x.toml:4: field `image.version`: must not be empty"
        );
    }

    #[test]
    fn exit_code_sees_through_context() {
        let err = Err::<(), _>(InputError::file("a.toml", "empty"))
            .context("loading recipe")
            .unwrap_err();
        assert_eq!(exit_code(&err), EXIT_BAD_INPUT);
        let err = Err::<(), _>(EnvError::new("no mmdebstrap"))
            .context("building")
            .unwrap_err();
        assert_eq!(exit_code(&err), EXIT_ENVIRONMENT);
    }

    #[test]
    fn an_error_without_a_class_is_internal() {
        let err = anyhow::anyhow!("the hashing thread panicked").context("building");
        assert_eq!(class(&err), Class::Internal);
        assert_eq!(exit_code(&err), EXIT_INTERNAL);
        assert_eq!(
            report(&err),
            "kiln: internal error: building: the hashing thread panicked\n\
             kiln: this is a bug in kiln, please report it"
        );
        let err = internal_err!("lock {} poisoned", "x").context("building");
        assert_eq!(exit_code(&err), EXIT_INTERNAL);
    }

    #[test]
    fn foreign_decoding_errors_are_check_failures() {
        let json = serde_json::from_slice::<serde_json::Value>(b"{not json").unwrap_err();
        let err = anyhow::Error::new(json).context("the referrers index");
        assert_eq!(exit_code(&err), EXIT_CHECK_FAILED, "{err:#}");
        let int = u32::try_from(u64::MAX).unwrap_err();
        assert_eq!(exit_code(&anyhow::Error::new(int)), EXIT_CHECK_FAILED);
    }

    #[test]
    fn classes_travel_through_context() {
        let cases = [
            (input_err!("a.toml", "field {} empty", "x"), EXIT_BAD_INPUT),
            (env_err!("no {}", "mmdebstrap"), EXIT_ENVIRONMENT),
            (check_err!("{} is bad", "x.raw"), EXIT_CHECK_FAILED),
            (internal_err!("thread panicked"), EXIT_INTERNAL),
            (
                anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::StorageFull)),
                EXIT_ENVIRONMENT,
            ),
        ];
        for (err, code) in cases {
            let msg = err.to_string();
            let err = err.context("inner step").context("outer step");
            assert_eq!(exit_code(&err), code, "{msg}");
            assert_eq!(format!("{err:#}"), format!("outer step: inner step: {msg}"));
            assert_eq!(
                report(&err).starts_with("kiln: error: "),
                code != EXIT_INTERNAL
            );
        }
        // The outermost class wins: input found bad through an I/O error.
        let io = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::InvalidData));
        let err = anyhow::Error::new(InputError::file("a.toml", format!("{io}"))).context("x");
        assert_eq!(class(&err), Class::Input);
    }

    #[test]
    fn check_failed_exits_1_with_its_message() {
        fn bails() -> anyhow::Result<()> {
            anyhow::bail!(check_failed(format!("{} is bad", "x.raw")))
        }
        let err = bails().context("testing").unwrap_err();
        assert_eq!(exit_code(&err), EXIT_CHECK_FAILED);
        assert_eq!(format!("{err:#}"), "testing: x.raw is bad");
        // `bail!` passes the error through: no extra layer in the chain.
        assert_eq!(err.chain().count(), 2);
    }
}
