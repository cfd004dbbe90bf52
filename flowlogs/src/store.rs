//! Hourly blob files on disk: `PT1H.json` documents `{"records":[...]}`
//! (spec §7.1 "Blob path", §7.3), written atomically.
//!
//! A write goes to a temporary file in the destination directory, is
//! fsynced, then renamed over the destination (and the directory fsynced
//! where the platform allows), so a killed process leaves either the old or
//! the new document, never half of one. Appending to an existing hour file
//! validates it as a `{"records":[...]}` document and splices the new
//! records in before the closing `]}`, keeping the existing bytes as they
//! were. One writer per output directory is assumed (no file locking).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use crate::error::FlowLogError;
use crate::time::CivilTime;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    records: Vec<serde::de::IgnoredAny>,
}

/// Appends `records` (each one serialized JSON object) to the document at
/// `path`, creating it (and its directories) when absent. Atomic.
pub(crate) fn append_records(path: &Path, records: &[String]) -> Result<(), FlowLogError> {
    if records.is_empty() {
        return Ok(());
    }
    let io = |source| FlowLogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = match fs::read_to_string(path) {
        Ok(existing) => {
            let doc: Document = serde_json::from_str(&existing).map_err(|e| FlowLogError::ExistingFile {
                path: path.to_path_buf(),
                reason: format!("not a {{\"records\":[...]}} flow log document: {e}"),
            })?;
            // A valid document with the single key "records" ends in `]` `}`.
            let body = existing.trim_end();
            let body = body
                .strip_suffix('}')
                .map(str::trim_end)
                .and_then(|b| b.strip_suffix(']'))
                .ok_or_else(|| FlowLogError::ExistingFile {
                    path: path.to_path_buf(),
                    reason: "does not end with ]}".to_string(),
                })?;
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

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

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
    /// and appended atomically. On an error the unwritten records stay
    /// buffered for a retry; `written` counts what did get written.
    pub(crate) fn write_out(
        &mut self,
        before_ns: Option<i64>,
        written: &mut Written,
        path: impl Fn(&BucketKey) -> PathBuf,
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
            match serialize(&members).and_then(|texts| append_records(&p, &texts).map(|()| texts.len())) {
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
