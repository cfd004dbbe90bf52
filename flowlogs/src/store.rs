//! Hourly blob files on disk: `PT1H.json` documents `{"records":[...]}`
//! (spec §7.1 "Blob path", §7.3), written atomically.
//!
//! A write goes to a temporary file in the destination directory, is
//! fsynced, then renamed over the destination (and the directory fsynced
//! where the platform allows), so a killed process leaves either the old or
//! the new document, never half of one. Adding to an existing hour file
//! validates it as a `{"records":[...]}` document; records of later
//! minutes than it holds are spliced in before the closing `]}`, keeping
//! the existing bytes as they were, while a record of a minute it already
//! holds is merged into that minute's record and the file rewritten in
//! time order ([`add_records`]). One writer per output directory is
//! assumed (no file locking).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use crate::error::FlowLogError;
use crate::time::{parse_rfc3339, CivilTime, NS_PER_MIN};

/// `y=YYYY/m=MM/d=DD/h=HH/m=00/macAddress=<MAC>/PT1H.json` under `base`.
pub(crate) fn hour_file(base: &Path, hour_start_ns: i64, mac: &str) -> PathBuf {
    let t = CivilTime::from_unix_ns(hour_start_ns);
    base.join(format!("y={:04}", t.year))
        .join(format!("m={:02}", t.month))
        .join(format!("d={:02}", t.day))
        .join(format!("h={:02}", t.hour))
        .join("m=00")
        .join(format!("macAddress={mac}"))
        .join("PT1H.json")
}

/// Pushes the segments of a validated, upper-cased resource ID.
pub(crate) fn push_id(mut base: PathBuf, upper_id: &str) -> PathBuf {
    for seg in upper_id.split('/').filter(|s| !s.is_empty()) {
        base.push(seg);
    }
    base
}

/// An existing hour file: its records' texts, unparsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document<'a> {
    #[serde(borrow)]
    records: Vec<&'a serde_json::value::RawValue>,
}

/// The minute of an existing record's `time` (its text); `None` when it has
/// no readable one.
fn record_minute(raw: &str) -> Result<Option<i64>, serde_json::Error> {
    // Every minute's flush reads the hour file: records that begin with
    // their time (ours, Azure's) are not scanned.
    if let Some(time) = raw.strip_prefix("{\"time\":\"").and_then(|r| r.split('"').next()) {
        if let Some(ns) = parse_rfc3339(time) {
            return Ok(Some(ns.div_euclid(NS_PER_MIN)));
        }
    }
    Ok(serde_json::from_str::<RecordMinute>(raw)?.0)
}

/// What [`record_minute`] reads of a record: its `time`, skipping the rest.
struct RecordMinute(Option<i64>);

impl<'de> Deserialize<'de> for RecordMinute {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RecordMinute;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a flow log record")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RecordMinute, A::Error> {
                let mut minute = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "time" {
                        let time: Value = map.next_value()?;
                        minute = time.as_str().and_then(parse_rfc3339).map(|ns| ns.div_euclid(NS_PER_MIN));
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(RecordMinute(minute))
            }

            // Anything else in `records` is not a record of ours: kept, as before.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RecordMinute, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RecordMinute(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<RecordMinute, E> {
                Ok(RecordMinute(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<RecordMinute, E> {
                Ok(RecordMinute(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<RecordMinute, E> {
                Ok(RecordMinute(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<RecordMinute, E> {
                Ok(RecordMinute(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<RecordMinute, E> {
                Ok(RecordMinute(None))
            }
            fn visit_unit<E>(self) -> Result<RecordMinute, E> {
                Ok(RecordMinute(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// How a format's records nest their tuples, so that a record can be
/// merged into an existing one of the same minute.
#[derive(Debug)]
pub(crate) struct RecordShape {
    /// Fields (paths) that must be equal, besides the minute of `time`, for
    /// two records to be one.
    pub identity: &'static [&'static [&'static str]],
    /// Path of the outermost list (`properties.flows`).
    pub list: &'static [&'static str],
    /// Per list level, outermost first: the field naming an entry (`rule`)
    /// and the field of its nested list; the innermost list holds tuples.
    pub levels: &'static [(&'static str, &'static str)],
}

fn get_path<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn record_ns(v: &Value) -> Option<i64> {
    v.get("time")?.as_str().and_then(parse_rfc3339)
}

/// The leading field of a tuple (seconds or milliseconds): its time.
fn tuple_time(v: &Value) -> i64 {
    v.as_str()
        .and_then(|t| t.split(',').next())
        .and_then(|f| f.parse().ok())
        .unwrap_or(i64::MIN)
}

/// Whether `list` nests as `levels` says: named entries with their lists,
/// strings (tuples) at the bottom.
fn well_formed(list: &Value, levels: &[(&str, &str)]) -> bool {
    let Some(items) = list.as_array() else { return false };
    match levels.split_first() {
        None => items.iter().all(Value::is_string),
        Some(((name, child), rest)) => items
            .iter()
            .all(|e| e.get(*name).is_some_and(Value::is_string) && e.get(*child).is_some_and(|c| well_formed(c, rest))),
    }
}

/// Adds the entries of `from` to `into`: an entry of the same name gets
/// the other's nested entries, a new one goes last; tuples end up in time
/// order, `into`'s before `from`'s of the same time (written earlier).
fn merge_list(into: &mut Vec<Value>, from: Vec<Value>, levels: &[(&str, &str)]) {
    let Some(((name, child), rest)) = levels.split_first() else {
        into.extend(from);
        into.sort_by_cached_key(tuple_time); // stable
        return;
    };
    for item in from {
        match into.iter().position(|e| e.get(*name) == item.get(*name)) {
            Some(i) => {
                let src = match item {
                    Value::Object(mut o) => o.remove(*child),
                    _ => None,
                };
                if let (Some(Value::Array(dst)), Some(Value::Array(src))) = (into[i].get_mut(*child), src) {
                    merge_list(dst, src, rest);
                }
            }
            None => into.push(item),
        }
    }
}

impl RecordShape {
    /// Whether `v` is a record of this shape, which [`Self::merge`] can take.
    fn mergeable(&self, v: &Value) -> bool {
        record_ns(v).is_some()
            && self.identity.iter().all(|p| get_path(v, p).is_some())
            && get_path(v, self.list).is_some_and(|l| well_formed(l, self.levels))
    }

    /// Whether two mergeable records are of one resource, MAC and minute.
    fn same_record(&self, a: &Value, b: &Value) -> bool {
        record_ns(a).map(|t| t.div_euclid(NS_PER_MIN)) == record_ns(b).map(|t| t.div_euclid(NS_PER_MIN))
            && self.identity.iter().all(|p| get_path(a, p) == get_path(b, p))
    }

    /// Merges `later` into `into` (both mergeable, the same record): its
    /// tuples under their rule (and MAC or ACL), `time` the later one.
    fn merge(&self, into: &mut Value, mut later: Value) {
        if record_ns(&later) > record_ns(into) {
            if let (Some(o), Some(t)) = (into.as_object_mut(), later.get("time").cloned()) {
                o.insert("time".to_string(), t);
            }
        }
        let Some((last, parents)) = self.list.split_last() else { return };
        let take = parents
            .iter()
            .try_fold(&mut later, |v, k| v.get_mut(*k))
            .and_then(|v| v.as_object_mut())
            .and_then(|o| o.remove(*last));
        let dst = parents.iter().try_fold(into, |v, k| v.get_mut(*k)).and_then(|v| v.get_mut(*last));
        if let (Some(Value::Array(dst)), Some(Value::Array(src))) = (dst, take) {
            merge_list(dst, src, self.levels);
        }
    }
}

/// Adds `records` (each one serialized JSON object, in time order, the
/// earliest of minute `earliest_minute`) to the document at `path`,
/// creating it (and its directories) when absent. Atomic.
///
/// When every existing record is of an earlier minute (the usual case: one
/// capture, written a minute at a time), the new records are spliced in
/// before the closing `]}` and the existing bytes kept. Otherwise (a later
/// run, or an input that overlaps an earlier one in time, revisits a
/// minute) the file is rewritten: a record of a minute it already holds is
/// merged into that minute's record (Azure writes one record per NSG or
/// flow log, MAC and minute), and the records are put in time order.
pub(crate) fn add_records(path: &Path, records: &[String], earliest_minute: i64, shape: &RecordShape) -> Result<(), FlowLogError> {
    if records.is_empty() {
        return Ok(());
    }
    let io = |source| FlowLogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let existing_file = |reason: String| FlowLogError::ExistingFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut out = match fs::read_to_string(path) {
        Ok(existing) => {
            let not_a_document = |e: serde_json::Error| existing_file(format!("not a {{\"records\":[...]}} flow log document: {e}"));
            let doc: Document<'_> = serde_json::from_str(&existing).map_err(not_a_document)?;
            let minutes = doc
                .records
                .iter()
                .map(|r| record_minute(r.get()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(not_a_document)?;
            if minutes.iter().any(|m| m.is_some_and(|m| m >= earliest_minute)) {
                let text = merged_document(&doc.records, &minutes, records, shape)
                    .map_err(|e| existing_file(format!("merging a minute into it: {e}")))?;
                return write_atomic(path, text.as_bytes());
            }
            // A valid document with the single key "records" ends in `]` `}`.
            let body = existing.trim_end();
            let body = body
                .strip_suffix('}')
                .map(str::trim_end)
                .and_then(|b| b.strip_suffix(']'))
                .ok_or_else(|| existing_file("does not end with ]}".to_string()))?;
            let mut s = String::with_capacity(existing.len() + records.iter().map(|r| r.len() + 1).sum::<usize>() + 2);
            s.push_str(body);
            if !doc.records.is_empty() {
                s.push(',');
            }
            s
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::from("{\"records\":["),
        Err(e) => return Err(io(e)),
    };
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r);
    }
    out.push_str("]}");
    write_atomic(path, out.as_bytes())
}

/// The document of the existing records `old` (with their minutes) and
/// `records` merged (see [`add_records`]): one record per resource, MAC and
/// minute, in time order. Only the existing records of the new records'
/// minutes are parsed (and several of one minute merged); the others, and
/// records not of `shape`, keep their bytes (a record without a readable
/// `time` stays after the one before it).
fn merged_document(
    old: &[&serde_json::value::RawValue],
    old_minutes: &[Option<i64>],
    records: &[String],
    shape: &RecordShape,
) -> Result<String, serde_json::Error> {
    enum Entry<'a> {
        Kept(&'a str),
        Parsed { mergeable: bool, value: Value },
    }
    let new: Vec<Value> = records.iter().map(|r| serde_json::from_str(r)).collect::<Result<_, _>>()?;
    // The minutes to merge: those the new records write, and those the file
    // already holds more than once (as an earlier version could leave it).
    let mut touched: Vec<i64> = new.iter().filter_map(record_ns).map(|ns| ns.div_euclid(NS_PER_MIN)).collect();
    let mut seen = old_minutes.iter().flatten().copied().collect::<Vec<i64>>();
    seen.sort_unstable();
    touched.extend(seen.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]));
    let mut merged: Vec<(i64, Entry<'_>)> = Vec::with_capacity(old.len() + new.len());
    let add = |merged: &mut Vec<(i64, Entry<'_>)>, minute: i64, value: Value| {
        let mergeable = shape.mergeable(&value);
        if mergeable {
            let same = merged.iter_mut().find_map(|(m, e)| match e {
                Entry::Parsed {
                    mergeable: true,
                    value: into,
                } if *m == minute && shape.same_record(into, &value) => Some(into),
                _ => None,
            });
            if let Some(into) = same {
                shape.merge(into, value);
                return;
            }
        }
        merged.push((minute, Entry::Parsed { mergeable, value }));
    };
    let mut minute = i64::MIN;
    for (raw, m) in old.iter().zip(old_minutes) {
        if let Some(m) = *m {
            minute = m;
        }
        if touched.contains(&minute) {
            let value: Value = serde_json::from_str(raw.get())?;
            if shape.mergeable(&value) {
                add(&mut merged, minute, value);
                continue;
            }
        }
        // Not to merge: kept as written, byte for byte.
        merged.push((minute, Entry::Kept(raw.get())));
    }
    for value in new {
        let m = record_ns(&value).map_or(minute, |ns| ns.div_euclid(NS_PER_MIN));
        add(&mut merged, m, value);
    }
    merged.sort_by_key(|(m, _)| *m); // stable
    let old_len: usize = old.iter().map(|r| r.get().len() + 1).sum();
    let mut out = String::with_capacity(old_len + records.iter().map(|r| r.len() + 1).sum::<usize>() + 16);
    out.push_str("{\"records\":[");
    for (i, (_, e)) in merged.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match e {
            Entry::Kept(text) => out.push_str(text),
            Entry::Parsed { value, .. } => out.push_str(&serde_json::to_string(value)?),
        }
    }
    out.push_str("]}");
    Ok(out)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Removes the temporary files for `name` in `dir` that a killed run left
/// (a SIGKILL between creating one and its rename): those of processes that
/// no longer exist. Linux only (`/proc`); a live process's are kept.
fn remove_stale_temps(dir: &Path, name: &str) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    let prefix = format!(".{name}.");
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(rest) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|r| r.strip_suffix(".tmp"))
        else {
            continue;
        };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Writes `bytes` to `path` atomically: temp file in the same directory,
/// fsync, rename, fsync of the directory (best effort).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FlowLogError> {
    let io = |p: &Path, source| FlowLogError::Io {
        path: p.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .ok_or_else(|| io(path, std::io::Error::other("no parent directory")))?;
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("PT1H.json");
    remove_stale_temps(dir, name);
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| io(path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename durable; not every platform can open a directory.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Which record a tuple belongs to: Azure writes one record per resource
/// (NSG or flow log), MAC and minute.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct BucketKey {
    /// Upper-cased resource id of the NSG or flow log.
    pub resource_id: String,
    pub mac: crate::ids::MacAddress,
    pub minute: i64,
}

/// Records being filled, by [`BucketKey`], written out by minute to the
/// hour files. Shared by the NSG and VNet flow log writers.
#[derive(Debug)]
pub(crate) struct MinuteBuckets<R> {
    pending: std::collections::BTreeMap<BucketKey, R>,
}

/// Counts of a write.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Written {
    pub files: u64,
    pub records: u64,
}

impl<R> MinuteBuckets<R> {
    pub(crate) fn new() -> Self {
        MinuteBuckets {
            pending: std::collections::BTreeMap::new(),
        }
    }

    /// The record of `key`, created by `new` when absent.
    pub(crate) fn entry(&mut self, key: BucketKey, new: impl FnOnce() -> R) -> &mut R {
        self.pending.entry(key).or_insert_with(new)
    }

    /// Writes the records of minutes before `now_ns`'s minute (all with `None`),
    /// grouped by hour file (`path`), each group serialized by `serialize`
    /// and added atomically ([`add_records`]). On an error the unwritten records stay
    /// buffered for a retry; `written` counts what did get written.
    pub(crate) fn write_out(
        &mut self,
        before_ns: Option<i64>,
        written: &mut Written,
        path: impl Fn(&BucketKey) -> PathBuf,
        shape: &RecordShape,
        serialize: impl Fn(&[(BucketKey, R)]) -> Result<Vec<String>, FlowLogError>,
    ) -> Result<(), FlowLogError> {
        let all = std::mem::take(&mut self.pending);
        let buckets: std::collections::BTreeMap<BucketKey, R> = match before_ns {
            Some(now) => {
                let cut = now.div_euclid(crate::time::NS_PER_MIN);
                let (done, keep) = all.into_iter().partition(|(k, _)| k.minute < cut);
                self.pending = keep;
                done
            }
            None => all,
        };
        // Keys sort by resource, MAC, minute: one hour file's minutes are consecutive.
        let mut groups: Vec<(PathBuf, Vec<(BucketKey, R)>)> = Vec::new();
        for (key, rec) in buckets {
            let p = path(&key);
            match groups.last_mut() {
                Some((last, members)) if *last == p => members.push((key, rec)),
                _ => groups.push((p, vec![(key, rec)])),
            }
        }
        let mut groups = groups.into_iter();
        while let Some((p, members)) = groups.next() {
            let earliest = members.first().map_or(i64::MIN, |(k, _)| k.minute);
            match serialize(&members).and_then(|texts| add_records(&p, &texts, earliest, shape).map(|()| texts.len())) {
                Ok(n) => {
                    written.files += 1;
                    written.records += n as u64;
                }
                Err(e) => {
                    for (k, r) in members.into_iter().chain(groups.flat_map(|(_, m)| m)) {
                        self.pending.insert(k, r);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
