//! Timestamps as flow logs write them (spec §7.1: record `time` is UTC
//! ISO-8601 with exactly 7 fractional digits, e.g. `2017-02-16T22:00:32.8950000Z`).
//!
//! Times are `i64` nanoseconds since the Unix epoch (packet time of the
//! replayed capture). No calendar crate: the civil-date conversions are the
//! proleptic-Gregorian algorithms of H. Hinnant (`days_from_civil`).

/// Nanoseconds per second.
pub const NS_PER_SEC: i64 = 1_000_000_000;
/// Nanoseconds per millisecond.
pub const NS_PER_MS: i64 = 1_000_000;
/// Nanoseconds per minute.
pub const NS_PER_MIN: i64 = 60 * NS_PER_SEC;
/// Nanoseconds per hour.
pub const NS_PER_HOUR: i64 = 60 * NS_PER_MIN;

/// A UTC calendar time broken into fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl CivilTime {
    /// Splits `ns` since the epoch into UTC fields.
    pub fn from_unix_ns(ns: i64) -> Self {
        let secs = ns.div_euclid(NS_PER_SEC);
        let nanos = ns.rem_euclid(NS_PER_SEC) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        CivilTime {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
            nanos,
        }
    }
}

/// Formats `ns` as `YYYY-MM-DDTHH:MM:SS.fffffffZ` (7 fractional digits,
/// truncated to 100 ns; spec §7.1).
pub fn format_rfc3339_7(ns: i64) -> String {
    let t = CivilTime::from_unix_ns(ns);
    if (0..=9999).contains(&t.year) {
        return Rfc3339Buf::new(ns).as_str().to_string();
    }
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.nanos / 100
    )
}

/// [`format_rfc3339_7`] without allocating, for hot output paths: the 28
/// bytes `YYYY-MM-DDTHH:MM:SS.fffffffZ` on the stack. Years outside
/// 0..=9999 (which RFC 3339 cannot write) are clamped to them.
#[derive(Clone, Copy)]
pub struct Rfc3339Buf([u8; 28]);

impl Rfc3339Buf {
    /// Formats `ns` since the epoch.
    pub fn new(ns: i64) -> Self {
        let t = CivilTime::from_unix_ns(ns);
        let mut b = *b"0000-00-00T00:00:00.0000000Z";
        let mut put = |at: usize, width: usize, mut v: u64| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, t.year.clamp(0, 9999) as u64);
        put(5, 2, t.month.into());
        put(8, 2, t.day.into());
        put(11, 2, t.hour.into());
        put(14, 2, t.minute.into());
        put(17, 2, t.second.into());
        put(20, 7, (t.nanos / 100).into());
        Rfc3339Buf(b)
    }

    /// The formatted time.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation are ever written.
        std::str::from_utf8(&self.0).unwrap_or("0000-00-00T00:00:00.0000000Z")
    }

    /// The time to the millisecond, `YYYY-MM-DDTHH:MM:SS.fffZ`, for people.
    pub fn millis(&self) -> String {
        format!("{}Z", self.as_str().get(..23).unwrap_or("0000-00-00T00:00:00.000"))
    }
}

/// [`Rfc3339Buf`] for a stream of times: the calendar date is computed
/// again only when the day changes (output times come in runs within the
/// same day); the time of day and the fraction are written every time.
#[derive(Clone, Copy)]
pub struct Rfc3339Cache {
    day: i64,
    buf: Rfc3339Buf,
}

impl Default for Rfc3339Cache {
    fn default() -> Self {
        Rfc3339Cache {
            day: i64::MIN,
            buf: Rfc3339Buf::new(0),
        }
    }
}

/// Writes `v` (< 100) as two digits at `b[at..at + 2]`.
#[inline(always)]
fn two_digits(b: &mut [u8; 28], at: usize, v: u32) {
    b[at] = b'0' + (v / 10) as u8;
    b[at + 1] = b'0' + (v % 10) as u8;
}

impl Rfc3339Cache {
    /// `ns` formatted as [`format_rfc3339_7`] does (years clamped as
    /// [`Rfc3339Buf`] does).
    pub fn format(&mut self, ns: i64) -> &str {
        self.format_bytes(ns);
        self.buf.as_str()
    }

    /// [`Rfc3339Cache::format`] as ASCII bytes (no UTF-8 check).
    #[inline]
    pub fn format_bytes(&mut self, ns: i64) -> &[u8; 28] {
        let second = ns.div_euclid(NS_PER_SEC);
        let day = second.div_euclid(86_400);
        if day != self.day {
            self.day = day;
            self.buf = Rfc3339Buf::new(ns);
            return &self.buf.0;
        }
        let b = &mut self.buf.0;
        // Unix time has no leap seconds: the time of day is plain arithmetic.
        let sod = second.rem_euclid(86_400) as u32;
        two_digits(b, 11, sod / 3600);
        two_digits(b, 14, sod / 60 % 60);
        two_digits(b, 17, sod % 60);
        // 7 fraction digits (100 ns units): 1 + 3 pairs.
        let v = (ns.rem_euclid(NS_PER_SEC) / 100) as u32;
        b[20] = b'0' + (v / 1_000_000) as u8;
        two_digits(b, 21, v / 10_000 % 100);
        two_digits(b, 23, v / 100 % 100);
        two_digits(b, 25, v % 100);
        &self.buf.0
    }
}

/// Parses a UTC RFC 3339 time `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` (as flow log
/// records write it) into nanoseconds since the epoch. Offsets other than
/// `Z` are accepted as `+HH:MM` / `-HH:MM`.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let year = num(0..4)?;
    let month = num(5..7)?;
    let day = num(8..10)?;
    let hour = num(11..13)?;
    let minute = num(14..16)?;
    let second = num(17..19)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(i64::from(year), month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let offset_secs: i64 = match b.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = i64::from(num(i + 1..i + 3)?);
            let om = i64::from(num(i + 4..i + 6)?);
            let v = oh * 3600 + om * 60;
            if sign == b'+' {
                v
            } else {
                -v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second) - offset_secs;
    secs.checked_mul(NS_PER_SEC)?.checked_add(nanos)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_seven_digits() {
        // 1542110435 = 2018-11-13T12:00:35Z (NSG sample record time).
        let ns = 1_542_110_435 * NS_PER_SEC + 389_926_200;
        assert_eq!(format_rfc3339_7(ns), "2018-11-13T12:00:35.3899262Z");
        assert_eq!(format_rfc3339_7(0), "1970-01-01T00:00:00.0000000Z");
        assert_eq!(format_rfc3339_7(-1), "1969-12-31T23:59:59.9999999Z");
        let mut cache = Rfc3339Cache::default();
        for ns in [
            0,
            1,
            999_999_999,
            1_000_000_000,
            1_542_110_435_389_926_200,
            1_542_110_435_000_000_000,
            -1,
            5,
            86_400_000_000_000,
        ] {
            assert_eq!(cache.format(ns), format_rfc3339_7(ns), "{ns}");
        }
    }

    proptest::proptest! {
        /// The cache formats any sequence of times exactly as the uncached
        /// formatter: runs within a day, day changes both ways, negative
        /// times, the ends of the i64 range.
        #[test]
        fn cache_equals_uncached(base in -9_300_000_000_000i64..9_300_000_000_000i64, steps in proptest::collection::vec(-200_000i64..200_000, 1..60)) {
            let mut cache = Rfc3339Cache::default();
            let mut ns = base.saturating_mul(NS_PER_SEC / 1000);
            for step in steps {
                ns = ns.saturating_add(step * 1_234_567_891);
                let want = format_rfc3339_7(ns);
                proptest::prop_assert_eq!(cache.format(ns), want.as_str());
                proptest::prop_assert_eq!(&cache.format_bytes(ns)[..], want.as_bytes());
            }
        }
    }

    #[test]
    fn parses_back() {
        for s in [
            "2018-11-13T12:00:35.3899262Z",
            "2022-09-14T09:00:52.5625085Z",
            "2000-02-29T23:59:59.0000000Z",
        ] {
            let ns = parse_rfc3339(s).unwrap();
            assert_eq!(format_rfc3339_7(ns), s);
        }
        assert_eq!(parse_rfc3339("2018-11-13T12:00:35Z"), Some(1_542_110_435 * NS_PER_SEC));
        assert_eq!(parse_rfc3339("2018-11-13T13:00:35+01:00"), Some(1_542_110_435 * NS_PER_SEC));
        assert_eq!(parse_rfc3339("2018-02-30T12:00:35Z"), None);
        assert_eq!(parse_rfc3339("2018-11-13T12:00:35.Z"), None);
        assert_eq!(parse_rfc3339("2018-11-13T12:00:35"), None);
        assert_eq!(parse_rfc3339("２018-11-13T12:00:35Z"), None);
    }
}
