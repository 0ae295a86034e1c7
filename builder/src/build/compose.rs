//! Plan → layers: every layer of a plan taken from the store, from the
//! registry cache or built ([`super::from_sources`]), and composed bottom
//! first into the image's root tree. New layers reach the store only once
//! the whole composition checks out.

use std::sync::Arc;

use anyhow::{Context, Result};

use super::from_sources::build_layer;
use super::LayerSource;
use crate::build::many::Claims;
use crate::fs::layer;
use crate::fs::tree::{NodeKind, Tree};
use crate::input::plan::{Plan, PlannedLayer};
use crate::registry::cache::{accept, Accepted, Below, Cache, Lookup};
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
            .map(|(_, (e, _))| e.digest.to_string())
    }
}

/// A layer the registry cache gave, once it proved to be the layer a build
/// here would store ([`crate::registry::cache::accept`]). `None` (after a
/// warning) when it did not.
fn from_cache(
    cache: &Cache,
    key: &str,
    pl: &PlannedLayer,
    lookup: Lookup,
    below: &Below,
) -> Option<Accepted> {
    let Lookup::Hit(hit) = lookup else {
        return None;
    };
    match accept(*hit, pl, below) {
        Ok(a) => Some(a),
        Err(e) => {
            let name = &pl.def.name;
            tracing::warn!(cache = %cache.url(), layer = %name, %key, "layer cache: not using the entry, building the layer: {e:#}");
            None
        }
    }
}

/// A new layer's blob, waiting to enter the store: built here (in memory),
/// or fetched from the cache (a scratch file in the store's tmp).
enum NewBlob {
    /// Built here.
    Built(Vec<u8>),
    /// From the cache.
    Fetched(tempfile::NamedTempFile),
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
        let lower_digest = lower.as_ref().map(|e| e.digest.to_string());
        let key = pl.key(lower_digest.as_deref(), plan.epoch.fixed);
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
                let lookup = c.lookup(&key, name, &progress.transfer(), &store.tmp_dir()?);
                // An entry is under the key's tag, but it was not usable.
                let present = !matches!(lookup, Lookup::Miss);
                let below = Below {
                    root: &root,
                    entry: lower.as_ref(),
                    rule: plan.epoch,
                };
                let hit = from_cache(c, &key, pl, lookup, &below);
                refused = present && hit.is_none();
                hit
            }
            _ => None,
        };
        // The root with the layer applied, when accepting it did that.
        let mut applied = None;
        let (entry, source, tree) = match (local, remote) {
            (Some(entry), _) => {
                tracing::info!(layer = %name, %key, digest = %entry.digest, "cached");
                let tree = store
                    .read_blob(&entry.digest.to_string(), layer::unpack_reader)
                    .with_context(|| format!("unpacking cached layer {name} ({})", entry.digest))?;
                (entry, LayerSource::Store, tree)
            }
            (None, Some(a)) => {
                tracing::info!(layer = %name, %key, digest = %a.entry.digest, "from the registry cache");
                pending.push((NewBlob::Fetched(a.blob), a.entry.clone()));
                applied = Some(a.root);
                (a.entry, LayerSource::Registry, a.tree)
            }
            (None, None) => {
                let lower_epoch = lower.as_ref().and_then(|e| e.source_date_epoch);
                let built = build_layer(pl, &root, plan.epoch, lower_epoch, store, progress)
                    .with_context(|| {
                        format!("building layer {name} ({})", pl.def.file.display())
                    })?;
                let packed = layer::pack(&built.tree)?;
                let entry = KeyEntry {
                    key: key.parse()?,
                    digest: packed.digest.parse()?,
                    diff_id: packed.diff_id.parse()?,
                    name: name.clone(),
                    kind: pl.def.kind.as_str().into(),
                    size: packed.blob.len() as u64,
                    tar_size: packed.tar_size,
                    packages: built.packages,
                    source_date_epoch: Some(built.epoch),
                };
                to_push.push((pending.len(), refused));
                pending.push((NewBlob::Built(packed.blob), entry.clone()));
                (entry, LayerSource::Built, built.tree)
            }
        };
        progress.finish(Some(match source {
            LayerSource::Store => "cached",
            LayerSource::Registry => "from the registry cache",
            LayerSource::Built => "built",
        }));
        match applied {
            Some(r) => root = r,
            None => root
                .apply_layer(&tree)
                .with_context(|| format!("applying layer {name}"))?,
        }
        lower = Some(entry.clone());
        entries.push((entry, source));
        trees.push(tree);
    }
    check_services(plan, &root)?;
    // What was built here, kept to push: (blob, entry) by index in `pending`.
    let mut stored = Vec::new();
    for (blob, entry) in pending {
        let blob = match blob {
            NewBlob::Built(blob) => {
                let digest = store.put_blob(&blob)?;
                anyhow::ensure!(
                    digest == entry.digest.to_string(),
                    crate::check_err!(
                        "layer {}: its blob hashes to {digest}, not {}",
                        entry.name,
                        entry.digest
                    )
                );
                Some(blob)
            }
            NewBlob::Fetched(file) => {
                store
                    .put_blob_file(file, &entry.digest.to_string())
                    .with_context(|| format!("storing layer {}", entry.name))?;
                None
            }
        };
        store.record_key(&entry)?;
        stored.push((blob, entry));
    }
    // In the store: other builds of this run may take them now.
    drop(held);
    if let Some(c) = cache.filter(|c| !c.read_only()) {
        for (i, replace) in to_push {
            let (Some(blob), entry) = &stored[i] else {
                continue;
            };
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
        let lower = entries.last().map(|(e, _)| e.digest.to_string());
        match store.lookup_key(&pl.key(lower.as_deref(), plan.epoch.fixed))? {
            Some(e) => entries.push((e, LayerSource::Store)),
            None => return Ok(None),
        }
    }
    Ok(Some(entries))
}

#[cfg(test)]
#[path = "compose_tests.rs"]
mod tests;
