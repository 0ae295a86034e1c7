//! The signing, publication and release-channel commands (`kiln keygen`,
//! `sign`, `verify`, `publish`, `releases`, `promote`, `rollback`, `pull`):
//! argument handling and dispatch only, as in the parent module.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, Result};

use super::{render, Context};
use crate::publish::release::{self, Releases};
use crate::publish::sign;

/// `kiln keygen`.
pub(super) fn keygen(cx: &Context, output: &Path, encrypted: bool) -> Result<()> {
    let r = sign::keygen(output, encrypted)?;
    cx.report(&r, |out| render::release::keygen(out, &r))
}

/// `kiln sign`.
pub(super) fn sign(cx: &Context, file: &Path, key: &Path, signature: Option<&Path>) -> Result<()> {
    let r = sign::sign(&cx.store, file, key, signature)?;
    cx.report(&r, |out| render::release::signed(out, &r))
}

/// `kiln verify`: exit 1 when the signature does not verify.
pub(super) fn verify(
    cx: &Context,
    file: &Path,
    signature: Option<&Path>,
    pubkey: &Path,
) -> Result<()> {
    let pk = sign::load_public_key(pubkey)?;
    let sig = signature.map_or_else(|| sign::sig_path(file), Path::to_path_buf);
    let v = sign::verify_file(file, &sig, &pk)?;
    cx.report(&v, |out| render::release::verified(out, &v))
}

/// `kiln publish`: `--to` names at most one release store directory and any
/// number of OCI repositories.
pub(super) fn publish(
    cx: &Context,
    image: &Path,
    channel: &str,
    key: &Path,
    to: &[String],
) -> Result<()> {
    let (oci, dirs): (Vec<_>, Vec<_>) = to.iter().cloned().partition(|t| t.starts_with("oci://"));
    if dirs.len() > 1 {
        return Err(
            crate::util::error::InputError::file("(command line)", "at most one --to DIR").into(),
        );
    }
    let opts = release::PublishOptions {
        image: image.to_path_buf(),
        channel: channel.to_string(),
        key: key.to_path_buf(),
        releases: cx.releases(dirs.first().map(Path::new)),
        oci,
    };
    let r = release::publish(&cx.store, &opts)?;
    cx.report(&r, |out| render::release::published(out, &r, channel))
}

/// `kiln releases`: one channel (its report alone in JSON) or every channel.
pub(super) fn show_releases(
    cx: &Context,
    channel: Option<&str>,
    releases: Option<&Path>,
) -> Result<()> {
    let reports = release::releases(&cx.releases(releases), channel)?;
    let human = |out: &mut dyn Write| render::release::channels(out, &reports);
    match (channel, reports.first()) {
        (Some(_), Some(r)) => cx.show(r, human),
        _ => cx.show(&reports, human),
    }
}

/// `kiln promote`.
pub(super) fn promote(
    cx: &Context,
    digest: &str,
    from: &str,
    to: &str,
    releases: Option<&Path>,
) -> Result<()> {
    let rel = cx.releases(releases);
    let e = release::promote(&rel, digest, from, to)?;
    let report = channel_report(&rel, to)?;
    cx.report(&report, |out| {
        render::release::promoted(out, digest, to, e.is_none(), &report)
    })
}

/// `kiln rollback`.
pub(super) fn rollback(cx: &Context, channel: &str, releases: Option<&Path>) -> Result<()> {
    let rel = cx.releases(releases);
    release::rollback(&rel, channel)?;
    let report = channel_report(&rel, channel)?;
    cx.report(&report, |out| render::release::channel(out, &report))
}

/// One channel's report, after a change to it.
pub(super) fn channel_report(rel: &Releases, channel: &str) -> Result<release::ChannelReport> {
    release::releases(rel, Some(channel))?
        .into_iter()
        .next()
        .with_context(|| format!("no report for channel {channel}"))
}

/// `kiln pull`.
pub(super) fn pull(cx: &Context, source: &str, output: &Path, pubkey: &Path) -> Result<()> {
    let r = crate::publish::oci::pull(source, output, pubkey)?;
    cx.report(&r, |out| render::release::pulled(out, &r))
}
