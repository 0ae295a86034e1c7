//! Whole-image tests, checked with e2fsprogs (e2fsck, debugfs, dumpe2fs).

use super::*;
use crate::tree::{Meta, Node, NodeKind, Tree};
use std::sync::Arc;

fn opts() -> Ext4Options {
    Ext4Options {
        uuid: *b"kiln-ext4-test-u",
        hash_seed: *b"kiln-hash-seed-0",
        label: "kiln-root".into(),
        timestamp: 1_700_000_000,
        margin_percent: 10,
        extra_bytes: 0,
    }
}

#[test]
fn smoke() {
    let mut t = Tree::new(1_600_000_000);
    t.insert("hello", Node { kind: NodeKind::File(Arc::new(b"hi\n".to_vec())), meta: Meta::root(0o644, 5) }).unwrap();
    let img = build(&t, &opts()).unwrap();
    std::fs::write("/tmp/kiln-smoke.img", &img.bytes).unwrap();
}
