//! A GPT partition entry (UEFI Specification 2.10, section 5.3, table 5.6):
//! its fields, encoder and decoder, and the error both GPT decoders return.

use crate::field::Field;
use crate::guid::{guid_from_disk, guid_to_disk, Guid};

/// Size of a partition entry (the `SizeOfPartitionEntry` kiln writes, and
/// the smallest one allowed: any `128 * 2^n` is valid).
pub const ENTRY_SIZE: usize = 128;

/// Bytes of a partition name: 36 UTF-16LE code units.
pub const NAME_LEN: usize = 72;

/// A partition entry's fields (UEFI 2.10, table 5.6).
pub mod entry {
    use crate::field::{Field, Span};

    /// `PartitionTypeGUID`, mixed-endian; all zero in an unused entry.
    pub const TYPE_GUID: Field<16> = Field::new("PartitionTypeGUID", 0);
    /// `UniquePartitionGUID`, mixed-endian.
    pub const UNIQUE_GUID: Field<16> = Field::new("UniquePartitionGUID", 16);
    /// `StartingLBA`.
    pub const STARTING_LBA: Field<8> = Field::new("StartingLBA", 32);
    /// `EndingLBA`, inclusive.
    pub const ENDING_LBA: Field<8> = Field::new("EndingLBA", 40);
    /// `Attributes`.
    pub const ATTRIBUTES: Field<8> = Field::new("Attributes", 48);
    /// `PartitionName`: UTF-16LE, zero padded.
    pub const PARTITION_NAME: Field<{ super::NAME_LEN }> = Field::new("PartitionName", 56);

    /// Every field, in the order of the table.
    pub const FIELDS: &[Span] = &[
        TYPE_GUID.span(),
        UNIQUE_GUID.span(),
        STARTING_LBA.span(),
        ENDING_LBA.span(),
        ATTRIBUTES.span(),
        PARTITION_NAME.span(),
    ];
}

/// Why a header or entry array was not accepted: the structure, the field
/// (as the specification names it) and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GptError {
    /// Not a GPT header, or a damaged one.
    Header {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The entry array as a whole: its length or CRC32.
    Entries {
        /// The header field describing the array.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// One entry of the array.
    Entry {
        /// The partition number (index in the array plus one).
        number: u32,
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl GptError {
    /// A header field at fault.
    pub fn header(field: &'static str, problem: impl Into<String>) -> Self {
        GptError::Header {
            field,
            problem: problem.into(),
        }
    }

    /// The entry array at fault, as `field` of the header describes it.
    pub fn entries(field: &'static str, problem: impl Into<String>) -> Self {
        GptError::Entries {
            field,
            problem: problem.into(),
        }
    }

    /// A field of entry `number` at fault.
    pub fn entry(number: u32, field: &'static str, problem: impl Into<String>) -> Self {
        GptError::Entry {
            number,
            field,
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for GptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GptError::Header { field, problem } => {
                write!(f, "GPT header: field `{field}`: {problem}")
            }
            GptError::Entries { field, problem } => {
                write!(f, "GPT partition entry array: field `{field}`: {problem}")
            }
            GptError::Entry {
                number,
                field,
                problem,
            } => write!(
                f,
                "GPT partition entry {number}: field `{field}`: {problem}"
            ),
        }
    }
}

impl std::error::Error for GptError {}

/// One partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Partition type GUID; all zero for an unused entry.
    pub type_guid: Guid,
    /// Unique partition GUID.
    pub unique_guid: Guid,
    /// First LBA.
    pub first_lba: u64,
    /// Last LBA, inclusive.
    pub last_lba: u64,
    /// Attribute bits.
    pub attributes: u64,
    /// The name, UTF-16LE, zero padded.
    pub name: [u8; NAME_LEN],
}

impl Entry {
    /// An entry with no attributes and no name.
    pub fn new(type_guid: Guid, unique_guid: Guid, first_lba: u64, last_lba: u64) -> Self {
        Entry {
            type_guid,
            unique_guid,
            first_lba,
            last_lba,
            attributes: 0,
            name: [0; NAME_LEN],
        }
    }

    /// Reads an entry from the first [`ENTRY_SIZE`] bytes of `b`.
    pub fn decode(b: &[u8]) -> Result<Entry, GptError> {
        let b = b.get(..ENTRY_SIZE).ok_or_else(|| {
            GptError::entries("SizeOfPartitionEntry", "entry shorter than 128 bytes")
        })?;
        // `b` holds every field from here on.
        let guid = |f: Field<16>| {
            let mut g = [0u8; 16];
            if let Some(s) = f.bytes(b) {
                g.copy_from_slice(s);
            }
            guid_from_disk(&g)
        };
        let mut name = [0u8; NAME_LEN];
        if let Some(s) = entry::PARTITION_NAME.bytes(b) {
            name.copy_from_slice(s);
        }
        Ok(Entry {
            type_guid: guid(entry::TYPE_GUID),
            unique_guid: guid(entry::UNIQUE_GUID),
            first_lba: entry::STARTING_LBA.get(b).unwrap_or_default(),
            last_lba: entry::ENDING_LBA.get(b).unwrap_or_default(),
            attributes: entry::ATTRIBUTES.get(b).unwrap_or_default(),
            name,
        })
    }

    /// The entry's [`ENTRY_SIZE`] bytes.
    pub fn encode(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        entry::TYPE_GUID.put_bytes(&mut b, &guid_to_disk(&self.type_guid));
        entry::UNIQUE_GUID.put_bytes(&mut b, &guid_to_disk(&self.unique_guid));
        entry::STARTING_LBA.put(&mut b, self.first_lba);
        entry::ENDING_LBA.put(&mut b, self.last_lba);
        entry::ATTRIBUTES.put(&mut b, self.attributes);
        entry::PARTITION_NAME.put_bytes(&mut b, &self.name);
        b
    }

    /// Whether the entry describes a partition (its type GUID is not zero).
    pub fn is_used(&self) -> bool {
        self.type_guid != [0; 16]
    }
}
