//! The OCI structures `kiln pull` reads from a registry, per the OCI Image
//! Specification v1.1 (<https://github.com/opencontainers/image-spec>):
//! descriptors (`descriptor.md`), image manifests (`manifest.md`) and image
//! indexes (`image-index.md`, also the referrers API's answer).
//!
//! A registry is not trusted, so these are parsed from bytes into checked
//! values by hand rather than by serde derive: every error is
//! an exit-1 error ([`check_failed`]) naming the structure and the field (`layers[0].digest`),
//! digests are [`Digest`]s before they go into a URL, and sizes are `u64`s
//! that the callers compare with their limits before fetching anything.
//! Input is at most a few MiB (the callers read bounded); serde_json's own
//! recursion limit keeps a deeply nested document from exhausting the stack.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::{Map, Value};

use crate::util::digest::Digest;
use crate::util::error::check_failed;

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Descriptor {
    /// `mediaType`.
    pub media_type: String,
    /// `digest`.
    pub digest: Digest,
    /// `size`: the content's length in bytes, as the referring document declares it.
    pub size: u64,
    /// `artifactType`, in index entries and referrers.
    pub artifact_type: Option<String>,
    /// `annotations`.
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest (kiln's image, or a referring artifact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageManifest {
    /// `artifactType`.
    pub artifact_type: Option<String>,
    /// `config`.
    pub config: Descriptor,
    /// `layers`.
    pub layers: Vec<Descriptor>,
    /// `subject`: the manifest an artifact refers to.
    pub subject: Option<Descriptor>,
}

/// An image index: its `manifests`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    /// `manifests`.
    pub manifests: Vec<Descriptor>,
}

/// The one schema version the spec defines for manifests and indexes.
const SCHEMA_VERSION: u64 = 2;

fn bad(what: &str, field: &str, message: impl std::fmt::Display) -> anyhow::Error {
    check_failed(format!("{what}: field `{field}`: {message}"))
}

/// The top-level object of a JSON document.
fn document(bytes: &[u8], what: &str) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(check_failed(format!("{what}: not a JSON object"))),
        Err(e) => Err(check_failed(format!("{what}: not JSON: {e}"))),
    }
}

/// Field `key` of object `o` (at `path`) as a string; `None` when absent.
fn opt_str(o: &Map<String, Value>, what: &str, path: &str, key: &str) -> Result<Option<String>> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(what, &join(path, key), "not a string")),
    }
}

fn req_str(o: &Map<String, Value>, what: &str, path: &str, key: &str) -> Result<String> {
    opt_str(o, what, path, key)?.ok_or_else(|| bad(what, &join(path, key), "missing"))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn schema_version(o: &Map<String, Value>, what: &str) -> Result<()> {
    match o.get("schemaVersion").and_then(Value::as_u64) {
        Some(SCHEMA_VERSION) => Ok(()),
        _ => Err(bad(
            what,
            "schemaVersion",
            format!("must be {SCHEMA_VERSION}"),
        )),
    }
}

/// The array at `key`, each element parsed as a descriptor.
fn descriptors(o: &Map<String, Value>, what: &str, key: &str) -> Result<Vec<Descriptor>> {
    let list = o
        .get(key)
        .ok_or_else(|| bad(what, key, "missing"))?
        .as_array()
        .ok_or_else(|| bad(what, key, "not an array"))?;
    list.iter()
        .enumerate()
        .map(|(i, v)| Descriptor::parse(v, what, &format!("{key}[{i}]")))
        .collect()
}

impl Descriptor {
    /// Parse the descriptor at `path` of document `what`.
    fn parse(v: &Value, what: &str, path: &str) -> Result<Descriptor> {
        let o = v
            .as_object()
            .ok_or_else(|| bad(what, path, "not an object"))?;
        let digest = req_str(o, what, path, "digest")?;
        let digest = Digest::parse(&digest).map_err(|e| bad(what, &join(path, "digest"), e))?;
        let size = o
            .get("size")
            .ok_or_else(|| bad(what, &join(path, "size"), "missing"))?
            .as_u64()
            .ok_or_else(|| bad(what, &join(path, "size"), "not a byte count"))?;
        let mut annotations = BTreeMap::new();
        if let Some(a) = o.get("annotations") {
            let field = join(path, "annotations");
            let a = a
                .as_object()
                .ok_or_else(|| bad(what, &field, "not an object"))?;
            for (k, v) in a {
                let v = v
                    .as_str()
                    .ok_or_else(|| bad(what, &format!("{field}.{k:?}"), "not a string"))?;
                annotations.insert(k.clone(), v.to_string());
            }
        }
        Ok(Descriptor {
            media_type: req_str(o, what, path, "mediaType")?,
            digest,
            size,
            artifact_type: opt_str(o, what, path, "artifactType")?,
            annotations,
        })
    }
}

impl ImageManifest {
    /// Parse an image manifest; `what` names it in errors.
    pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<ImageManifest> {
        let o = document(bytes, what)?;
        schema_version(&o, what)?;
        let config = o
            .get("config")
            .ok_or_else(|| bad(what, "config", "missing"))?;
        Ok(ImageManifest {
            artifact_type: opt_str(&o, what, "", "artifactType")?,
            config: Descriptor::parse(config, what, "config")?,
            layers: descriptors(&o, what, "layers")?,
            subject: match o.get("subject") {
                None => None,
                Some(s) => Some(Descriptor::parse(s, what, "subject")?),
            },
        })
    }
}

impl Index {
    /// Parse an image index; `what` names it in errors.
    pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<Index> {
        let o = document(bytes, what)?;
        schema_version(&o, what)?;
        Ok(Index {
            manifests: descriptors(&o, what, "manifests")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn manifest(layers: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "artifactType":"application/vnd.kiln.image.v1",
            "config":{{"mediaType":"application/vnd.kiln.manifest.v1+json","digest":"{D}","size":2}},
            "layers":{layers},
            "subject":{{"mediaType":"m","digest":"{D}","size":7}}}}"#
        )
    }

    #[test]
    fn reads_an_image_manifest() {
        let l = format!(
            r#"[{{"mediaType":"d","digest":"{D}","size":33,"annotations":{{"org.opencontainers.image.title":"x.raw.zst"}}}}]"#
        );
        let m = ImageManifest::parse(manifest(&l).as_bytes(), "m").unwrap();
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.kiln.image.v1")
        );
        assert_eq!((m.config.size, m.config.digest.to_string()), (2, D.into()));
        assert_eq!(m.layers[0].size, 33);
        assert_eq!(
            m.layers[0].annotations["org.opencontainers.image.title"],
            "x.raw.zst"
        );
        assert_eq!(m.subject.map(|s| s.size), Some(7));
    }

    #[test]
    fn errors_name_the_structure_and_the_field() {
        let cases: &[(&str, &str)] = &[
            (r#"[]"#, "not a JSON object"),
            ("{", "not JSON"),
            (r#"{"schemaVersion":1}"#, "field `schemaVersion`"),
            (r#"{"schemaVersion":2}"#, "field `config`: missing"),
            (
                r#"{"schemaVersion":2,"config":{"mediaType":"c","digest":"sha256:00","size":2},"layers":[]}"#,
                "field `config.digest`",
            ),
            (
                &manifest(r#"[{"mediaType":"d","digest":"x","size":1}]"#),
                "field `layers[0].digest`",
            ),
            (
                &manifest(&format!(
                    r#"[{{"mediaType":"d","digest":"{D}","size":-1}}]"#
                )),
                "field `layers[0].size`: not a byte count",
            ),
            (
                &manifest(&format!(
                    r#"[{{"mediaType":"d","digest":"{D}","size":"9"}}]"#
                )),
                "field `layers[0].size`",
            ),
            (
                &manifest(&format!(r#"[{{"mediaType":"d","digest":"{D}"}}]"#)),
                "field `layers[0].size`: missing",
            ),
            (
                &manifest(&format!(r#"[{{"digest":"{D}","size":1}}]"#)),
                "field `layers[0].mediaType`: missing",
            ),
            (
                &manifest(&format!(
                    r#"[{{"mediaType":"d","digest":"{D}","size":1,"annotations":{{"t":1}}}}]"#
                )),
                "field `layers[0].annotations.\"t\"`",
            ),
            (&manifest(r#"{}"#), "field `layers`: not an array"),
            (&manifest(r#"[3]"#), "field `layers[0]`: not an object"),
        ];
        for (doc, want) in cases {
            let e = ImageManifest::parse(doc.as_bytes(), "the image manifest of X").unwrap_err();
            let msg = format!("{e:#}");
            assert!(msg.starts_with("the image manifest of X: "), "{msg}");
            assert!(msg.contains(want), "{doc}: {msg} lacks {want}");
            assert_eq!(crate::util::error::exit_code(&e), 1, "{msg}");
        }
        let e = Index::parse(br#"{"schemaVersion":2,"manifests":{}}"#, "referrers").unwrap_err();
        assert!(format!("{e}").contains("field `manifests`"), "{e}");
    }

    /// Every prefix and many one-byte corruptions of a good manifest: an
    /// answer, never a panic.
    #[test]
    fn damaged_documents_never_panic() {
        let good = manifest(&format!(
            r#"[{{"mediaType":"d","digest":"{D}","size":33,"annotations":{{"a":"b"}}}}]"#
        ));
        let b = good.as_bytes();
        for n in 0..b.len() {
            let _ = ImageManifest::parse(&b[..n], "m");
            let _ = Index::parse(&b[..n], "i");
            for x in [b'"', b'{', b']', b'0', b'-', 0xff] {
                let mut c = b.to_vec();
                c[n] = x;
                let _ = ImageManifest::parse(&c, "m");
            }
        }
        let deep = "[".repeat(100_000);
        assert!(ImageManifest::parse(deep.as_bytes(), "m").is_err());
    }
}
