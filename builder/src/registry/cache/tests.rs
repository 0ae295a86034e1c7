//! Key entries: written, parsed and checked without a registry.

use super::*;
use crate::util::error::exit_code;

/// A fresh minisign key pair: the signing key (read back through
/// [`SigningKey::load`]) and its public half.
fn key_pair(dir: &std::path::Path, name: &str) -> (SigningKey, PublicKey) {
    let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let path = dir.join(name);
    std::fs::write(&path, pair.sk.to_box(None).unwrap().to_bytes()).unwrap();
    let k = SigningKey::load(&path).unwrap();
    let pk = k.public().clone();
    (k, pk)
}

fn entry() -> KeyEntry {
    KeyEntry {
        key: format!("sha256:{}", "1".repeat(64)).parse().unwrap(),
        digest: Digest::of(b"layer blob"),
        diff_id: format!("sha256:{}", "2".repeat(64)).parse().unwrap(),
        name: "base/busybox".into(),
        kind: "base".into(),
        size: b"layer blob".len() as u64,
        tar_size: 10240,
        packages: Vec::new(),
        source_date_epoch: Some(1_700_000_000),
    }
}

/// Parse and check a key entry manifest as a lookup does.
fn check(manifest: &[u8], config: &[u8], key: &str, pk: Option<&PublicKey>) -> Result<KeyEntry> {
    let m = parse_key_manifest(manifest, "entry")?;
    assert_eq!(m.config.digest.to_string(), sha256_digest(config));
    check_key_entry(&m, config, key, pk, "entry")
}

#[test]
fn tags_are_the_key_with_a_dash() {
    let key = format!("sha256:{}", "ab".repeat(32));
    assert_eq!(
        tag_for(&key).unwrap(),
        format!("sha256-{}", "ab".repeat(32))
    );
    assert!(tag_for("sha256:xyz").is_err());
    assert!(tag_for("../../etc").is_err());
}

#[test]
fn signed_entries_round_trip_and_unsigned_ones_need_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let (k, pk) = key_pair(dir.path(), "cache.key");
    let e = entry();
    let key = e.key.to_string();
    let (manifest, config) = key_entry_manifest(&e, Some(&k)).unwrap();
    let got = check(&manifest, &config, &key, Some(&pk)).unwrap();
    assert_eq!(
        serde_json::to_value(&got).unwrap(),
        serde_json::to_value(&e).unwrap()
    );
    // Without a required key, a signed and an unsigned entry both serve.
    check(&manifest, &config, &key, None).unwrap();
    let (plain, config) = key_entry_manifest(&e, None).unwrap();
    check(&plain, &config, &key, None).unwrap();
}

#[test]
fn refused_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (k, pk) = key_pair(dir.path(), "cache.key");
    let (other, _) = key_pair(dir.path(), "other.key");
    let e = entry();
    let key = e.key.to_string();
    let (signed, config) = key_entry_manifest(&e, Some(&k)).unwrap();
    let (unsigned, _) = key_entry_manifest(&e, None).unwrap();
    let (by_other, _) = key_entry_manifest(&e, Some(&other)).unwrap();
    // The signed bytes changed (a package list edited after signing): the
    // manifest is rewritten to name the new config, the signature kept.
    let mut edited = e.clone();
    edited.tar_size += 1;
    let edited_config = serde_json::to_vec(&edited).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&signed).unwrap();
    v["config"]["digest"] = json!(sha256_digest(&edited_config));
    v["config"]["size"] = json!(edited_config.len());
    let edited_m = serde_json::to_vec(&v).unwrap();
    // The manifest's layer names another blob than the entry does.
    let mut v: serde_json::Value = serde_json::from_slice(&unsigned).unwrap();
    v["layers"][0]["digest"] = json!(sha256_digest(b"another blob"));
    let swapped_layer = serde_json::to_vec(&v).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&unsigned).unwrap();
    v["artifactType"] = json!("application/vnd.kiln.image.v1");
    let wrong_type = serde_json::to_vec(&v).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&unsigned).unwrap();
    let l = v["layers"][0].clone();
    v["layers"] = json!([l.clone(), l]);
    let two_layers = serde_json::to_vec(&v).unwrap();
    let not_json_config = b"{\"key\": ".to_vec();
    let mut v: serde_json::Value = serde_json::from_slice(&unsigned).unwrap();
    v["config"]["digest"] = json!(sha256_digest(&not_json_config));
    v["config"]["size"] = json!(not_json_config.len());
    let not_json_m = serde_json::to_vec(&v).unwrap();
    let other_key = format!("sha256:{}", "3".repeat(64));

    /// Name, manifest, config, key asked for, required public key, error wanted.
    type Case<'a> = (
        &'a str,
        &'a [u8],
        &'a [u8],
        &'a str,
        Option<&'a PublicKey>,
        &'a str,
    );
    let cases: &[Case] = &[
        (
            "unsigned, key required",
            &unsigned,
            &config,
            &key,
            Some(&pk),
            "not signed",
        ),
        (
            "signed by another key",
            &by_other,
            &config,
            &key,
            Some(&pk),
            "not by the given public key",
        ),
        (
            "edited after signing",
            &edited_m,
            &edited_config,
            &key,
            Some(&pk),
            "does not verify",
        ),
        (
            "another key's entry",
            &signed,
            &config,
            &other_key,
            Some(&pk),
            "not key",
        ),
        (
            "entry and manifest disagree",
            &swapped_layer,
            &config,
            &key,
            None,
            "the manifest's blob",
        ),
        (
            "not a key entry",
            &wrong_type,
            &config,
            &key,
            None,
            "artifactType",
        ),
        (
            "two layers",
            &two_layers,
            &config,
            &key,
            None,
            "exactly one",
        ),
        (
            "config not JSON",
            &not_json_m,
            &not_json_config,
            &key,
            None,
            "not readable",
        ),
        (
            "manifest not JSON",
            b"<html>",
            &config,
            &key,
            None,
            "not JSON",
        ),
    ];
    for (name, m, c, key, pk, want) in cases {
        let err = check(m, c, key, *pk).expect_err(name);
        assert_eq!(exit_code(&err), 1, "{name}: {err:#}");
        assert!(format!("{err:#}").contains(want), "{name}: {err:#}");
    }
}
