//! `kiln ls` for people: the store's root, its layers and images with short
//! digests and sizes, and the bytes its blobs use.

use std::io::{self, Write};
use std::path::Path;

use crate::read::inspect::Listing;
use crate::util::printable::PrintableExt as _;

use super::{human, short_digest};

/// `kiln ls`: the store at `root` as [`crate::read::inspect::list`] found it.
pub fn listing(mut out: impl Write, root: &Path, l: &Listing) -> io::Result<()> {
    writeln!(out, "store {}", root.display().printable())?;
    writeln!(out, "LAYERS")?;
    for layer in &l.layers {
        writeln!(
            out,
            "  {:<8} {:<24} {} {:>10}",
            layer.kind.printable(),
            layer.name.printable(),
            short_digest(&layer.digest),
            human(layer.size)
        )?;
    }
    writeln!(out, "IMAGES")?;
    for i in &l.images {
        writeln!(
            out,
            "  {:<16} {:<10} {} {:>10}",
            i.name.printable(),
            i.version.printable(),
            short_digest(&i.digest),
            human(i.size)
        )?;
    }
    writeln!(out, "total {}", human(l.total_bytes))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{text, EMPTY};
    use super::*;
    use crate::read::inspect::{ImageItem, LayerItem};

    #[test]
    fn listing_table() {
        let layer = |kind: &str, name: &str, digest: &str, size| LayerItem {
            name: name.into(),
            kind: kind.into(),
            key: EMPTY.into(),
            digest: digest.into(),
            size,
            tar_size: size,
        };
        let full = Listing {
            layers: vec![
                layer("base", "base/busybox", EMPTY, 1_200_000),
                // A damaged key-index entry: shown whole, never sliced.
                layer("app", "app/hello", "sha256:e3b0", 512),
            ],
            images: vec![ImageItem {
                name: "hello".into(),
                version: "1.0".into(),
                digest: EMPTY.into(),
                size: 64 << 20,
            }],
            total_bytes: 1_200_512,
        };
        let empty = Listing {
            layers: Vec::new(),
            images: Vec::new(),
            total_bytes: 0,
        };
        for (l, want) in [
            (
                &full,
                "store /var/cache/kiln\n\
                 LAYERS\n\
                 \x20 base     base/busybox             sha256:e3b0c44298fc    1.1 MiB\n\
                 \x20 app      app/hello                sha256:e3b0      512 B\n\
                 IMAGES\n\
                 \x20 hello            1.0        sha256:e3b0c44298fc   64.0 MiB\n\
                 total 1.1 MiB\n",
            ),
            (&empty, "store /var/cache/kiln\nLAYERS\nIMAGES\ntotal 0 B\n"),
        ] {
            assert_eq!(text(|o| listing(o, Path::new("/var/cache/kiln"), l)), want);
        }
    }
}
