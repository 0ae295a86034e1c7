//! sha256 digests as kiln names things: `sha256:` and 64 lowercase hex digits
//! (the OCI image spec's digest grammar, algorithm `sha256`).
//!
//! [`Digest`] is the checked form: a string from a manifest, a store entry or
//! a registry becomes a path, a tag or a short display only through it.
//! Files and streams are hashed in one way, through [`HashWriter`]: alone
//! ([`Digest::of_reader`], [`Digest::of_file`]) or while their bytes are
//! copied somewhere ([`copy`]).
//!
//! Each textual form has its own type, so a record says which one it holds
//! and refuses the other when it is read: [`Digest`] is `sha256:` and hex
//! (manifests, store records, OCI), [`HexDigest`] bare lower-case hex
//! (the dm-verity root hash, PCR values, Debian's `SHA256` fields).

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest as _, Sha256};

/// The algorithm prefix of every digest kiln writes.
pub const SHA256_PREFIX: &str = "sha256:";

/// How much of a stream is read at a time while hashing it.
const CHUNK: usize = 1 << 20;

/// Hex digits shown by [`Digest::short`]: enough to tell images apart in a
/// listing (git shows 7; container tools show 12).
pub const SHORT_HEX: usize = 12;

/// A sha256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

/// A string that is not `sha256:` followed by 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a sha256 digest (sha256: and 64 hex digits)")]
pub struct DigestError(pub String);

impl Digest {
    /// Parse `sha256:<64 hex>` and nothing else: the form records hold.
    pub fn parse_prefixed(s: &str) -> Result<Digest, DigestError> {
        match s.strip_prefix(SHA256_PREFIX) {
            Some(_) => Digest::parse(s),
            None => Err(DigestError(s.chars().take(80).collect())),
        }
    }

    /// Parse `sha256:<64 hex>` (a bare 64-hex string is accepted too, as
    /// store file names and `sha256sum` give it). Upper-case hex is refused:
    /// the same digest must have one spelling.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let hex = s.strip_prefix(SHA256_PREFIX).unwrap_or(s);
        let lower = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if hex.len() != 64 || !hex.bytes().all(lower) {
            return Err(DigestError(s.chars().take(80).collect()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).map_err(|_| DigestError(s.to_string()))?;
        Ok(Digest(out))
    }

    /// The digest of some bytes.
    pub fn of(data: &[u8]) -> Digest {
        Digest(Sha256::digest(data).into())
    }

    /// The digest of a finished hash.
    pub fn finish(h: Sha256) -> Digest {
        Digest(h.finalize().into())
    }

    /// The digest of everything a reader yields, streamed.
    pub fn of_reader(r: impl Read) -> io::Result<Digest> {
        copy(r, io::sink()).map(|(d, _)| d)
    }

    /// The digest of a file's bytes, streamed.
    pub fn of_file(path: &Path) -> Result<Digest> {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Digest::of_reader(f).with_context(|| format!("reading {}", path.display()))
    }

    /// The 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex digits, without the algorithm (store file names).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `sha256:` and the first [`SHORT_HEX`] hex digits, for listings.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(SHA256_PREFIX.len() + SHORT_HEX);
        s
    }
}

impl From<[u8; 32]> for Digest {
    fn from(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA256_PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Digest, DigestError> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A record's digest is `sha256:` and hex, never bare hex ([`HexDigest`]).
impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse_prefixed(&s).map_err(serde::de::Error::custom)
    }
}

/// A sha256 value written as 64 lower-case hex digits and nothing else: the
/// dm-verity root hash (`roothash=`, systemd's `.roothash` file), a PCR
/// value, Debian's `SHA256` field.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HexDigest(pub [u8; 32]);

/// A string that is not 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a sha256 in lower-case hex (64 digits, no prefix)")]
pub struct HexDigestError(pub String);

impl HexDigest {
    /// Parse 64 lower-case hex digits: no `sha256:`, no upper case.
    pub fn parse(s: &str) -> Result<HexDigest, HexDigestError> {
        if s.starts_with(SHA256_PREFIX) {
            return Err(HexDigestError(s.chars().take(80).collect()));
        }
        Digest::parse(s)
            .map(|d| HexDigest(d.0))
            .map_err(|_| HexDigestError(s.chars().take(80).collect()))
    }

    /// The 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<Digest> for HexDigest {
    fn from(d: Digest) -> HexDigest {
        HexDigest(d.0)
    }
}

impl fmt::Display for HexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for HexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for HexDigest {
    type Err = HexDigestError;
    fn from_str(s: &str) -> Result<HexDigest, HexDigestError> {
        HexDigest::parse(s)
    }
}

impl serde::Serialize for HexDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for HexDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<HexDigest, D::Error> {
        let s = String::deserialize(d)?;
        HexDigest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A writer that hashes what passes through it to `inner`.
pub struct HashWriter<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W> HashWriter<W> {
    /// Hash what is written to `inner`.
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }

    /// The inner writer, the digest and the length of what was written.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::finish(self.hash), self.len)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copy everything `r` yields into `w`, [`CHUNK`] bytes at a time; returns
/// the digest and the length of what was copied.
pub fn copy(mut r: impl Read, w: impl Write) -> io::Result<(Digest, u64)> {
    let mut w = HashWriter::new(w);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
    }
    w.flush()?;
    let (_, digest, len) = w.finish();
    Ok((digest, len))
}

/// `sha256:<hex>` of a file, streamed.
pub fn file_digest(path: &Path) -> Result<String> {
    Ok(Digest::of_file(path)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_table() {
        for (s, ok) in [
            (EMPTY, true),
            (&EMPTY[7..], true),
            ("sha256:", false),
            ("sha256:e3b0", false),
            (
                "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                false,
            ),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                false,
            ),
            (
                "sha256:../../../../etc/passwd/................................aaaa",
                false,
            ),
            (
                "sha256:é3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
                false,
            ),
        ] {
            assert_eq!(Digest::parse(s).is_ok(), ok, "{s}");
        }
    }

    #[test]
    fn round_trips_and_shortens() {
        let d = Digest::of(b"");
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::parse(EMPTY).unwrap(), d);
        assert_eq!(d.short(), "sha256:e3b0c44298fc");
        assert_eq!(d.hex(), &EMPTY[7..]);
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&j).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
        assert_eq!(Digest::of_reader(&b""[..]).unwrap(), d);
    }

    /// Each type reads its own textual form and refuses the other, so a
    /// record holds one spelling of each digest.
    #[test]
    fn each_form_reads_only_its_own_spelling() {
        let hex = &EMPTY[7..];
        let json = |s: &str| format!("{s:?}");
        assert!(serde_json::from_str::<Digest>(&json(EMPTY)).is_ok());
        assert!(serde_json::from_str::<Digest>(&json(hex)).is_err());
        let h: HexDigest = serde_json::from_str(&json(hex)).unwrap();
        assert_eq!(h.to_string(), hex);
        assert_eq!(serde_json::to_string(&h).unwrap(), json(hex));
        assert_eq!(h, HexDigest::from(Digest::of(b"")));
        for bad in [
            EMPTY.to_string(),
            hex.to_uppercase(),
            hex[1..].to_string(),
            format!("{hex}0"),
            format!("{hex}\n"),
        ] {
            assert!(HexDigest::parse(&bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<HexDigest>(&json(&bad)).is_err());
        }
    }

    #[test]
    fn copy_hashes_what_it_copies() {
        let data: Vec<u8> = (0..3 * CHUNK as u32 + 7).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let (d, n) = copy(&data[..], &mut out).unwrap();
        assert_eq!((d, n), (Digest::of(&data), data.len() as u64));
        assert_eq!(out, data);
    }
}
