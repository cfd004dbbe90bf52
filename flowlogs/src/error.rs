//! Errors of the flow-log writers and reader.

use std::path::PathBuf;

use thiserror::Error;

pub use crate::ids::IdError;
pub use crate::tuple::TupleError;

/// Writing flow-log files failed.
#[derive(Debug, Error)]
pub enum FlowLogError {
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The hour file to add records to exists but is not a flow-log
    /// document; it is left untouched.
    #[error("{path}: cannot add records: {reason}")]
    ExistingFile { path: PathBuf, reason: String },
    #[error("serializing a flow log record: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// Reading a flow-log file failed. Every variant names the file; record
/// errors also name the record (0-based index in the file) and the field
/// path, e.g. `properties.flows[0].flows[0].flowTuples[3]`.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Worded as the resource loader words it: file, line, column, what.
    #[error("{file}: line {}, column {}: not valid JSON: {}", .error.line(), .error.column(), json_message(.error))]
    Json { file: PathBuf, error: serde_json::Error },
    #[error("{file}: record {record}: field `{field}`: {message}")]
    Field {
        file: PathBuf,
        record: usize,
        field: String,
        message: String,
    },
    #[error("{file}: {message}")]
    Document { file: PathBuf, message: String },
}

/// serde_json's message without its own " at line L column C" suffix (the
/// position is given separately).
fn json_message(e: &serde_json::Error) -> String {
    let m = e.to_string();
    match m.rfind(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m,
    }
}
