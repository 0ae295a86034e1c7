//! The disk part of an image manifest: kernel, command line, root hash and
//! the GPT partitions (UAPI Discoverable Partitions Specification) with the
//! sha256 of each.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::util::digest::{Digest, HexDigest};

/// The disk part of an image manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiskInfo {
    /// Kernel release (`uname -r`).
    pub kernel_version: String,
    /// The full kernel command line in the UKI.
    pub cmdline: String,
    /// dm-verity root hash (hex).
    pub root_hash: HexDigest,
    /// Modules the initramfs loads, in order.
    pub initrd_modules: Vec<String>,
    /// `sha256:` of the UKI.
    pub uki_digest: Digest,
    /// `sha256:` of the kiln-init binary in the initramfs.
    pub init_digest: Digest,
    /// The partitions.
    pub partitions: Vec<PartitionInfo>,
    /// Disk GUID.
    #[serde(with = "guid")]
    pub disk_guid: Uuid,
    /// The UKI's Secure Boot signature, when the build signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uki_signature: Option<UkiSignature>,
    /// The PCR 11 (SHA-256 bank, hex) systemd-stub will leave after
    /// measuring the UKI, before any boot-phase measurement
    /// (`systemd-measure calculate --phase=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcr11_sha256: Option<HexDigest>,
}

/// The Authenticode signature on a UKI (ARCHITECTURE.md "Secure Boot").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UkiSignature {
    /// The signing certificate's subject (RFC 4514).
    pub signer: String,
    /// `sha256:` of the signing certificate's DER.
    pub cert_fingerprint: Digest,
    /// `sha256:` Authenticode digest of the UKI (what the signature covers).
    pub authenticode_digest: Digest,
}

/// One partition of the disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartitionInfo {
    /// 1-based number.
    pub index: u32,
    /// GPT label.
    pub name: String,
    /// Type GUID.
    #[serde(with = "guid")]
    pub type_guid: Uuid,
    /// Partition GUID.
    #[serde(with = "guid")]
    pub uuid: Uuid,
    /// Byte offset on the disk.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// `sha256:` of the partition's bytes.
    pub sha256: Digest,
}

/// GUIDs as the manifest writes them: lower-case hex in 8-4-4-4-12 groups
/// (RFC 9562's textual form, `Uuid`'s `Display`), the one spelling read
/// back; upper case, braces, URNs and bare hex are refused.
mod guid {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    /// Write the GUID in its one spelling.
    pub fn serialize<S: Serializer>(g: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&g.hyphenated())
    }

    /// Read a GUID written by [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let s = String::deserialize(d)?;
        match Uuid::try_parse(&s) {
            Ok(g) if g.hyphenated().to_string() == s => Ok(g),
            _ => Err(serde::de::Error::custom(format!(
                "{:?} is not a GUID in lower-case 8-4-4-4-12 hex",
                s.chars().take(80).collect::<String>()
            ))),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A disk whose UKI a fleet's db key signed.
    pub(crate) fn signed_sample() -> DiskInfo {
        let h = |c: &str| Digest::parse_prefixed(&format!("sha256:{}", c.repeat(64))).unwrap();
        DiskInfo {
            kernel_version: "6.1.0-kiln".into(),
            cmdline: "console=ttyS0".into(),
            root_hash: HexDigest([0x88; 32]),
            initrd_modules: Vec::new(),
            uki_digest: h("9"),
            init_digest: h("1"),
            partitions: Vec::new(),
            disk_guid: Uuid::parse_str("00000000-0000-4000-8000-000000000000").unwrap(),
            uki_signature: Some(UkiSignature {
                signer: "CN=fleet db".into(),
                cert_fingerprint: h("a"),
                authenticode_digest: h("b"),
            }),
            pcr11_sha256: Some(HexDigest([0xcc; 32])),
        }
    }

    #[test]
    fn an_unsigned_disk_has_no_signature_field() {
        let mut d = signed_sample();
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["uki_signature"]["signer"], "CN=fleet db");
        d.uki_signature = None;
        let json = serde_json::to_value(&d).unwrap();
        assert!(json.get("uki_signature").is_none(), "{json}");
        // Manifests written before signing existed still read.
        let back: DiskInfo = serde_json::from_value(json).unwrap();
        assert_eq!(back, d);
    }
}
