//! Keys, signatures and releases for people: `kiln keygen`, `sign`, `verify`,
//! `publish`, `releases`, `promote`, `rollback` and `pull`. A channel's
//! history is one line per entry, newest last, the current one marked `*`.

use std::io::{self, Write};

use crate::publish::oci::PullReport;
use crate::publish::release::{ChannelReport, PublishReport};
use crate::publish::sign::{KeygenReport, SignReport, Verified};
use crate::util::printable::PrintableExt as _;

use super::short_digest;

/// `kiln keygen`: where the two keys went and the key id.
pub fn keygen(mut out: impl Write, r: &KeygenReport) -> io::Result<()> {
    writeln!(out, "secret key {}", r.secret_key.display().printable())?;
    writeln!(out, "public key {}", r.public_key.display().printable())?;
    writeln!(out, "key id     {}", r.key_id)
}

/// `kiln keygen --secure-boot`: each key pair's files and certificate
/// fingerprint.
pub fn secure_boot_keygen(
    mut out: impl Write,
    r: &crate::image::secureboot::KeygenReport,
) -> io::Result<()> {
    for k in &r.keys {
        writeln!(
            out,
            "{:<4} {} {} {}",
            k.name.printable(),
            k.key.display().printable(),
            k.cert.display().printable(),
            short_digest(&k.cert_fingerprint)
        )?;
    }
    Ok(())
}

/// `kiln sign`: the signature file, the key id and the trusted comment (its
/// tabs shown as spaces).
pub fn signed(mut out: impl Write, r: &SignReport) -> io::Result<()> {
    writeln!(out, "signature {}", r.signature.display().printable())?;
    writeln!(out, "key id    {}", r.key_id.printable())?;
    writeln!(
        out,
        "trusted   {}",
        r.trusted_comment.replace('\t', " ").printable()
    )
}

/// `kiln verify`: the file, that its signature verified and with which key,
/// and the trusted comment.
pub fn verified(mut out: impl Write, v: &Verified) -> io::Result<()> {
    writeln!(
        out,
        "{}: signature OK, key id {}",
        v.file.display().printable(),
        v.key_id.printable()
    )?;
    writeln!(
        out,
        "trusted {}",
        v.trusted_comment.replace('\t', " ").printable()
    )
}

/// `kiln publish … --channel CHANNEL`: the release, the verdict that allowed
/// it, each file signed (or found already published), the channel entry and
/// the OCI pushes.
pub fn published(mut out: impl Write, r: &PublishReport, channel: &str) -> io::Result<()> {
    writeln!(
        out,
        "{} {} {}",
        r.name.printable(),
        r.version.printable(),
        r.digest.printable()
    )?;
    let boot = if r.secure_boot {
        "booted with Secure Boot enforced"
    } else {
        "booted without Secure Boot"
    };
    writeln!(out, "verdict  {} ({boot})", r.verdict.printable())?;
    for f in &r.files {
        let state = if f.existed {
            "already published"
        } else {
            "signed"
        };
        writeln!(out, "  {} ({state})", f.path.display().printable())?;
    }
    match &r.entry {
        Some(e) => writeln!(
            out,
            "channel  {} #{} now current (key {})",
            e.channel.printable(),
            e.seq,
            e.key_id.printable()
        )?,
        None => writeln!(out, "channel  {}: already current", channel.printable())?,
    }
    for o in &r.oci {
        writeln!(out, "pushed   {}", o.reference.printable())?;
    }
    Ok(())
}

/// A channel's history: newest last, the current entry marked `*`, digests
/// shortened.
pub fn channel(mut out: impl Write, r: &ChannelReport) -> io::Result<()> {
    writeln!(out, "channel {}", r.channel.printable())?;
    for e in &r.history {
        let mark = if r.current.as_ref().is_some_and(|c| c.seq == e.seq) {
            "*"
        } else {
            " "
        };
        let how = match (&e.from, &e.replaces) {
            (Some(f), _) => format!("from {}", f.printable()),
            (_, Some(d)) => format!("replaces {}", d.short()),
            _ => String::new(),
        };
        let line = format!(
            "{mark} {:>3} {:<8} {:<10} {} {} {} {how}",
            e.seq,
            format!("{:?}", e.action).to_lowercase(),
            e.version.printable(),
            e.digest.short(),
            e.time.printable(),
            e.key_id.printable()
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// `kiln releases`: every channel asked for, one after another.
pub fn channels(mut out: impl Write, reports: &[ChannelReport]) -> io::Result<()> {
    for r in reports {
        channel(&mut out, r)?;
    }
    Ok(())
}

/// `kiln promote DIGEST --to TO`: a note when the release was already current
/// there, then the channel.
pub fn promoted(
    mut out: impl Write,
    digest: &str,
    to: &str,
    already_current: bool,
    r: &ChannelReport,
) -> io::Result<()> {
    if already_current {
        writeln!(
            out,
            "{} is already current on {}",
            digest.printable(),
            to.printable()
        )?;
    }
    channel(out, r)
}

/// `kiln pull`: the image, its digest and the key its signature verified
/// with, then the files written.
pub fn pulled(mut out: impl Write, r: &PullReport) -> io::Result<()> {
    writeln!(
        out,
        "{} {} {} (signature OK, key {})",
        r.name.printable(),
        r.version.printable(),
        r.digest.printable(),
        r.key_id.printable()
    )?;
    for f in &r.files {
        writeln!(out, "  {}", f.display().printable())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::tests::{text, EMPTY};
    use super::*;
    use crate::publish::oci::PushReport;
    use crate::publish::release::{Action, Entry};
    use crate::publish::sign::TrustedComment;
    use crate::publish::PublishedFile;

    const TRUSTED: &str = "timestamp:1700000000\tfile:hello-1.0.raw";

    #[test]
    fn secure_boot_keys() {
        use crate::image::secureboot::{GeneratedKey, KeygenReport};
        let r = KeygenReport {
            dir: PathBuf::from("sb"),
            keys: ["PK", "db"]
                .iter()
                .map(|n| GeneratedKey {
                    name: (*n).into(),
                    key: PathBuf::from(format!("sb/{n}.key")),
                    cert: PathBuf::from(format!("sb/{n}.crt")),
                    cert_fingerprint: EMPTY.into(),
                })
                .collect(),
        };
        assert_eq!(
            text(|o| secure_boot_keygen(o, &r)),
            "PK   sb/PK.key sb/PK.crt sha256:e3b0c44298fc\n\
             db   sb/db.key sb/db.crt sha256:e3b0c44298fc\n"
        );
    }

    #[test]
    fn keys_and_signatures() {
        let k = KeygenReport {
            secret_key: PathBuf::from("ci.key"),
            public_key: PathBuf::from("ci.key.pub"),
            key_id: "1A2B3C4D5E6F7081".into(),
            encrypted: false,
        };
        let s = SignReport {
            file: PathBuf::from("out/hello-1.0.raw"),
            signature: PathBuf::from("out/hello-1.0.raw.minisig"),
            key_id: "1A2B3C4D5E6F7081".into(),
            trusted_comment: TRUSTED.into(),
        };
        let v = Verified {
            file: PathBuf::from("out/hello-1.0.raw"),
            signature: PathBuf::from("out/hello-1.0.raw.minisig"),
            key_id: "1A2B3C4D5E6F7081".into(),
            trusted_comment: TRUSTED.into(),
            fields: TrustedComment::parse(TRUSTED),
        };
        for (got, want) in [
            (
                text(|o| keygen(o, &k)),
                "secret key ci.key\npublic key ci.key.pub\nkey id     1A2B3C4D5E6F7081\n",
            ),
            (
                text(|o| signed(o, &s)),
                "signature out/hello-1.0.raw.minisig\n\
                 key id    1A2B3C4D5E6F7081\n\
                 trusted   timestamp:1700000000 file:hello-1.0.raw\n",
            ),
            (
                text(|o| verified(o, &v)),
                "out/hello-1.0.raw: signature OK, key id 1A2B3C4D5E6F7081\n\
                 trusted timestamp:1700000000 file:hello-1.0.raw\n",
            ),
        ] {
            assert_eq!(got, want);
        }
    }

    fn entry(seq: u64, action: Action, digest: &str) -> Entry {
        Entry {
            schema: "kiln.release/v1".into(),
            seq,
            channel: "stable".into(),
            action,
            name: "hello".into(),
            version: format!("1.{seq}"),
            digest: digest.parse().unwrap(),
            time: "2024-05-01T12:00:00Z".into(),
            key_id: "1A2B3C4D5E6F7081".into(),
            path: format!("hello/1.{seq}"),
            from: None,
            replaces: None,
            oci: Vec::new(),
        }
    }

    fn stable() -> ChannelReport {
        let promoted = Entry {
            from: Some("canary".into()),
            ..entry(2, Action::Promote, EMPTY)
        };
        let rollback = Entry {
            replaces: Some(EMPTY.parse().unwrap()),
            ..entry(3, Action::Rollback, EMPTY)
        };
        ChannelReport {
            channel: "stable".into(),
            current: Some(rollback.clone()),
            history: vec![entry(1, Action::Publish, EMPTY), promoted, rollback],
        }
    }

    const STABLE: &str = "channel stable\n\
        \x20   1 publish  1.1        sha256:e3b0c44298fc 2024-05-01T12:00:00Z 1A2B3C4D5E6F7081\n\
        \x20   2 promote  1.2        sha256:e3b0c44298fc 2024-05-01T12:00:00Z 1A2B3C4D5E6F7081 from canary\n\
        *   3 rollback 1.3        sha256:e3b0c44298fc 2024-05-01T12:00:00Z 1A2B3C4D5E6F7081 replaces sha256:e3b0c44298fc\n";

    #[test]
    fn channel_history_table() {
        let empty = ChannelReport {
            channel: "canary".into(),
            current: None,
            history: Vec::new(),
        };
        let both = [stable(), empty];
        for (got, want) in [
            (text(|o| channel(o, &both[0])), STABLE.to_string()),
            (
                text(|o| channels(o, &both)),
                format!("{STABLE}channel canary\n"),
            ),
            (text(|o| channels(o, &[])), String::new()),
            (
                text(|o| promoted(o, "sha256:e3b0", "stable", true, &both[0])),
                format!("sha256:e3b0 is already current on stable\n{STABLE}"),
            ),
            (
                text(|o| promoted(o, "sha256:e3b0", "stable", false, &both[0])),
                STABLE.to_string(),
            ),
        ] {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn published_table() {
        let file = |path: &str, existed| PublishedFile {
            path: PathBuf::from(path),
            signature: PathBuf::from(format!("{path}.minisig")),
            digest: EMPTY.parse().unwrap(),
            existed,
        };
        let first = PublishReport {
            name: "hello".into(),
            version: "1.0".into(),
            digest: EMPTY.parse().unwrap(),
            dir: PathBuf::from("rel/hello/1.0"),
            files: vec![
                file("rel/hello/1.0/hello-1.0.raw", false),
                file("rel/hello/1.0/hello-1.0.manifest.json", true),
            ],
            entry: Some(entry(1, Action::Publish, EMPTY)),
            key_id: "1A2B3C4D5E6F7081".into(),
            verdict: "verdicts/e3b0/1.json".into(),
            secure_boot: false,
            oci: vec![PushReport {
                reference: "localhost:5000/hello:1.0@sha256:e3b0".into(),
                manifest_digest: EMPTY.parse().unwrap(),
                layer_digest: EMPTY.parse().unwrap(),
                layer_size: 1,
                referrers: Vec::new(),
            }],
        };
        let again = PublishReport {
            files: Vec::new(),
            entry: None,
            oci: Vec::new(),
            ..first.clone()
        };
        let head =
            "hello 1.0 sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
                    verdict  verdicts/e3b0/1.json (booted without Secure Boot)\n";
        let secure = PublishReport {
            secure_boot: true,
            ..again.clone()
        };
        assert!(text(|o| published(o, &secure, "stable"))
            .contains("verdict  verdicts/e3b0/1.json (booted with Secure Boot enforced)\n"));
        for (r, tail) in [
            (
                &first,
                "  rel/hello/1.0/hello-1.0.raw (signed)\n\
                 \x20 rel/hello/1.0/hello-1.0.manifest.json (already published)\n\
                 channel  stable #1 now current (key 1A2B3C4D5E6F7081)\n\
                 pushed   localhost:5000/hello:1.0@sha256:e3b0\n",
            ),
            (&again, "channel  stable: already current\n"),
        ] {
            assert_eq!(text(|o| published(o, r, "stable")), format!("{head}{tail}"));
        }
    }

    #[test]
    fn pulled_lists_files() {
        let r = PullReport {
            image: PathBuf::from("out/hello-1.0.raw"),
            digest: EMPTY.parse().unwrap(),
            name: "hello".into(),
            version: "1.0".into(),
            files: vec![
                PathBuf::from("out/hello-1.0.raw"),
                PathBuf::from("out/hello-1.0.manifest.json"),
            ],
            key_id: "1A2B3C4D5E6F7081".into(),
            manifest_digest: EMPTY.parse().unwrap(),
        };
        assert_eq!(
            text(|o| pulled(o, &r)),
            "hello 1.0 sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 \
             (signature OK, key 1A2B3C4D5E6F7081)\n\
             \x20 out/hello-1.0.raw\n\
             \x20 out/hello-1.0.manifest.json\n"
        );
    }
}
