//! A cursor over one resource's JSON that remembers where it is, so every
//! error names the file and the JSON path of the bad field.
//!
//! Azure resources come in two shapes: the REST/ARM shape, with fields under
//! `properties`, and the az CLI shape, with those fields flattened into the
//! object. [`Node::field`] looks in both, so the model never cares which.
//!
//! Files are parsed by serde_json into a [`Document`]: a tree whose strings
//! are ranges of the source text (only strings with escapes are copied), and
//! whose objects are vectors of entries in the order written. A JSON path is
//! a chain of segments on the stack, rendered only for an error or a
//! [`Location`].

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::path::Path;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use netwatch_rules::quoted;

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

// ---------------------------------------------------------------- documents

/// A string of a [`Document`]: a byte range of its text, or (for strings
/// with escapes) of its side buffer, which follows the text in offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Str {
    start: u32,
    end: u32,
}

impl Str {
    const EMPTY: Str = Str { start: 0, end: 0 };

    fn new(start: usize, end: usize) -> Str {
        // Offsets fit: `Document::parse` takes texts below 2 GiB, and decoded
        // strings are shorter than their source.
        Str {
            start: start as u32,
            end: end as u32,
        }
    }

    fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// A run of a [`Document`]'s array elements or object entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// A JSON value of a [`Document`], whose arrays, objects and numbers live in
/// the document. Objects keep their entries in the order written; a
/// repeated key keeps its first position and its last value, as
/// serde_json's ordered map does.
#[derive(Clone, Copy, Debug)]
pub enum Json {
    Null,
    Bool(bool),
    /// Index in the document's numbers.
    Number(u32),
    String(Str),
    /// Elements in the document's values.
    Array(Span),
    /// Entries in the document's entries.
    Object(Span),
}

impl Json {
    /// Whether this is an object.
    pub fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }

    /// Whether this is an array.
    pub fn is_array(&self) -> bool {
        matches!(self, Json::Array(_))
    }
}

/// A parsed JSON file: the text, and the value tree pointing into it.
pub struct Document {
    text: String,
    /// Strings that had escapes, decoded; offsets follow the text's.
    extra: String,
    numbers: Vec<Number>,
    /// The elements of every array, each array's contiguous.
    values: Vec<Json>,
    /// The entries of every object, each object's contiguous.
    entries: Vec<(Str, Json)>,
    root: Json,
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document").field("bytes", &self.text.len()).finish_non_exhaustive()
    }
}

impl Document {
    /// Parses `text`, read from `path`. Errors are those of
    /// `serde_json::from_str`, with their line and column.
    pub fn parse(path: &Path, text: String) -> Result<Document, LoadError> {
        // Offsets and counts are u32: a value takes at least a byte.
        if text.len() > i32::MAX as usize {
            return Err(LoadError::Invalid {
                at: Location {
                    file: Arc::from(path),
                    path: String::new(),
                },
                message: "file too large (2 GiB or more)".into(),
            });
        }
        let (root, b) = {
            let mut b = Builder {
                text: &text,
                extra: String::new(),
                numbers: Vec::new(),
                values: Vec::new(),
                entries: Vec::new(),
                value_stack: Vec::new(),
                entry_stack: Vec::new(),
            };
            let mut de = serde_json::Deserializer::from_str(&text);
            let parsed = ValueSeed(&mut b).deserialize(&mut de).and_then(|v| de.end().map(|()| v));
            let root = parsed.map_err(|e| LoadError::Json {
                path: path.to_path_buf(),
                line: e.line(),
                column: e.column(),
                message: e.to_string().split(" at line").next().unwrap_or_default().to_string(),
            })?;
            let b = (b.extra, b.numbers, b.values, b.entries);
            (root, b)
        };
        let (extra, numbers, values, entries) = b;
        Ok(Document {
            text,
            extra,
            numbers,
            values,
            entries,
            root,
        })
    }

    /// The top-level value.
    pub fn root(&self) -> &Json {
        &self.root
    }

    /// The elements of an array; empty for another value.
    pub fn elements(&self, v: &Json) -> &[Json] {
        match v {
            Json::Array(s) => self.values.get(s.range()).unwrap_or_default(),
            _ => &[],
        }
    }

    /// The entries of an object; empty for another value.
    pub fn members(&self, v: &Json) -> &[(Str, Json)] {
        match v {
            Json::Object(s) => self.entries.get(s.range()).unwrap_or_default(),
            _ => &[],
        }
    }

    /// The value at a sequence of child positions (array elements, object
    /// entries) from the root, as recorded while walking the document.
    pub fn at(&self, positions: &[usize]) -> Option<&Json> {
        let mut v = &self.root;
        for &i in positions {
            v = match v {
                Json::Array(_) => self.elements(v).get(i)?,
                Json::Object(_) => &self.members(v).get(i)?.1,
                _ => return None,
            };
        }
        Some(v)
    }

    /// A number.
    fn number(&self, i: u32) -> Option<&Number> {
        self.numbers.get(i as usize)
    }

    /// The text of a string.
    pub fn str(&self, s: Str) -> &str {
        resolve(&self.text, &self.extra, s)
    }

    /// The bytes of a string.
    fn bytes(&self, s: Str) -> &[u8] {
        resolve_bytes(&self.text, &self.extra, s)
    }

    /// Whether string `s` is `key`.
    pub fn is(&self, s: Str, key: &str) -> bool {
        s.len() == key.len() && self.bytes(s) == key.as_bytes()
    }

    /// The value of exact key `key` of an object.
    pub fn get<'d>(&'d self, v: &'d Json, key: &str) -> Option<&'d Json> {
        self.members(v).iter().find(|(k, _)| self.is(*k, key)).map(|(_, v)| v)
    }

    /// The position, key (as written) and value of key `key` of an object,
    /// matched as ARM matches keys: the exact key, else the first that
    /// matches ignoring case. `None` for another value.
    pub fn entry(&self, v: &Json, key: &str) -> Option<(usize, Str, &Json)> {
        let o = self.members(v);
        let e = find_entry(self, o, key)?;
        let i = o.iter().position(|x| std::ptr::eq(x, e))?;
        Some((i, e.0, &e.1))
    }

    /// A value as a `serde_json::Value`, object keys in document order.
    pub fn to_value(&self, v: &Json) -> Value {
        match v {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => self.number(*n).map_or(Value::Null, |n| Value::Number(n.clone())),
            Json::String(s) => Value::String(self.str(*s).to_string()),
            Json::Array(_) => Value::Array(self.elements(v).iter().map(|x| self.to_value(x)).collect()),
            Json::Object(_) => Value::Object(self.to_map(self.members(v))),
        }
    }

    /// An object's entries as a `serde_json::Map`, in document order.
    pub fn to_map(&self, o: &[(Str, Json)]) -> Map<String, Value> {
        let mut m = Map::new();
        for (k, v) in o {
            m.insert(self.str(*k).to_string(), self.to_value(v));
        }
        m
    }
}

fn resolve_bytes<'t>(text: &'t str, extra: &'t str, s: Str) -> &'t [u8] {
    let (n, r) = (text.len(), s.range());
    if r.end <= n {
        text.as_bytes().get(r).unwrap_or_default()
    } else {
        extra.as_bytes().get(r.start.saturating_sub(n)..r.end - n).unwrap_or_default()
    }
}

fn resolve<'t>(text: &'t str, extra: &'t str, s: Str) -> &'t str {
    let (n, r) = (text.len(), s.range());
    if r.end <= n {
        text.get(r).unwrap_or_default()
    } else {
        extra.get(r.start.saturating_sub(n)..r.end - n).unwrap_or_default()
    }
}

/// Parse state: the text, the document's parts, and stacks of the elements
/// and entries of the arrays and objects being parsed (moved to the
/// document's when their container ends, so each container's are
/// contiguous).
struct Builder<'t> {
    text: &'t str,
    extra: String,
    numbers: Vec<Number>,
    values: Vec<Json>,
    entries: Vec<(Str, Json)>,
    value_stack: Vec<Json>,
    entry_stack: Vec<(Str, Json)>,
}

impl Builder<'_> {
    /// A string serde_json borrowed from the text: its range.
    fn borrowed(&mut self, s: &str) -> Str {
        if s.is_empty() {
            return Str::EMPTY;
        }
        let p = s.as_ptr() as usize;
        match p.checked_sub(self.text.as_ptr() as usize) {
            Some(start) if start + s.len() <= self.text.len() => Str::new(start, start + s.len()),
            _ => self.owned(s),
        }
    }

    /// A decoded string, kept in the side buffer.
    fn owned(&mut self, s: &str) -> Str {
        if s.is_empty() {
            return Str::EMPTY;
        }
        let start = self.text.len() + self.extra.len();
        self.extra.push_str(s);
        Str::new(start, start + s.len())
    }

    fn str(&self, s: Str) -> &str {
        resolve(self.text, &self.extra, s)
    }

    fn number(&mut self, n: Number) -> Json {
        self.numbers.push(n);
        Json::Number(self.numbers.len() as u32 - 1)
    }
}

fn span(start: usize, end: usize) -> Span {
    Span {
        start: start as u32,
        len: (end - start) as u32,
    }
}

struct ValueSeed<'b, 't>(&'b mut Builder<'t>);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Json;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(self.0.number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(self.0.number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Number::from_f64(v).map_or(Json::Null, |n| self.0.number(n)))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json, E> {
        Ok(Json::String(self.0.borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(self.0.owned(v)))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(self.0.owned(&v)))
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let b = self.0;
        let mark = b.value_stack.len();
        while let Some(x) = seq.next_element_seed(ValueSeed(&mut *b))? {
            b.value_stack.push(x);
        }
        let start = b.values.len();
        b.values.extend(b.value_stack.drain(mark..));
        Ok(Json::Array(span(start, b.values.len())))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let b = self.0;
        let mark = b.entry_stack.len();
        while let Some(k) = map.next_key_seed(KeySeed(&mut *b))? {
            let v = map.next_value_seed(ValueSeed(&mut *b))?;
            b.entry_stack.push((k, v));
        }
        dedup(b, mark);
        let start = b.entries.len();
        b.entries.extend(b.entry_stack.drain(mark..));
        Ok(Json::Object(span(start, b.entries.len())))
    }
}

/// Keys are parsed like strings.
struct KeySeed<'b, 't>(&'b mut Builder<'t>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = Str;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Str, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_> {
    type Value = Str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str, E> {
        Ok(self.0.borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Str, E> {
        Ok(self.0.owned(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Str, E> {
        Ok(self.0.owned(&v))
    }
}

/// A repeated key keeps its first position and takes the last value, as in
/// serde_json's ordered map. The object is `b.entry_stack[mark..]`.
fn dedup(b: &mut Builder<'_>, mark: usize) {
    let mut entries = std::mem::take(&mut b.entry_stack);
    dedup_entries(b, &mut entries, mark);
    b.entry_stack = entries;
}

fn dedup_entries(b: &Builder<'_>, all: &mut Vec<(Str, Json)>, mark: usize) {
    let o = &all[mark..];
    let n = o.len();
    if n < 2 {
        return;
    }
    let key = |s: Str| b.str(s);
    let bytes = |s: Str| resolve_bytes(b.text, &b.extra, s);
    let repeated = if n <= 16 {
        (1..n).any(|i| {
            let k = o[i].0;
            o[..i].iter().any(|(x, _)| x.len() == k.len() && bytes(*x) == bytes(k))
        })
    } else {
        let mut seen = HashSet::with_capacity(n);
        !o.iter().all(|(k, _)| seen.insert(key(*k)))
    };
    if !repeated {
        return;
    }
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(n);
    let mut out: Vec<(Str, Json)> = Vec::with_capacity(n);
    for (k, v) in all.drain(mark..) {
        match index.get(key(k)) {
            Some(&i) => out[i].1 = v,
            None => {
                index.insert(key(k), out.len());
                out.push((k, v));
            }
        }
    }
    all.extend(out);
}

// ---------------------------------------------------------------- nodes

/// One step of a JSON path.
#[derive(Clone, Copy, Debug)]
enum Seg<'a> {
    /// The path of the root, as given.
    Root(&'a str),
    /// `.key` (no dot at the start); `.properties.key` when under
    /// `properties` (the ARM shape, where a resource's fields sit there),
    /// spelled as the file spells it.
    Key(&'a str, Option<&'a str>),
    /// `.key[i]`, or `.properties.key[i]`.
    KeyIndex(&'a str, Option<&'a str>, usize),
}

/// A JSON path: a segment and the path it extends, rendered on demand.
#[derive(Clone, Copy, Debug)]
struct JsonPath<'a> {
    parent: Option<&'a JsonPath<'a>>,
    seg: Seg<'a>,
}

impl JsonPath<'_> {
    fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut p = Some(self);
        while let Some(x) = p {
            segs.push(x.seg);
            p = x.parent;
        }
        let mut out = String::new();
        for s in segs.iter().rev() {
            match *s {
                Seg::Root(r) => out.push_str(r),
                Seg::Key(k, p) => push_field(&mut out, k, p),
                Seg::KeyIndex(k, p, i) => {
                    push_field(&mut out, k, p);
                    let _ = write!(out, "[{i}]");
                }
            }
        }
        out
    }

    /// This path extended by `key` (under `props` when given), rendered.
    fn render_with(&self, key: &str, props: Option<&str>) -> String {
        let mut out = self.render();
        push_field(&mut out, key, props);
        out
    }
}

fn push_field(out: &mut String, key: &str, props: Option<&str>) {
    if let Some(p) = props {
        push_key(out, p);
    }
    push_key(out, key);
}

fn push_key(out: &mut String, key: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(key);
}

/// A JSON value with its location.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    pub value: &'a Json,
    doc: &'a Document,
    file: &'a Arc<Path>,
    path: JsonPath<'a>,
}

/// A child node (same type; the alias reads better at call sites).
pub type Child<'a> = Node<'a>;

impl<'a> Node<'a> {
    /// The node of `value`, a value of `doc` read from `file`, at `path`.
    pub fn new(doc: &'a Document, value: &'a Json, file: &'a Arc<Path>, path: &'a str) -> Self {
        Node {
            value,
            doc,
            file,
            path: JsonPath {
                parent: None,
                seg: Seg::Root(path),
            },
        }
    }

    /// The child of this node holding `value`, reached by `seg`.
    fn child<'s>(&'s self, value: &'a Json, seg: Seg<'s>) -> Child<'s> {
        Node {
            value,
            doc: self.doc,
            file: self.file,
            path: JsonPath {
                parent: Some(&self.path),
                seg,
            },
        }
    }

    /// This node (a copy; kept for call-site symmetry with children).
    pub fn node(&self) -> Node<'a> {
        *self
    }

    /// The document the node is in.
    pub fn doc(&self) -> &'a Document {
        self.doc
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&'a str> {
        match self.value {
            Json::String(s) => Some(self.doc.str(*s)),
            _ => None,
        }
    }

    /// Where this node is.
    pub fn location(&self) -> Location {
        Location {
            file: self.file.clone(),
            path: self.path.render(),
        }
    }

    /// An error at this node.
    pub fn error(&self, message: impl Into<String>) -> LoadError {
        LoadError::Invalid {
            at: self.location(),
            message: message.into(),
        }
    }

    /// An error at field `key` of this node (spelled as the file spells it,
    /// when there).
    pub fn field_error(&self, key: &str, message: impl Into<String>) -> LoadError {
        let written = self.written_key(key);
        let key = written.as_deref().unwrap_or(key);
        LoadError::Invalid {
            at: Location {
                file: self.file.clone(),
                path: self.path.render_with(key, self.in_properties(key)),
            },
            message: message.into(),
        }
    }

    /// How the file spells `key` (ARM keys match without case), at the top
    /// level or under `properties`.
    fn written_key(&self, key: &str) -> Option<String> {
        let Json::Object(_) = self.value else { return None };
        let find = |obj: &Json| {
            self.doc
                .members(obj)
                .iter()
                .map(|(k, _)| self.doc.bytes(*k))
                .find(|k| k.eq_ignore_ascii_case(key.as_bytes()) && *k != key.as_bytes())
                .map(|k| String::from_utf8_lossy(k).into_owned())
        };
        find(self.value).or_else(|| match properties(self.doc, self.value) {
            Some((_, p @ Json::Object(_))) => find(p),
            _ => None,
        })
    }

    /// Whether field `key` is, or (missing) belongs, under `properties`:
    /// it is not at the top level, this object has a `properties` object
    /// (ARM shape), and it is not one of the keys ARM keeps at the top
    /// (`id`, `name`, `type`, ...). Paths in errors then name it as jq would:
    /// the result is the `properties` key as the file spells it.
    fn in_properties(&self, key: &str) -> Option<&'a str> {
        const TOP_LEVEL: &[&str] = &[
            "id",
            "name",
            "type",
            "location",
            "etag",
            "tags",
            "resourceGroup",
            "kind",
            "sku",
            "zones",
        ];
        let Json::Object(_) = self.value else { return None };
        let top = self
            .doc
            .members(self.value)
            .iter()
            .any(|(k, v)| !matches!(v, Json::Null) && self.doc.bytes(*k).eq_ignore_ascii_case(key.as_bytes()));
        if top {
            return None;
        }
        let (written, in_props) = match properties(self.doc, self.value) {
            Some((k, p @ Json::Object(_))) => (
                self.doc.str(k),
                self.doc
                    .members(p)
                    .iter()
                    .any(|(k, _)| self.doc.bytes(*k).eq_ignore_ascii_case(key.as_bytes())),
            ),
            _ => return None,
        };
        (in_props || !TOP_LEVEL.iter().any(|t| t.eq_ignore_ascii_case(key))).then_some(written)
    }

    /// The value of field `key` (see [`lookup`]); an error when this
    /// object's `properties` is not an object (its fields would be lost).
    fn lookup(&self, key: &str) -> Result<Option<&'a Json>, LoadError> {
        lookup(self.doc, self.value, key).map_err(|(k, v)| self.bad_properties(k, v))
    }

    /// The error for a `properties` (spelled `k`) that is not an object.
    fn bad_properties(&self, k: Str, v: &Json) -> LoadError {
        LoadError::Invalid {
            at: Location {
                file: self.file.clone(),
                path: self.path.render_with(self.doc.str(k), None),
            },
            message: format!("expected an object, found {}", kind(v)),
        }
    }

    /// Field `key` at the top level or under `properties` (ARM shape).
    /// Keys match case-insensitively, as ARM does. `None` also when this
    /// object's `properties` is not an object: the methods that return a
    /// `Result` say so.
    pub fn field<'s>(&'s self, key: &'s str) -> Option<Child<'s>> {
        let v = self.lookup(key).ok()??;
        Some(self.child(v, Seg::Key(key, self.in_properties(key))))
    }

    /// An object field; `Ok(None)` when absent or null, an error for another
    /// type (an array where ARM writes an object would otherwise be
    /// dropped without a word).
    pub fn object<'s>(&'s self, key: &'s str) -> Result<Option<Child<'s>>, LoadError> {
        match self.lookup(key)? {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Object(_)) => Ok(self.field(key)),
            Some(other) => Err(self.field_error(key, format!("expected an object, found {}", kind(other)))),
        }
    }

    /// A string field; `Ok(None)` when absent or null, an error for another type.
    pub fn str(&self, key: &str) -> Result<Option<&'a str>, LoadError> {
        match self.lookup(key)? {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(self.doc.str(*s))),
            Some(other) => Err(self.field_error(key, format!("expected a string, found {}", kind(other)))),
        }
    }

    /// A required string field.
    pub fn req_str(&self, key: &str) -> Result<&'a str, LoadError> {
        self.str(key)?.ok_or_else(|| self.field_error(key, "missing required field"))
    }

    /// A boolean field (also accepts "true"/"false" strings, as some exports write).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, LoadError> {
        match self.lookup(key)? {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(Json::String(s)) if self.doc.str(*s).eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Json::String(s)) if self.doc.str(*s).eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(self.field_error(key, format!("expected true or false, found {}", kind(other)))),
        }
    }

    /// An integer field (also accepts a decimal string).
    pub fn u64(&self, key: &str) -> Result<Option<u64>, LoadError> {
        match self.lookup(key)? {
            None => Ok(None),
            Some(Json::Number(i)) => match self.doc.number(*i) {
                Some(n) => n
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| self.field_error(key, format!("expected a non-negative integer, found {n}"))),
                None => Ok(None),
            },
            Some(Json::String(s)) => {
                let s = self.doc.str(*s);
                s.trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| self.field_error(key, format!("expected a non-negative integer, found {}", quoted(s))))
            }
            Some(other) => Err(self.field_error(key, format!("expected an integer, found {}", kind(other)))),
        }
    }

    /// The elements of an array field, each with its path; empty when absent.
    pub fn array<'s>(&'s self, key: &'s str) -> Result<Vec<Child<'s>>, LoadError> {
        match self.lookup(key)? {
            None => Ok(Vec::new()),
            Some(v @ Json::Array(_)) => Ok(self
                .doc
                .elements(v)
                .iter()
                .enumerate()
                .map(|(i, v)| self.child(v, Seg::KeyIndex(key, self.in_properties(key), i)))
                .collect()),
            Some(other) => Err(self.field_error(key, format!("expected an array, found {}", kind(other)))),
        }
    }

    /// An array of strings, each with its node; empty when absent.
    pub fn str_array<'s>(&'s self, key: &'s str) -> Result<Vec<(&'a str, Child<'s>)>, LoadError> {
        let Some(v @ Json::Array(_)) = self.lookup(key)? else {
            // Absent, or an error for another type.
            return self.array(key).map(|_| Vec::new());
        };
        self.doc
            .elements(v)
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let c = self.child(v, Seg::KeyIndex(key, self.in_properties(key), i));
                match v {
                    Json::String(s) => Ok((self.doc.str(*s), c)),
                    other => Err(c.error(format!("expected a string, found {}", kind(other)))),
                }
            })
            .collect()
    }

    /// Where the sub-resource reference at `key` writes its id (`key.id`, or
    /// `key` written as a bare string), for errors about the resource it
    /// names, which is only looked up after loading. `None` when absent.
    pub fn reference_location(&self, key: &str) -> Option<Location> {
        let f = self.field(key)?;
        match f.value {
            Json::Object(_) => f.field("id").map(|id| id.location()),
            _ => Some(f.location()),
        }
    }

    /// `{"id": "..."}` sub-resource reference at `key`.
    pub fn reference(&self, key: &str) -> Result<Option<&'a str>, LoadError> {
        match self.lookup(key)? {
            None => Ok(None),
            Some(v @ Json::Object(_)) => {
                let c = self.child(v, Seg::Key(key, self.in_properties(key)));
                match c.lookup("id")? {
                    None => Ok(None),
                    Some(Json::String(s)) => Ok(Some(self.doc.str(*s))),
                    Some(other) => Err(c.field_error("id", format!("expected a string, found {}", kind(other)))),
                }
            }
            Some(Json::String(s)) => Ok(Some(self.doc.str(*s))),
            Some(other) => Err(self.field_error(key, format!("expected an object with \"id\", found {}", kind(other)))),
        }
    }
}

/// The entry of key `key` of object entries `o`: the exact key, else the
/// first that matches ignoring case (ARM keys match without case).
fn find_entry<'d>(doc: &'d Document, o: &'d [(Str, Json)], key: &str) -> Option<&'d (Str, Json)> {
    let mut folded = None;
    for e in o {
        let k = e.0;
        if k.len() != key.len() {
            continue;
        }
        let b = doc.bytes(k);
        if b == key.as_bytes() {
            return Some(e);
        }
        if folded.is_none() && b.eq_ignore_ascii_case(key.as_bytes()) {
            folded = Some(e);
        }
    }
    folded
}

/// The `properties` entry of object `value` (the key as written, and its
/// value), matched as any other key: `Properties` is `properties`.
pub fn properties<'d>(doc: &'d Document, value: &'d Json) -> Option<(Str, &'d Json)> {
    find_entry(doc, doc.members(value), "properties").map(|(k, v)| (*k, v))
}

/// The value of field `key` of `value` at the top level or under
/// `properties` (ARM shape), unless null. Keys match case-insensitively, as
/// ARM does; an exact match wins. `Err` with the key as written and the
/// value when `properties` is there but not an object: the resource's
/// fields would be silently missing.
fn lookup<'d>(doc: &'d Document, value: &'d Json, key: &str) -> Result<Option<&'d Json>, (Str, &'d Json)> {
    let Json::Object(_) = value else { return Ok(None) };
    let obj = doc.members(value);
    let props = match properties(doc, value) {
        Some((_, p @ Json::Object(_))) => Some(p),
        None | Some((_, Json::Null)) => None,
        Some((k, other)) => return Err((k, other)),
    };
    if let Some((_, v)) = find_entry(doc, obj, key).filter(|(_, v)| !matches!(v, Json::Null)) {
        return Ok(Some(v));
    }
    let Some(props) = props else { return Ok(None) };
    Ok(find_entry(doc, doc.members(props), key)
        .map(|(_, v)| v)
        .filter(|v| !matches!(v, Json::Null)))
}

/// A word for a JSON value's type, for error messages.
pub fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// [`kind`] for a serde_json value (the capture request and `--filters`
/// files are read with serde_json): the same words.
pub fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
