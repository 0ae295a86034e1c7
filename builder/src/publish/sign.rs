//! Keys and signatures in minisign's format, so that the stock `minisign -V`
//! verifies what kiln signs and kiln verifies what `minisign -S` signs.
//!
//! The format (<https://jedisct1.github.io/minisign/>): Ed25519 keys with an
//! 8-byte key id; the secret key optionally encrypted with scrypt (`Sc`) or
//! stored in the clear (`\0\0`, minisign's `-W`); signatures are always
//! *prehashed* (`ED`: Ed25519 over the BLAKE2b-512 of the file, so a disk
//! image is streamed, never held in memory), followed by a *trusted
//! comment* signed together with the signature. The encoding and the
//! cryptography come from the `minisign` crate (0.10), which interoperates
//! with Debian's minisign 0.11 in both directions (checked by the tests below
//! against the real binary).
//!
//! kiln's trusted comments are minisign-style `key:value` fields separated by
//! tabs, and carry the image the file belongs to:
//! `timestamp:1700000000⇥file:hello-1.0.raw⇥digest:sha256:…⇥name:hello⇥version:1.0`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use minisign::{PublicKey, SignatureBox};
use serde::Serialize;

use crate::read::locate;
use crate::store::Store;
use crate::util::digest::Digest;
use crate::util::error::{check_failed, InputError};
use crate::util::minisign::password;
pub use crate::util::minisign::{
    key_id, load_public_key, SigningKey, TrustedComment, PASSWORD_ENV,
};

/// Write a file that must not exist yet: a temporary file beside it, `mode`,
/// fsync, then a no-clobber rename. An existing `path` is an error, even if
/// another writer created it a moment ago.
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    write_new_with(path, mode, |f| f.write_all(data).map_err(Into::into))
}

/// [`write_new`] of what `fill` writes.
pub fn write_new_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> Result<()>,
) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    crate::store::write_file(
        dir.unwrap_or(Path::new(".")),
        path,
        mode,
        crate::store::Replace::No,
        fill,
    )
}

/// What `kiln keygen` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct KeygenReport {
    /// The secret key file.
    pub secret_key: PathBuf,
    /// The public key file (`PATH.pub`).
    pub public_key: PathBuf,
    /// The key id, as minisign prints it.
    pub key_id: String,
    /// Whether the secret key is password-protected.
    pub encrypted: bool,
}

/// `PATH.pub` for a secret key at `PATH`.
pub fn pub_path(secret: &Path) -> PathBuf {
    let mut s = secret.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Write a new key pair: the secret key at `output` (mode 0600) and the
/// public key at `output.pub`. Neither may exist. With `encrypted`, the
/// password comes from `$KILN_KEY_PASSWORD` or a prompt.
pub fn keygen(output: &Path, encrypted: bool) -> Result<KeygenReport> {
    let public = pub_path(output);
    for p in [output, public.as_path()] {
        if p.exists() {
            return Err(InputError::file(
                p.display().to_string(),
                "already exists; kiln never overwrites a key",
            )
            .into());
        }
    }
    let pair = if encrypted {
        minisign::KeyPair::generate_encrypted_keypair(password(output)?)
    } else {
        minisign::KeyPair::generate_unencrypted_keypair()
    }
    .map_err(|e| crate::env_err!("generating a key pair: {e}"))?;
    let id = key_id(pair.pk.keynum());
    let sk_comment = if encrypted {
        "minisign encrypted secret key"
    } else {
        "minisign unencrypted secret key"
    };
    let sk_box = pair
        .sk
        .to_box(Some(sk_comment))
        .map_err(|e| crate::internal_err!("encoding the secret key: {e}"))?;
    let pk_box = pair
        .pk
        .to_box()
        .map_err(|e| crate::internal_err!("encoding the public key: {e}"))?;
    write_new(output, &sk_box.to_bytes(), 0o600)?;
    write_new(&public, &pk_box.to_bytes(), 0o644)?;
    Ok(KeygenReport {
        secret_key: output.to_path_buf(),
        public_key: public,
        key_id: id,
        encrypted,
    })
}

/// What a good signature says.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// The file checked.
    pub file: PathBuf,
    /// The signature file.
    pub signature: PathBuf,
    /// The signer's key id.
    pub key_id: String,
    /// The trusted comment, as signed.
    pub trusted_comment: String,
    /// Its fields.
    pub fields: TrustedComment,
}

/// `FILE.minisig`.
pub fn sig_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".minisig");
    PathBuf::from(s)
}

/// Verify `file` (streamed) against a `.minisig` and a public key. Only
/// prehashed signatures are accepted, as minisign ≥ 0.11 does. A bad or
/// unreadable signature is an exit-1 error ([`check_failed`]) naming the file.
pub fn verify_file(file: &Path, signature: &Path, pk: &PublicKey) -> Result<Verified> {
    verify_named(file, &file.display().to_string(), signature, pk)
}

/// [`verify_file`] with the name errors give the file (for a staged copy).
pub fn verify_named(file: &Path, name: &str, signature: &Path, pk: &PublicKey) -> Result<Verified> {
    let fail = |m: String| check_failed(format!("{name}: {m}"));
    let text = std::fs::read_to_string(signature).map_err(|e| {
        fail(format!(
            "cannot read signature {}: {e}",
            signature.display()
        ))
    })?;
    let sig = SignatureBox::from_string(&text).map_err(|e| {
        fail(format!(
            "{} is not a minisign signature: {e}",
            signature.display()
        ))
    })?;
    let ours = crate::util::minisign::acceptable(&sig, pk).map_err(fail)?;
    let signer = ours.clone();
    let f = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    minisign::verify(pk, &sig, std::io::BufReader::new(f), true, false, false).map_err(|e| {
        fail(format!(
            "signature {} does not verify with key {ours}: {e}",
            signature.display()
        ))
    })?;
    let trusted = sig
        .trusted_comment()
        .map_err(|e| fail(format!("no trusted comment: {e}")))?;
    Ok(Verified {
        file: file.to_path_buf(),
        signature: signature.to_path_buf(),
        key_id: signer,
        fields: TrustedComment::parse(&trusted),
        trusted_comment: trusted,
    })
}

/// The image a file belongs to: (digest, name, version), from the image's
/// manifest ([`locate`]) or from the file itself being a kiln manifest.
/// A manifest that fails its checks is an error: its name and version would
/// go into the trusted comment.
fn image_identity(
    store: &Store,
    file: &Path,
    file_digest: &Digest,
) -> Result<Option<(String, String, String)>> {
    let found = match locate::locate(store, file, file_digest)?.found {
        Some(found) => Some(found),
        None => locate::manifest_file(file)?,
    };
    Ok(found.map(|f| {
        (
            f.manifest.image.digest.to_string(),
            f.manifest.name,
            f.manifest.version,
        )
    }))
}

/// What `kiln sign` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SignReport {
    /// The signed file.
    pub file: PathBuf,
    /// The signature written.
    pub signature: PathBuf,
    /// The key id.
    pub key_id: String,
    /// The trusted comment.
    pub trusted_comment: String,
}

/// `kiln sign FILE --key K`: sign a file, naming its image in the trusted comment.
pub fn sign(store: &Store, file: &Path, key: &Path, output: Option<&Path>) -> Result<SignReport> {
    crate::read::locate::regular_file(file)?;
    let key = SigningKey::load(key)?;
    let digest = Digest::of_file(file)?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let comment = match image_identity(store, file, &digest)? {
        Some((d, n, v)) => TrustedComment::for_image(&name, &d, Some(&n), Some(&v)),
        None => TrustedComment::for_image(&name, &digest.to_string(), None, None),
    };
    let text = key.sign_file(file, &comment)?;
    let out = output.map_or_else(|| sig_path(file), Path::to_path_buf);
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty());
    crate::store::write_atomic(dir.unwrap_or(Path::new(".")), &out, text.as_bytes())?;
    Ok(SignReport {
        file: file.to_path_buf(),
        signature: out,
        key_id: key.key_id,
        trusted_comment: comment.render(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::run_with_stdin;
    use std::process::{Command, Stdio};

    /// The stock minisign, or a loud failure naming the package.
    fn minisign() -> Command {
        assert!(
            crate::util::exec::have_program("minisign"),
            "`minisign` is missing: install the Debian package `minisign` (scripts/setup-host.sh does)"
        );
        let mut c = Command::new("minisign");
        c.stdin(Stdio::null());
        c
    }

    fn run(mut c: Command) -> std::process::Output {
        c.output().expect("running minisign")
    }

    fn data_file(dir: &Path) -> PathBuf {
        let p = dir.join("disk.raw");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&p, data).unwrap();
        p
    }

    fn flip(path: &Path, at: usize) -> PathBuf {
        let mut b = std::fs::read(path).unwrap();
        b[at] ^= 1;
        let p = path.with_extension("tampered");
        std::fs::write(&p, b).unwrap();
        p
    }

    #[test]
    fn trusted_comment_round_trips_and_reads_minisigns_default() {
        let c = TrustedComment {
            timestamp: Some(1700000000),
            file: Some("hello-1.0.raw".into()),
            digest: Some(format!("sha256:{}", "ab".repeat(32))),
            name: Some("hello".into()),
            version: Some("1.0".into()),
            other: vec![],
        };
        let s = c.render();
        assert_eq!(
            s,
            format!(
                "timestamp:1700000000\tfile:hello-1.0.raw\tdigest:sha256:{}\tname:hello\tversion:1.0",
                "ab".repeat(32)
            )
        );
        assert_eq!(TrustedComment::parse(&s), c);
        let m = TrustedComment::parse("timestamp:1732233600\tfile:x.raw\thashed");
        assert_eq!(m.timestamp, Some(1732233600));
        assert_eq!(m.file.as_deref(), Some("x.raw"));
        assert_eq!(m.other, ["hashed"]);
        // Values cannot smuggle in fields.
        let evil = TrustedComment {
            name: Some("a\tversion:9".into()),
            ..Default::default()
        };
        assert_eq!(TrustedComment::parse(&evil.render()).version, None);
    }

    #[test]
    fn kiln_signs_and_stock_minisign_verifies_and_rejects_a_flipped_byte() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("ci.key");
        let rep = keygen(&key, false).unwrap();
        assert!(key.is_file() && rep.public_key.is_file());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Never overwrites a key.
        assert_eq!(
            crate::util::error::exit_code(&keygen(&key, false).unwrap_err()),
            2
        );

        let file = data_file(dir.path());
        let store = Store::new(dir.path().join("store"));
        let r = sign(&store, &file, &key, None).unwrap();
        assert_eq!(r.key_id, rep.key_id);
        let sig = std::fs::read_to_string(sig_path(&file)).unwrap();
        assert!(sig.contains("trusted comment: timestamp:"), "{sig}");

        let mut c = minisign();
        c.arg("-Vm")
            .arg(&file)
            .arg("-p")
            .arg(&rep.public_key)
            .arg("-x")
            .arg(sig_path(&file));
        let out = run(c);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "minisign -V refused kiln's signature: {text}"
        );
        assert!(text.contains("file:disk.raw"), "{text}");

        // minisign signs with kiln's unencrypted key.
        let mut c = minisign();
        c.arg("-S")
            .arg("-s")
            .arg(&key)
            .arg("-m")
            .arg(&file)
            .arg("-x")
            .arg(dir.path().join("m.minisig"));
        let out = run(c);
        assert!(
            out.status.success(),
            "minisign -S with kiln's key: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pk = load_public_key(&rep.public_key).unwrap();
        verify_file(&file, &dir.path().join("m.minisig"), &pk).unwrap();

        // The public key line also works with minisign -P, and the key id matches.
        let pubtext = std::fs::read_to_string(&rep.public_key).unwrap();
        assert!(pubtext.contains(&rep.key_id), "{pubtext}");

        let bad = flip(&file, 123_456);
        let mut c = minisign();
        c.arg("-Vm")
            .arg(&bad)
            .arg("-p")
            .arg(&rep.public_key)
            .arg("-x")
            .arg(sig_path(&file));
        assert!(!run(c).status.success(), "minisign accepted a flipped byte");
        let err = verify_file(&bad, &sig_path(&file), &pk).unwrap_err();
        assert_eq!(crate::util::error::exit_code(&err), 1);
        assert!(format!("{err:#}").contains("disk.tampered"), "{err:#}");
        let ok = verify_file(&file, &sig_path(&file), &pk).unwrap();
        assert_eq!(ok.fields.file.as_deref(), Some("disk.raw"));
    }

    #[test]
    fn stock_minisign_signs_and_kiln_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let (p, s) = (dir.path().join("m.pub"), dir.path().join("m.key"));
        let mut c = minisign();
        c.arg("-GW").arg("-p").arg(&p).arg("-s").arg(&s);
        let out = run(c);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = data_file(dir.path());
        let mut c = minisign();
        c.arg("-S")
            .arg("-s")
            .arg(&s)
            .arg("-m")
            .arg(&file)
            .arg("-t")
            .arg("timestamp:1\tfile:disk.raw\tname:hello");
        let out = run(c);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pk = load_public_key(&p).unwrap();
        let v = verify_file(&file, &sig_path(&file), &pk).unwrap();
        assert_eq!(v.fields.name.as_deref(), Some("hello"));
        let bad = flip(&file, 7);
        assert_eq!(
            crate::util::error::exit_code(&verify_file(&bad, &sig_path(&file), &pk).unwrap_err()),
            1
        );

        // And kiln signs with the key minisign made (unencrypted, -W).
        let store = Store::new(dir.path().join("store"));
        let out_sig = dir.path().join("k.minisig");
        sign(&store, &file, &s, Some(&out_sig)).unwrap();
        verify_file(&file, &out_sig, &pk).unwrap();
    }

    #[test]
    fn encrypted_keys_interoperate_both_ways() {
        // kiln's encrypted key (password from the environment, as in CI) signs
        // for minisign; minisign's encrypted key opens in kiln.
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var(PASSWORD_ENV, "correct horse");
        let key = dir.path().join("enc.key");
        let rep = keygen(&key, true).unwrap();
        assert!(std::fs::read_to_string(&key).unwrap().contains("encrypted"));
        let file = data_file(dir.path());
        let (ok, _, err) = run_with_stdin(
            minisign()
                .arg("-S")
                .arg("-s")
                .arg(&key)
                .arg("-m")
                .arg(&file),
            b"correct horse\n",
        );
        assert!(ok, "minisign could not open kiln's encrypted key: {err}");
        let pk = load_public_key(&rep.public_key).unwrap();
        verify_file(&file, &sig_path(&file), &pk).unwrap();

        let (p, s) = (dir.path().join("m.pub"), dir.path().join("m.key"));
        let (ok, _, err) = run_with_stdin(
            minisign().arg("-G").arg("-p").arg(&p).arg("-s").arg(&s),
            b"correct horse\ncorrect horse\n",
        );
        assert!(ok, "{err}");
        let k = SigningKey::load(&s).unwrap();
        assert_eq!(k.key_id, key_id(load_public_key(&p).unwrap().keynum()));
        std::env::set_var(PASSWORD_ENV, "wrong");
        let err = SigningKey::load(&s).unwrap_err();
        assert_eq!(crate::util::error::exit_code(&err), 2, "{err:#}");
        std::env::remove_var(PASSWORD_ENV);
    }
}
