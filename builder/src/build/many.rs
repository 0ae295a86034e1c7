//! `kiln build R1 R2 … [--jobs N]`: several recipes in one process and one
//! store, up to N at a time.
//!
//! Every recipe is planned first, so bad input in one is reported before
//! anything is built and the store is touched only when some recipe is
//! valid. Then N workers take the recipes in order, each building one with
//! [`super::build_plan`] under the store lock this function holds for all
//! of them. Layers of different recipes are built side by side; a layer
//! two recipes share (the same key) is built once: the first build to need
//! it *claims* its key ([`Claims`]), and a build that needs a claimed key
//! waits until the claim is released (once the layer is in the store, or
//! the claiming build failed) and then looks in the store again. Keys are
//! claimed in each recipe's layer order, bottom first, and a layer's key
//! names the layer below, so two builds never wait on each other. apt runs
//! one at a time (it locks the download cache every build shares).
//!
//! A recipe that fails is recorded with its error; the others go on, and
//! each image is written whole or not at all, as a single build does. At
//! the end, `SHA256SUMS` lists the files of every image built.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

use anyhow::Result;
use serde::Serialize;

use super::{BuildOptions, BuildReport};
use crate::input::plan::Plan;
use crate::store::Store;
use crate::util::progress::Progress;

/// What `kiln build R1 R2 …` prints: every image built, every recipe
/// that failed.
#[derive(Debug, Clone, Serialize)]
pub struct ManyReport {
    /// The images, in the order of the recipes given.
    pub images: Vec<BuildReport>,
    /// The recipes that failed, in the order given.
    pub failed: Vec<FailedRecipe>,
}

/// A recipe of a `kiln build R1 R2 …` that failed.
#[derive(Debug, Clone, Serialize)]
pub struct FailedRecipe {
    /// The recipe file.
    pub recipe: PathBuf,
    /// The error, with its causes.
    pub error: String,
    /// The exit code it alone would have given (2 bad input, 3 environment, 1 otherwise).
    pub exit_code: i32,
}

/// The layer keys being built by the builds of this process.
#[derive(Debug, Default)]
pub struct Claims {
    held: Mutex<HashSet<String>>,
    released: Condvar,
}

/// A claimed key, released when dropped.
#[derive(Debug)]
pub struct Claim<'a> {
    claims: &'a Claims,
    key: String,
}

impl Claims {
    /// Wait until no other build holds `key`, then hold it.
    pub fn claim(&self, key: &str) -> Result<Claim<'_>> {
        let poisoned = |_| crate::internal_err!("the layer claims lock is poisoned");
        let mut held = self.held.lock().map_err(poisoned)?;
        while held.contains(key) {
            tracing::info!(%key, "waiting for another build of this run to make the layer");
            held = self.released.wait(held).map_err(poisoned)?;
        }
        held.insert(key.to_string());
        Ok(Claim {
            claims: self,
            key: key.to_string(),
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut held = self.claims.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&self.key);
        self.claims.released.notify_all();
    }
}

/// `s` for a count other than one.
fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Build `recipes` into `opts.out_dir`, up to `jobs` at a time (at least
/// one). Progress is shown per recipe as it finishes.
pub fn build_many(
    recipes: &[PathBuf],
    store: &Store,
    opts: &BuildOptions,
    jobs: usize,
    progress: &mut Progress,
) -> Result<ManyReport> {
    let failure = |recipe: &PathBuf, e: &anyhow::Error| {
        tracing::info!(recipe = %recipe.display(), "failed: {e:#}");
        FailedRecipe {
            recipe: recipe.clone(),
            error: format!("{e:#}"),
            exit_code: crate::util::error::exit_code(e),
        }
    };
    progress.step(format!("reading {} recipes", recipes.len()));
    let plans: Vec<Result<Plan>> = recipes
        .iter()
        .map(|r| Plan::new(r).map_err(Into::into))
        .collect();
    progress.finish(None);
    let mut results: Vec<Option<Result<BuildReport>>> = plans.iter().map(|_| None).collect();
    if plans.iter().any(Result::is_ok) {
        store.init()?;
        let _lock = store.lock()?;
        let claims = Claims::default();
        let next = Mutex::new(0usize);
        let done = Mutex::new((&mut results, 0usize));
        let total = plans.iter().filter(|p| p.is_ok()).count();
        progress.step(format!(
            "building {total} recipe{}, {} at a time",
            plural(total),
            jobs.max(1)
        ));
        let progress = Mutex::new(&mut *progress);
        std::thread::scope(|s| {
            for _ in 0..jobs.max(1).min(recipes.len()) {
                s.spawn(|| loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(plan) = plans.get(i) else { break };
                    let Ok(plan) = plan else { continue };
                    // Progress lines are per process; workers report through the log.
                    let mut quiet = Progress::hidden();
                    let r = super::build_plan(
                        &recipes[i],
                        plan,
                        store,
                        opts,
                        Some(&claims),
                        &mut quiet,
                    );
                    let what = if r.is_ok() { "built" } else { "failed" };
                    let mut d = done.lock().unwrap_or_else(|e| e.into_inner());
                    d.0[i] = Some(r);
                    d.1 += 1;
                    let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                    p.finish(Some(&format!("{} {what}", recipes[i].display())));
                    let left = total - d.1.min(total);
                    if left > 0 {
                        p.step(format!("building the other {left} recipe{}", plural(left)));
                    }
                });
            }
        });
    }
    let mut images: Vec<BuildReport> = Vec::new();
    let mut failed = Vec::new();
    for ((recipe, plan), result) in recipes.iter().zip(plans).zip(results) {
        match (plan, result) {
            (Err(e), _) => failed.push(failure(recipe, &e)),
            (Ok(_), Some(Ok(r))) => images.push(r),
            (Ok(_), Some(Err(e))) => failed.push(failure(recipe, &e)),
            (Ok(_), None) => failed.push(failure(
                recipe,
                &crate::internal_err!("not built: a build worker stopped"),
            )),
        }
    }
    // Each build wrote SHA256SUMS for its own files; the directory's lists
    // every image of the run, in the order of the recipes.
    if !images.is_empty() {
        let sums: String = images.iter().map(|r| r.sha256sums.as_str()).collect();
        let tmp = super::output::temp_dir(&opts.out_dir)?;
        let dest = opts.out_dir.join(super::output::SUMS);
        crate::store::write_atomic(tmp.path(), &dest, sums.as_bytes())?;
    }
    Ok(ManyReport { images, failed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_claimed_key_is_made_by_one_build_at_a_time() {
        let claims = Claims::default();
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let _c = claims.claim("sha256:k").unwrap();
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 1);
        // Another key is not held up by the first.
        let _a = claims.claim("sha256:a").unwrap();
        let _b = claims.claim("sha256:b").unwrap();
        assert!(claims.held.lock().unwrap().contains("sha256:a"));
    }
}
