use super::*;
use crate::fs::tree::{Meta, Node};

/// A key entry whose blob digest is `sha256:` and `c` 64 times.
fn entry(c: char) -> (KeyEntry, LayerSource) {
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let e: KeyEntry = serde_json::from_value(serde_json::json!({
        "key": d('0'), "digest": d(c), "diff_id": d('1'), "name": "n",
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
        entries: vec![entry('b'), entry('a')],
        trees: vec![base, app],
        root,
    };
    let d = |c: &str| Some(format!("sha256:{}", c.repeat(64)));
    assert_eq!(layers.layer_of("boot/vmlinuz"), d("b"));
    assert_eq!(layers.layer_of("etc/motd"), d("a"));
    assert_eq!(layers.layer_of("etc"), None);
    assert_eq!(layers.layer_of("nothing/here"), None);
}
