//! A named field of a fixed-layout on-disk structure: its offset, its
//! length in bytes as part of its type, and little-endian access to it.
//!
//! The width is the const parameter of [`Field`], and an integer is read
//! from or written to a field only through [`Le`] for that width, so a
//! field read or written as an integer of another size does not compile:
//!
//! ```compile_fail,E0277
//! use kiln_format::field::Field;
//! const MAGIC: Field<2> = Field::new("magic", 0);
//! let b = [0u8; 8];
//! let _ = MAGIC.get::<u32>(&b); // a 2-byte field read as 4 bytes
//! ```
//!
//! ```compile_fail,E0277
//! use kiln_format::field::Field;
//! const COUNT: Field<4> = Field::new("count", 0);
//! let mut b = [0u8; 8];
//! COUNT.put(&mut b, 1u64); // an 8-byte value into a 4-byte field
//! ```
//!
//! The same with matching widths compiles and works:
//!
//! ```
//! use kiln_format::field::Field;
//! const COUNT: Field<4> = Field::new("count", 2);
//! let mut b = [0u8; 8];
//! COUNT.put(&mut b, 7u32);
//! assert_eq!(COUNT.get::<u32>(&b), Some(7));
//! ```

use std::ops::Range;

/// One field of an on-disk structure, `N` bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<const N: usize> {
    /// The field's name as its specification spells it.
    pub name: &'static str,
    /// Byte offset from the start of the structure.
    pub offset: usize,
}

/// A field with its width as a value rather than a type: an entry of a
/// layout table, whose fields have different widths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The field's name as its specification spells it.
    pub name: &'static str,
    /// Byte offset from the start of the structure.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

impl Span {
    /// A field of `len` bytes at `offset`, for a table of fields nothing
    /// reads as integers.
    pub const fn new(name: &'static str, offset: usize, len: usize) -> Self {
        Span { name, offset, len }
    }
}

impl<const N: usize> From<Field<N>> for Span {
    fn from(f: Field<N>) -> Span {
        f.span()
    }
}

/// An unsigned integer stored little-endian in `N` bytes: implemented only
/// for the integer of that size, which is what ties a field's width to the
/// values read from and written to it.
pub trait Le<const N: usize>: Copy {
    /// The value of `N` little-endian bytes.
    fn from_le(b: [u8; N]) -> Self;
    /// The value as `N` little-endian bytes.
    fn to_le(self) -> [u8; N];
}

macro_rules! le {
    ($($t:ty),*) => {$(
        impl Le<{ std::mem::size_of::<$t>() }> for $t {
            fn from_le(b: [u8; std::mem::size_of::<$t>()]) -> Self {
                <$t>::from_le_bytes(b)
            }
            fn to_le(self) -> [u8; std::mem::size_of::<$t>()] {
                self.to_le_bytes()
            }
        }
    )*};
}
le!(u8, u16, u32, u64);

/// A field that holds a `T`: a [`Field`] as wide as `T`. Lets a function
/// take "a field of `T`" while its callers name `T` (`get::<u32>(b, at, f)`).
pub trait Holds<T> {
    /// The field's name, offset and length.
    fn span(&self) -> Span;
    /// The field's value in the structure starting at `at` of `b`, or
    /// `None` when `b` is too short.
    fn get_at(&self, b: &[u8], at: usize) -> Option<T>;
}

impl<const N: usize, T: Le<N>> Holds<T> for Field<N> {
    fn span(&self) -> Span {
        Field::span(self)
    }
    fn get_at(&self, b: &[u8], at: usize) -> Option<T> {
        Field::get_at(self, b, at)
    }
}

impl<const N: usize> Field<N> {
    /// The field's length in bytes.
    pub const LEN: usize = N;

    /// A field of `N` bytes at `offset`.
    pub const fn new(name: &'static str, offset: usize) -> Self {
        Field { name, offset }
    }

    /// The field's length in bytes (`N`).
    pub const fn width(&self) -> usize {
        N
    }

    /// Its name, offset and length, for a layout table.
    pub const fn span(&self) -> Span {
        Span {
            name: self.name,
            offset: self.offset,
            len: N,
        }
    }

    /// The field's byte range within its structure.
    pub const fn range(&self) -> Range<usize> {
        self.offset..self.offset + N
    }

    /// The field's bytes in the structure starting at `at` of `b`, or
    /// `None` when `b` is too short.
    pub fn bytes_at<'a>(&self, b: &'a [u8], at: usize) -> Option<&'a [u8]> {
        let start = at.checked_add(self.offset)?;
        b.get(start..start.checked_add(N)?)
    }

    /// The field's bytes in `b`, or `None` when `b` is too short.
    pub fn bytes<'a>(&self, b: &'a [u8]) -> Option<&'a [u8]> {
        self.bytes_at(b, 0)
    }

    /// The field's little-endian value in `b`, or `None` when `b` is too
    /// short. `T` is the integer as wide as the field (checked by the compiler).
    pub fn get<T: Le<N>>(&self, b: &[u8]) -> Option<T> {
        self.get_at(b, 0)
    }

    /// [`Field::get`] for the structure starting at `at` of `b`.
    pub fn get_at<T: Le<N>>(&self, b: &[u8], at: usize) -> Option<T> {
        let bytes: [u8; N] = self.bytes_at(b, at)?.try_into().ok()?;
        Some(T::from_le(bytes))
    }

    /// Stores `v` little-endian in the field of `b`, a buffer the structure
    /// fits in (an encoder's own buffer: anything shorter is a bug). `T` is
    /// the integer as wide as the field (checked by the compiler).
    pub fn put<T: Le<N>>(&self, b: &mut [u8], v: T) {
        b[self.range()].copy_from_slice(&v.to_le());
    }

    /// Copies `v` to the start of the field of `b` (at most the field's
    /// length; the rest keeps its bytes), in a buffer the structure fits in.
    pub fn put_bytes(&self, b: &mut [u8], v: &[u8]) {
        debug_assert!(v.len() <= N, "{} bytes for field {}", v.len(), self.name);
        let n = v.len().min(N);
        b[self.offset..self.offset + n].copy_from_slice(&v[..n]);
    }
}

/// Checks that `fields` do not overlap and lie inside `size` bytes (for the
/// layout tables' tests).
pub fn check_layout(fields: &[Span], size: usize) -> Result<(), String> {
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

    const A: Field<4> = Field::new("a", 2);

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
        assert_eq!(Holds::<u32>::get_at(&A, &b, 0), A.get_at::<u32>(&b, 0));
        assert_eq!(
            Holds::<u32>::span(&A),
            Span {
                name: "a",
                offset: 2,
                len: 4
            }
        );
    }

    #[test]
    fn layout_checks() {
        let a = A.span();
        let b = Field::<2>::new("b", 6).span();
        assert_eq!(check_layout(&[b, a], 8), Ok(()));
        assert!(check_layout(&[a, b], 7).is_err());
        assert!(check_layout(&[a, Field::<1>::new("c", 5).span()], 8).is_err());
    }
}
