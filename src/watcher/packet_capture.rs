//! Azure's PacketCapture request (spec §8.2, the body of
//! `PUT .../networkWatchers/{nw}/packetCaptures/{name}`): what a live
//! capture takes from it. Keys are matched without regard to case, as ARM
//! does; `properties` may wrap the fields or not (a bare parameters object).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use netwatch_capture::filter::CaptureFilter;
use serde_json::{Map, Value};

use crate::azure::json::value_kind;
use crate::azure::{LoadError, Location};

/// The fields of a PacketCapture request that a capture on this machine
/// uses (the target, storage account and VMSS scope name Azure resources
/// and do not apply).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PacketCaptureRequest {
    pub name: Option<String>,
    pub id: Option<String>,
    /// `bytesToCapturePerPacket`: 0..=4294967295, 0 = whole packet.
    pub bytes_to_capture_per_packet: Option<u64>,
    /// `totalBytesPerSession`: 0..=4294967295.
    pub total_bytes_per_session: Option<u64>,
    /// `timeLimitInSeconds`: 0..=18000.
    pub time_limit_in_seconds: Option<u64>,
    /// `filters`: OR'd; `None` when absent (capture everything).
    pub filters: Option<Vec<CaptureFilter>>,
    /// `storageLocation.filePath`, else `storageLocation.localPath`, as
    /// written, with its JSON path (see [`Self::file_path`]).
    pub storage_path: Option<(String, String)>,
    /// `continuousCapture`: a nullable bool.
    pub continuous_capture: Option<bool>,
    /// `captureSettings`, as given (see [`Self::continuous`]).
    pub capture_settings: Option<CaptureSettings>,
    /// The request file, for errors.
    source: Option<Arc<Path>>,
    /// `properties.` when the fields are wrapped, else empty: the JSON path
    /// of the fields, for errors.
    prefix: &'static str,
    /// Fields of the request this capture does not apply (JSON paths), for
    /// a warning: `scope` (VMSS instances).
    pub ignored: Vec<String>,
}

/// `captureSettings` (spec §8.2): the files of a continuous capture, each
/// field as given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureSettings {
    /// `fileCount`: 0..=10000.
    pub file_count: Option<u64>,
    /// `fileSizeInBytes`: 0..=4294967295.
    pub file_size_in_bytes: Option<u64>,
    /// `sessionTimeLimitInSeconds`: 0..=604800.
    pub session_time_limit_in_seconds: Option<u64>,
}

/// Azure's default `captureSettings.fileCount`.
pub const DEFAULT_FILE_COUNT: u64 = 10;
/// Azure's default `captureSettings.fileSizeInBytes` (100 MiB).
pub const DEFAULT_FILE_SIZE_IN_BYTES: u64 = 104_857_600;
/// Azure's default `captureSettings.sessionTimeLimitInSeconds` (1 day).
pub const DEFAULT_SESSION_TIME_LIMIT_SECS: u64 = 86_400;

/// The ring of files a continuous capture asks for (see
/// [`PacketCaptureRequest::continuous`]); 0 means "no limit" for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContinuousCapture {
    /// Files kept (the names wrap after this many); 0 = all.
    pub file_count: u64,
    /// A new file before one would exceed this; 0 = one file.
    pub file_size_in_bytes: u64,
    /// `sessionTimeLimitInSeconds` when given; else the request's
    /// `timeLimitInSeconds`, else [`DEFAULT_SESSION_TIME_LIMIT_SECS`]; 0 = none.
    pub session_time_limit_in_seconds: u64,
    /// The field that asked for the ring, under `properties`
    /// (`captureSettings` or `continuousCapture`), for [`PacketCaptureRequest::field_error`].
    pub key: &'static str,
}

impl PacketCaptureRequest {
    /// Reads a request file.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        Self::from_json(path, &read_json(path)?)
    }

    /// A parsed request; `file` names it in errors.
    pub fn from_json(file: &Path, v: &Value) -> Result<Self, LoadError> {
        let file: Arc<Path> = Arc::from(file);
        let Value::Object(top) = v else {
            return Err(wrong_type(&file, "", "a JSON object (a PacketCapture request)", v));
        };
        let (props, at) = parameters(&file, top)?;
        let filters = match get(props, "filters") {
            Some(f) => Some(filters_at(&file, &format!("{at}filters"), f)?),
            None => None,
        };
        let storage_path = match get(props, "storageLocation") {
            Some(Value::Object(loc)) => {
                let loc_at = format!("{at}storageLocation.");
                match (string(&file, &loc_at, loc, "filePath")?, string(&file, &loc_at, loc, "localPath")?) {
                    (Some(p), _) => Some((p, format!("{loc_at}filePath"))),
                    (None, Some(p)) => Some((p, format!("{loc_at}localPath"))),
                    (None, None) => None,
                }
            }
            None => None,
            Some(other) => return Err(wrong_type(&file, &format!("{at}storageLocation"), "an object", other)),
        };
        let continuous_capture = match get(props, "continuousCapture") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => return Err(wrong_type(&file, &format!("{at}continuousCapture"), "true, false or null", other)),
        };
        // §8.2: filePath "is invalid if continuousCapture is provided with
        // true or false"; a continuous capture names its file with localPath.
        if let (Some(_), Some((_, path))) = (continuous_capture, &storage_path) {
            if path.ends_with(".filePath") {
                return Err(invalid(
                    &file,
                    path,
                    "invalid when continuousCapture is given (true or false): name the file with storageLocation.localPath",
                ));
            }
        }
        let capture_settings = match get(props, "captureSettings") {
            None => None,
            Some(Value::Object(cs)) => {
                let cs_at = format!("{at}captureSettings.");
                Some(CaptureSettings {
                    file_count: integer(&file, &cs_at, cs, "fileCount", 10_000)?,
                    file_size_in_bytes: integer(&file, &cs_at, cs, "fileSizeInBytes", 4_294_967_295)?,
                    session_time_limit_in_seconds: integer(&file, &cs_at, cs, "sessionTimeLimitInSeconds", 604_800)?,
                })
            }
            Some(other) => return Err(wrong_type(&file, &format!("{at}captureSettings"), "an object", other)),
        };
        let ignored = ["scope"]
            .iter()
            .filter(|k| get(props, k).is_some())
            .map(|k| format!("{at}{k}"))
            .collect();
        Ok(PacketCaptureRequest {
            name: string(&file, "", top, "name")?,
            id: string(&file, "", top, "id")?,
            bytes_to_capture_per_packet: integer(&file, at, props, "bytesToCapturePerPacket", 4_294_967_295)?,
            total_bytes_per_session: integer(&file, at, props, "totalBytesPerSession", 4_294_967_295)?,
            time_limit_in_seconds: integer(&file, at, props, "timeLimitInSeconds", 18_000)?,
            filters,
            storage_path,
            continuous_capture,
            capture_settings,
            source: Some(file),
            prefix: at,
            ignored,
        })
    }

    /// The ring of files the request asks for: its `captureSettings`, with
    /// Azure's defaults for the fields it leaves out, when they are given or
    /// `continuousCapture` is true; `None` for a capture into one file.
    pub fn continuous(&self) -> Option<ContinuousCapture> {
        let (settings, key) = match (self.capture_settings, self.continuous_capture) {
            (Some(cs), _) => (cs, "captureSettings"),
            (None, Some(true)) => (CaptureSettings::default(), "continuousCapture"),
            (None, _) => return None,
        };
        Some(ContinuousCapture {
            file_count: settings.file_count.unwrap_or(DEFAULT_FILE_COUNT),
            file_size_in_bytes: settings.file_size_in_bytes.unwrap_or(DEFAULT_FILE_SIZE_IN_BYTES),
            session_time_limit_in_seconds: settings
                .session_time_limit_in_seconds
                .or(self.time_limit_in_seconds)
                .unwrap_or(DEFAULT_SESSION_TIME_LIMIT_SECS),
            key,
        })
    }

    /// An error about the request's field `key` (a name under
    /// `properties`), for checks that need more than the request, such as
    /// the file header's length against `totalBytesPerSession`.
    pub fn field_error(&self, key: &str, message: impl Into<String>) -> LoadError {
        let file = self.source.clone().unwrap_or_else(|| Arc::from(Path::new("")));
        invalid(&file, &format!("{}{key}", self.prefix), message)
    }

    /// The capture file the request names, for this machine. A Windows
    /// path (`D:\capture\pc1.cap`, the VM's disk in Azure's example) would
    /// become a file of that odd name here: an error naming the field.
    pub fn file_path(&self) -> Result<Option<PathBuf>, LoadError> {
        let Some((p, at)) = &self.storage_path else { return Ok(None) };
        let b = p.as_bytes();
        let drive = b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':';
        if cfg!(not(windows)) && (drive || p.contains('\\')) {
            let file = self.source.clone().unwrap_or_else(|| Arc::from(Path::new("")));
            return Err(invalid(
                &file,
                at,
                format!("{p:?} is a Windows path; give the capture file for this machine with -w/--write"),
            ));
        }
        Ok(Some(PathBuf::from(p)))
    }
}

/// Capture filters from a file holding a JSON array of PacketCaptureFilter
/// objects, or an object with a `filters` array: a request, whose filters
/// are found where [`PacketCaptureRequest::from_json`] finds them (under
/// `properties` when it is an object). Every value of the wrong JSON type is
/// an error naming its JSON path, `filters: null` and a missing `filters`
/// too: a filter taken as absent matches everything, so a mistake would
/// widen the capture without a word.
pub fn capture_filters_from_file(path: &Path) -> Result<Vec<CaptureFilter>, LoadError> {
    let v = read_json(path)?;
    let file: Arc<Path> = Arc::from(path);
    let Value::Object(top) = &v else {
        return filters_at(&file, "", &v);
    };
    let (params, at) = parameters(&file, top)?;
    let path = format!("{at}filters");
    match params.iter().find(|(k, _)| k.eq_ignore_ascii_case("filters")) {
        Some((_, f)) => filters_at(&file, &path, f),
        None => Err(invalid(&file, &path, "not given; expected an array of filters")),
    }
}

/// The object holding a request's parameters: `properties` when it is an
/// object; the request itself when `properties` is absent or null. Anything
/// else is a mistake, not "no settings": it would start a default 5-hour
/// capture of everything, or take filters from beside it.
fn parameters<'a>(file: &Arc<Path>, top: &'a Map<String, Value>) -> Result<(&'a Map<String, Value>, &'static str), LoadError> {
    match get(top, "properties") {
        Some(Value::Object(p)) => Ok((p, "properties.")),
        None => Ok((top, "")),
        Some(other) => Err(wrong_type(file, "properties", "an object", other)),
    }
}

fn read_json(path: &Path) -> Result<Value, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| LoadError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string().split(" at line").next().unwrap_or_default().to_string(),
    })
}

/// A value of the wrong JSON type at `path`: `expected WHAT, found a number`
/// (the loader's words, [`value_kind`]). Absent or null is "not given",
/// which the callers decide before.
fn wrong_type(file: &Arc<Path>, path: &str, expected: &str, found: &Value) -> LoadError {
    invalid(file, path, format!("expected {expected}, found {}", value_kind(found)))
}

fn invalid(file: &Arc<Path>, path: &str, message: impl Into<String>) -> LoadError {
    LoadError::Invalid {
        at: Location {
            file: Arc::clone(file),
            path: path.to_string(),
        },
        message: message.into(),
    }
}

/// Case-insensitive lookup of an object key; `null` counts as absent.
fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

/// A string field; absent or null is "not given", another type an error
/// (a silently dropped value would change what is captured, or where).
fn string(file: &Arc<Path>, at: &str, obj: &Map<String, Value>, key: &str) -> Result<Option<String>, LoadError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(file, &format!("{at}{key}"), "a string", other)),
    }
}

/// An integer field (a JSON number or a string of digits) in `0..=max`.
fn integer(file: &Arc<Path>, at: &str, props: &Map<String, Value>, key: &str, max: u64) -> Result<Option<u64>, LoadError> {
    let Some(v) = get(props, key) else { return Ok(None) };
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n <= max => Ok(Some(n)),
        _ => Err(invalid(file, &format!("{at}{key}"), format!("{v} is not an integer in 0..{max}"))),
    }
}

/// The filters of a JSON array at `path`.
fn filters_at(file: &Arc<Path>, path: &str, v: &Value) -> Result<Vec<CaptureFilter>, LoadError> {
    let Value::Array(arr) = v else {
        return Err(wrong_type(file, path, "an array of filters", v));
    };
    let mut out = Vec::with_capacity(arr.len());
    for (i, f) in arr.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Value::Object(o) = f else {
            return Err(wrong_type(file, &at, "a filter object", f));
        };
        let mut fields: [Option<String>; 5] = Default::default();
        for (k, v) in o {
            let Some(canon) = CaptureFilter::canonical_field(k) else {
                return Err(invalid(
                    file,
                    &format!("{at}.{k}"),
                    "unknown field; expected protocol, localIPAddress, remoteIPAddress, localPort or remotePort",
                ));
            };
            // PacketCaptureFilter's fields are strings; a port may be a
            // JSON number too (`"localPort": 80`), a whole one.
            let port = canon.ends_with("Port");
            let s = match v {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                Value::Number(n) if port && n.is_u64() => n.to_string(),
                Value::Number(n) if port => {
                    return Err(invalid(
                        file,
                        &format!("{at}.{k}"),
                        format!("expected a string or a port number, found {n}"),
                    ))
                }
                _ if port => return Err(wrong_type(file, &format!("{at}.{k}"), "a string or a port number", v)),
                _ => return Err(wrong_type(file, &format!("{at}.{k}"), "a string", v)),
            };
            let slot = ["protocol", "localIPAddress", "remoteIPAddress", "localPort", "remotePort"]
                .iter()
                .position(|c| *c == canon)
                .unwrap_or(0);
            fields[slot] = Some(s);
        }
        let filter = CaptureFilter::from_fields(
            fields[0].as_deref(),
            fields[1].as_deref(),
            fields[2].as_deref(),
            fields[3].as_deref(),
            fields[4].as_deref(),
        )
        .map_err(|e| invalid(file, &at, e.to_string()))?;
        out.push(filter);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<PacketCaptureRequest, LoadError> {
        PacketCaptureRequest::from_json(Path::new("req.json"), &v)
    }

    #[test]
    fn azure_example_request() {
        // spec §8.2 [EX-PC], with a name and id as a GET returns them.
        let r = parse(serde_json::json!({
            "name": "pc1",
            "id": "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/networkWatchers/nw1/packetCaptures/pc1",
            "properties": {
                "target": "/subscriptions/subid/resourceGroups/rg2/providers/Microsoft.Compute/virtualMachines/vm1",
                "bytesToCapturePerPacket": 10000, "totalBytesPerSession": 100000, "timeLimitInSeconds": 100,
                "storageLocation": { "storageId": "x", "storagePath": "https://a/capture/pc1.cap", "filePath": "/var/captures/pc1.cap" },
                "filters": [ { "protocol": "TCP", "localIPAddress": "10.0.0.4", "localPort": "80" } ]
            }
        }))
        .expect("parse");
        assert_eq!(r.name.as_deref(), Some("pc1"));
        assert_eq!(r.bytes_to_capture_per_packet, Some(10000));
        assert_eq!(r.total_bytes_per_session, Some(100000));
        assert_eq!(r.time_limit_in_seconds, Some(100));
        assert_eq!(r.file_path().expect("path"), Some(PathBuf::from("/var/captures/pc1.cap")));
        let f = r.filters.expect("filters");
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0],
            CaptureFilter::from_fields(Some("TCP"), Some("10.0.0.4"), None, Some("80"), None).expect("filter")
        );
    }

    #[test]
    fn bare_parameters_and_case() {
        let r = parse(serde_json::json!({ "TimeLimitInSeconds": "60", "FILTERS": [] })).expect("parse");
        assert_eq!(r.time_limit_in_seconds, Some(60));
        assert_eq!(r.filters, Some(vec![]));
        assert_eq!(r.bytes_to_capture_per_packet, None);
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(serde_json::json!({ "properties": { "timeLimitInSeconds": 18001 } }))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("req.json: properties.timeLimitInSeconds") && e.contains("0..18000"),
            "{e}"
        );
        let e = parse(serde_json::json!({ "properties": { "filters": [ {}, { "protocol": "TCP", "port": "80" } ] } }))
            .unwrap_err()
            .to_string();
        assert!(e.contains("properties.filters[1].port: unknown field"), "{e}");
        let e = parse(serde_json::json!({ "filters": [ { "localPort": "80-85;90" } ] }))
            .unwrap_err()
            .to_string();
        assert!(e.contains("req.json: filters[0]:"), "{e}");
        let e = parse(serde_json::json!({ "filters": [ { "protocol": 6.5e100 } ] }))
            .unwrap_err()
            .to_string();
        assert!(e.contains("filters[0]"), "{e}");
        let e = parse(serde_json::json!([1, 2])).unwrap_err().to_string();
        assert!(e.contains("expected a JSON object"), "{e}");
        // Azure's example stores on the VM's D: drive: not a path here.
        let r = parse(serde_json::json!({ "properties": { "storageLocation": { "filePath": "D:\\capture\\pc1.cap" } } })).expect("parse");
        let e = r.file_path().unwrap_err().to_string();
        assert!(
            e.contains("properties.storageLocation.filePath") && e.contains("Windows path"),
            "{e}"
        );
    }

    #[test]
    fn settings_not_applied_are_listed() {
        let r = parse(serde_json::json!({ "properties": {
            "continuousCapture": true, "captureSettings": { "fileCount": 2 }, "scope": { "include": [] },
            "storageLocation": { "localPath": "/var/captures/ring.cap" } } }))
        .expect("parse");
        assert_eq!(r.ignored, ["properties.scope"]);
        assert_eq!(r.file_path().expect("path"), Some(PathBuf::from("/var/captures/ring.cap")));
        let r = parse(serde_json::json!({ "continuousCapture": false })).expect("parse");
        assert!(r.ignored.is_empty());
    }

    #[test]
    fn capture_settings_make_a_ring_of_files() {
        // Given fields as given, Azure's defaults for the others.
        let r = parse(serde_json::json!({ "properties": {
            "continuousCapture": true, "timeLimitInSeconds": 60, "captureSettings": { "fileCount": 2, "fileSizeInBytes": "1000" } } }))
        .expect("parse");
        let c = r.continuous().expect("ring");
        assert_eq!((c.file_count, c.file_size_in_bytes), (2, 1000));
        assert_eq!(
            c.session_time_limit_in_seconds, 60,
            "timeLimitInSeconds when no session limit is given"
        );
        assert_eq!(c.key, "captureSettings");
        let r = parse(serde_json::json!({ "captureSettings": { "sessionTimeLimitInSeconds": 604800 }, "timeLimitInSeconds": 5 }))
            .expect("parse");
        let c = r.continuous().expect("ring");
        assert_eq!(
            (c.file_count, c.file_size_in_bytes, c.session_time_limit_in_seconds),
            (DEFAULT_FILE_COUNT, DEFAULT_FILE_SIZE_IN_BYTES, 604800)
        );
        assert_eq!(c.key, "captureSettings");
        // continuousCapture alone: every default.
        let c = parse(serde_json::json!({ "properties": { "continuousCapture": true } }))
            .expect("parse")
            .continuous()
            .expect("ring");
        assert_eq!(
            (c.file_count, c.file_size_in_bytes, c.session_time_limit_in_seconds),
            (DEFAULT_FILE_COUNT, DEFAULT_FILE_SIZE_IN_BYTES, DEFAULT_SESSION_TIME_LIMIT_SECS)
        );
        assert_eq!(c.key, "continuousCapture");
        for v in [
            serde_json::json!({ "continuousCapture": false }),
            serde_json::json!({ "continuousCapture": null }),
            serde_json::json!({}),
        ] {
            assert_eq!(parse(v).expect("parse").continuous(), None);
        }
    }

    #[test]
    fn capture_settings_errors_name_the_field() {
        let cases = [
            (
                serde_json::json!({ "properties": { "captureSettings": { "fileCount": 10001 } } }),
                "req.json: properties.captureSettings.fileCount: 10001 is not an integer in 0..10000",
            ),
            (
                serde_json::json!({ "properties": { "captureSettings": { "sessionTimeLimitInSeconds": 604801 } } }),
                "req.json: properties.captureSettings.sessionTimeLimitInSeconds: 604801 is not an integer in 0..604800",
            ),
            (
                serde_json::json!({ "properties": { "captureSettings": { "fileSizeInBytes": -1 } } }),
                "req.json: properties.captureSettings.fileSizeInBytes: -1 is not an integer in 0..4294967295",
            ),
            (
                serde_json::json!({ "properties": { "captureSettings": [2] } }),
                "req.json: properties.captureSettings: expected an object, found an array",
            ),
            (
                serde_json::json!({ "properties": { "continuousCapture": "yes" } }),
                "req.json: properties.continuousCapture: expected true, false or null, found a string",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(parse(v).unwrap_err().to_string(), want);
        }
        // §8.2: filePath is invalid once continuousCapture is given, true or false.
        for continuous in [true, false] {
            let e = parse(serde_json::json!({ "properties": {
                "continuousCapture": continuous, "storageLocation": { "filePath": "/var/captures/x.cap" } } }))
            .unwrap_err()
            .to_string();
            assert!(
                e.starts_with("req.json: properties.storageLocation.filePath: invalid when continuousCapture is given"),
                "{e}"
            );
        }
        parse(serde_json::json!({ "properties": { "continuousCapture": null, "storageLocation": { "filePath": "/var/captures/x.cap" } } }))
            .expect("null is not given");
    }

    #[test]
    fn field_errors_name_the_json_path() {
        let r = parse(serde_json::json!({ "properties": { "totalBytesPerSession": 10 } })).expect("parse");
        assert_eq!(
            r.field_error("totalBytesPerSession", "too small").to_string(),
            "req.json: properties.totalBytesPerSession: too small"
        );
        let r = parse(serde_json::json!({ "totalBytesPerSession": 10 })).expect("parse");
        assert_eq!(
            r.field_error("totalBytesPerSession", "too small").to_string(),
            "req.json: totalBytesPerSession: too small"
        );
    }

    #[test]
    fn wrong_types_are_errors() {
        let cases = [
            (
                serde_json::json!({ "properties": { "storageLocation": { "filePath": 5 } } }),
                "req.json: properties.storageLocation.filePath: expected a string, found a number",
            ),
            (
                serde_json::json!({ "properties": { "storageLocation": { "localPath": ["/tmp/x.cap"] } } }),
                "req.json: properties.storageLocation.localPath: expected a string, found an array",
            ),
            (
                serde_json::json!({ "properties": { "storageLocation": "/tmp/x.pcap" } }),
                "req.json: properties.storageLocation: expected an object, found a string",
            ),
            (
                serde_json::json!({ "storageLocation": 1 }),
                "req.json: storageLocation: expected an object, found a number",
            ),
            (
                serde_json::json!({ "name": 7, "properties": {} }),
                "req.json: name: expected a string, found a number",
            ),
            (
                serde_json::json!({ "id": { "x": 1 }, "properties": {} }),
                "req.json: id: expected a string, found an object",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(parse(v).unwrap_err().to_string(), want);
        }
        // Null stays "not given".
        let r = parse(
            serde_json::json!({ "name": null, "properties": { "storageLocation": { "filePath": null, "localPath": "/tmp/l.cap" } } }),
        )
        .expect("parse");
        assert_eq!(r.name, None);
        assert_eq!(r.file_path().expect("path"), Some(PathBuf::from("/tmp/l.cap")));
        let r = parse(serde_json::json!({ "properties": { "storageLocation": null } })).expect("parse");
        assert_eq!(r.storage_path, None);
    }

    fn filters_file(json: &str) -> Result<Vec<CaptureFilter>, LoadError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f.json");
        std::fs::write(&path, json).expect("write");
        capture_filters_from_file(&path).map_err(|e| match e {
            LoadError::Invalid { at, message } => LoadError::Invalid {
                at: Location {
                    file: Arc::from(Path::new("f.json")),
                    path: at.path,
                },
                message,
            },
            e => e,
        })
    }

    /// A filters file's mistakes are errors naming the JSON path, what was
    /// found and what was expected; none is taken as "not given", which
    /// would match everything (or take the filters from beside a bad
    /// `properties`).
    #[test]
    fn filters_file_wrong_types_are_errors() {
        let cases = [
            (r#"[1]"#, "f.json: [0]: expected a filter object, found a number"),
            (r#"[null]"#, "f.json: [0]: expected a filter object, found null"),
            (
                r#"[{"protocol": true}]"#,
                "f.json: [0].protocol: expected a string, found a boolean",
            ),
            (r#"[{"protocol": 6}]"#, "f.json: [0].protocol: expected a string, found a number"),
            (
                r#"[{}, {"remoteIPAddress": 167772161}]"#,
                "f.json: [1].remoteIPAddress: expected a string, found a number",
            ),
            (
                r#"[{"localPort": -1}]"#,
                "f.json: [0].localPort: expected a string or a port number, found -1",
            ),
            (
                r#"[{"remotePort": ["80"]}]"#,
                "f.json: [0].remotePort: expected a string or a port number, found an array",
            ),
            (
                r#"{"filters": {"protocol": "TCP"}}"#,
                "f.json: filters: expected an array of filters, found an object",
            ),
            (r#"{"filters": null}"#, "f.json: filters: expected an array of filters, found null"),
            (r#"{}"#, "f.json: filters: not given; expected an array of filters"),
            (r#""TCP""#, "f.json: expected an array of filters, found a string"),
            (
                r#"{"properties": "x", "filters": [{"protocol": "UDP"}]}"#,
                "f.json: properties: expected an object, found a string",
            ),
            (
                r#"{"properties": {"filters": null}, "filters": [{"protocol": "UDP"}]}"#,
                "f.json: properties.filters: expected an array of filters, found null",
            ),
            (
                r#"{"properties": {"timeLimitInSeconds": 5}, "filters": [{"protocol": "UDP"}]}"#,
                "f.json: properties.filters: not given; expected an array of filters",
            ),
            (
                r#"{"properties": {"filters": [{"localPort": true}]}}"#,
                "f.json: properties.filters[0].localPort: expected a string or a port number, found a boolean",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(filters_file(json).map(|_| ()).unwrap_err().to_string(), want, "{json}");
        }
        // What a request holds, found where --request finds it; null is "not given".
        let udp = CaptureFilter::from_fields(Some("UDP"), None, None, Some("53"), None).expect("filter");
        for json in [
            r#"[{"protocol": "UDP", "localPort": 53, "remotePort": null}]"#,
            r#"{"filters": [{"protocol": "UDP", "localPort": "53"}]}"#,
            r#"{"properties": null, "filters": [{"protocol": "UDP", "localPort": "53"}]}"#,
            r#"{"Properties": {"FILTERS": [{"PROTOCOL": "UDP", "localport": "53"}]}, "filters": []}"#,
        ] {
            assert_eq!(filters_file(json).expect(json), vec![udp.clone()], "{json}");
        }
        assert_eq!(filters_file("[]").expect("empty"), vec![]);
    }

    #[test]
    fn properties_must_be_an_object() {
        for (bad, found) in [
            (serde_json::json!("x"), "a string"),
            (serde_json::json!(5), "a number"),
            (serde_json::json!([]), "an array"),
            (serde_json::json!(true), "a boolean"),
        ] {
            let e = parse(serde_json::json!({ "properties": bad })).unwrap_err().to_string();
            assert_eq!(e, format!("req.json: properties: expected an object, found {found}"));
        }
        // Null is "not given": the object holds the parameters itself.
        let r = parse(serde_json::json!({ "properties": null, "timeLimitInSeconds": 5 })).expect("parse");
        assert_eq!(r.time_limit_in_seconds, Some(5));
    }
}
