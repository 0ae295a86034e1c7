//! `kiln pull` against fake servers on 127.0.0.1, end to end: a registry
//! that never answers ends the pull (exit 3, naming the registry) instead
//! of hanging it, and a proxy from the environment never sees a loopback
//! registry's traffic or credentials.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// Far longer than any limit these tests set; a hang fails the test.
const DEADLINE: Duration = Duration::from_secs(60);

/// A server on 127.0.0.1 logging each request's first line and its
/// `Authorization` header; `answer` gets the first line and the connection.
fn server(answer: fn(&str, &mut TcpStream)) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let l = log.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let l = l.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                let mut first = String::new();
                while r.read_line(&mut first).unwrap_or(0) > 0 {
                    let mut entry = first.trim_end().to_string();
                    let mut h = String::new();
                    while r.read_line(&mut h).unwrap_or(0) > 0 && h != "\r\n" {
                        if h.to_ascii_lowercase().starts_with("authorization:") {
                            entry.push_str(&format!(" [{}]", h.trim_end()));
                        }
                        h.clear();
                    }
                    l.lock().unwrap().push(entry);
                    answer(&first, &mut w);
                    first.clear();
                }
            });
        }
    });
    (port, log)
}

/// Run kiln with `env` and no `NO_PROXY`, within [`DEADLINE`].
fn kiln(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    common::output_within(
        Command::new(KILN)
            .args(args)
            .arg("--store")
            .arg(dir.join("store"))
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .envs(env.iter().map(|(k, v)| (k, v))),
        DEADLINE,
    )
}

/// `kiln pull` of `oci://127.0.0.1:PORT/kiln/hello:1.0` into `dir/out`.
fn pull(dir: &Path, port: u16, env: &[(&str, String)]) -> Output {
    let key = dir.join("k");
    if !key.exists() {
        let out = kiln(
            dir,
            &["keygen", "-o", key.to_str().unwrap(), "--unencrypted"],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let source = format!("oci://127.0.0.1:{port}/kiln/hello:1.0");
    let out_dir = dir.join("out");
    let pubkey = dir.join("k.pub");
    let args = [
        "pull",
        &source,
        "-o",
        out_dir.to_str().unwrap(),
        "--pubkey",
        pubkey.to_str().unwrap(),
    ];
    kiln(dir, &args, env)
}

#[test]
fn a_registry_that_never_answers_ends_the_pull_naming_it() {
    let (port, log) = server(|_, _| std::thread::sleep(DEADLINE * 2));
    let dir = tempfile::tempdir().unwrap();
    let out = pull(dir.path(), port, &[("KILN_REGISTRY_TIMEOUT", "0.5".into())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("no answer in time"), "{stderr}");
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[test]
fn a_loopback_registry_is_never_reached_through_the_proxy() {
    let (proxy, proxied) = server(|_, w| {
        let _ = w.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
    });
    // Basic authentication, then no such tag.
    let (port, log) = server(|first, w| {
        let reply: &[u8] = if first.starts_with("GET /v2/ ") {
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"kiln\"\r\nContent-Length: 0\r\n\r\n"
        } else {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}"
        };
        let _ = w.write_all(reply);
    });
    let p = format!("http://127.0.0.1:{proxy}");
    let env = [
        ("HTTP_PROXY", p.clone()),
        ("http_proxy", p.clone()),
        ("HTTPS_PROXY", p.clone()),
        ("ALL_PROXY", p),
        ("KILN_REGISTRY_USERNAME", "kiln".into()),
        ("KILN_REGISTRY_PASSWORD", "s3cret".into()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let out = pull(dir.path(), port, &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no such tag"), "{stderr}");
    assert_eq!(*proxied.lock().unwrap(), Vec::<String>::new());
    // The registry itself got the credentials.
    let log = log.lock().unwrap();
    assert!(
        log.iter().any(|l| l.contains("Basic a2lsbjpzM2NyZXQ=")),
        "{log:?}"
    );
}
