//! The commands that read images and the store (`kiln ls`, `inspect`,
//! `diff`): argument handling and dispatch only.

use anyhow::{Context as _, Result};

use super::{render, Context};
use crate::read::inspect;
use crate::util::error::check_failed;

/// `kiln ls`.
pub(super) fn ls(cx: &Context) -> Result<()> {
    let listing = inspect::list(&cx.store)?;
    cx.show(&listing, |out| {
        render::store::listing(out, cx.store.root(), &listing)
    })
}

/// `kiln inspect`.
pub(super) fn inspect(cx: &Context, target: &str) -> Result<()> {
    let info =
        inspect::inspect(&cx.store, target).with_context(|| format!("inspecting {target}"))?;
    cx.show(&info, |out| render::inspect::inspection(out, &info))
}

/// `kiln diff`: exit 1 when the images differ.
pub(super) fn diff(cx: &Context, a: &str, b: &str) -> Result<()> {
    let ia = crate::read::imagefs::load(&cx.store, a).with_context(|| format!("reading {a}"))?;
    let ib = crate::read::imagefs::load(&cx.store, b).with_context(|| format!("reading {b}"))?;
    let d = crate::read::diff::diff(&ia, &ib);
    cx.report(&d, |out| render::inspect::diff(out, &d))?;
    if !d.identical {
        anyhow::bail!(check_failed(format!("{a} and {b} differ: {}", d.summary())));
    }
    Ok(())
}
