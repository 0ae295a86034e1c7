//! Unified Kernel Images: systemd's EFI stub with the kernel, initrd, command
//! line and os-release appended as PE sections.
//!
//! Follows the UAPI Unified Kernel Image specification (section names and
//! contents) and the Microsoft PE/COFF specification (headers and section
//! table), laying sections out the way systemd's `ukify` does
//! (`src/ukify/ukify.py`, `pe_add_sections`): each new section goes after
//! everything the stub already maps, its virtual address aligned to the
//! section alignment (here at least 4 KiB, so every payload starts on a page
//! as the objcopy recipe in the systemd-stub man page has it), its raw data
//! at the end of the file aligned to the file alignment, its `VirtualSize`
//! the exact payload length (the stub takes the payload's length from it),
//! `.linux` last and flagged as code. The headers are then fixed up:
//! section count, `SizeOfImage`, `SizeOfCode`/`SizeOfInitializedData`,
//! `TimeDateStamp` 0 and `CheckSum` 0 (firmware ignores it; a signing tool
//! recomputes it), so the output is a pure function of the inputs.
//!
//! New section headers must fit between the stub's section table and
//! `SizeOfHeaders`/its first section's data; the stub is never moved.
//! Trailing bytes after the stub's last section (a COFF symbol table or an
//! Authenticode signature, both invalid once sections are added) are dropped
//! and their header fields cleared.
//!
//! All parsing is explicit little-endian reads with bounds checks.

pub mod authenticode;
pub mod pcr;

/// `IMAGE_SCN_CNT_CODE`.
const SCN_CNT_CODE: u32 = 0x0000_0020;
/// `IMAGE_SCN_CNT_INITIALIZED_DATA`.
const SCN_CNT_INITIALIZED_DATA: u32 = 0x0000_0040;
/// `IMAGE_SCN_MEM_READ`.
const SCN_MEM_READ: u32 = 0x4000_0000;
/// Size of a section header.
const SECTION_HEADER: usize = 40;
/// `e_lfanew`: where the MZ header keeps the offset of the PE signature.
const E_LFANEW: usize = 0x3c;
/// Size of the COFF file header that follows the `PE\0\0` signature.
const COFF_HEADER: usize = 20;
/// Optional header magics.
const PE32_MAGIC: u16 = 0x10b;
const PE32_PLUS_MAGIC: u16 = 0x20b;
/// Index of the certificate table in the data directories.
const DIR_SECURITY: usize = 4;
/// Minimum alignment of the new sections' virtual addresses: one page.
const PAGE: u32 = 4096;

/// Errors building or reading a UKI.
#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    /// Not a PE image kiln understands (a stub, or a UKI read back).
    #[error("not a valid PE image: {what}")]
    BadPe {
        /// What was wrong.
        what: String,
    },
    /// The stub already has a section kiln wants to add.
    #[error("EFI stub already has a {name} section")]
    DuplicateSection {
        /// Section name.
        name: String,
    },
    /// No room in the stub's headers for another section header.
    #[error("no room in the EFI stub's headers for the {name} section header (headers end at byte {limit})")]
    HeaderFull {
        /// Section that did not fit.
        name: String,
        /// Where the header area ends.
        limit: usize,
    },
    /// A mandatory payload is empty.
    #[error("the {name} section payload is empty")]
    Empty {
        /// Section name.
        name: String,
    },
    /// The image would exceed the 4 GiB a PE image can describe.
    #[error("the {name} section takes the UKI past 4 GiB")]
    TooLarge {
        /// Section name.
        name: String,
    },
}

/// The payloads of a UKI (UAPI UKI specification).
#[derive(Debug, Clone, Copy)]
pub struct UkiParts<'a> {
    /// os-release(5) of the image (`.osrel`).
    pub osrel: &'a [u8],
    /// Kernel command line (`.cmdline`), stored as is, without a terminator.
    pub cmdline: &'a str,
    /// Kernel release, as `uname -r` prints it (`.uname`).
    pub uname: Option<&'a str>,
    /// The kernel's EFI-bootable image, e.g. `vmlinuz` (`.linux`).
    pub linux: &'a [u8],
    /// The initramfs (`.initrd`).
    pub initrd: &'a [u8],
}

/// One entry of a PE section table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Name, NUL padding removed.
    pub name: String,
    /// Size in memory (the payload length for UKI sections).
    pub virtual_size: u32,
    /// Address relative to the image base.
    pub virtual_address: u32,
    /// Size of the data in the file (aligned).
    pub raw_size: u32,
    /// Offset of the data in the file.
    pub raw_offset: u32,
    /// `IMAGE_SCN_*` flags.
    pub characteristics: u32,
}

impl Section {
    /// Bytes of the file that hold this section's payload.
    fn file_range(&self) -> std::ops::Range<usize> {
        let len = match self.virtual_size {
            0 => self.raw_size,
            v => v.min(self.raw_size),
        };
        self.raw_offset as usize..self.raw_offset as usize + len as usize
    }

    /// End of the section in memory.
    fn virtual_end(&self) -> u64 {
        u64::from(self.virtual_address) + u64::from(self.virtual_size.max(self.raw_size))
    }
}

/// Offsets of the parts of a PE image's headers.
#[derive(Debug)]
struct Headers {
    /// Offset of the COFF file header.
    coff: usize,
    /// Offset of the optional header.
    opt: usize,
    /// Offset of the section table.
    table: usize,
    /// Offset of the data directories.
    dirs: usize,
    /// Number of data directories.
    n_dirs: usize,
    sections: Vec<Section>,
}

fn bad(what: impl Into<String>) -> UkiError {
    UkiError::BadPe { what: what.into() }
}

fn rd16(b: &[u8], at: usize) -> Result<u16, UkiError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| bad(format!("truncated at byte {at}")))
}

fn rd32(b: &[u8], at: usize) -> Result<u32, UkiError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| bad(format!("truncated at byte {at}")))
}

fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn wr32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Optional-header field offsets shared by PE32 and PE32+.
mod opt {
    pub const SIZE_OF_CODE: usize = 4;
    pub const SIZE_OF_INITIALIZED_DATA: usize = 8;
    pub const SECTION_ALIGNMENT: usize = 32;
    pub const FILE_ALIGNMENT: usize = 36;
    pub const SIZE_OF_IMAGE: usize = 56;
    pub const SIZE_OF_HEADERS: usize = 60;
    pub const CHECKSUM: usize = 64;
}

/// COFF file header field offsets.
mod coff {
    pub const NUMBER_OF_SECTIONS: usize = 2;
    pub const TIME_DATE_STAMP: usize = 4;
    pub const POINTER_TO_SYMBOL_TABLE: usize = 8;
    pub const NUMBER_OF_SYMBOLS: usize = 12;
    pub const SIZE_OF_OPTIONAL_HEADER: usize = 16;
}

fn parse(pe: &[u8]) -> Result<Headers, UkiError> {
    parse_headers(pe, pe.len())
}

/// The headers at the start of a PE image of `file_len` bytes, of which
/// `pe` holds at least the headers (a [`Built`] UKI's `head`).
fn parse_headers(pe: &[u8], file_len: usize) -> Result<Headers, UkiError> {
    if pe.get(0..2) != Some(b"MZ") {
        return Err(bad("no MZ signature"));
    }
    // Offsets below come from 32-bit fields plus small constants: they fit
    // a usize (64 bits), and every read is bounds-checked.
    let sig = rd32(pe, E_LFANEW)? as usize;
    if pe.get(sig..sig + 4) != Some(b"PE\0\0") {
        return Err(bad(format!("e_lfanew: no PE signature at byte {sig}")));
    }
    let coff = sig + 4;
    let n = usize::from(rd16(pe, coff + coff::NUMBER_OF_SECTIONS)?);
    let opt_size = usize::from(rd16(pe, coff + coff::SIZE_OF_OPTIONAL_HEADER)?);
    let opt = coff + COFF_HEADER;
    // Data directories start after the fixed fields, which differ in length.
    let (n_dirs_at, dirs) = match rd16(pe, opt)? {
        PE32_MAGIC => (opt + 92, opt + 96),
        PE32_PLUS_MAGIC => (opt + 108, opt + 112),
        m => return Err(bad(format!("optional header Magic {m:#x} is unknown"))),
    };
    let n_dirs = rd32(pe, n_dirs_at)? as usize;
    if dirs + n_dirs * 8 > opt + opt_size {
        return Err(bad(format!(
            "NumberOfRvaAndSizes {n_dirs}: the data directories overrun SizeOfOptionalHeader {opt_size}"
        )));
    }
    let table = opt + opt_size;
    let size_of_headers = (rd32(pe, opt + opt::SIZE_OF_HEADERS)? as usize).min(pe.len());
    if table + n * SECTION_HEADER > size_of_headers {
        return Err(bad(format!(
            "NumberOfSections {n}: the section table runs past SizeOfHeaders \
             (or the end of the file), byte {size_of_headers}"
        )));
    }
    let mut sections = Vec::with_capacity(n);
    for i in 0..n {
        let at = table + i * SECTION_HEADER;
        let raw_name = pe
            .get(at..at + 8)
            .ok_or_else(|| bad(format!("section table truncated at entry {i}")))?;
        let name_len = raw_name.iter().position(|&b| b == 0).unwrap_or(8);
        let s = Section {
            name: String::from_utf8_lossy(&raw_name[..name_len]).into_owned(),
            virtual_size: rd32(pe, at + 8)?,
            virtual_address: rd32(pe, at + 12)?,
            raw_size: rd32(pe, at + 16)?,
            raw_offset: rd32(pe, at + 20)?,
            characteristics: rd32(pe, at + 36)?,
        };
        if s.raw_size > 0 && s.file_range().end > file_len {
            return Err(bad(format!(
                "section {:?}: PointerToRawData {} + SizeOfRawData {} is past the end of the file",
                s.name, s.raw_offset, s.raw_size
            )));
        }
        sections.push(s);
    }
    Ok(Headers {
        coff,
        opt,
        table,
        dirs,
        n_dirs,
        sections,
    })
}

/// The section table of a PE image.
pub fn sections(pe: &[u8]) -> Result<Vec<Section>, UkiError> {
    Ok(parse(pe)?.sections)
}

/// The payload of the section called `name` (e.g. `.cmdline`), trimmed to
/// its `VirtualSize`; `None` if the image does not parse or has no such
/// section.
pub fn read_section<'a>(pe: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let headers = parse(pe).ok()?;
    let s = headers.sections.iter().find(|s| s.name == name)?;
    pe.get(s.file_range())
}

/// The payload of section `s` of `pe` (as [`sections`] listed it), trimmed
/// to its `VirtualSize`; empty if `s` is not from `pe`.
pub fn section_bytes<'a>(pe: &'a [u8], s: &Section) -> &'a [u8] {
    pe.get(s.file_range()).unwrap_or_default()
}

fn align(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// A UKI as [`build_parts`] lays it out, without a copy of the kernel: the
/// stub with every section before `.linux` (`head`), the kernel, then the
/// zeros that pad `.linux` to the file alignment. The UKI's bytes are these
/// three in order ([`Built::pieces`]).
#[derive(Debug)]
pub struct Built<'a> {
    head: Vec<u8>,
    linux: &'a [u8],
    pad: Vec<u8>,
}

impl Built<'_> {
    /// The UKI's bytes, in three pieces.
    pub fn pieces(&self) -> [&[u8]; 3] {
        [&self.head, self.linux, &self.pad]
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + self.linux.len() + self.pad.len()
    }

    /// Whether it has no bytes (never: it has headers).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The UKI in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        self.pieces().concat()
    }

    /// Its section table.
    pub fn sections(&self) -> Result<Vec<Section>, UkiError> {
        Ok(parse_headers(&self.head, self.len())?.sections)
    }

    /// The payload of section `s` (as [`Built::sections`] listed it),
    /// trimmed to its `VirtualSize`; empty if `s` is not from this UKI.
    /// (No section spans two pieces: the kernel is `.linux`'s payload.)
    pub fn section_bytes(&self, s: &Section) -> &[u8] {
        let r = s.file_range();
        let at = self.head.len();
        if r.end <= at {
            self.head.get(r)
        } else {
            r.start
                .checked_sub(at)
                .and_then(|start| self.linux.get(start..r.end - at))
        }
        .unwrap_or_default()
    }
}

/// Builds a UKI from the EFI stub's bytes (`linuxx64.efi.stub`) and the
/// payloads, in one buffer ([`build_parts`]).
pub fn build(stub: &[u8], parts: &UkiParts) -> Result<Vec<u8>, UkiError> {
    build_parts(stub, parts).map(|b| b.to_vec())
}

/// Builds a UKI from the EFI stub's bytes (`linuxx64.efi.stub`) and the
/// payloads. Sections are added in the order `.osrel`, `.cmdline`,
/// `.uname`, `.initrd`, `.linux`; empty optional payloads are left out.
/// The kernel is not copied: it is the middle piece of the result.
pub fn build_parts<'a>(stub: &[u8], parts: &UkiParts<'a>) -> Result<Built<'a>, UkiError> {
    if parts.linux.is_empty() {
        return Err(UkiError::Empty {
            name: ".linux".to_owned(),
        });
    }
    let h = parse(stub)?;
    let new: Vec<(&str, &[u8], u32)> = [
        (".osrel", parts.osrel),
        (".cmdline", parts.cmdline.as_bytes()),
        (".uname", parts.uname.unwrap_or("").as_bytes()),
        (".initrd", parts.initrd),
    ]
    .into_iter()
    .filter(|(_, data)| !data.is_empty())
    .map(|(name, data)| (name, data, SCN_MEM_READ | SCN_CNT_INITIALIZED_DATA))
    .chain([(".linux", parts.linux, SCN_MEM_READ | SCN_CNT_CODE)])
    .collect();
    for (name, _, _) in &new {
        if h.sections.iter().any(|s| s.name == *name) {
            return Err(UkiError::DuplicateSection {
                name: (*name).to_owned(),
            });
        }
    }

    let section_alignment = rd32(stub, h.opt + opt::SECTION_ALIGNMENT)?;
    let file_alignment = rd32(stub, h.opt + opt::FILE_ALIGNMENT)?;
    let size_of_headers = rd32(stub, h.opt + opt::SIZE_OF_HEADERS)? as usize;
    if !section_alignment.is_power_of_two() || !file_alignment.is_power_of_two() {
        return Err(bad("section or file alignment is not a power of two"));
    }
    let va_alignment = u64::from(section_alignment.max(PAGE));
    let file_alignment = u64::from(file_alignment);

    // Section headers may go up to the end of the headers and no further
    // than the first section's data.
    let header_limit = h
        .sections
        .iter()
        .filter(|s| s.raw_size > 0)
        .map(|s| s.raw_offset as usize)
        .fold(size_of_headers, usize::min);
    // Keep the stub up to the end of its last section's data; drop a symbol
    // table or signature after it.
    let stub_end = h
        .sections
        .iter()
        .map(|s| s.raw_offset as usize + s.raw_size as usize)
        .fold(size_of_headers, usize::max);
    let mut out = stub
        .get(..stub_end)
        .ok_or_else(|| bad("sections extend past the end of the file"))?
        .to_vec();
    wr32(&mut out, h.coff + coff::POINTER_TO_SYMBOL_TABLE, 0);
    wr32(&mut out, h.coff + coff::NUMBER_OF_SYMBOLS, 0);
    if h.n_dirs > DIR_SECURITY {
        let at = h.dirs + DIR_SECURITY * 8;
        out[at..at + 8].fill(0);
    }

    let mut next_va = h
        .sections
        .iter()
        .map(Section::virtual_end)
        .fold(size_of_headers as u64, u64::max);
    let mut size_of_code = u64::from(rd32(stub, h.opt + opt::SIZE_OF_CODE)?);
    let mut size_of_data = u64::from(rd32(stub, h.opt + opt::SIZE_OF_INITIALIZED_DATA)?);
    let mut count = h.sections.len();
    let mut pad = Vec::new();
    for (name, data, characteristics) in new {
        let slot = h.table + count * SECTION_HEADER;
        if slot + SECTION_HEADER > header_limit {
            return Err(UkiError::HeaderFull {
                name: name.to_owned(),
                limit: header_limit,
            });
        }
        if out[slot..slot + SECTION_HEADER].iter().any(|&b| b != 0) {
            return Err(bad(format!(
                "bytes after the section table are in use, no room for {name}"
            )));
        }
        let too_large = || UkiError::TooLarge {
            name: name.to_owned(),
        };
        let va = align(next_va, va_alignment);
        let raw_offset = align(out.len() as u64, file_alignment);
        let raw_size = align(data.len() as u64, file_alignment);
        next_va = va + data.len() as u64;
        let fits = |v: u64| u32::try_from(v).map_err(|_| too_large());
        let (va, raw_offset, raw_size, len) = (
            fits(va)?,
            fits(raw_offset)?,
            fits(raw_size)?,
            fits(data.len() as u64)?,
        );
        fits(next_va)?;
        fits(u64::from(raw_offset) + u64::from(raw_size))?;

        let mut header = [0u8; SECTION_HEADER];
        header[..name.len()].copy_from_slice(name.as_bytes());
        wr32(&mut header, 8, len);
        wr32(&mut header, 12, va);
        wr32(&mut header, 16, raw_size);
        wr32(&mut header, 20, raw_offset);
        wr32(&mut header, 36, characteristics);
        out[slot..slot + SECTION_HEADER].copy_from_slice(&header);

        out.resize(raw_offset as usize, 0);
        if name == ".linux" {
            // Last: its payload and padding stay out of `out` (see [`Built`]).
            pad = vec![0; (raw_size - len) as usize];
        } else {
            out.extend_from_slice(data);
            out.resize(raw_offset as usize + raw_size as usize, 0);
        }
        if characteristics & SCN_CNT_CODE != 0 {
            size_of_code += u64::from(raw_size);
        } else {
            size_of_data += u64::from(raw_size);
        }
        count += 1;
    }

    let too_large = || UkiError::TooLarge {
        name: "headers".to_owned(),
    };
    let count = u16::try_from(count).map_err(|_| too_large())?;
    let size_of_image =
        u32::try_from(align(next_va, u64::from(section_alignment))).map_err(|_| too_large())?;
    let size_of_code = u32::try_from(size_of_code).map_err(|_| too_large())?;
    let size_of_data = u32::try_from(size_of_data).map_err(|_| too_large())?;
    wr16(&mut out, h.coff + coff::NUMBER_OF_SECTIONS, count);
    wr32(&mut out, h.coff + coff::TIME_DATE_STAMP, 0);
    wr32(&mut out, h.opt + opt::SIZE_OF_CODE, size_of_code);
    wr32(
        &mut out,
        h.opt + opt::SIZE_OF_INITIALIZED_DATA,
        size_of_data,
    );
    wr32(&mut out, h.opt + opt::SIZE_OF_IMAGE, size_of_image);
    wr32(&mut out, h.opt + opt::CHECKSUM, 0);
    Ok(Built {
        head: out,
        linux: parts.linux,
        pad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    use crate::testutil::tool;

    const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

    fn stub() -> Vec<u8> {
        std::fs::read(STUB).unwrap_or_else(|e| {
            panic!("{STUB}: {e}: install the Debian package `systemd-boot-efi`")
        })
    }

    struct Payloads {
        osrel: Vec<u8>,
        cmdline: String,
        linux: Vec<u8>,
        initrd: Vec<u8>,
    }

    fn payloads() -> Payloads {
        Payloads {
            osrel: b"ID=kiln\nVERSION_ID=1\n".to_vec(),
            cmdline: "console=ttyS0 roothash=0123abcd ro".to_owned(),
            // Odd sizes, so the padding is exercised.
            linux: (0..1_234_567u32).map(|i| (i * 7 + i / 251) as u8).collect(),
            initrd: (0..345_679u32).map(|i| (i * 13) as u8).collect(),
        }
    }

    fn build_uki(p: &Payloads) -> Vec<u8> {
        build(
            &stub(),
            &UkiParts {
                osrel: &p.osrel,
                cmdline: &p.cmdline,
                uname: Some("6.1.0-kiln-cloud-amd64"),
                linux: &p.linux,
                initrd: &p.initrd,
            },
        )
        .unwrap()
    }

    fn objcopy_section(uki: &Path, name: &str, out: &Path) -> Vec<u8> {
        let st = Command::new(tool("objcopy", "binutils"))
            .args(["-O", "binary", &format!("--only-section={name}")])
            .arg(uki)
            .arg(out)
            .output()
            .unwrap();
        assert!(st.status.success(), "objcopy {name}: {st:?}");
        std::fs::read(out).unwrap()
    }

    /// `objdump -h` lists the sections with the payload sizes, in order,
    /// with no overlaps in memory or in the file.
    #[test]
    fn objdump_sees_sections() {
        let p = payloads();
        let uki = build_uki(&p);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiln.efi");
        std::fs::write(&path, &uki).unwrap();
        let out = Command::new(tool("objdump", "binutils"))
            .arg("-h")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "objdump -h: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        // "  8 .osrel  00000015  0000000000020000  0000000000020000  00011400  2**2"
        let rows: Vec<(String, u64, u64, u64)> = text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 7 && f[0].parse::<u32>().is_ok()).then(|| {
                    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
                    (f[1].to_owned(), hex(f[2]), hex(f[3]), hex(f[5]))
                })
            })
            .collect();
        let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        let n = names.len();
        assert_eq!(
            names[n - 5..],
            [".osrel", ".cmdline", ".uname", ".initrd", ".linux"],
            "{text}"
        );
        let size = |name: &str| rows.iter().find(|r| r.0 == name).unwrap().1;
        assert_eq!(size(".osrel"), p.osrel.len() as u64);
        assert_eq!(size(".cmdline"), p.cmdline.len() as u64);
        assert_eq!(size(".uname"), 22);
        assert_eq!(size(".initrd"), p.initrd.len() as u64);
        assert_eq!(size(".linux"), p.linux.len() as u64);

        for (a, b) in rows.iter().zip(rows.iter().skip(1)) {
            assert!(a.2 + a.1 <= b.2, "{} overlaps {} in memory", a.0, b.0);
            assert!(a.3 + a.1 <= b.3, "{} overlaps {} in the file", a.0, b.0);
        }
        // The new sections start on pages and end within SizeOfImage.
        for r in &rows[n - 5..] {
            assert_eq!(r.2 % 4096, 0, "{} not page aligned", r.0);
        }
        let secs = sections(&uki).unwrap();
        let last = secs.last().unwrap();
        let size_of_image = rd32(&uki, parse(&uki).unwrap().opt + opt::SIZE_OF_IMAGE).unwrap();
        assert!(u64::from(last.virtual_address) + p.linux.len() as u64 <= u64::from(size_of_image));
        assert_eq!(last.characteristics, SCN_MEM_READ | SCN_CNT_CODE);
        assert_eq!(uki.len() as u32, last.raw_offset + last.raw_size);
    }

    /// objcopy extracts exactly the bytes that went in.
    #[test]
    fn objcopy_extracts_payloads() {
        let p = payloads();
        let uki = build_uki(&p);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiln.efi");
        std::fs::write(&path, &uki).unwrap();
        let out = dir.path().join("out");
        let mut cmdline = objcopy_section(&path, ".cmdline", &out);
        cmdline.truncate(p.cmdline.len());
        assert_eq!(cmdline, p.cmdline.as_bytes());
        let mut linux = objcopy_section(&path, ".linux", &out);
        // objcopy may pad to the raw size; beyond VirtualSize only zeros.
        assert!(linux[p.linux.len().min(linux.len())..]
            .iter()
            .all(|&b| b == 0));
        linux.truncate(p.linux.len());
        assert!(linux == p.linux, ".linux differs");
        let mut initrd = objcopy_section(&path, ".initrd", &out);
        initrd.truncate(p.initrd.len());
        assert!(initrd == p.initrd, ".initrd differs");
    }

    /// Damaged headers of a UKI read back give errors naming the field.
    #[test]
    fn damaged_headers_name_the_field() {
        let uki = build_uki(&payloads());
        let h = parse(&uki).unwrap();
        let cases: [(usize, &[u8], &str); 4] = [
            (E_LFANEW, &[0xff, 0xff, 0, 0], "e_lfanew"),
            (
                h.coff + coff::NUMBER_OF_SECTIONS,
                &[0xff, 0xff],
                "NumberOfSections",
            ),
            (h.opt, &[0x0b, 0x03], "Magic"),
            (h.table + 20, &[0xff, 0xff, 0xff, 0x7f], "PointerToRawData"),
        ];
        for (at, bytes, want) in cases {
            let mut b = uki.clone();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            let e = sections(&b).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn read_section_reads_back() {
        let p = payloads();
        let uki = build_uki(&p);
        assert_eq!(read_section(&uki, ".cmdline"), Some(p.cmdline.as_bytes()));
        assert_eq!(read_section(&uki, ".osrel"), Some(&p.osrel[..]));
        assert_eq!(
            read_section(&uki, ".uname"),
            Some(&b"6.1.0-kiln-cloud-amd64"[..])
        );
        assert!(read_section(&uki, ".linux") == Some(&p.linux[..]));
        assert_eq!(read_section(&uki, ".nope"), None);
        assert_eq!(read_section(b"not a PE file", ".cmdline"), None);
        // The stub's own sections are untouched.
        let s = stub();
        assert_eq!(read_section(&uki, ".sdmagic"), read_section(&s, ".sdmagic"));
        assert!(read_section(&uki, ".text") == read_section(&s, ".text"));
    }

    #[test]
    fn deterministic_and_reproducible_headers() {
        let p = payloads();
        let a = build_uki(&p);
        assert!(a == build_uki(&p));
        let h = parse(&a).unwrap();
        assert_eq!(rd32(&a, h.coff + coff::TIME_DATE_STAMP).unwrap(), 0);
        assert_eq!(rd32(&a, h.opt + opt::CHECKSUM).unwrap(), 0);
    }

    #[test]
    fn optional_sections_left_out() {
        let p = payloads();
        let uki = build(
            &stub(),
            &UkiParts {
                osrel: &p.osrel,
                cmdline: "",
                uname: None,
                linux: &p.linux,
                initrd: &[],
            },
        )
        .unwrap();
        let names: Vec<String> = sections(&uki)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names[names.len() - 2..], [".osrel", ".linux"]);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let p = payloads();
        let parts = UkiParts {
            osrel: &p.osrel,
            cmdline: &p.cmdline,
            uname: None,
            linux: &p.linux,
            initrd: &p.initrd,
        };
        // A UKI already has these sections.
        let uki = build(&stub(), &parts).unwrap();
        assert!(matches!(
            build(&uki, &parts),
            Err(UkiError::DuplicateSection { .. })
        ));
        // Shrink SizeOfHeaders so only one more section header fits.
        let mut small = stub();
        let h = parse(&small).unwrap();
        let table_end = h.table + h.sections.len() * SECTION_HEADER;
        let limit = (table_end + SECTION_HEADER + 8) as u32;
        wr32(&mut small, h.opt + opt::SIZE_OF_HEADERS, limit);
        assert!(matches!(
            build(&small, &parts),
            Err(UkiError::HeaderFull { ref name, .. }) if name == ".cmdline"
        ));
        assert!(matches!(
            build(
                &stub(),
                &UkiParts {
                    linux: &[],
                    ..parts
                }
            ),
            Err(UkiError::Empty { .. })
        ));
        assert!(matches!(build(b"MZ", &parts), Err(UkiError::BadPe { .. })));
    }
}
