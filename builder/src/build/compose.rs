//! Plan → layers: every layer of a plan taken from the store, from the
//! registry cache or built ([`super::from_sources`]), and composed bottom
//! first into the image's root tree. New layers reach the store only once
//! the whole composition checks out.

use std::sync::Arc;

use anyhow::{Context, Result};

use super::from_sources::build_layer;
use super::LayerSource;
use crate::build::many::Claims;
use crate::fs::layer::{self, sha256_digest};
use crate::fs::tree::{NodeKind, Tree};
use crate::input::plan::{Plan, PlannedLayer};
use crate::registry::cache::{Cache, Lookup};
use crate::store::{KeyEntry, Store};
use crate::util::error::InputError;
use crate::util::progress::Progress;

/// The layers of a plan, built or fetched, and the root they compose to.
pub struct Layers {
    /// Per layer: key-index entry and where it came from.
    pub entries: Vec<(KeyEntry, LayerSource)>,
    /// Per layer: its own tree (sharing file contents with `root`).
    pub trees: Vec<Tree>,
    /// The composed root.
    pub root: Tree,
}

impl Layers {
    /// The digest of the layer blob whose file at `path` the composed root
    /// holds unchanged: the very bytes that layer's tree has there (shared,
    /// not compared), from the topmost layer that has them.
    pub fn layer_of(&self, path: &str) -> Option<String> {
        let file = |t: &Tree| match t.get(path).map(|n| &n.kind) {
            Some(NodeKind::File(d)) => Some(Arc::clone(d)),
            _ => None,
        };
        let data = file(&self.root)?;
        self.trees
            .iter()
            .zip(&self.entries)
            .rev()
            .find(|(t, _)| file(t).is_some_and(|d| Arc::ptr_eq(&d, &data)))
            .map(|(_, (e, _))| e.digest.clone())
    }
}

/// A layer the registry cache gave: its entry and tree, once its blob
/// checked out and unpacked. `None` (after a warning) when it did not.
fn from_cache(
    cache: &Cache,
    key: &str,
    pl: &PlannedLayer,
    lookup: Lookup,
) -> Option<(KeyEntry, Vec<u8>, Tree)> {
    let Lookup::Hit(hit) = lookup else {
        return None;
    };
    let name = &pl.def.name;
    let entry = hit.entry;
    // The store's own check: the bytes hash to the digest they are kept under.
    let digest = sha256_digest(&hit.blob);
    let refused = if digest != entry.digest {
        Some(format!("the blob hashes to {digest}, not {}", entry.digest))
    } else if entry.name != *name || entry.kind != pl.def.kind.as_str() {
        Some(format!(
            "the entry is for {} layer {}",
            entry.kind, entry.name
        ))
    } else {
        None
    };
    let tree = match refused {
        Some(m) => Err(crate::util::error::check_failed(m)),
        None => layer::unpack(&hit.blob),
    };
    match tree {
        Ok(tree) => Some((entry, hit.blob, tree)),
        Err(e) => {
            tracing::warn!(cache = %cache.url(), layer = %name, %key, "layer cache: not using the entry, building the layer: {e:#}");
            None
        }
    }
}

/// Build (or take from the store, or from the registry cache) every layer
/// of a plan and compose them. Layers built here are pushed to the cache
/// (unless it is read-only) once they are in the store.
pub fn build_layers(
    plan: &Plan,
    store: &Store,
    cache: Option<&Cache>,
    claims: Option<&Claims>,
    progress: &mut Progress,
) -> Result<Layers> {
    let mut root = Tree::new(plan.epoch.provisional());
    let mut entries = Vec::new();
    let mut trees = Vec::new();
    let mut lower: Option<KeyEntry> = None;
    // New layers reach the store only once the whole composition checks out,
    // so that bad input (a service whose program is missing) leaves nothing.
    let mut pending = Vec::new();
    // Layers built here, to push: (index in `pending`, whether the cache
    // holds a refused entry under the key).
    let mut to_push = Vec::new();
    // Keys this build is making, held (with `claims`) until they are in
    // the store, so a build beside it waits for them instead of making them too.
    let mut held = Vec::new();
    for pl in &plan.layers {
        let key = pl.key(lower.as_ref().map(|e| e.digest.as_str()), plan.epoch.fixed);
        let name = &pl.def.name;
        progress.step(format!("layer {name}"));
        let mut local = store.lookup_key(&key)?;
        if let (None, Some(c)) = (&local, claims) {
            held.push(c.claim(&key)?);
            local = store.lookup_key(&key)?;
        }
        let mut refused = false;
        let remote = match (&local, cache) {
            (None, Some(c)) => {
                progress.step(format!("layer {name}: looking it up in {}", c.url()));
                let lookup = c.lookup(&key, name, &progress.transfer());
                // An entry is under the key's tag, but it was not usable.
                let present = !matches!(lookup, Lookup::Miss);
                let hit = from_cache(c, &key, pl, lookup);
                refused = present && hit.is_none();
                hit
            }
            _ => None,
        };
        let (entry, source, tree) = match (local, remote) {
            (Some(entry), _) => {
                tracing::info!(layer = %name, %key, digest = %entry.digest, "cached");
                let tree = store
                    .read_blob(&entry.digest, layer::unpack_reader)
                    .with_context(|| format!("unpacking cached layer {name} ({})", entry.digest))?;
                (entry, LayerSource::Store, tree)
            }
            (None, Some((entry, blob, tree))) => {
                tracing::info!(layer = %name, %key, digest = %entry.digest, "from the registry cache");
                pending.push((blob, entry.clone()));
                (entry, LayerSource::Registry, tree)
            }
            (None, None) => {
                let lower_epoch = lower.as_ref().and_then(|e| e.source_date_epoch);
                let built = build_layer(pl, &root, plan.epoch, lower_epoch, store, progress)
                    .with_context(|| {
                        format!("building layer {name} ({})", pl.def.file.display())
                    })?;
                let packed = layer::pack(&built.tree)?;
                let entry = KeyEntry {
                    key: key.clone(),
                    digest: packed.digest.clone(),
                    diff_id: packed.diff_id,
                    name: name.clone(),
                    kind: pl.def.kind.as_str().into(),
                    size: packed.blob.len() as u64,
                    tar_size: packed.tar_size,
                    packages: built.packages,
                    source_date_epoch: Some(built.epoch),
                };
                to_push.push((pending.len(), refused));
                pending.push((packed.blob, entry.clone()));
                (entry, LayerSource::Built, built.tree)
            }
        };
        progress.finish(Some(match source {
            LayerSource::Store => "cached",
            LayerSource::Registry => "from the registry cache",
            LayerSource::Built => "built",
        }));
        root.apply_layer(&tree)
            .with_context(|| format!("applying layer {name}"))?;
        lower = Some(entry.clone());
        entries.push((entry, source));
        trees.push(tree);
    }
    check_services(plan, &root)?;
    for (blob, entry) in &pending {
        let digest = store.put_blob(blob)?;
        anyhow::ensure!(
            digest == entry.digest,
            crate::check_err!(
                "layer {}: its blob hashes to {digest}, not {}",
                entry.name,
                entry.digest
            )
        );
        store.record_key(entry)?;
    }
    // In the store: other builds of this run may take them now.
    drop(held);
    if let Some(c) = cache.filter(|c| !c.read_only()) {
        for (i, replace) in to_push {
            let (blob, entry) = &pending[i];
            progress.step(format!("layer {}: pushing it to {}", entry.name, c.url()));
            c.push(entry, blob, replace);
            progress.finish(None);
        }
    }
    Ok(Layers {
        entries,
        trees,
        root,
    })
}

/// The SOURCE_DATE_EPOCH of the image made of these layers: the fixed one,
/// else the top layer's derived one.
pub fn image_epoch(plan: &Plan, entries: &[(KeyEntry, LayerSource)]) -> i64 {
    plan.epoch
        .layer_epoch(entries.last().and_then(|(e, _)| e.source_date_epoch), None)
}

/// Every declared service's program must exist in the composed image.
fn check_services(plan: &Plan, root: &Tree) -> Result<()> {
    for pl in &plan.layers {
        for s in &pl.def.services {
            let prog = &s.command[0];
            if !matches!(root.resolve(prog), Some((_, n)) if matches!(n.kind, NodeKind::File(_))) {
                return Err(InputError {
                    file: pl.def.file.display().to_string(),
                    line: Some(s.line),
                    field: Some("service.command".into()),
                    message: format!("service {:?}: {prog} does not exist in the composed image (or is not a regular file)", s.name),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// The key-index entries of a plan's layers when every one of them is in the
/// store (nothing is unpacked); `None` at the first that is not.
pub(super) fn cached_entries(
    plan: &Plan,
    store: &Store,
) -> Result<Option<Vec<(KeyEntry, LayerSource)>>> {
    let mut entries: Vec<(KeyEntry, LayerSource)> = Vec::new();
    for pl in &plan.layers {
        let lower = entries.last().map(|(e, _)| e.digest.as_str());
        match store.lookup_key(&pl.key(lower, plan.epoch.fixed))? {
            Some(e) => entries.push((e, LayerSource::Store)),
            None => return Ok(None),
        }
    }
    Ok(Some(entries))
}

#[cfg(test)]
#[path = "compose_tests.rs"]
mod tests;
