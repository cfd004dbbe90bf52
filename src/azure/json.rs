//! A cursor over one resource's JSON that remembers where it is, so every
//! error names the file and the JSON path of the bad field.
//!
//! Azure resources come in two shapes: the REST/ARM shape, with fields under
//! `properties`, and the az CLI shape, with those fields flattened into the
//! object. [`Node::field`] looks in both, so the model never cares which.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::LoadError;

/// Where a value sits: the file and the JSON path inside it.
#[derive(Clone, Debug)]
pub struct Location {
    pub file: Arc<Path>,
    pub path: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}: {}", self.file.display(), self.path)
        }
    }
}

/// A JSON value with its location.
#[derive(Clone)]
pub struct Node<'a> {
    pub value: &'a Value,
    file: &'a Arc<Path>,
    path: String,
}

/// A child node (same type; the alias reads better at call sites).
pub type Child<'a> = Node<'a>;

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

impl<'a> Node<'a> {
    /// The root node of a value from `file`, at `path`.
    pub fn new(value: &'a Value, file: &'a Arc<Path>, path: &str) -> Self {
        Node {
            value,
            file,
            path: path.to_string(),
        }
    }

    /// This node (a clone; kept for call-site symmetry with children).
    pub fn node(&self) -> Node<'a> {
        self.clone()
    }

    /// Where this node is.
    pub fn location(&self) -> Location {
        Location {
            file: self.file.clone(),
            path: self.path.clone(),
        }
    }

    /// An error at this node.
    pub fn error(&self, message: impl Into<String>) -> LoadError {
        LoadError::Invalid {
            at: self.location(),
            message: message.into(),
        }
    }

    /// An error at field `key` of this node.
    pub fn field_error(&self, key: &str, message: impl Into<String>) -> LoadError {
        LoadError::Invalid {
            at: Location {
                file: self.file.clone(),
                path: join(&self.path, key),
            },
            message: message.into(),
        }
    }

    /// Field `key` at the top level or under `properties` (ARM shape).
    /// Keys match case-insensitively, as ARM does.
    pub fn field(&self, key: &str) -> Option<Child<'a>> {
        let obj = self.value.as_object()?;
        let direct = obj
            .get(key)
            .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v));
        if let Some(v) = direct.filter(|v| !v.is_null()) {
            return Some(Node {
                value: v,
                file: self.file,
                path: join(&self.path, key),
            });
        }
        let props = obj.get("properties").and_then(Value::as_object)?;
        let v = props
            .get(key)
            .or_else(|| props.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
            .filter(|v| !v.is_null())?;
        Some(Node {
            value: v,
            file: self.file,
            path: join(&self.path, key),
        })
    }

    /// A string field; `Ok(None)` when absent or null, an error for another type.
    pub fn str(&self, key: &str) -> Result<Option<&'a str>, LoadError> {
        match self.field(key) {
            None => Ok(None),
            Some(c) => match c.value {
                Value::String(s) => Ok(Some(s.as_str())),
                other => Err(c.node().error(format!("expected a string, found {}", kind(other)))),
            },
        }
    }

    /// A required string field.
    pub fn req_str(&self, key: &str) -> Result<&'a str, LoadError> {
        self.str(key)?.ok_or_else(|| self.field_error(key, "missing required field"))
    }

    /// A boolean field (also accepts "true"/"false" strings, as some exports write).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, LoadError> {
        match self.field(key) {
            None => Ok(None),
            Some(c) => match c.value {
                Value::Bool(b) => Ok(Some(*b)),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
                other => Err(c.node().error(format!("expected true or false, found {}", kind(other)))),
            },
        }
    }

    /// An integer field (also accepts a decimal string).
    pub fn u64(&self, key: &str) -> Result<Option<u64>, LoadError> {
        match self.field(key) {
            None => Ok(None),
            Some(c) => match c.value {
                Value::Number(n) => n
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| c.node().error(format!("expected a non-negative integer, found {n}"))),
                Value::String(s) => s
                    .trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| c.node().error(format!("expected a non-negative integer, found {s:?}"))),
                other => Err(c.node().error(format!("expected an integer, found {}", kind(other)))),
            },
        }
    }

    /// The elements of an array field, each with its path; empty when absent.
    pub fn array(&self, key: &str) -> Result<Vec<Child<'a>>, LoadError> {
        match self.field(key) {
            None => Ok(Vec::new()),
            Some(c) => match c.value {
                Value::Array(items) => Ok(items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Node {
                        value: v,
                        file: self.file,
                        path: format!("{}[{i}]", c.path),
                    })
                    .collect()),
                other => Err(c.node().error(format!("expected an array, found {}", kind(other)))),
            },
        }
    }

    /// An array of strings; empty when absent.
    pub fn str_array(&self, key: &str) -> Result<Vec<(&'a str, Location)>, LoadError> {
        self.array(key)?
            .into_iter()
            .map(|c| match c.value {
                Value::String(s) => Ok((s.as_str(), c.node().location())),
                other => Err(c.node().error(format!("expected a string, found {}", kind(other)))),
            })
            .collect()
    }

    /// `{"id": "..."}` sub-resource reference at `key`.
    pub fn reference(&self, key: &str) -> Result<Option<&'a str>, LoadError> {
        match self.field(key) {
            None => Ok(None),
            Some(c) => match c.value {
                Value::Object(_) => c.node().str("id"),
                Value::String(s) => Ok(Some(s.as_str())),
                other => Err(c.node().error(format!("expected an object with \"id\", found {}", kind(other)))),
            },
        }
    }
}

/// A word for a JSON value's type, for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
