//! UEFI variable stores as OVMF keeps them in its `OVMF_VARS` flash image,
//! and the Secure Boot signature lists that go in them.
//!
//! Layouts from the UEFI specification (2.10: 32.4.1 "Signature Database",
//! `EFI_SIGNATURE_LIST`/`EFI_SIGNATURE_DATA`; 8.2 variable attributes) and
//! from edk2 (`MdePkg/Include/Pi/PiFirmwareVolume.h`,
//! `MdeModulePkg/Include/Guid/VariableFormat.h`): a firmware volume whose
//! file system GUID is `gEfiSystemNvDataFvGuid`, its header followed by a
//! `VARIABLE_STORE_HEADER` (signature `gEfiAuthenticatedVariableGuid`,
//! formatted, healthy), then variables, each an `AUTHENTICATED_VARIABLE_HEADER`
//! (start id `0x55AA`, state `VAR_ADDED`), its UTF-16 name and its data,
//! the next one 4-byte aligned; free space is `0xFF`.
//!
//! Writing a variable into the store directly is how a machine is
//! provisioned before its first boot (as `virt-fw-vars` does): the
//! firmware reads PK, KEK and db from the store, finds a platform key, and
//! boots in user mode with Secure Boot enforced.
//!
//! All parsing is explicit little-endian reads with bounds checks.

/// `gEfiSystemNvDataFvGuid`, the file system GUID of the variable volume.
const NV_DATA_FV: Guid = Guid::new(
    0xfff1_2b8d,
    0x7696,
    0x4c8b,
    [0xa9, 0x85, 0x27, 0x47, 0x07, 0x5b, 0x4f, 0x50],
);
/// `gEfiAuthenticatedVariableGuid`, the signature of a store whose
/// variables have authenticated headers.
const AUTH_VARIABLE_STORE: Guid = Guid::new(
    0xaaf3_2c78,
    0x947b,
    0x439a,
    [0xa1, 0x80, 0x2e, 0x14, 0x4e, 0xc3, 0x77, 0x92],
);
/// `EFI_GLOBAL_VARIABLE` (PK, KEK).
pub const GLOBAL_VARIABLE: Guid = Guid::new(
    0x8be4_df61,
    0x93ca,
    0x11d2,
    [0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c],
);
/// `EFI_IMAGE_SECURITY_DATABASE_GUID` (db, dbx).
pub const IMAGE_SECURITY_DATABASE: Guid = Guid::new(
    0xd719_b2cb,
    0x3d3a,
    0x4596,
    [0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f],
);
/// `gEfiSecureBootEnableDisableGuid` (edk2's `SecureBootEnable`).
pub const SECURE_BOOT_ENABLE_DISABLE: Guid = Guid::new(
    0xf0a3_0bc7,
    0xaf08,
    0x4556,
    [0x99, 0xc4, 0x00, 0x10, 0x09, 0xc9, 0x3a, 0x44],
);
/// `gEfiCustomModeEnableGuid` (edk2's `CustomMode`).
pub const CUSTOM_MODE_ENABLE: Guid = Guid::new(
    0xc076_ec0c,
    0x7028,
    0x4399,
    [0xa0, 0x72, 0x71, 0xee, 0x5c, 0x44, 0x8b, 0x9f],
);
/// `EFI_CERT_X509_GUID`: a signature list of DER certificates.
const CERT_X509: Guid = Guid::new(
    0xa5c0_59a1,
    0x94e4,
    0x4aa7,
    [0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72],
);

/// `EFI_VARIABLE_NON_VOLATILE`.
pub const ATTR_NON_VOLATILE: u32 = 0x01;
/// `EFI_VARIABLE_BOOTSERVICE_ACCESS`.
pub const ATTR_BOOTSERVICE_ACCESS: u32 = 0x02;
/// `EFI_VARIABLE_RUNTIME_ACCESS`.
pub const ATTR_RUNTIME_ACCESS: u32 = 0x04;
/// `EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS`.
pub const ATTR_TIME_BASED_AUTH: u32 = 0x20;
/// The attributes of PK, KEK and db.
pub const SECURE_BOOT_DB_ATTRS: u32 =
    ATTR_NON_VOLATILE | ATTR_BOOTSERVICE_ACCESS | ATTR_RUNTIME_ACCESS | ATTR_TIME_BASED_AUTH;

/// `EFI_FIRMWARE_VOLUME_HEADER` fields.
const FV_FILE_SYSTEM_GUID: usize = 16;
const FV_LENGTH: usize = 32;
const FV_SIGNATURE: usize = 40;
const FV_HEADER_LENGTH: usize = 48;
/// `VARIABLE_STORE_HEADER`: signature GUID, Size, Format, State, reserved.
const STORE_HEADER: usize = 28;
/// `VARIABLE_STORE_FORMATTED`, `VARIABLE_STORE_HEALTHY`.
const STORE_FORMATTED: u8 = 0x5a;
const STORE_HEALTHY: u8 = 0xfe;
/// `AUTHENTICATED_VARIABLE_HEADER`: StartId, State, Reserved, Attributes,
/// MonotonicCount, TimeStamp (EFI_TIME), PubKeyIndex, NameSize, DataSize,
/// VendorGuid.
const VAR_HEADER: usize = 60;
const VAR_START_ID: u16 = 0x55aa;
/// `VAR_ADDED`: the state of a live variable.
const VAR_ADDED: u8 = 0x3f;
/// Variables start on 4-byte boundaries (`HEADER_ALIGNMENT`).
const VAR_ALIGN: usize = 4;

/// A GUID, stored in the mixed-endian EFI layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid([u8; 16]);

impl Guid {
    /// The GUID `d1-d2-d3-d4[0..2]-d4[2..8]`.
    pub const fn new(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Self {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// The GUID whose EFI bytes are these.
    pub const fn from_bytes(b: [u8; 16]) -> Self {
        Guid(b)
    }

    /// Its bytes as EFI stores them.
    pub fn bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

/// Errors reading or writing a variable store.
#[derive(Debug, thiserror::Error)]
pub enum VarStoreError {
    /// Not an OVMF variable store kiln understands.
    #[error("not an OVMF variable store: {0}")]
    Bad(String),
    /// The store has no room for the variables.
    #[error("the variable store is full: {need} more bytes needed, {free} free")]
    Full {
        /// Bytes needed.
        need: usize,
        /// Bytes free.
        free: usize,
    },
}

fn bad(what: impl Into<String>) -> VarStoreError {
    VarStoreError::Bad(what.into())
}

fn rd16(b: &[u8], at: usize) -> Result<u16, VarStoreError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| bad(format!("truncated at byte {at}")))
}

fn rd32(b: &[u8], at: usize) -> Result<u32, VarStoreError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| bad(format!("truncated at byte {at}")))
}

fn rd64(b: &[u8], at: usize) -> Result<u64, VarStoreError> {
    Ok(u64::from(rd32(b, at)?) | u64::from(rd32(b, at + 4)?) << 32)
}

/// An `EFI_SIGNATURE_LIST` of X.509 certificates (DER), each with the same
/// owner GUID. One list per certificate, as the certificates' sizes differ.
pub fn x509_signature_lists(owner: Guid, certs: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for cert in certs {
        let sig_size = 16 + cert.len();
        let list_size = 16 + 12 + sig_size;
        out.extend_from_slice(CERT_X509.bytes());
        out.extend_from_slice(&(list_size as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // SignatureHeaderSize
        out.extend_from_slice(&(sig_size as u32).to_le_bytes());
        out.extend_from_slice(owner.bytes());
        out.extend_from_slice(cert);
    }
    out
}

/// A variable to write.
#[derive(Debug, Clone)]
pub struct Variable {
    /// Its name (`PK`, `KEK`, `db`).
    pub name: String,
    /// Its vendor GUID.
    pub vendor: Guid,
    /// `EFI_VARIABLE_*` attributes.
    pub attributes: u32,
    /// Its data.
    pub data: Vec<u8>,
}

/// A variable read back from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVariable {
    /// Its name.
    pub name: String,
    /// Its vendor GUID.
    pub vendor: Guid,
    /// Attributes.
    pub attributes: u32,
    /// `VAR_ADDED` and the like.
    pub state: u8,
    /// Its data.
    pub data: Vec<u8>,
}

/// Where the variable store starts and ends in the volume.
fn store_bounds(fd: &[u8]) -> Result<(usize, usize), VarStoreError> {
    if fd.get(FV_SIGNATURE..FV_SIGNATURE + 4) != Some(b"_FVH") {
        return Err(bad("no _FVH firmware volume signature"));
    }
    if fd.get(FV_FILE_SYSTEM_GUID..FV_FILE_SYSTEM_GUID + 16) != Some(NV_DATA_FV.bytes()) {
        return Err(bad("the firmware volume is not an NV data volume"));
    }
    let fv_len = rd64(fd, FV_LENGTH)?;
    if fv_len > fd.len() as u64 {
        return Err(bad(format!(
            "FvLength {fv_len} is past the end of the file"
        )));
    }
    let store = usize::from(rd16(fd, FV_HEADER_LENGTH)?);
    if fd.get(store..store + 16) != Some(AUTH_VARIABLE_STORE.bytes()) {
        return Err(bad(
            "the variable store is not of authenticated variables (gEfiAuthenticatedVariableGuid)",
        ));
    }
    let size = rd32(fd, store + 16)? as usize;
    if fd.get(store + 20) != Some(&STORE_FORMATTED) || fd.get(store + 21) != Some(&STORE_HEALTHY) {
        return Err(bad("the variable store is not formatted and healthy"));
    }
    let end = store
        .checked_add(size)
        .filter(|&e| e as u64 <= fv_len && size >= STORE_HEADER)
        .ok_or_else(|| bad(format!("variable store size {size} runs past the volume")))?;
    Ok((store + STORE_HEADER, end))
}

/// Walk the variables; returns them and where free space begins.
fn walk(fd: &[u8]) -> Result<(Vec<StoredVariable>, usize), VarStoreError> {
    let (mut at, end) = store_bounds(fd)?;
    let mut vars = Vec::new();
    while at + VAR_HEADER <= end && rd16(fd, at)? == VAR_START_ID {
        let state = fd[at + 2];
        let attributes = rd32(fd, at + 4)?;
        let name_size = rd32(fd, at + 36)? as usize;
        let data_size = rd32(fd, at + 40)? as usize;
        let mut vendor = [0u8; 16];
        vendor.copy_from_slice(&fd[at + 44..at + VAR_HEADER]);
        let name_at = at + VAR_HEADER;
        let data_at = name_at
            .checked_add(name_size)
            .filter(|&d| d.checked_add(data_size).is_some_and(|e| e <= end))
            .ok_or_else(|| bad(format!("variable at byte {at} runs past the store")))?;
        let units: Vec<u16> = fd[name_at..data_at]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        vars.push(StoredVariable {
            name: String::from_utf16_lossy(&units),
            vendor: Guid(vendor),
            attributes,
            state,
            data: fd[data_at..data_at + data_size].to_vec(),
        });
        at = (data_at + data_size).next_multiple_of(VAR_ALIGN);
    }
    Ok((vars, at))
}

/// The variables of an OVMF variable store.
pub fn read(fd: &[u8]) -> Result<Vec<StoredVariable>, VarStoreError> {
    Ok(walk(fd)?.0)
}

/// Append `vars` to the store in `fd` (an `OVMF_VARS` image), after the
/// variables it holds. `timestamp` is the EFI_TIME of the authenticated
/// ones: (year, month, day, hour, minute, second).
pub fn append(
    fd: &mut [u8],
    vars: &[Variable],
    timestamp: (u16, u8, u8, u8, u8, u8),
) -> Result<(), VarStoreError> {
    let (existing, mut at) = walk(fd)?;
    let (_, end) = store_bounds(fd)?;
    for v in vars {
        if existing
            .iter()
            .any(|e| e.state == VAR_ADDED && e.name == v.name && e.vendor == v.vendor)
        {
            return Err(bad(format!("the store already has a variable {}", v.name)));
        }
        let name: Vec<u8> = v
            .name
            .encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect();
        let total = VAR_HEADER + name.len() + v.data.len();
        let free = end.saturating_sub(at);
        if total > free || fd[at..at + total].iter().any(|&b| b != 0xff) {
            return Err(VarStoreError::Full { need: total, free });
        }
        let mut h = Vec::with_capacity(total);
        h.extend_from_slice(&VAR_START_ID.to_le_bytes());
        h.push(VAR_ADDED);
        h.push(0);
        h.extend_from_slice(&v.attributes.to_le_bytes());
        h.extend_from_slice(&0u64.to_le_bytes()); // MonotonicCount
        let (year, month, day, hour, minute, second) = if v.attributes & ATTR_TIME_BASED_AUTH != 0 {
            timestamp
        } else {
            (0, 0, 0, 0, 0, 0)
        };
        // EFI_TIME: Year, Month, Day, Hour, Minute, Second, Pad1,
        // Nanosecond, TimeZone, Daylight, Pad2.
        h.extend_from_slice(&year.to_le_bytes());
        h.extend_from_slice(&[month, day, hour, minute, second, 0]);
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&0i16.to_le_bytes());
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&0u32.to_le_bytes()); // PubKeyIndex
        h.extend_from_slice(&(name.len() as u32).to_le_bytes());
        h.extend_from_slice(&(v.data.len() as u32).to_le_bytes());
        h.extend_from_slice(v.vendor.bytes());
        debug_assert_eq!(h.len(), VAR_HEADER);
        h.extend_from_slice(&name);
        h.extend_from_slice(&v.data);
        fd[at..at + total].copy_from_slice(&h);
        at = (at + total).next_multiple_of(VAR_ALIGN);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty variable volume shaped like OVMF_VARS_4M.fd.
    pub(crate) fn empty_store() -> Vec<u8> {
        let mut fd = vec![0xffu8; 0x84000];
        fd[..16].fill(0);
        fd[FV_FILE_SYSTEM_GUID..FV_FILE_SYSTEM_GUID + 16].copy_from_slice(NV_DATA_FV.bytes());
        fd[FV_LENGTH..FV_LENGTH + 8].copy_from_slice(&0x84000u64.to_le_bytes());
        fd[FV_SIGNATURE..FV_SIGNATURE + 4].copy_from_slice(b"_FVH");
        fd[FV_HEADER_LENGTH..FV_HEADER_LENGTH + 2].copy_from_slice(&72u16.to_le_bytes());
        fd[72..88].copy_from_slice(AUTH_VARIABLE_STORE.bytes());
        fd[88..92].copy_from_slice(&0x3ffb8u32.to_le_bytes());
        fd[92] = STORE_FORMATTED;
        fd[93] = STORE_HEALTHY;
        fd[94..100].fill(0);
        fd
    }

    #[test]
    fn guid_layout_is_mixed_endian() {
        // EFI_GLOBAL_VARIABLE as edk2's tables print it.
        assert_eq!(
            hex::encode(GLOBAL_VARIABLE.bytes()),
            "61dfe48bca93d211aa0d00e098032b8c"
        );
    }

    #[test]
    fn appended_variables_read_back_and_never_twice() {
        let mut fd = empty_store();
        let owner = Guid::new(1, 2, 3, [4; 8]);
        let esl = x509_signature_lists(owner, &[b"cert-one", b"cert-2"]);
        // Two lists: header 28 + owner 16 + cert each.
        assert_eq!(esl.len(), (28 + 16 + 8) + (28 + 16 + 6));
        let vars = [
            Variable {
                name: "PK".into(),
                vendor: GLOBAL_VARIABLE,
                attributes: SECURE_BOOT_DB_ATTRS,
                data: esl.clone(),
            },
            Variable {
                name: "db".into(),
                vendor: IMAGE_SECURITY_DATABASE,
                attributes: SECURE_BOOT_DB_ATTRS,
                data: vec![1, 2, 3],
            },
        ];
        append(&mut fd, &vars, (2024, 1, 1, 0, 0, 0)).unwrap();
        let back = read(&fd).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].name, "PK");
        assert_eq!(back[0].vendor, GLOBAL_VARIABLE);
        assert_eq!(back[0].data, esl);
        assert_eq!(back[1].name, "db");
        assert_eq!(back[1].data, [1, 2, 3]);
        assert_eq!(back[1].state, VAR_ADDED);
        assert!(append(&mut fd, &vars[..1], (2024, 1, 1, 0, 0, 0)).is_err());
        // Not a store at all.
        assert!(read(&[0u8; 4096]).is_err());
    }
}
