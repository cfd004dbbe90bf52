//! Identifiers written into flow logs: MAC addresses, upper-cased resource
//! IDs and system GUIDs (spec §7.1, §7.3).

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// An identifier that cannot go into a flow log.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IdError {
    #[error("MAC address {value:?}: expected 12 hex digits, optionally separated by '-', ':' or '.'")]
    Mac { value: String },
    #[error("resource ID {id:?}: {reason}")]
    ResourceId { id: String, reason: String },
}

/// A MAC address as flow logs write it: 12 upper-case hex digits without
/// separators, e.g. `000D3AD53B86` (spec §7.1). Parses the ARM NIC form
/// `00-0D-3A-D5-3B-86` as well as `:`/`.`-separated and bare forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddress(pub [u8; 6]);

impl FromStr for MacAddress {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        let err = || IdError::Mac { value: s.to_string() };
        let digits: Vec<u8> = s.bytes().filter(|b| !matches!(b, b'-' | b':' | b'.')).collect();
        if digits.len() != 12 {
            return Err(err());
        }
        let mut out = [0u8; 6];
        for (i, pair) in digits.chunks(2).enumerate() {
            let hex = |b: u8| (b as char).to_digit(16).ok_or_else(err);
            let v = hex(pair[0])? * 16 + hex(pair[1])?;
            out[i] = v as u8;
        }
        Ok(MacAddress(out))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// Splits an ARM resource ID into its segments after checking it is safe
/// to use as a directory path: absolute, no empty, `.` or `..` segment, no
/// backslash or NUL.
pub(crate) fn id_segments(id: &str) -> Result<Vec<&str>, IdError> {
    let err = |reason: &str| IdError::ResourceId {
        id: id.to_string(),
        reason: reason.to_string(),
    };
    let rest = id.strip_prefix('/').ok_or_else(|| err("must start with '/'"))?;
    let segs: Vec<&str> = rest.split('/').collect();
    for s in &segs {
        if s.is_empty() || *s == "." || *s == ".." || s.contains(['\\', '\0']) {
            return Err(err("has an empty, '.', '..' or backslash segment"));
        }
    }
    Ok(segs)
}

/// Checks `id` is `/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{type}/{name}]`
/// with the given provider namespace and types (case-insensitive) and
/// returns it upper-cased as flow logs write it.
pub(crate) fn upper_resource_id(id: &str, provider: &str, types: &[&str]) -> Result<String, IdError> {
    let segs = id_segments(id)?;
    let err = || IdError::ResourceId {
        id: id.to_string(),
        reason: format!(
            "expected /subscriptions/{{sub}}/resourceGroups/{{rg}}/providers/{provider}/{}",
            types.join("/{name}/") + "/{name}"
        ),
    };
    if segs.len() != 6 + 2 * types.len() {
        return Err(err());
    }
    let fixed = [(0, "subscriptions"), (2, "resourceGroups"), (4, "providers"), (5, provider)];
    if fixed.iter().any(|(i, want)| !segs[*i].eq_ignore_ascii_case(want)) {
        return Err(err());
    }
    if types.iter().enumerate().any(|(k, t)| !segs[6 + 2 * k].eq_ignore_ascii_case(t)) {
        return Err(err());
    }
    Ok(id.to_uppercase())
}

/// A stable GUID-shaped identifier derived from `seed` (case-insensitive):
/// two FNV-1a 64 hashes, formatted as an RFC 9562 version-8 UUID. Used for
/// `systemId` / `flowLogGUID` when the resource's `resourceGuid` is unknown.
pub fn derived_guid(seed: &str) -> String {
    fn fnv(bytes: impl Iterator<Item = u8>, basis: u64) -> u64 {
        bytes.fold(basis, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3))
    }
    let lower = seed.to_lowercase();
    let a = fnv(lower.bytes(), 0xcbf2_9ce4_8422_2325);
    let b = fnv(lower.bytes().rev(), 0x6c62_272e_07bb_0142);
    let mut x = (u128::from(a) << 64) | u128::from(b);
    x = (x & !(0xF << 76)) | (0x8 << 76); // version 8
    x = (x & !(0x3 << 62)) | (0x2 << 62); // RFC variant
    let h = format!("{x:032x}");
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_forms() {
        for s in ["00-0D-3A-D5-3B-86", "00:0d:3a:d5:3b:86", "000D3AD53B86", "000d.3ad5.3b86"] {
            assert_eq!(s.parse::<MacAddress>().unwrap().to_string(), "000D3AD53B86");
        }
        for s in ["00-0D-3A-D5-3B", "00-0D-3A-D5-3B-8G", "", "000D3AD53B86AA", "ÿÿÿÿÿÿ"] {
            assert!(s.parse::<MacAddress>().is_err(), "{s}");
        }
    }

    #[test]
    fn resource_ids() {
        let id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/FabrikamRG/providers/Microsoft.Network/networkSecurityGroups/FabriakmVM1-nsg";
        assert_eq!(
            upper_resource_id(id, "Microsoft.Network", &["networkSecurityGroups"]).unwrap(),
            "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/FABRIKAMRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/FABRIAKMVM1-NSG"
        );
        assert!(upper_resource_id(
            "/subscriptions/s/resourceGroups/../providers/Microsoft.Network/networkSecurityGroups/x",
            "Microsoft.Network",
            &["networkSecurityGroups"]
        )
        .is_err());
        assert!(upper_resource_id(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/x",
            "Microsoft.Network",
            &["networkSecurityGroups"]
        )
        .is_err());
        assert!(upper_resource_id("subscriptions/s", "Microsoft.Network", &["networkSecurityGroups"]).is_err());
    }

    #[test]
    fn guid_is_stable_and_shaped() {
        let g = derived_guid("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/web");
        assert_eq!(
            g,
            derived_guid("/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/WEB")
        );
        assert_eq!(g.len(), 36);
        assert_eq!(&g[14..15], "8");
        assert_ne!(
            g,
            derived_guid("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/db")
        );
    }
}
