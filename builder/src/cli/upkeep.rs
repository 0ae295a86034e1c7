//! The store's upkeep commands (`kiln gc`, `fsck`): argument handling and
//! dispatch only.

use anyhow::Result;

use super::{render, Context};
use crate::upkeep::{fsck, gc};
use crate::util::error::{check_failed, EnvError};

/// `kiln gc`: exit 3 when an entry could not be removed.
pub(super) fn gc(cx: &Context, opts: &gc::GcOptions) -> Result<()> {
    let report = gc::gc(&cx.store, opts)?;
    cx.report(&report, |out| render::upkeep::gc(out, &report))?;
    if let Some(first) = report.failed.first() {
        return Err(EnvError::new(format!(
            "{} could not be removed, the first {}: {}",
            render::upkeep::count(report.failed.len(), "entry"),
            first.path.display(),
            first.error
        ))
        .into());
    }
    Ok(())
}

/// `kiln fsck`: exit 1 when the store is not healthy.
pub(super) fn fsck(cx: &Context, opts: &fsck::FsckOptions) -> Result<()> {
    let report = fsck::fsck(&cx.store, opts)?;
    cx.show(&report, |out| render::upkeep::fsck(out, &report))?;
    if !report.healthy() {
        anyhow::bail!(check_failed(format!(
            "store {}: {}",
            report.store.display(),
            render::upkeep::count(report.problems.len(), "problem")
        )));
    }
    Ok(())
}
