//! Layers taken from a registry cache while a build composes its layers
//! ([`super::build_layers`]).

use crate::input::plan::PlannedLayer;
use crate::registry::cache::{accept, Accepted, Below, Cache, Lookup};

/// A layer the registry cache gave, once it proved to be the layer a build
/// here would store ([`crate::registry::cache::accept`]). `None` (after a
/// warning) when it did not.
pub(super) fn from_cache(
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
pub(super) enum NewBlob {
    /// Built here.
    Built(Vec<u8>),
    /// From the cache.
    Fetched(tempfile::NamedTempFile),
}
