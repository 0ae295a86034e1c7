//! Authenticode over a PE image: the image digest a signature covers, and
//! the attribute certificate table that carries the signature.
//!
//! Follows Microsoft's "Windows Authenticode Portable Executable Signature
//! Format" (calculating the PE image hash) and the PE/COFF specification
//! ("The Attribute Certificate Table"): the digest covers the headers less
//! the `CheckSum` field and the certificate-table data directory, then each
//! section's raw data in file order, then any data after the last section
//! up to the certificate table. A signature is a `WIN_CERTIFICATE`
//! (revision 2.0, type `WIN_CERT_TYPE_PKCS_SIGNED_DATA`) appended at a
//! quadword-aligned end of the file, the table's size a multiple of eight.
//!
//! Pure functions over bytes; reading untrusted images is bounds-checked
//! through the PE parser of [`super`].

use sha2::{Digest, Sha256};

use super::{bad, opt, parse, rd16, rd32, wr32, UkiError, DIR_SECURITY};

/// `WIN_CERT_REVISION_2_0`.
const WIN_CERT_REVISION_2_0: u16 = 0x0200;
/// `WIN_CERT_TYPE_PKCS_SIGNED_DATA`.
const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;
/// `WIN_CERTIFICATE` header: dwLength, wRevision, wCertificateType.
const WIN_CERT_HEADER: usize = 8;
/// The certificate table and its entries are quadword aligned.
const QUADWORD: usize = 8;

/// Where the certificate table data directory entry is, and what it says.
fn security_dir(pe: &[u8]) -> Result<(usize, usize, usize), UkiError> {
    let h = parse(pe)?;
    if h.n_dirs <= DIR_SECURITY {
        return Err(bad("NumberOfRvaAndSizes leaves no certificate table entry"));
    }
    let at = h.dirs + DIR_SECURITY * 8;
    let offset = rd32(pe, at)? as usize;
    let size = rd32(pe, at + 4)? as usize;
    Ok((at, offset, size))
}

/// The Authenticode SHA-256 digest of a PE image (signed or not).
pub fn digest(pe: &[u8]) -> Result<[u8; 32], UkiError> {
    let h = parse(pe)?;
    let (dir_at, cert_offset, cert_size) = security_dir(pe)?;
    let checksum_at = h.opt + opt::CHECKSUM;
    let size_of_headers = rd32(pe, h.opt + opt::SIZE_OF_HEADERS)? as usize;
    if size_of_headers > pe.len() || size_of_headers < dir_at + 8 {
        return Err(bad(format!(
            "SizeOfHeaders {size_of_headers} does not cover the data directories"
        )));
    }
    // Where the signed data ends: the certificate table, else the file's end.
    let end = if cert_size == 0 {
        pe.len()
    } else {
        if cert_offset.checked_add(cert_size) != Some(pe.len()) {
            return Err(bad(format!(
                "the certificate table ({cert_size} bytes at {cert_offset}) is not at the end of the file"
            )));
        }
        cert_offset
    };
    let mut hash = Sha256::new();
    hash.update(&pe[..checksum_at]);
    hash.update(&pe[checksum_at + 4..dir_at]);
    hash.update(&pe[dir_at + 8..size_of_headers]);
    let mut sections: Vec<_> = h.sections.iter().filter(|s| s.raw_size > 0).collect();
    sections.sort_by_key(|s| s.raw_offset);
    let mut hashed = size_of_headers;
    for s in sections {
        let start = s.raw_offset as usize;
        let stop = start + s.raw_size as usize;
        if start < hashed || stop > end {
            return Err(bad(format!(
                "section {:?} (bytes {start}..{stop}) overlaps the headers, another section or the certificate table",
                s.name
            )));
        }
        hash.update(&pe[start..stop]);
        hashed = stop;
    }
    hash.update(&pe[hashed..end]);
    Ok(hash.finalize().into())
}

/// Pad an unsigned PE image to a quadword boundary, where a certificate
/// table can start; the padding is part of what [`digest`] covers.
pub fn pad_for_signature(pe: &mut Vec<u8>) {
    pe.resize(pe.len().next_multiple_of(QUADWORD), 0);
}

/// Append a PKCS#7 SignedData (DER) as the image's certificate table.
/// The image must be unsigned and padded by [`pad_for_signature`].
pub fn attach(pe: &mut Vec<u8>, signed_data: &[u8]) -> Result<(), UkiError> {
    let (dir_at, _, size) = security_dir(pe)?;
    if size != 0 {
        return Err(bad("the image is already signed"));
    }
    if !pe.len().is_multiple_of(QUADWORD) {
        return Err(bad("the image does not end on a quadword boundary"));
    }
    let length = WIN_CERT_HEADER + signed_data.len();
    let table = length.next_multiple_of(QUADWORD);
    let (offset, table32, length32) = match (
        u32::try_from(pe.len()),
        u32::try_from(table),
        u32::try_from(length),
    ) {
        (Ok(o), Ok(t), Ok(l)) if o.checked_add(t).is_some() => (o, t, l),
        _ => return Err(bad("the signed image would pass 4 GiB")),
    };
    pe.extend_from_slice(&length32.to_le_bytes());
    pe.extend_from_slice(&WIN_CERT_REVISION_2_0.to_le_bytes());
    pe.extend_from_slice(&WIN_CERT_TYPE_PKCS_SIGNED_DATA.to_le_bytes());
    pe.extend_from_slice(signed_data);
    pe.resize(offset as usize + table, 0);
    wr32(pe, dir_at, offset);
    wr32(pe, dir_at + 4, table32);
    Ok(())
}

/// The PKCS#7 SignedData blobs in a PE image's certificate table, in order
/// (none for an unsigned image).
pub fn signatures(pe: &[u8]) -> Result<Vec<&[u8]>, UkiError> {
    let (_, offset, size) = security_dir(pe)?;
    if size == 0 {
        return Ok(Vec::new());
    }
    let table = offset
        .checked_add(size)
        .and_then(|end| pe.get(offset..end))
        .ok_or_else(|| bad("the certificate table runs past the end of the file"))?;
    let mut out = Vec::new();
    let mut at = 0;
    while at + WIN_CERT_HEADER <= table.len() {
        let length = rd32(table, at)? as usize;
        let kind = rd16(table, at + 6)?;
        if length < WIN_CERT_HEADER || at + length > table.len() {
            return Err(bad(format!(
                "certificate table entry at {at} has a bad dwLength {length}"
            )));
        }
        if kind == WIN_CERT_TYPE_PKCS_SIGNED_DATA {
            out.push(&table[at + WIN_CERT_HEADER..at + length]);
        }
        at += length.next_multiple_of(QUADWORD);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::uki::{build, UkiParts};

    /// A small UKI from the host's systemd-boot stub.
    fn tiny_pe() -> Vec<u8> {
        const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
        let stub = std::fs::read(STUB).unwrap_or_else(|e| {
            panic!("{STUB}: {e}: install the Debian package `systemd-boot-efi`")
        });
        build(
            &stub,
            &UkiParts {
                osrel: b"ID=kiln\n",
                cmdline: "console=ttyS0",
                uname: None,
                linux: &[0x90; 1001],
                initrd: &[7; 333],
            },
        )
        .unwrap()
    }

    #[test]
    fn digest_ignores_checksum_and_signature_but_not_content() {
        let mut pe = tiny_pe();
        pad_for_signature(&mut pe);
        let d0 = digest(&pe).unwrap();
        // The CheckSum field is not covered.
        let h = parse(&pe).unwrap();
        let mut other = pe.clone();
        wr32(&mut other, h.opt + opt::CHECKSUM, 0x1234_5678);
        assert_eq!(digest(&other).unwrap(), d0);
        // A signature appended keeps the digest.
        let mut signed = pe.clone();
        attach(&mut signed, b"\x30\x03\x02\x01\x01").unwrap();
        assert!(signed.len().is_multiple_of(8));
        assert_eq!(digest(&signed).unwrap(), d0);
        assert_eq!(
            signatures(&signed).unwrap(),
            vec![&b"\x30\x03\x02\x01\x01"[..]]
        );
        assert!(signatures(&pe).unwrap().is_empty());
        // Attaching twice is refused.
        assert!(attach(&mut signed, b"\x30\x00").is_err());
        // A changed byte in a section changes it.
        let s = &h.sections[0];
        other[s.raw_offset as usize] ^= 1;
        assert_ne!(digest(&other).unwrap(), d0);
    }
}
