//! Network probes of a booted guest through its port forwards: a TCP
//! connection, an HTTP/1.0 GET, tried until they succeed or time out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::model::checks::HttpCheck;
use crate::store::verdict::Stop;

/// How a network probe ended.
pub(crate) struct Probe {
    /// It succeeded.
    pub ok: bool,
    /// The last failure, for the report.
    pub last: String,
    /// Why the boot stopped while probing (the guest died, a forbidden
    /// pattern appeared), when it did.
    pub stopped: Option<Stop>,
    /// Seconds from the first attempt.
    pub secs: f64,
}

/// Try `attempt` every half second until it succeeds or `timeout` seconds
/// pass, checking before each try (`watch`) that the boot has not stopped.
pub(crate) fn probe(
    timeout: u64,
    mut watch: impl FnMut() -> Option<Stop>,
    mut attempt: impl FnMut() -> Result<(), String>,
) -> Probe {
    let begin = Instant::now();
    let mut last = String::new();
    let mut stopped = None;
    let ok = loop {
        if let Some(why) = watch() {
            stopped = Some(why);
            break false;
        }
        match attempt() {
            Ok(()) => break true,
            Err(e) => last = e,
        }
        if begin.elapsed() > Duration::from_secs(timeout) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    Probe {
        ok,
        last,
        stopped,
        secs: begin.elapsed().as_secs_f64(),
    }
}

/// Whether the guest accepts a connection through the forward to `addr`.
pub(crate) fn tcp_accepts(addr: SocketAddr) -> Result<(), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    // QEMU's forward accepts before the guest does: a connection the guest
    // refuses is closed at once.
    s.set_read_timeout(Some(Duration::from_millis(300))).ok();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => Err("connection closed by the guest".into()),
        _ => Ok(()),
    }
}

/// Whether `GET h.path` through the forward to `addr` answers `h.status`
/// with a body containing `h.body_contains`.
pub(crate) fn http_answers(addr: SocketAddr, h: &HttpCheck) -> Result<(), String> {
    let (status, body) = http_get(addr, &h.path).map_err(|e| format!("{e:#}"))?;
    if status != h.status {
        return Err(format!("status {status}, expected {}", h.status));
    }
    match &h.body_contains {
        Some(want) if !body.contains(want.as_str()) => {
            Err(format!("body does not contain {want:?}"))
        }
        _ => Ok(()),
    }
}
/// A minimal HTTP/1.0 GET: status code and body.
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: kiln-test\r\nConnection: close\r\n\r\n")?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    parse_http_response(&resp)
}

/// Status code and body of an HTTP/1.x response.
fn parse_http_response(resp: &[u8]) -> Result<(u16, String)> {
    let text = String::from_utf8_lossy(resp);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok((code, body.to_string())),
        _ => bail!(crate::check_err!(
            "not an HTTP response: {:?}",
            status_line.chars().take(80).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_responses() {
        assert_eq!(
            parse_http_response(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<h1>hi</h1>")
                .unwrap(),
            (200, "<h1>hi</h1>".into())
        );
        assert_eq!(
            parse_http_response(b"HTTP/1.1 404 Not Found\r\n\r\n")
                .unwrap()
                .0,
            404
        );
        assert!(parse_http_response(b"SSH-2.0-OpenSSH\r\n").is_err());
    }
}
