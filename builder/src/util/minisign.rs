//! minisign keys and signatures over bytes in memory: loading a secret key
//! (clear or scrypt-encrypted, minisign 0.11's `-W` keys too) and a public
//! key, key ids, trusted comments, and signing and verifying small records.
//! Format: <https://jedisct1.github.io/minisign/>. `publish::sign` builds
//! file signatures and `kiln keygen` on this; the layer cache
//! (`registry::cache`) signs and checks its key entries with it.

use std::fmt::Write as _;
use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use minisign::{PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};
use serde::Serialize;

use crate::util::error::{check_failed, InputError};
/// Where the password of an encrypted secret key comes from when there is no terminal.
pub const PASSWORD_ENV: &str = "KILN_KEY_PASSWORD";

/// Bytes 2..4 of a decoded minisign secret key: the KDF (`Sc` = scrypt, `\0\0` = none).
const KDF_RANGE: std::ops::Range<usize> = 2..4;

/// The checksum at the end of a decoded secret key (BLAKE2b-256).
const UNENCRYPTED_CHK_LEN: usize = 32;

/// minisign's limit on a trusted comment (`COMMENTMAXBYTES` in minisign.h).
const TRUSTED_COMMENT_MAX: usize = 1024;

/// A key id as minisign prints it: the 8 key-id bytes as a little-endian
/// u64 in upper-case hex (`minisign public key 3A1B…`).
pub fn key_id(keynum: &[u8]) -> String {
    let mut b = [0u8; 8];
    b.copy_from_slice(&keynum[..8]);
    format!("{:016X}", u64::from_le_bytes(b))
}

/// The password for a secret key: `$KILN_KEY_PASSWORD`, else a prompt on
/// the terminal (`None`: the minisign crate prompts), else bad input.
pub(crate) fn password(key: &Path) -> Result<Option<String>> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(Some(p));
    }
    if std::io::stdin().is_terminal() {
        return Ok(None);
    }
    Err(InputError::file(
        key.display().to_string(),
        format!(
            "the key is encrypted and there is no terminal to ask for its password: set {PASSWORD_ENV}"
        ),
    )
    .into())
}

/// A secret key ready to sign, with its public half.
pub struct SigningKey {
    sk: SecretKey,
    pk: PublicKey,
    /// The key id.
    pub key_id: String,
    /// Where it was read from.
    pub path: PathBuf,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SigningKey({} from {})",
            self.key_id,
            self.path.display()
        )
    }
}

impl SigningKey {
    /// Read a minisign secret key; an encrypted one is decrypted with the
    /// password from `$KILN_KEY_PASSWORD` or a prompt.
    pub fn load(path: &Path) -> Result<SigningKey> {
        let bad = |m: String| InputError::file(path.display().to_string(), m);
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read the secret key: {e}")))?;
        let encoded = text
            .lines()
            .nth(1)
            .ok_or_else(|| bad("not a minisign secret key (no second line)".into()))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| bad(format!("not a minisign secret key: {e}")))?;
        let kdf = raw
            .get(KDF_RANGE)
            .ok_or_else(|| bad("not a minisign secret key (too short)".into()))?;
        let sk_box = SecretKeyBox::from_string(&text)
            .map_err(|e| bad(format!("not a minisign secret key: {e}")))?;
        let sk = match kdf {
            // minisign 0.11's `-W` keys carry an all-zero checksum, which the
            // crate calls corrupt; read those raw. Corruption still shows: the
            // signature made with them is checked against the public half.
            [0, 0]
                if raw.len() >= UNENCRYPTED_CHK_LEN
                    && raw[raw.len() - UNENCRYPTED_CHK_LEN..]
                        .iter()
                        .all(|&b| b == 0) =>
            {
                SecretKey::from_bytes(&raw)
            }
            [0, 0] => SecretKey::from_unencrypted_box(sk_box),
            b"Sc" => SecretKey::from_box(sk_box, password(path)?),
            other => return Err(bad(format!("unsupported key encryption {other:?}")).into()),
        }
        .map_err(|e| bad(format!("cannot open the secret key: {e}")))?;
        let pk = PublicKey::from_secret_key(&sk).map_err(|e| bad(e.to_string()))?;
        Ok(SigningKey {
            key_id: key_id(pk.keynum()),
            sk,
            pk,
            path: path.to_path_buf(),
        })
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.pk
    }

    /// Sign a file (streamed, prehashed) with a trusted comment; returns the
    /// `.minisig` text.
    pub fn sign_file(&self, file: &Path, trusted: &TrustedComment) -> Result<String> {
        let comment = trusted.render();
        anyhow::ensure!(
            comment.len() <= TRUSTED_COMMENT_MAX,
            crate::input_err!(
                file.display().to_string(),
                "its trusted comment is longer than minisign's {TRUSTED_COMMENT_MAX} bytes"
            )
        );
        let f = File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let untrusted = format!("signature from kiln secret key {}", self.key_id);
        let sig = minisign::sign(
            Some(&self.pk),
            &self.sk,
            std::io::BufReader::new(f),
            Some(&comment),
            Some(&untrusted),
        )
        .map_err(|e| crate::env_err!("signing {}: {e}", file.display()))?;
        Ok(sig.into_string())
    }
}

/// A trusted comment: minisign's tab-separated `key:value` fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrustedComment {
    /// Seconds since the epoch when it was signed.
    pub timestamp: Option<u64>,
    /// The signed file's name.
    pub file: Option<String>,
    /// The image digest (`sha256:…`) the file belongs to.
    pub digest: Option<String>,
    /// The image name.
    pub name: Option<String>,
    /// The image version.
    pub version: Option<String>,
    /// Fields kiln does not know (minisign's `hashed`, other tools' fields).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<String>,
}

impl TrustedComment {
    /// A comment for `file` of image `digest` (name and version when known), stamped now.
    pub fn for_image(file: &str, digest: &str, name: Option<&str>, version: Option<&str>) -> Self {
        let now = crate::util::time::unix_now().max(0) as u64;
        TrustedComment {
            timestamp: Some(now),
            file: Some(file.into()),
            digest: Some(digest.into()),
            name: name.map(Into::into),
            version: version.map(Into::into),
            other: Vec::new(),
        }
    }

    /// The comment as signed. Tabs and newlines in values become spaces.
    pub fn render(&self) -> String {
        let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
        let mut out = String::new();
        let mut field = |k: &str, v: &str| {
            if !out.is_empty() {
                out.push('\t');
            }
            let _ = write!(out, "{k}:{}", clean(v));
        };
        if let Some(t) = self.timestamp {
            field("timestamp", &t.to_string());
        }
        for (k, v) in [
            ("file", &self.file),
            ("digest", &self.digest),
            ("name", &self.name),
            ("version", &self.version),
        ] {
            if let Some(v) = v {
                field(k, v);
            }
        }
        for o in &self.other {
            if !out.is_empty() {
                out.push('\t');
            }
            out.push_str(&clean(o));
        }
        out
    }

    /// Parse a trusted comment (kiln's, or minisign's default
    /// `timestamp:…⇥file:…⇥hashed`). Unknown fields are kept in `other`.
    pub fn parse(s: &str) -> Self {
        let mut c = TrustedComment::default();
        for part in s.split('\t').filter(|p| !p.is_empty()) {
            match part.split_once(':') {
                Some(("timestamp", v)) if v.parse::<u64>().is_ok() => c.timestamp = v.parse().ok(),
                Some(("file", v)) => c.file = Some(v.into()),
                Some(("digest", v)) => c.digest = Some(v.into()),
                Some(("name", v)) => c.name = Some(v.into()),
                Some(("version", v)) => c.version = Some(v.into()),
                _ => c.other.push(part.into()),
            }
        }
        c
    }
}

/// Read a minisign public key file.
pub fn load_public_key(path: &Path) -> Result<PublicKey> {
    let bad = |m: String| InputError::file(path.display().to_string(), m);
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("cannot read the public key: {e}")))?;
    // A bare base64 line (as `minisign -P` takes) or the two-line .pub file.
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .ok_or_else(|| bad("not a minisign public key (no key line)".into()))?;
    Ok(PublicKey::from_base64(line)
        .or_else(|_| PublicKeyBox::from_string(&text).and_then(|b| b.into_public_key()))
        .map_err(|e| bad(format!("not a minisign public key: {e}")))?)
}

impl SigningKey {
    /// Sign bytes held in memory (prehashed, as [`SigningKey::sign_file`])
    /// with `trusted` as the trusted comment; returns the `.minisig` text.
    pub fn sign_bytes(&self, data: &[u8], trusted: &str) -> Result<String> {
        anyhow::ensure!(
            trusted.len() <= TRUSTED_COMMENT_MAX,
            crate::internal_err!(
                "trusted comment is longer than minisign's {TRUSTED_COMMENT_MAX} bytes"
            )
        );
        let untrusted = format!("signature from kiln secret key {}", self.key_id);
        let sig = minisign::sign(
            Some(&self.pk),
            &self.sk,
            std::io::Cursor::new(data),
            Some(trusted),
            Some(&untrusted),
        )
        .map_err(|e| crate::env_err!("signing with key {}: {e}", self.key_id))?;
        Ok(sig.into_string())
    }
}

/// Whether kiln accepts `sig` for checking with `pk` at all: made by exactly
/// this key, and prehashed (as minisign >= 0.11 requires). Returns the key's
/// id, or why not.
pub fn acceptable(sig: &SignatureBox, pk: &PublicKey) -> Result<String, String> {
    let signer = key_id(sig.keynum());
    let ours = key_id(pk.keynum());
    if signer != ours {
        return Err(format!(
            "signed by key {signer}, not by the given public key {ours}"
        ));
    }
    if !sig.is_prehashed() {
        return Err("legacy (not prehashed) signature refused".into());
    }
    Ok(ours)
}

/// Verify bytes held in memory (`what`, for errors) against the text of a
/// `.minisig` and a public key; returns the trusted comment. Only prehashed
/// signatures by exactly this key are accepted. A bad signature is an
/// exit-1 error ([`check_failed`]).
pub fn verify_bytes(what: &str, data: &[u8], signature: &str, pk: &PublicKey) -> Result<String> {
    let fail = |m: String| check_failed(format!("{what}: {m}"));
    let sig = SignatureBox::from_string(signature)
        .map_err(|e| fail(format!("not a minisign signature: {e}")))?;
    let ours = acceptable(&sig, pk).map_err(fail)?;
    minisign::verify(pk, &sig, std::io::Cursor::new(data), true, false, false)
        .map_err(|e| fail(format!("signature does not verify with key {ours}: {e}")))?;
    sig.trusted_comment()
        .map_err(|e| fail(format!("no trusted comment: {e}")))
}
