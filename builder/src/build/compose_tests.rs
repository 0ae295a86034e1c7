use super::*;
use crate::fs::tree::{Meta, Node};

fn entry(digest: &str) -> (KeyEntry, LayerSource) {
    let e: KeyEntry = serde_json::from_value(serde_json::json!({
        "key": "sha256:k", "digest": digest, "diff_id": "sha256:d", "name": "n",
        "kind": "base", "size": 1, "tar_size": 1, "packages": []
    }))
    .unwrap();
    (e, LayerSource::Store)
}

fn file(t: &mut Tree, path: &str, data: &Arc<Vec<u8>>) {
    let node = Node {
        kind: NodeKind::File(Arc::clone(data)),
        meta: Meta::root(0o644, 0),
    };
    t.insert_with_parents(path, node, &Meta::root(0o755, 0))
        .unwrap();
}

/// A file is traced to the layer whose very bytes the root holds; equal
/// bytes of another layer, or a file an upper layer replaced, are not it.
#[test]
fn layer_of_names_the_layer_whose_bytes_the_root_holds() {
    let kernel = Arc::new(b"kernel".to_vec());
    let (mut base, mut app) = (Tree::new(0), Tree::new(0));
    file(&mut base, "boot/vmlinuz", &kernel);
    file(&mut base, "etc/motd", &Arc::new(b"hi".to_vec()));
    // The app layer replaces the motd with equal bytes of its own.
    file(&mut app, "etc/motd", &Arc::new(b"hi".to_vec()));
    let mut root = Tree::new(0);
    root.apply_layer(&base).unwrap();
    root.apply_layer(&app).unwrap();
    let layers = Layers {
        entries: vec![entry("sha256:base"), entry("sha256:app")],
        trees: vec![base, app],
        root,
    };
    assert_eq!(
        layers.layer_of("boot/vmlinuz").as_deref(),
        Some("sha256:base")
    );
    assert_eq!(layers.layer_of("etc/motd").as_deref(), Some("sha256:app"));
    assert_eq!(layers.layer_of("etc"), None);
    assert_eq!(layers.layer_of("nothing/here"), None);
}
