//! Located errors: what was wrong in a manifest (or the runtime config), at
//! which file, line, column and field.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

/// A manifest that failed to parse or validate, with where and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The manifest file (or `<command line>` for flags).
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// The field, dotted (`limits.memory`, `filesystem[1].host`); empty when unknown.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ManifestError {
    /// A file that could not be read at all.
    pub(crate) fn unreadable(file: &Path, what: &str, error: &std::io::Error) -> ManifestError {
        ManifestError {
            file: file.to_owned(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read {what}: {error}"),
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Turns byte offsets into line and column for error messages.
pub(crate) struct Locator<'a> {
    pub(crate) text: &'a str,
    pub(crate) file: &'a Path,
}

impl Locator<'_> {
    pub(crate) fn error(
        &self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ManifestError {
        let (line, column) = match span {
            Some(span) => {
                let before = &self.text[..span.start.min(self.text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                (line, column)
            }
            None => (0, 0),
        };
        ManifestError { file: self.file.to_owned(), line, column, field: field.into(), message: message.into() }
    }

    pub(crate) fn toml_error(&self, error: &toml::de::Error, field: String) -> ManifestError {
        self.error(error.span(), field, error.message().trim().to_owned())
    }

    pub(crate) fn at<T>(
        &self,
        value: &Spanned<T>,
        field: impl Into<String>,
        message: impl std::fmt::Display,
    ) -> ManifestError {
        self.error(Some(value.span()), field, message.to_string())
    }
}

/// A field's value breaks its rule. Manifests report it located, inside a
/// [`ManifestError`]; command-line grants report it as it is.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    /// Not a tool (or credential) name.
    #[error("`{0}` is not a tool name: use lowercase letters, digits and single dashes, at most 64")]
    ToolName(String),
    /// A review date with a time, or not a date at all.
    #[error("`{0}` is not a date: write it like 2027-06-30")]
    NotADate(String),
    /// A date outside the calendar.
    #[error("{0}")]
    Date(time::error::ComponentRange),
    /// A pin that is not hex.
    #[error("`{text}` is not hex")]
    NotHex {
        /// The text written.
        text: String,
        /// Where the hex breaks.
        cause: hex::FromHexError,
    },
    /// A pin of the wrong length.
    #[error("a sha256 is 64 hex digits")]
    Sha256Length,
    /// A granted host directory that cannot be resolved.
    #[error("directory `{}` cannot be used: {cause}", path.display())]
    HostDir {
        /// The directory as written.
        path: std::path::PathBuf,
        /// Why it cannot be resolved.
        cause: std::io::Error,
    },
    /// A granted host path that is not a directory.
    #[error("`{}` is not a directory", .0.display())]
    NotADirectory(std::path::PathBuf),
    /// A relative guest path.
    #[error("guest path `{0}` must be absolute, like /data")]
    GuestRelative(String),
    /// A guest path with `.` or `..` parts.
    #[error("guest path `{0}` must not contain `.` or `..`")]
    GuestDots(String),
    /// Not an environment variable name.
    #[error("`{0}` is not a variable name: use letters, digits and `_`")]
    EnvName(String),
}
