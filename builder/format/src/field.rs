//! A named field of a fixed-layout on-disk structure: its offset and length
//! in bytes, and checked little-endian access to it.

use std::ops::Range;

/// One field of an on-disk structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The field's name as its specification spells it.
    pub name: &'static str,
    /// Byte offset from the start of the structure.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

/// An unsigned integer stored little-endian in a [`Field`] of its size.
pub trait Le: Copy {
    /// Size in bytes.
    const SIZE: usize;
    /// The value of `SIZE` little-endian bytes.
    fn from_le(b: &[u8]) -> Self;
    /// Writes the value into `SIZE` bytes.
    fn put_le(self, b: &mut [u8]);
}

macro_rules! le {
    ($($t:ty),*) => {$(
        impl Le for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn from_le(b: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                <$t>::from_le_bytes(a)
            }
            fn put_le(self, b: &mut [u8]) {
                b.copy_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
le!(u8, u16, u32, u64);

impl Field {
    /// A field of `len` bytes at `offset`.
    pub const fn new(name: &'static str, offset: usize, len: usize) -> Self {
        Field { name, offset, len }
    }

    /// The field's byte range within its structure.
    pub const fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }

    /// The field's bytes in the structure starting at `at` of `b`, or
    /// `None` when `b` is too short.
    pub fn bytes_at<'a>(&self, b: &'a [u8], at: usize) -> Option<&'a [u8]> {
        let start = at.checked_add(self.offset)?;
        b.get(start..start.checked_add(self.len)?)
    }

    /// The field's bytes in `b`, or `None` when `b` is too short.
    pub fn bytes<'a>(&self, b: &'a [u8]) -> Option<&'a [u8]> {
        self.bytes_at(b, 0)
    }

    /// The field's little-endian value in `b`, or `None` when `b` is too
    /// short. `T` must be as long as the field.
    pub fn get<T: Le>(&self, b: &[u8]) -> Option<T> {
        self.get_at(b, 0)
    }

    /// [`Field::get`] for the structure starting at `at` of `b`.
    pub fn get_at<T: Le>(&self, b: &[u8], at: usize) -> Option<T> {
        debug_assert_eq!(
            self.len,
            T::SIZE,
            "field {} read as {} bytes",
            self.name,
            T::SIZE
        );
        self.bytes_at(b, at)
            .filter(|s| s.len() == T::SIZE)
            .map(T::from_le)
    }

    /// Stores `v` little-endian in the field of `b`, a buffer the structure
    /// fits in (an encoder's own buffer: anything shorter is a bug).
    pub fn put<T: Le>(&self, b: &mut [u8], v: T) {
        debug_assert_eq!(
            self.len,
            T::SIZE,
            "field {} written as {} bytes",
            self.name,
            T::SIZE
        );
        v.put_le(&mut b[self.offset..self.offset + T::SIZE]);
    }

    /// Copies `v` to the start of the field of `b` (at most the field's
    /// length; the rest keeps its bytes), in a buffer the structure fits in.
    pub fn put_bytes(&self, b: &mut [u8], v: &[u8]) {
        debug_assert!(
            v.len() <= self.len,
            "{} bytes for field {}",
            v.len(),
            self.name
        );
        let n = v.len().min(self.len);
        b[self.offset..self.offset + n].copy_from_slice(&v[..n]);
    }
}

/// Checks that `fields` do not overlap and lie inside `size` bytes (for the
/// layout tables' tests).
pub fn check_layout(fields: &[Field], size: usize) -> Result<(), String> {
    let mut sorted = fields.to_vec();
    sorted.sort_by_key(|f| f.offset);
    for pair in sorted.windows(2) {
        if pair[0].offset + pair[0].len > pair[1].offset {
            return Err(format!("{} overlaps {}", pair[0].name, pair[1].name));
        }
    }
    match sorted.last() {
        Some(f) if f.offset + f.len > size => Err(format!("{} ends past {size} bytes", f.name)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Field = Field::new("a", 2, 4);

    #[test]
    fn reads_and_writes_little_endian() {
        let mut b = [0u8; 8];
        A.put(&mut b, 0x1234_5678u32);
        assert_eq!(b, [0, 0, 0x78, 0x56, 0x34, 0x12, 0, 0]);
        assert_eq!(A.get::<u32>(&b), Some(0x1234_5678));
        assert_eq!(A.get_at::<u32>(&b, 2), Some(0x1234));
        assert_eq!(A.get_at::<u32>(&b, 3), None);
        assert_eq!(A.get::<u32>(&b[..5]), None);
        assert_eq!(A.bytes_at(&b, usize::MAX), None);
        A.put_bytes(&mut b, b"xy");
        assert_eq!(A.bytes(&b), Some(&b"xy\x34\x12"[..]));
    }

    #[test]
    fn layout_checks() {
        let b = Field::new("b", 6, 2);
        assert_eq!(check_layout(&[b, A], 8), Ok(()));
        assert!(check_layout(&[A, b], 7).is_err());
        assert!(check_layout(&[A, Field::new("c", 5, 1)], 8).is_err());
    }
}
