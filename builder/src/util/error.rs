//! Error classes that decide kiln's exit code (the command-line contract in
//! `builder/ARCHITECTURE.md`).
//!
//! Most code returns `anyhow::Result` with context; the few error types here
//! are placed in the chain where the *kind* of failure is known, and `main`
//! looks for them to pick the exit code:
//! 0 success, 1 the thing checked is bad ([`CheckFailed`]), 2 bad input
//! ([`InputError`]), 3 an environment problem ([`EnvError`]).
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

/// A [`CheckFailed`] error with this message, to return or `bail!` with: the
/// command exits 1 and prints the message.
pub fn check_failed(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(CheckFailed {
        message: message.into(),
    })
}

/// Pick the exit code for an error chain: the outermost classified error wins.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.is::<InputError>() {
            return EXIT_BAD_INPUT;
        }
        if cause.is::<EnvError>() {
            return EXIT_ENVIRONMENT;
        }
        if cause.is::<CheckFailed>() {
            return EXIT_CHECK_FAILED;
        }
        if cause.is::<clap::Error>() {
            return EXIT_BAD_INPUT;
        }
    }
    // Unclassified failures (I/O on the store, a bug) are environment-class:
    // the input was fine and nothing was judged bad.
    EXIT_ENVIRONMENT
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
