//! GUIDs as GPT stores them and as the Discoverable Partitions
//! Specification (DPS) names them: the partition type GUIDs kiln uses, GPT's
//! mixed-endian on-disk byte order, and the unique GUIDs of a dm-verity
//! partition pair, taken from its root hash.
//!
//! A [`Guid`] here is 16 bytes in the order of its textual form
//! (`c12a7328-f81f-…` starts `c1 2a 73 28`), the order systemd uses for the
//! root hash halves and `uuid::Uuid::from_bytes` takes. On disk, GPT stores
//! the first three fields little-endian and the last 8 bytes as they are
//! ([`guid_from_disk`], [`guid_to_disk`]).

/// A GUID, in the byte order of its textual form.
pub type Guid = [u8; 16];

/// EFI System Partition (UEFI; DPS "EFI System Partition").
pub const ESP_TYPE: Guid = parse_guid("c12a7328-f81f-11d2-ba4b-00a0c93ec93b");

/// Root partition for x86-64 (DPS `SD_GPT_ROOT_X86_64`).
pub const ROOT_X86_64_TYPE: Guid = parse_guid("4f68bce3-e8cd-4db1-96e7-fbcaf984b709");

/// dm-verity hash partition of the x86-64 root (DPS `SD_GPT_ROOT_X86_64_VERITY`).
pub const ROOT_X86_64_VERITY_TYPE: Guid = parse_guid("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5");

/// A GUID's on-disk (mixed-endian) bytes in textual byte order.
pub fn guid_from_disk(d: &[u8; 16]) -> Guid {
    let mut g = *d;
    g[0..4].reverse();
    g[4..6].reverse();
    g[6..8].reverse();
    g
}

/// A GUID's on-disk (mixed-endian) bytes: the inverse of [`guid_from_disk`]
/// (the swap is its own inverse).
pub fn guid_to_disk(g: &Guid) -> [u8; 16] {
    guid_from_disk(g)
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase.
pub fn format_guid(g: &Guid) -> String {
    let h: String = g.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The unique partition GUIDs of a verity-protected partition and of its
/// hash partition: the first and the last 128 bits of the root hash, taken
/// as they are (DPS; what systemd-repart writes and
/// systemd-veritysetup-generator looks for).
pub fn verity_partition_uuids(root_hash: &[u8; 32]) -> (Guid, Guid) {
    let mut data = [0u8; 16];
    let mut hash = [0u8; 16];
    data.copy_from_slice(&root_hash[..16]);
    hash.copy_from_slice(&root_hash[16..]);
    (data, hash)
}

/// A GUID literal, at compile time (a malformed one fails the build).
const fn parse_guid(s: &str) -> Guid {
    let s = s.as_bytes();
    assert!(s.len() == 36, "a GUID is 36 characters long");
    let mut out = [0u8; 16];
    let (mut i, mut n) = (0, 0);
    while i < s.len() {
        if i == 8 || i == 13 || i == 18 || i == 23 {
            assert!(s[i] == b'-', "GUID groups are separated by dashes");
        } else {
            let digit = match s[i] {
                c @ b'0'..=b'9' => c - b'0',
                c @ b'a'..=b'f' => c - b'a' + 10,
                _ => panic!("GUID literals are lowercase hex"),
            };
            out[n / 2] |= digit << (4 * (1 - n % 2));
            n += 1;
        }
        i += 1;
    }
    out
}
