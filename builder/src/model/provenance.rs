//! The provenance statement published beside an image: an in-toto
//! Statement v1 (<https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>)
//! whose predicate is SLSA Build Provenance v1
//! (<https://slsa.dev/spec/v1.0/provenance>).
//!
//! - `subject`: the disk image file, by sha256;
//! - `buildDefinition.externalParameters`: the recipe (file and digest) and
//!   SOURCE_DATE_EPOCH, everything a rebuild needs besides the repository;
//! - `buildDefinition.resolvedDependencies`: the recipe, the lock when the
//!   manifest names one, and every layer blob by digest with its layer key
//!   (which pins the package set and the layer format); a layer taken from
//!   a registry layer cache also has a `uri` (`oci://HOST/REPO@sha256:…`)
//!   and the annotation `source: registry`;
//! - `runDetails.builder`: kiln and its version; `byproducts`: the boot-test
//!   verdict that allowed publication.
//!
//! The statement is a pure function of the manifest and the verdict, so
//! publishing the same image twice gives the same bytes.

use serde_json::{json, Value};

use crate::model::manifest::Manifest;
use crate::util::digest::Digest;

/// in-toto Statement v1 `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA Build Provenance v1 `predicateType`.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// kiln's SLSA `buildType`: a URN, since kiln builds are defined by this
/// repository's README ("How an image is built"), not by a hosted page.
pub const BUILD_TYPE: &str = "urn:kiln:buildtype:image:v1";
/// kiln's builder id.
pub const BUILDER_ID: &str = "urn:kiln:builder";

/// `{"sha256": "<hex>"}` for a `sha256:<hex>` digest; `{}` for a string
/// that is not one (the manifest's digests are checked when it is read).
fn digest_set(digest: &str) -> Value {
    match Digest::parse(digest) {
        Ok(d) => json!({ "sha256": d.hex() }),
        Err(_) => json!({}),
    }
}

/// The statement for an image, given its manifest, the manifest as raw
/// JSON (read for optional fields newer builders add: `lock.digest`), and
/// the digest and name of the verdict file that passed it.
pub fn statement(
    manifest: &Manifest,
    manifest_json: &Value,
    verdict_file: &str,
    verdict_digest: &str,
) -> Value {
    let mut deps = vec![json!({
        "name": format!("recipe:{}", manifest.recipe.file),
        "digest": digest_set(&manifest.recipe.digest.to_string()),
    })];
    if let Some(lock) = manifest_json
        .pointer("/lock/digest")
        .and_then(Value::as_str)
    {
        deps.push(json!({ "name": "lock", "digest": digest_set(lock) }));
    }
    for l in &manifest.layers {
        let mut dep = json!({
            "name": format!("layer:{}", l.name),
            "digest": digest_set(&l.digest.to_string()),
            "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
            "annotations": { "kind": l.kind, "key": l.key, "diff_id": l.diff_id, "size": l.size },
        });
        // Taken from a registry layer cache: where, by digest.
        if let Some(cache) = &l.cache {
            dep["uri"] = json!(format!("{cache}@{}", l.digest));
            dep["annotations"]["source"] = json!("registry");
        }
        deps.push(dep);
    }
    // The Secure Boot signer: its certificate is an input of the image.
    let uki_signature = manifest
        .disk
        .as_ref()
        .and_then(|d| d.uki_signature.as_ref());
    if let Some(sig) = uki_signature {
        deps.push(json!({
            "name": format!("secure-boot-cert:{}", sig.signer),
            "digest": digest_set(&sig.cert_fingerprint.to_string()),
        }));
    }
    let mut internal = json!({
        "layer_format": manifest.builder.layer_format,
        "image": { "name": manifest.name, "version": manifest.version },
    });
    if let Some(sig) = uki_signature {
        internal["uki_signature"] = json!(sig);
    }
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{
            "name": manifest.image.file,
            "digest": digest_set(&manifest.image.digest.to_string()),
        }],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "recipe": {
                        "file": manifest.recipe.file,
                        "digest": digest_set(&manifest.recipe.digest.to_string()),
                    },
                    "source_date_epoch": manifest.source_date_epoch,
                },
                "internalParameters": internal,
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": { manifest.builder.name.clone(): manifest.builder.version },
                },
                "metadata": {
                    "invocationId": manifest.image.digest,
                },
                "byproducts": [{
                    "name": verdict_file,
                    "digest": digest_set(verdict_digest),
                    "mediaType": "application/vnd.kiln.verdict.v1+json",
                }],
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_names_subject_recipe_layers_and_builder() {
        let h = |c: &str| format!("sha256:{}", c.repeat(64));
        let m = crate::model::manifest::tests::sample();
        let mut raw = serde_json::to_value(&m).unwrap();
        raw["lock"] = json!({ "digest": h("6") });
        let s = statement(&m, &raw, "hello-1.0.verdict.json", &h("7"));
        assert_eq!(s["_type"], STATEMENT_TYPE);
        assert_eq!(s["predicateType"], PREDICATE_TYPE);
        assert_eq!(s["subject"][0]["digest"]["sha256"], "5".repeat(64));
        let p = &s["predicate"]["buildDefinition"];
        assert_eq!(p["externalParameters"]["source_date_epoch"], 1700000000);
        let names: Vec<&str> = p["resolvedDependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["recipe:hello.toml", "lock", "layer:base/busybox"]);
        assert_eq!(
            s["predicate"]["runDetails"]["builder"]["version"]["kiln"],
            "0.1.0"
        );
        let layer = &p["resolvedDependencies"][2];
        assert!(layer.get("uri").is_none());
        // A layer taken from a registry layer cache names it, by digest.
        let mut from_cache = m.clone();
        from_cache.layers[0].cache = Some("oci://registry.example/team/cache".into());
        let s2 = statement(&from_cache, &raw, "hello-1.0.verdict.json", &h("7"));
        let layer = &s2["predicate"]["buildDefinition"]["resolvedDependencies"][2];
        assert_eq!(
            layer["uri"],
            format!("oci://registry.example/team/cache@{}", m.layers[0].digest)
        );
        assert_eq!(layer["annotations"]["source"], "registry");
        // A pure function: same inputs, same bytes.
        assert_eq!(
            serde_json::to_vec(&s).unwrap(),
            serde_json::to_vec(&statement(&m, &raw, "hello-1.0.verdict.json", &h("7"))).unwrap()
        );
    }

    #[test]
    fn a_signed_uki_names_its_signer() {
        let mut m = crate::model::manifest::tests::sample();
        m.disk = Some(crate::model::disk::tests::signed_sample());
        let raw = serde_json::to_value(&m).unwrap();
        let s = statement(&m, &raw, "v.json", &format!("sha256:{}", "7".repeat(64)));
        let p = &s["predicate"]["buildDefinition"];
        let dep = p["resolvedDependencies"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(dep["name"], "secure-boot-cert:CN=fleet db");
        assert_eq!(dep["digest"]["sha256"], "a".repeat(64));
        assert_eq!(
            p["internalParameters"]["uki_signature"]["signer"],
            "CN=fleet db"
        );
    }
}
