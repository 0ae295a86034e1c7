//! `kiln test`: argument handling and dispatch only.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{render, Context};
use crate::build::{self, BuildOptions};
use crate::util::error::check_failed;

/// `kiln test`: build first when the target is a recipe, then boot and judge.
pub(super) fn test(
    cx: &Context,
    target: &Path,
    junit: Option<PathBuf>,
    output: &Path,
    secure_boot: Option<&Path>,
    tpm: bool,
) -> Result<()> {
    // Bad keys fail before any build or boot.
    let secure_boot = secure_boot
        .map(crate::vm::secureboot::SecureBootKeys::load)
        .transpose()?;
    let image = if target.extension().is_some_and(|e| e == "toml") {
        let mut progress = cx.progress();
        let report = build::build(
            target,
            &cx.store,
            &BuildOptions {
                out_dir: output.to_path_buf(),
                cache: None,
                secure_boot: None,
            },
            &mut progress,
        )?;
        report.image.path
    } else {
        target.to_path_buf()
    };
    let v = crate::vm::boottest::test_image_with(
        &cx.store,
        &image,
        junit,
        secure_boot,
        tpm,
        !cx.quiet && !cx.json,
    )?;
    cx.report(&v, |out| {
        render::test::verdict(out, &v, &crate::vm::boottest::console_tail(&v))
    })?;
    if !v.passed {
        anyhow::bail!(check_failed(format!(
            "{} failed its boot test: {}",
            v.image,
            v.failed_check.as_deref().unwrap_or("?")
        )));
    }
    Ok(())
}
