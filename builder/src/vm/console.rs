//! The guest's serial console as `kiln test` reads it: QEMU appends the
//! stream to a scratch file, and kiln reads on from where it stopped, so the
//! checks see the whole stream, each line once (ARCHITECTURE.md
//! "Verification"). What is kept once the test ends is capped: a guest that
//! floods its console (tens of MB a minute) keeps its first [`HEAD`] and its
//! most recent [`TAIL`] bytes, with a line saying how much was left out
//! between them.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Instant;

/// Bytes kept from the start of the console: the firmware, the kernel and
/// kiln-init, where a failed boot usually shows why.
pub const HEAD: usize = 2 << 20;
/// Bytes kept from the end of the console: what the guest said last.
pub const TAIL: usize = 2 << 20;

/// What is kept of a stream: its first `head` bytes and its last `tail`.
#[derive(Debug)]
pub struct Kept {
    head_cap: usize,
    tail_cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl Kept {
    /// Keep at most `head` bytes from the start and `tail` from the end.
    pub fn new(head: usize, tail: usize) -> Self {
        Kept {
            head_cap: head,
            tail_cap: tail,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    /// The stream goes on with `bytes`.
    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.head_cap - self.head.len();
        let n = room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..n]);
        bytes = &bytes[n..];
        if bytes.len() > self.tail_cap {
            bytes = &bytes[bytes.len() - self.tail_cap..];
        }
        let over = (self.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..over);
        self.tail.extend(bytes);
    }

    /// The kept log: the head, then, when bytes were left out, a line saying
    /// how many, then the tail.
    pub fn bytes(&self) -> Vec<u8> {
        let kept = (self.head.len() + self.tail.len()) as u64;
        let mut out = self.head.clone();
        if self.total > kept {
            if !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.extend_from_slice(
                format!(
                    "[kiln: {} bytes of console output left out here; this log keeps the first {} and the last {} of {} bytes]\n",
                    self.total - kept,
                    self.head.len(),
                    self.tail.len(),
                    self.total
                )
                .as_bytes(),
            );
        }
        out.extend(self.tail.iter());
        out
    }
}

/// The console of a running guest, read as QEMU writes it.
#[derive(Debug)]
pub struct Console {
    path: PathBuf,
    file: Option<File>,
    /// The whole stream so far, decoded (invalid UTF-8 replaced).
    pub text: String,
    /// Bytes of a character QEMU has not finished writing.
    undecoded: Vec<u8>,
    /// Where the first line not yet handed out by [`Console::refresh`] starts.
    lines_from: usize,
    kept: Kept,
    start: Instant,
}

impl Console {
    /// The console QEMU writes to `path` (created by QEMU when it starts).
    pub fn new(path: PathBuf) -> Self {
        Console::with_caps(path, HEAD, TAIL)
    }

    fn with_caps(path: PathBuf, head: usize, tail: usize) -> Self {
        Console {
            path,
            file: None,
            text: String::new(),
            undecoded: Vec::new(),
            lines_from: 0,
            kept: Kept::new(head, tail),
            start: Instant::now(),
        }
    }

    /// Seconds since QEMU started.
    pub fn secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Read what QEMU appended since the last call; returns the range of
    /// `text` holding the lines completed since then (each line is handed
    /// out once).
    pub fn refresh(&mut self) -> Range<usize> {
        if self.file.is_none() {
            self.file = File::open(&self.path).ok();
        }
        let mut new = Vec::new();
        if let Some(f) = &mut self.file {
            // A read error leaves the stream where it was; the next call
            // tries again.
            let _ = f.read_to_end(&mut new);
        }
        if !new.is_empty() {
            self.kept.push(&new);
            self.undecoded.extend_from_slice(&new);
            let valid = match std::str::from_utf8(&self.undecoded) {
                Ok(_) => self.undecoded.len(),
                // Bytes that may yet complete a character wait for the rest.
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => self.undecoded.len(),
            };
            let rest = self.undecoded.split_off(valid);
            self.text
                .push_str(&String::from_utf8_lossy(&self.undecoded));
            self.undecoded = rest;
        }
        let end = self.text[self.lines_from..]
            .rfind('\n')
            .map_or(self.lines_from, |i| self.lines_from + i + 1);
        let lines = self.lines_from..end;
        self.lines_from = end;
        lines
    }

    /// The last read, once QEMU has stopped: the range of `text` holding the
    /// lines not handed out yet, the unfinished last line included.
    pub fn finish(&mut self) -> Range<usize> {
        let mut lines = self.refresh();
        if !self.undecoded.is_empty() {
            let rest = std::mem::take(&mut self.undecoded);
            self.text.push_str(&String::from_utf8_lossy(&rest));
        }
        lines.end = self.text.len();
        self.lines_from = lines.end;
        lines
    }

    /// What is kept of the console ([`Kept::bytes`]).
    pub fn kept(&self) -> Vec<u8> {
        self.kept.bytes()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn kept_is_head_and_tail_of_a_flood() {
        let mut k = Kept::new(8, 6);
        k.push(b"0123");
        assert_eq!(k.bytes(), b"0123");
        k.push(b"4567ab");
        assert_eq!(k.bytes(), b"01234567ab");
        k.push(b"cdefghijklmnop");
        assert_eq!(
            String::from_utf8(k.bytes()).unwrap(),
            "01234567\n[kiln: 10 bytes of console output left out here; this log keeps the first 8 and the last 6 of 24 bytes]\nklmnop"
        );
    }

    /// A guest flooding its console: the kept log stays within its cap,
    /// says what it left out, and keeps the first and the latest lines,
    /// while the lines handed to the checks are the whole stream, each once.
    #[test]
    fn a_flood_is_capped_on_disk_but_seen_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut qemu = File::create(&path).unwrap();
        let mut con = Console::with_caps(path, 64 << 10, 64 << 10);
        writeln!(qemu, "BdsDxe: starting Boot0001").unwrap();
        let mut seen = Vec::new();
        let mut bytes = 0;
        for chunk in 0..400 {
            let mut text = String::new();
            for i in 0..100 {
                text.push_str(&format!("flood {chunk} {i} ....................\n"));
            }
            if chunk == 200 {
                // In the middle, where the kept log has nothing.
                text.push_str("Kernel panic - not syncing: ");
            }
            qemu.write_all(text.as_bytes()).unwrap();
            bytes += text.len();
            let lines = con.refresh();
            seen.extend(con.text[lines].lines().map(str::to_string));
        }
        // "é" split across two writes, then an unfinished last line.
        qemu.write_all(b"caf\xc3").unwrap();
        let lines = con.refresh();
        seen.extend(con.text[lines].lines().map(str::to_string));
        qemu.write_all(b"\xa9 at the end").unwrap();
        let lines = con.finish();
        seen.extend(con.text[lines].lines().map(str::to_string));

        assert!(bytes > 1 << 20);
        assert_eq!(seen.len(), 1 + 400 * 100 + 1);
        assert_eq!(seen[0], "BdsDxe: starting Boot0001");
        assert_eq!(
            seen.iter().filter(|l| l.contains("Kernel panic")).count(),
            1
        );
        assert_eq!(seen.last().unwrap(), "café at the end");

        let kept = String::from_utf8(con.kept()).unwrap();
        assert!(kept.len() < (128 << 10) + 200, "{}", kept.len());
        assert!(kept.starts_with("BdsDxe: starting Boot0001\nflood 0 0 "));
        assert!(kept.ends_with("flood 399 99 ....................\ncafé at the end"));
        assert!(!kept.contains("Kernel panic"));
        let marker = kept
            .lines()
            .find(|l| l.starts_with("[kiln: "))
            .expect("the log says what it left out");
        assert!(
            marker.contains("bytes of console output left out here"),
            "{marker}"
        );
    }
}
