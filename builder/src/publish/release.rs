//! The release store, channels and `kiln publish` (ARCHITECTURE.md "Publication").
//!
//! ```text
//! RELEASES/                                  default STORE/releases, or publish --to DIR
//!   NAME/VERSION/NAME-VERSION.raw            the image, byte for byte what was tested
//!   NAME/VERSION/NAME-VERSION.manifest.json  its kiln manifest
//!   NAME/VERSION/NAME-VERSION.roothash       its root hash, for systemd (disk images)
//!   NAME/VERSION/NAME-VERSION.spdx.json      its SBOM, when the build wrote one
//!   NAME/VERSION/NAME-VERSION.verdict.json   the passing boot-test verdict
//!   NAME/VERSION/NAME-VERSION.provenance.json  in-toto Statement v1 + SLSA provenance
//!   NAME/VERSION/*.minisig                   a minisign signature beside each file
//!   channels/CHANNEL/NNNNNN.json             the channel's history, one entry per file
//!   lock                                     flock(2) held while publishing
//! ```
//! Published files are written once and never replaced: publishing the
//! same image again (to another channel) reuses them, and a different image
//! under a published NAME/VERSION is refused. A publish writes and signs
//! every new file in a scratch directory beside them first ([`Staged`]) and
//! only then links them into place, signatures first, so a publish that
//! fails (a full disk) leaves no file of its own behind, and no file is ever
//! there without its signature; one killed while linking is completed by
//! the next run (its scratch swept).
//! Channel history is append-only. A channel's current release is found by
//! replaying it: `publish` and `promote` make a release current, `rollback`
//! returns to the release that was current before it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::manifest::Manifest;
use crate::publish::sign::{self, SigningKey, TrustedComment};
use crate::publish::PublishedFile;
use crate::read::locate::{self, Located};
use crate::store::verdict;
use crate::store::Store;
use crate::util::digest::Digest;
use crate::util::error::{check_failed, InputError};
use crate::util::scratch::{self, ScratchDir};

/// Schema of a channel history entry.
pub const SCHEMA: &str = "kiln.release/v1";

/// What a history entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `kiln publish`.
    Publish,
    /// `kiln promote`.
    Promote,
    /// `kiln rollback`.
    Rollback,
}

/// One entry of a channel's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// [`SCHEMA`].
    pub schema: String,
    /// 1, 2, … within the channel.
    pub seq: u64,
    /// The channel.
    pub channel: String,
    /// What happened.
    pub action: Action,
    /// Image name.
    pub name: String,
    /// Image version.
    pub version: String,
    /// Image digest: the release this entry makes current.
    pub digest: Digest,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// The key id that signed the release's files.
    pub key_id: String,
    /// The release's directory, relative to the release store.
    pub path: String,
    /// For a promotion: the channel it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// For a rollback: the digest it rolled back from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Digest>,
    /// OCI references it was pushed to (`HOST/REPO:TAG@sha256:…`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oci: Vec<String>,
}

/// The file name of the manifest a release directory holds for image `name` `version`.
pub fn manifest_name(name: &str, version: &str) -> String {
    format!("{name}-{version}.manifest.json")
}

/// A release store directory.
#[derive(Debug, Clone)]
pub struct Releases {
    root: PathBuf,
}

/// Channel names: like image names, so they are safe as directory names.
fn check_channel(c: &str) -> Result<()> {
    let ok = !c.is_empty()
        && c.len() <= 64
        && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(InputError {
            file: "(command line)".into(),
            line: None,
            field: Some("--channel".into()),
            message: format!("{c:?} is not a channel name ([A-Za-z0-9][A-Za-z0-9._-]*, ≤ 64)"),
        }
        .into())
    }
}

impl Releases {
    /// The release store at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Releases { root: root.into() }
    }

    /// The default release store of a store: `STORE/releases`.
    pub fn of_store(store: &Store) -> Self {
        Releases::new(store.layout().dir(crate::store::layout::Area::Releases))
    }

    /// Its root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where channel histories live: `channels/CHANNEL/NNNNNN.json`.
    pub fn channels_dir(&self) -> PathBuf {
        self.root.join("channels")
    }

    fn lock(&self) -> Result<nix::fcntl::Flock<File>> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("creating the release store {}", self.root.display()))?;
        crate::store::lock_dir(&self.root, "the release store")
    }

    /// Every channel with a history.
    pub fn channels(&self) -> Result<Vec<String>> {
        let mut out: Vec<String> = match fs::read_dir(self.root.join("channels")) {
            Ok(rd) => rd
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .collect(),
            Err(_) => Vec::new(),
        };
        out.sort();
        Ok(out)
    }

    /// A channel's history, oldest first.
    pub fn history(&self, channel: &str) -> Result<Vec<Entry>> {
        check_channel(channel)?;
        let dir = self.root.join("channels").join(channel);
        let Ok(rd) = fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut files: Vec<(u64, PathBuf)> = rd
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let n = p
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()?;
                Some((n, p))
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, p)| {
                let b = crate::util::record::read_record(&p)
                    .with_context(|| format!("reading {}", p.display()))?;
                crate::util::record::parse_json(&b)
                    .map_err(|e| e.in_file(p.display().to_string()).into())
            })
            .collect()
    }

    /// The releases a channel has had current, oldest first, after replaying
    /// rollbacks: the last is current, the one before it is where a rollback goes.
    fn stack(history: &[Entry]) -> Vec<&Entry> {
        let mut stack: Vec<&Entry> = Vec::new();
        for e in history {
            match e.action {
                // Re-publishing the current release (say, to push it to a
                // registry) does not give rollback a second copy to land on.
                Action::Publish | Action::Promote => match stack.last_mut() {
                    Some(top) if top.digest == e.digest => *top = e,
                    _ => stack.push(e),
                },
                Action::Rollback => {
                    stack.pop();
                    // The entry itself is what is now current.
                    if let Some(top) = stack.last_mut() {
                        *top = e;
                    }
                }
            }
        }
        stack
    }

    /// The channel's current release.
    pub fn current(&self, channel: &str) -> Result<Option<Entry>> {
        let h = self.history(channel)?;
        Ok(Self::stack(&h).last().map(|e| (*e).clone()))
    }

    /// Append an entry (seq and channel filled in). Call with the lock held.
    fn append(&self, channel: &str, mut e: Entry) -> Result<Entry> {
        let dir = self.root.join("channels").join(channel);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        e.seq = self.history(channel)?.len() as u64 + 1;
        e.channel = channel.into();
        sign::write_new(
            &dir.join(format!("{:06}.json", e.seq)),
            &serde_json::to_vec_pretty(&e)?,
            0o644,
        )?;
        Ok(e)
    }
}

/// A `kiln publish` request.
#[derive(Debug)]
pub struct PublishOptions {
    /// The image file.
    pub image: PathBuf,
    /// The channel.
    pub channel: String,
    /// The secret key.
    pub key: PathBuf,
    /// The release store.
    pub releases: Releases,
    /// OCI references to push to (`oci://HOST[:PORT]/REPO`).
    pub oci: Vec<String>,
}

/// What `kiln publish --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    /// Image name.
    pub name: String,
    /// Image version.
    pub version: String,
    /// Image digest.
    pub digest: Digest,
    /// The release directory.
    pub dir: PathBuf,
    /// The files, each with its signature.
    pub files: Vec<PublishedFile>,
    /// The channel entry (absent when the release was already current there).
    pub entry: Option<Entry>,
    /// The signing key id.
    pub key_id: String,
    /// The verdict that allowed publication (its file in the store).
    pub verdict: String,
    /// Whether that verdict's boot ran with UEFI Secure Boot enforced
    /// (`kiln test --secure-boot`); the published verdict file says so too.
    pub secure_boot: bool,
    /// OCI pushes.
    pub oci: Vec<crate::publish::oci::PushReport>,
}

/// Copy `src` to a new file `dest`, hashing on the way; the copy must hash to `digest`.
fn copy_new(src: &Path, dest: &Path, digest: Digest) -> Result<()> {
    let from = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    sign::write_new_with(dest, 0o644, |to| {
        let (got, _) = crate::util::digest::copy(from, to)
            .with_context(|| format!("copying {}", src.display()))?;
        if got != digest {
            return Err(check_failed(format!(
                "{} changed while being published: it now hashes to {got}, not {digest}",
                src.display()
            )));
        }
        Ok(())
    })
}

/// What to publish for one file.
enum Content<'a> {
    /// Copy this file.
    File(&'a Path),
    /// These bytes.
    Bytes(Vec<u8>),
}

/// New release files written and signed in a scratch directory beside
/// their places, linked into place only when all are ready.
struct Staged {
    scratch: ScratchDir,
    /// Each staged file's name, in the order it is to be linked.
    names: Vec<std::ffi::OsString>,
}

impl Staged {
    /// Scratch in `dir` (dead runs' scratch there swept first).
    fn new(dir: &Path) -> Result<Staged> {
        scratch::sweep(dir, false)?;
        Ok(Staged {
            scratch: ScratchDir::new_in(dir)?,
            names: Vec::new(),
        })
    }

    /// Where the new file that goes to `dest` is written.
    fn path(&mut self, dest: &Path) -> Result<PathBuf> {
        let name = dest.file_name().context("a release file without a name")?;
        self.names.push(name.to_owned());
        Ok(self.scratch.path().join(name))
    }

    /// Link every staged file into `dir` (never over an existing one),
    /// signatures before the files they sign. On a failure, the links made
    /// here are removed again.
    fn commit(mut self, dir: &Path) -> Result<()> {
        let is_file = |n: &std::ffi::OsString| !n.to_string_lossy().ends_with(".minisig");
        self.names.sort_by_key(is_file);
        let mut linked: Vec<PathBuf> = Vec::new();
        for name in &self.names {
            let dest = dir.join(name);
            if let Err(e) = fs::hard_link(self.scratch.path().join(name), &dest) {
                for l in &linked {
                    let _ = fs::remove_file(l);
                }
                return Err(e).with_context(|| format!("linking {} into place", dest.display()));
            }
            linked.push(dest);
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))
    }
}

/// Publish one file and its signature, or check the already-published
/// copy: same bytes, and a signature by the same key that verifies. What is
/// new is written to `stage`, for [`Staged::commit`].
fn publish_file(
    key: &SigningKey,
    dest: &Path,
    content: Content<'_>,
    comment: &TrustedComment,
    stage: &mut Staged,
) -> Result<PublishedFile> {
    let sig = sign::sig_path(dest);
    let want = match &content {
        Content::File(p) => Digest::of_file(p)?,
        Content::Bytes(b) => Digest::of(b),
    };
    let existed = dest.exists();
    let signed = if existed {
        let have = Digest::of_file(dest)?;
        if have != want {
            return Err(check_failed(format!(
                "{} is already published with digest {have}; kiln never replaces a published file (this one would be {want})",
                dest.display()
            )));
        }
        dest.to_path_buf()
    } else {
        let staged = stage.path(dest)?;
        match content {
            Content::File(p) => copy_new(p, &staged, want)?,
            Content::Bytes(b) => sign::write_new(&staged, &b, 0o644)?,
        }
        staged
    };
    if sig.exists() {
        sign::verify_file(dest, &sig, key.public()).with_context(|| {
            format!(
                "{} is already published, but its signature is not by key {}",
                dest.display(),
                key.key_id
            )
        })?;
    } else {
        let text = key.sign_file(&signed, comment)?;
        sign::write_new(&stage.path(&sig)?, text.as_bytes(), 0o644)?;
    }
    Ok(PublishedFile {
        path: dest.to_path_buf(),
        signature: sig,
        digest: want,
        existed,
    })
}

/// `kiln publish`: refuse without a passing verdict; write and sign the
/// release files; append to the channel; push to OCI registries.
pub fn publish(store: &Store, opts: &PublishOptions) -> Result<PublishReport> {
    check_channel(&opts.channel)?;
    let image = &opts.image;
    locate::regular_file(image)?;
    let image_digest = Digest::of_file(image)?;
    let Located {
        manifest,
        bytes: manifest_bytes,
        ..
    } = locate::require(store, image, &image_digest, "build it with `kiln build`")?;
    let digest = image_digest.to_string();
    let label = format!("{} {}", manifest.name, manifest.version);
    let Some(passed) = verdict::latest_passing(store, &digest)? else {
        let why = match verdict::latest(store, &digest)? {
            Some(v) => format!(
                "its latest verdict failed ({})",
                v.failed_check.as_deref().unwrap_or("unknown check")
            ),
            None => "no verdict is recorded for it".into(),
        };
        return Err(check_failed(format!(
            "refusing to publish {digest} ({label}): the store {} holds no passing `kiln test` verdict for this digest ({why}); run `kiln test {}` first",
            store.root().display(),
            image.display()
        )));
    };
    let n = verdict::list(store, &digest)?
        .iter()
        .rposition(|v| v == &passed)
        .map_or(0, |i| i + 1);
    let verdict_ref = format!("verdicts/{}/{n}.json", image_digest.hex());
    let key = SigningKey::load(&opts.key)?;

    let rel = &opts.releases;
    let _lock = rel.lock()?;
    let rel_path = format!("{}/{}", manifest.name, manifest.version);
    let dir = rel.root.join(&rel_path);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let base = format!("{}-{}", manifest.name, manifest.version);
    let published_manifest = dir.join(format!("{base}.manifest.json"));
    if let Ok(b) = fs::read(&published_manifest) {
        if let Ok(m) = serde_json::from_slice::<Manifest>(&b) {
            if m.image.digest != image_digest {
                return Err(InputError {
                    file: image.display().to_string(),
                    line: None,
                    field: Some("image.version".into()),
                    message: format!(
                        "{label} is already published as {} in {}; bump the recipe's version",
                        m.image.digest,
                        dir.display()
                    ),
                }
                .into());
            }
        }
    }

    let comment = |file: &str| {
        TrustedComment::for_image(file, &digest, Some(&manifest.name), Some(&manifest.version))
    };
    let verdict_bytes = serde_json::to_vec_pretty(&passed)?;
    let verdict_name = format!("{base}.verdict.json");
    let manifest_json: serde_json::Value = serde_json::from_slice(&manifest_bytes)?;
    let statement = crate::model::provenance::statement(
        &manifest,
        &manifest_json,
        &verdict_name,
        &crate::fs::layer::sha256_digest(&verdict_bytes),
    );
    let mut items: Vec<(String, Content<'_>)> = vec![
        (manifest.image.file.clone(), Content::File(image)),
        (
            format!("{base}.manifest.json"),
            Content::Bytes(manifest_bytes.clone()),
        ),
    ];
    // From the manifest, not from a file beside the image that nothing checks.
    if let Some((name, content)) = manifest.roothash_sidecar() {
        items.push((name, Content::Bytes(content.into_bytes())));
    }
    let sbom = image.with_file_name(format!("{base}.spdx.json"));
    if sbom.is_file() {
        items.push((format!("{base}.spdx.json"), Content::File(&sbom)));
    }
    items.push((verdict_name, Content::Bytes(verdict_bytes)));
    items.push((
        format!("{base}.provenance.json"),
        Content::Bytes(serde_json::to_vec_pretty(&statement)?),
    ));
    let mut stage = Staged::new(&dir)?;
    let mut files = Vec::new();
    for (name, content) in items {
        files.push(publish_file(
            &key,
            &dir.join(&name),
            content,
            &comment(&name),
            &mut stage,
        )?);
    }
    stage.commit(&dir)?;

    let mut oci = Vec::new();
    for target in &opts.oci {
        oci.push(crate::publish::oci::push(target, &dir, &manifest, &files)?);
    }

    let current = rel.current(&opts.channel)?;
    let entry = if current.as_ref().is_some_and(|c| c.digest == image_digest) && oci.is_empty() {
        None
    } else {
        Some(rel.append(
            &opts.channel,
            Entry {
                schema: SCHEMA.into(),
                seq: 0,
                channel: String::new(),
                action: Action::Publish,
                name: manifest.name.clone(),
                version: manifest.version.clone(),
                digest: image_digest,
                time: crate::util::time::rfc3339_now(),
                key_id: key.key_id.clone(),
                path: rel_path,
                from: None,
                replaces: None,
                oci: oci.iter().map(|o| o.reference.clone()).collect(),
            },
        )?)
    };
    Ok(PublishReport {
        name: manifest.name,
        version: manifest.version,
        digest: image_digest,
        dir,
        files,
        entry,
        key_id: key.key_id,
        verdict: verdict_ref,
        secure_boot: passed.secure_boot,
        oci,
    })
}

/// Find a release in a history by full digest or a unique prefix of its hex.
fn resolve<'a>(history: &'a [Entry], digest: &str, channel: &str) -> Result<&'a Entry> {
    let want = digest.strip_prefix("sha256:").unwrap_or(digest);
    let mut hits: Vec<&Entry> = history
        .iter()
        .filter(|e| e.digest.hex().starts_with(want) && !want.is_empty())
        .collect();
    hits.dedup_by(|a, b| a.digest == b.digest);
    let distinct: std::collections::BTreeSet<Digest> = hits.iter().map(|e| e.digest).collect();
    match distinct.len() {
        1 => Ok(hits[hits.len() - 1]),
        0 => Err(InputError {
            file: "(command line)".into(),
            line: None,
            field: Some("DIGEST".into()),
            message: format!("{digest} was never released on channel {channel}"),
        }
        .into()),
        _ => Err(InputError {
            file: "(command line)".into(),
            line: None,
            field: Some("DIGEST".into()),
            message: format!(
                "{digest} matches more than one release on {channel}: give more of it"
            ),
        }
        .into()),
    }
}

/// `kiln promote DIGEST --from A --to B`: a release of channel A becomes
/// current on channel B. Returns the new entry, or `None` when it already was.
pub fn promote(rel: &Releases, digest: &str, from: &str, to: &str) -> Result<Option<Entry>> {
    check_channel(from)?;
    check_channel(to)?;
    let _lock = rel.lock()?;
    let history = rel.history(from)?;
    let src = resolve(&history, digest, from)?.clone();
    if rel.current(to)?.is_some_and(|c| c.digest == src.digest) {
        return Ok(None);
    }
    let e = Entry {
        action: Action::Promote,
        from: Some(from.into()),
        replaces: None,
        time: crate::util::time::rfc3339_now(),
        ..src
    };
    Ok(Some(rel.append(to, e)?))
}

/// `kiln rollback --channel C`: the release that was current before the
/// current one becomes current again, recorded as a new entry.
pub fn rollback(rel: &Releases, channel: &str) -> Result<Entry> {
    check_channel(channel)?;
    let _lock = rel.lock()?;
    let history = rel.history(channel)?;
    let stack = Releases::stack(&history);
    let (Some(cur), Some(prev)) = (stack.last(), stack.len().checked_sub(2).map(|i| stack[i]))
    else {
        return Err(InputError {
            file: "(command line)".into(),
            line: None,
            field: Some("--channel".into()),
            message: format!(
                "channel {channel} has no earlier release to roll back to ({} in its history)",
                history.len()
            ),
        }
        .into());
    };
    let e = Entry {
        action: Action::Rollback,
        from: None,
        replaces: Some(cur.digest),
        time: crate::util::time::rfc3339_now(),
        oci: Vec::new(),
        ..prev.clone()
    };
    rel.append(channel, e)
}

/// What `kiln releases --json` prints for a channel.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelReport {
    /// The channel.
    pub channel: String,
    /// Its current release.
    pub current: Option<Entry>,
    /// Every entry, oldest first.
    pub history: Vec<Entry>,
}

/// The report for one channel, or for every channel.
pub fn releases(rel: &Releases, channel: Option<&str>) -> Result<Vec<ChannelReport>> {
    let channels = match channel {
        Some(c) => vec![c.to_string()],
        None => rel.channels()?,
    };
    channels
        .into_iter()
        .map(|c| {
            Ok(ChannelReport {
                history: rel.history(&c)?,
                current: rel.current(&c)?,
                channel: c,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rel: &Releases, channel: &str, d: char) -> Entry {
        let e = Entry {
            schema: SCHEMA.into(),
            seq: 0,
            channel: String::new(),
            action: Action::Publish,
            name: "hello".into(),
            version: d.to_string(),
            digest: format!("sha256:{}", d.to_string().repeat(64))
                .parse()
                .unwrap(),
            time: crate::util::time::rfc3339_now(),
            key_id: "0123456789ABCDEF".into(),
            path: format!("hello/{d}"),
            from: None,
            replaces: None,
            oci: vec![],
        };
        rel.append(channel, e).unwrap()
    }

    fn cur(rel: &Releases, c: &str) -> String {
        rel.current(c).unwrap().unwrap().version
    }

    /// A history entry whose digest is not `sha256:` and 64 lower-case hex
    /// digits is refused when the channel is read, naming the file and
    /// the field (exit 2), not later where the digest is used.
    #[test]
    fn a_malformed_digest_in_the_history_is_refused_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let rel = Releases::new(dir.path());
        let e = entry(&rel, "stable", 'a');
        let file = rel.root().join("channels/stable/000001.json");
        let good = fs::read_to_string(&file).unwrap();
        let hex = "a".repeat(64);
        for (field, bad) in [
            ("digest", hex.clone()),
            ("digest", format!("sha256:{}", hex.to_uppercase())),
            ("digest", format!("sha256:{}", &hex[1..])),
            ("replaces", hex.clone()),
        ] {
            let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
            v[field] = bad.clone().into();
            fs::write(&file, serde_json::to_vec(&v).unwrap()).unwrap();
            let err = rel.history("stable").unwrap_err();
            assert_eq!(crate::util::error::exit_code(&err), 2, "{err:#}");
            let text = format!("{err:#}");
            assert!(
                text.contains(&*file.display().to_string())
                    && text.contains(&format!("field `{field}`")),
                "{bad}: {text}"
            );
        }
        fs::write(&file, good).unwrap();
        assert_eq!(rel.history("stable").unwrap(), vec![e]);
    }

    #[test]
    fn rollback_walks_back_and_history_only_grows() {
        let dir = tempfile::tempdir().unwrap();
        let rel = Releases::new(dir.path());
        entry(&rel, "stable", 'a');
        entry(&rel, "stable", 'b');
        entry(&rel, "stable", 'c');
        entry(&rel, "stable", 'c');
        assert_eq!(cur(&rel, "stable"), "c");
        let r = rollback(&rel, "stable").unwrap();
        assert_eq!(
            (r.seq, r.action, r.version.as_str()),
            (5, Action::Rollback, "b")
        );
        assert_eq!(
            r.replaces.map(|d| d.to_string()),
            Some(format!("sha256:{}", "c".repeat(64)))
        );
        assert_eq!(cur(&rel, "stable"), "b");
        rollback(&rel, "stable").unwrap();
        assert_eq!(cur(&rel, "stable"), "a");
        let e = rollback(&rel, "stable").unwrap_err();
        assert_eq!(crate::util::error::exit_code(&e), 2);
        entry(&rel, "stable", 'd');
        assert_eq!(cur(&rel, "stable"), "d");
        rollback(&rel, "stable").unwrap();
        assert_eq!(cur(&rel, "stable"), "a");
        assert_eq!(rel.history("stable").unwrap().len(), 8);
    }

    #[test]
    fn promote_by_prefix_from_one_channel_to_another() {
        let dir = tempfile::tempdir().unwrap();
        let rel = Releases::new(dir.path());
        entry(&rel, "canary", 'a');
        entry(&rel, "canary", 'b');
        let e = promote(&rel, "sha256:aaaaaaaaaaaa", "canary", "stable")
            .unwrap()
            .unwrap();
        assert_eq!(
            (e.action, e.from.as_deref(), e.seq),
            (Action::Promote, Some("canary"), 1)
        );
        assert_eq!(cur(&rel, "stable"), "a");
        assert!(promote(&rel, "aaaa", "canary", "stable").unwrap().is_none());
        let err = promote(&rel, "ffff", "canary", "stable").unwrap_err();
        assert_eq!(crate::util::error::exit_code(&err), 2);
        assert_eq!(rel.channels().unwrap(), ["canary", "stable"]);
        assert!(check_channel("../x").is_err());
    }
}
