//! The transport rules against fake servers on 127.0.0.1: registries that
//! stall, stop half way or trickle, redirect where they must not, and a
//! proxy that must see no loopback traffic.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::super::spec::Descriptor;
use super::super::{Client, Reference};
use super::*;
use crate::fs::layer::sha256_digest;
use crate::util::digest::Digest;
use crate::util::error::exit_code;

/// What a fake server does with one request: given the request line and
/// headers (lower-cased names), write to the connection (or hold it).
type Handler = dyn Fn(&str, &[(String, String)], &mut TcpStream) + Send + Sync;

/// A server on 127.0.0.1 that logs every request (`METHOD TARGET` and its
/// `Authorization`, if any) and answers with its handler, one thread per
/// connection. Connections a handler holds are let go when the test ends.
struct Server {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(
        handler: impl Fn(&str, &[(String, String)], &mut TcpStream) + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let l = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (l, h) = (l.clone(), handler.clone());
                std::thread::spawn(move || serve(conn, &l, &*h));
            }
        });
        Server { port, log }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, log: &Mutex<Vec<String>>, handler: &Handler) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let line = line.trim_end().to_string();
        let auth = headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| format!(" [{v}]"))
            .unwrap_or_default();
        let target = line.rsplit_once(' ').map_or(line.as_str(), |(t, _)| t);
        log.lock().unwrap().push(format!("{target}{auth}"));
        handler(&line, &headers, &mut w);
    }
}

/// An HTTP/1.1 answer.
fn answer(w: &mut TcpStream, status: &str, headers: &str, body: &[u8]) {
    let _ = write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    );
    let _ = w.write_all(body);
    let _ = w.flush();
}

/// Hold the connection for longer than any limit in these tests.
fn hold() {
    std::thread::sleep(Duration::from_secs(30));
}

/// A registry at `/v2/` that answers `blob` as its handler says.
fn registry(blob: impl Fn(&str, &mut TcpStream) + Send + Sync + 'static) -> Server {
    Server::start(move |line, _, w| {
        let path = line.split(' ').nth(1).unwrap_or("");
        if path == "/v2/" {
            answer(w, "200 OK", "", b"{}");
        } else {
            blob(path, w);
        }
    })
}

fn reference(s: &Server) -> Reference {
    Reference::parse(&format!("oci://127.0.0.1:{}/kiln/test", s.port)).unwrap()
}

/// Short limits: 300 ms idle, so 1.5 s for a small request in all.
fn short() -> Net {
    Net::new(Duration::from_millis(300), None)
}

fn descriptor(body: &[u8]) -> Descriptor {
    Descriptor {
        media_type: "application/octet-stream".into(),
        digest: Digest::parse(&sha256_digest(body)).unwrap(),
        size: body.len() as u64,
        artifact_type: None,
        annotations: Default::default(),
    }
}

/// Fetch `blob`'s descriptor from `s` with `net`; the error, and how long it took.
fn fetch_blob(s: &Server, net: Net, blob: &[u8]) -> (anyhow::Result<Vec<u8>>, Duration) {
    let start = Instant::now();
    let got = Client::connect_with(&reference(s), false, net).and_then(|c| {
        let mut out = Vec::new();
        c.get_blob_to("test blob", &descriptor(blob), 1 << 20, &mut out)?;
        Ok(out)
    });
    (got, start.elapsed())
}

/// An error exits 3 (environment) and names the registry.
fn assert_env_error_naming(e: &anyhow::Error, s: &Server, want: &str) {
    let text = format!("{e:#}");
    assert_eq!(exit_code(e), 3, "{text}");
    assert!(text.contains(&format!("127.0.0.1:{}", s.port)), "{text}");
    assert!(text.contains(want), "{text}");
}

#[test]
fn a_registry_that_accepts_and_never_answers_is_given_up() {
    let s = Server::start(|_, _, _| hold());
    let start = Instant::now();
    let e = Client::connect_with(&reference(&s), false, short())
        .err()
        .expect("a registry that never answers must not be connected to");
    assert_env_error_naming(&e, &s, "no answer in time");
    // Well before the server lets go.
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_blob_that_stops_half_way_is_given_up() {
    let blob = vec![7u8; 64 << 10];
    let sent = blob.clone();
    let s = registry(move |_, w| {
        let _ = write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            sent.len()
        );
        let _ = w.write_all(&sent[..sent.len() / 2]);
        let _ = w.flush();
        hold();
    });
    let (got, took) = fetch_blob(&s, short(), &blob);
    let e = got.expect_err("half a blob is not a blob");
    assert_env_error_naming(&e, &s, "downloading");
    assert!(took < Duration::from_secs(20));
}

#[test]
fn a_trickling_blob_meets_the_overall_limit() {
    let blob = vec![1u8; 4096];
    let s = registry(move |_, w| {
        let _ = write!(w, "HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n");
        // One byte every 100 ms: never idle for 300 ms, never done.
        for _ in 0..300 {
            if w.write_all(b"x").and_then(|_| w.flush()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (got, took) = fetch_blob(&s, short(), &blob);
    let e = got.expect_err("a trickle must end");
    assert_env_error_naming(&e, &s, "downloading");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn the_overall_limit_grows_with_the_size() {
    let net = Net::new(Duration::from_secs(60), None);
    assert_eq!(net.connect, Duration::from_secs(30));
    assert_eq!(net.overall(0), Duration::from_secs(300));
    // 1 GiB at the floor rate: 8192 s more.
    assert_eq!(net.overall(1 << 30), Duration::from_secs(300 + 8192));
}

#[test]
fn redirects_leave_loopback_only_for_https_and_credentials_stay_home() {
    let blob = b"the blob".to_vec();
    let served = blob.clone();
    let elsewhere = Server::start(move |_, _, w| answer(w, "200 OK", "", &served));
    let target = elsewhere.url();
    let s = registry(move |path, w| {
        let to = if path.contains("plain") {
            // Another host in the clear: never followed.
            "http://kiln-redirect-target.invalid:8080/blob".to_string()
        } else if path.contains("down") {
            // Off HTTPS is never allowed either; from loopback, in the clear, to a public host.
            "http://192.0.2.1/blob".to_string()
        } else {
            // Loopback to loopback (another port: another origin).
            format!("{target}/blob")
        };
        answer(
            w,
            "307 Temporary Redirect",
            &format!("Location: {to}\r\n"),
            b"",
        );
    });
    let mut c = Client::connect_with(&reference(&s), false, short()).unwrap();
    c.auth = Some("Basic c2VjcmV0".into());
    let mut out = Vec::new();
    c.get_blob_to("test blob", &descriptor(&blob), 1 << 20, &mut out)
        .unwrap();
    assert_eq!(out, blob);
    // The registry got its credentials; the other origin did not.
    assert!(
        s.log().iter().any(|l| l.ends_with("[Basic c2VjcmV0]")),
        "{:?}",
        s.log()
    );
    assert_eq!(elsewhere.log(), ["GET /blob"]);

    for tag in ["plain", "down"] {
        let e = c.get_manifest(tag).unwrap_err();
        assert_env_error_naming(&e, &s, "redirects");
    }
    assert_eq!(elsewhere.log().len(), 1);
}

#[test]
fn loopback_never_goes_through_the_proxy() {
    let proxy = Server::start(|_, _, w| answer(w, "502 Bad Gateway", "", b""));
    let net = || {
        Net::new(
            Duration::from_secs(5),
            Some(ureq::Proxy::new(&proxy.url()).unwrap()),
        )
    };
    let s = registry(|_, w| answer(w, "404 Not Found", "", b"{}"));
    let mut c = Client::connect_with(&reference(&s), false, net()).unwrap();
    c.auth = Some("Basic c2VjcmV0".into());
    assert_eq!(c.get_manifest("1.0").unwrap(), None);
    assert!(proxy.log().is_empty(), "{:?}", proxy.log());
    assert!(s.log().iter().any(|l| l.ends_with("[Basic c2VjcmV0]")));
    // Another machine still goes through it.
    let other = Reference::parse("oci://registry.kiln-test.invalid:5000/kiln/test").unwrap();
    assert!(Client::connect_with(&other, false, net()).is_err());
    assert_eq!(proxy.log(), ["CONNECT registry.kiln-test.invalid:5000"]);
}

#[test]
fn redirect_targets() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "http://127.0.0.1:5000/v2/x",
            "https://cdn.example.com/b?s=1",
            Some("https://cdn.example.com/b?s=1"),
        ),
        (
            "http://127.0.0.1:5000/v2/x/blobs/y",
            "/elsewhere/z",
            Some("http://127.0.0.1:5000/elsewhere/z"),
        ),
        (
            "https://reg.example.com/v2/x/blobs/y",
            "//cdn.example.com/z",
            Some("https://cdn.example.com/z"),
        ),
        (
            "https://reg.example.com/v2/x/blobs/y?a=b",
            "z",
            Some("https://reg.example.com/v2/x/blobs/z"),
        ),
        (
            "HTTP://127.0.0.1/v2/",
            "HTTPS://cdn.example.com/",
            Some("HTTPS://cdn.example.com/"),
        ),
    ];
    for (base, loc, want) in cases {
        assert_eq!(resolve(base, loc).as_deref(), *want, "{base} + {loc}");
    }
    let o = |u: &str| Origin::of(u).unwrap();
    let rules = [
        ("http://127.0.0.1:5000", "http://127.0.0.1:6000", true),
        ("http://localhost:5000", "http://[::1]:5000", true),
        ("http://127.0.0.1:5000", "https://cdn.example.com", true),
        ("https://reg.example.com", "https://cdn.example.com", true),
        ("http://127.0.0.1:5000", "http://10.0.0.1", false),
        ("https://reg.example.com", "http://reg.example.com", false),
        ("https://reg.example.com", "http://cdn.example.com", false),
        ("https://127.0.0.1:5000", "http://127.0.0.1:5000", false),
        ("https://reg.example.com", "http://127.0.0.1", false),
    ];
    for (from, to, want) in rules {
        assert_eq!(o(from).redirect_allowed(&o(to)), want, "{from} -> {to}");
    }
}
