//! Who gets which credentials ([`super`]'s registry client): the registry's
//! own credentials (the environment, else the auth files of podman, skopeo
//! and Docker), the origin of a URL (RFC 6454: scheme, host, port), the rule
//! for a Bearer challenge's token service ([`realm_credentials`]), and the
//! token service's answer redacted for the log ([`redact_token_response`]).

use std::path::PathBuf;

use base64::Engine;
use serde_json::Value;

/// Whether a host name (no port; IPv6 in brackets) is this machine.
pub(super) fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Where a URL is served from (RFC 6454 §4): scheme, host and port, the
/// port filled in from the scheme when the URL leaves it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    /// `http` or `https`.
    scheme: String,
    /// Lower-cased host; IPv6 in brackets.
    host: String,
    /// Explicit or default port.
    port: u16,
    /// The URL's `host[:port]` as written, the key auth files use.
    pub(super) authority: String,
}

impl Origin {
    /// The origin of an `http://` or `https://` URL; `None` for anything else.
    pub(crate) fn of(url: &str) -> Option<Origin> {
        let uri: ureq::http::Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let auth = uri.authority()?;
        // Credentials in the URL itself are not a host kiln talks to.
        if auth.as_str().contains('@') || auth.host().is_empty() {
            return None;
        }
        Some(Origin {
            host: auth.host().to_ascii_lowercase(),
            port: auth.port_u16().unwrap_or(default_port),
            authority: auth.as_str().to_ascii_lowercase(),
            scheme,
        })
    }

    /// The same origin: scheme, host and port all equal.
    pub(super) fn same(&self, other: &Origin) -> bool {
        (&self.scheme, &self.host, self.port) == (&other.scheme, &other.host, other.port)
    }

    /// Whether what is sent there cannot be read on the network: HTTPS, or
    /// plain HTTP to this machine.
    pub(super) fn private(&self) -> bool {
        self.scheme == "https" || (self.scheme == "http" && self.loopback())
    }

    /// Whether the host is this machine.
    pub(super) fn loopback(&self) -> bool {
        is_loopback(&self.host)
    }

    /// Whether a redirect from here may go to `to`: to HTTPS, or from plain
    /// HTTP on loopback to plain HTTP on loopback. A redirect never takes a
    /// request off HTTPS, nor off this machine in the clear.
    pub(super) fn redirect_allowed(&self, to: &Origin) -> bool {
        to.scheme == "https" || (self.scheme == "http" && self.loopback() && to.loopback())
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// Which credentials a token request to `realm` may carry, for a registry at
/// `registry` whose own credentials are `registry_creds`:
///
/// - the registry's own origin gets the registry's credentials (a registry's
///   origin is HTTPS, or HTTP on loopback: [`super::Reference::base_url`]);
/// - another origin, over HTTPS or to loopback, gets only what the user
///   configured for that host (`configured_for(authority)`, the auth files);
/// - another origin over plain HTTP gets nothing.
pub(crate) fn realm_credentials<C>(
    registry: &Origin,
    realm: &Origin,
    registry_creds: Option<C>,
    configured_for: impl FnOnce(&str) -> Option<C>,
) -> Option<C> {
    if realm.same(registry) {
        registry_creds
    } else if realm.private() {
        configured_for(&realm.authority)
    } else {
        None
    }
}

/// A token service's JSON answer for the log: the structure kept, every
/// token-like value replaced by its length. Anything not JSON is shown by
/// length only, since it may be a token too.
pub(crate) fn redact_token_response(body: &[u8]) -> String {
    fn redact(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    let k = k.to_ascii_lowercase();
                    let secret = k.contains("token") || k.contains("secret") || k == "password";
                    match v {
                        Value::String(s) if secret => {
                            *v = Value::String(format!("<redacted, {} bytes>", s.len()))
                        }
                        v if secret => *v = Value::String("<redacted>".into()),
                        v => redact(v),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(redact),
            _ => {}
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            redact(&mut v);
            v.to_string()
        }
        Err(_) => format!("<{} bytes, not JSON>", body.len()),
    }
}

/// Registry credentials for the registry at `host`: the environment, else
/// what the auth files hold for it ([`configured_credentials`]).
pub(crate) fn credentials(host: &str) -> Option<(String, String)> {
    if let (Ok(u), Ok(p)) = (
        std::env::var("KILN_REGISTRY_USERNAME"),
        std::env::var("KILN_REGISTRY_PASSWORD"),
    ) {
        return Some((u, p));
    }
    configured_credentials(host)
}

/// The credentials the user stored for exactly `host` (`host[:port]`):
/// containers' `auth.json`, else Docker's `config.json`. The environment's
/// credentials are for the registry named on the command line only.
pub(crate) fn configured_credentials(host: &str) -> Option<(String, String)> {
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(p.into());
    }
    if let Some(p) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(PathBuf::from(p).join("containers/auth.json"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        files.push(PathBuf::from(&h).join(".config/containers/auth.json"));
        files.push(PathBuf::from(&h).join(".docker/config.json"));
    }
    for f in files {
        let Some(v) = std::fs::read(&f)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            continue;
        };
        let auth = v["auths"][host]["auth"]
            .as_str()
            .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok());
        if let Some((u, p)) = auth.and_then(|a| String::from_utf8(a).ok()).and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        }) {
            return Some((u, p));
        }
    }
    None
}

pub(crate) fn basic(u: &str, p: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let o = Origin::of("https://Auth.Example.com/token?x=1").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("auth.example.com", 443));
        assert_eq!(o.to_string(), "https://auth.example.com");
        assert!(o.same(&Origin::of("https://auth.example.com:443/other").unwrap()));
        let o = Origin::of("http://[::1]:5000/token").unwrap();
        assert_eq!(
            (o.host.as_str(), o.port, o.private()),
            ("[::1]", 5000, true)
        );
        assert!(!Origin::of("http://10.0.0.1/token").unwrap().private());
        for bad in ["ftp://h/x", "/token", "https://user:pw@h/x", "not a url"] {
            assert_eq!(Origin::of(bad), None, "{bad}");
        }
    }

    /// Which token services get which credentials.
    #[test]
    fn credentials_go_only_where_they_belong() {
        let o = |u: &str| Origin::of(u).unwrap();
        let configured = |h: &str| (h == "auth.example.com").then(|| format!("stored for {h}"));
        let mine = Some("registry's".to_string());
        let cases: &[(&str, &str, Option<&str>)] = &[
            // Same origin: the registry's own credentials.
            (
                "https://reg.example.com",
                "https://reg.example.com/token",
                Some("registry's"),
            ),
            (
                "http://127.0.0.1:5000",
                "http://127.0.0.1:5000/auth",
                Some("registry's"),
            ),
            (
                "http://localhost:5000",
                "http://LOCALHOST:5000/auth",
                Some("registry's"),
            ),
            // Another host or port over plain HTTP: nothing, even if stored.
            (
                "https://reg.example.com",
                "http://reg.example.com/token",
                None,
            ),
            (
                "https://reg.example.com",
                "http://auth.example.com/token",
                None,
            ),
            ("http://127.0.0.1:5000", "http://10.0.0.2:5000/auth", None),
            // Another port over HTTPS: only what was stored for host:port.
            (
                "https://reg.example.com",
                "https://reg.example.com:8443/token",
                None,
            ),
            // Another host over HTTPS: only what was stored for that host.
            (
                "https://reg.example.com",
                "https://auth.example.com/token",
                Some("stored for auth.example.com"),
            ),
            (
                "https://reg.example.com",
                "https://evil.example.net/token",
                None,
            ),
            // Another port on loopback: only what was stored for it.
            ("http://127.0.0.1:5000", "http://127.0.0.1:5001/auth", None),
        ];
        for (registry, realm, want) in cases {
            let got = realm_credentials(&o(registry), &o(realm), mine.clone(), configured);
            assert_eq!(got.as_deref(), *want, "{registry} -> {realm}");
        }
    }

    #[test]
    fn token_responses_are_redacted() {
        let cases: &[(&[u8], &str)] = &[
            (
                br#"{"token":"eyJhbGciOi.secret","access_token":"eyJhbGciOi.secret","expires_in":300,"issued_at":"2024-01-01T00:00:00Z"}"#,
                r#"{"access_token":"<redacted, 17 bytes>","expires_in":300,"issued_at":"2024-01-01T00:00:00Z","token":"<redacted, 17 bytes>"}"#,
            ),
            (
                br#"{"details":[{"refresh_token":"r3fresh","scope":"pull"}],"Token":null}"#,
                r#"{"Token":"<redacted>","details":[{"refresh_token":"<redacted, 7 bytes>","scope":"pull"}]}"#,
            ),
            (b"eyJhbGciOi.secret", "<17 bytes, not JSON>"),
        ];
        for (body, want) in cases {
            let got = redact_token_response(body);
            assert_eq!(got, *want);
            assert!(!got.contains("secret") && !got.contains("r3fresh"), "{got}");
        }
    }

    #[test]
    fn basic_header() {
        assert_eq!(
            basic("aladdin", "opensesame"),
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l"
        );
    }
}
