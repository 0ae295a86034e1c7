//! The image manifest: what an image is made of, written beside it as
//! `NAME-VERSION.manifest.json` and kept in the store under the image digest.
//!
//! A manifest read back is untrusted input: its name and version become
//! directory and file names (the release store, OCI tags), its `image.file`
//! the name a published image is written under, its digests store paths.
//! [`Manifest::from_json`] therefore checks each of them against what
//! `kiln build` can write ([`valid_name`], [`valid_file_name`], [`Digest`]).

use serde::{Deserialize, Serialize};

use crate::util::digest::Digest;
use crate::util::error::InputError;

/// Manifest schema identifier; bumped on incompatible changes.
pub const SCHEMA: &str = "kiln.manifest/v1";

/// Longest image name or version ([`valid_name`]).
pub const NAME_MAX: usize = 128;

/// Image names and versions (a recipe's `image.name` and `image.version`, a
/// manifest's `name` and `version`): an ASCII letter or digit, then letters,
/// digits and `._+-`, at most [`NAME_MAX`] bytes. Safe as a file name, a
/// path component and an OCI tag.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
        && s.len() <= NAME_MAX
}

/// A plain file name: one path component, not hidden (so never `.` or `..`),
/// no control characters, at most 255 bytes (NAME_MAX of Linux
/// filesystems), so it names a file in the directory it is joined to and
/// nowhere else.
pub fn valid_file_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && !s.contains('/')
        && !s.chars().any(char::is_control)
        && s.len() <= 255
}

/// Why bytes are not a usable kiln manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON of a manifest's shape, or another schema.
    #[error("not a kiln manifest: {0}")]
    NotManifest(String),
    /// A kiln manifest with a field `kiln build` could not have written.
    #[error("field `{field}`: {message}")]
    Field {
        /// The field (`name`, `image.file`, `layers[0].digest`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ManifestError {
    /// The error as bad input read from `file` (exit code 2).
    pub fn in_file(self, file: impl Into<String>) -> InputError {
        match self {
            ManifestError::NotManifest(_) => InputError::file(file, self.to_string()),
            ManifestError::Field { field, message } => InputError {
                file: file.into(),
                line: None,
                field: Some(field),
                message,
            },
        }
    }
}

/// An image manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// [`SCHEMA`].
    pub schema: String,
    /// Image name.
    pub name: String,
    /// Image version.
    pub version: String,
    /// The recipe it was built from.
    pub recipe: RecipeRef,
    /// SOURCE_DATE_EPOCH of the build.
    pub source_date_epoch: i64,
    /// Where it came from: the recipe, the environment, or derived from the packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_source: Option<EpochSource>,
    /// The layers, bottom first.
    pub layers: Vec<ManifestLayer>,
    /// The image file.
    pub image: ImageFile,
    /// The disk: kernel, command line, root hash, partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<crate::model::disk::DiskInfo>,
    /// The recipe's boot-test settings, so `kiln test IMAGE` needs no recipe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<crate::model::checks::TestSpec>,
    /// What built it.
    pub builder: BuilderInfo,
}

/// The recipe an image was built from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecipeRef {
    /// File name of the recipe.
    pub file: String,
    /// `sha256:` of the recipe's bytes.
    pub digest: Digest,
}

/// One layer of an image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestLayer {
    /// Layer name (`base/busybox`).
    pub name: String,
    /// base, packages or app.
    pub kind: String,
    /// Layer key.
    pub key: Digest,
    /// Blob digest.
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Blob size.
    pub size: u64,
    /// Debian packages that went into the layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<crate::model::deb::DebPackage>,
    /// The registry layer cache (`oci://HOST/REPO`) the layer was taken
    /// from, when this build neither had it in its store nor built it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
}

/// The image file itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageFile {
    /// `raw`: a GPT disk image.
    pub format: String,
    /// File name, relative to the manifest.
    pub file: String,
    /// `sha256:` of the file: the image's name.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

/// The builder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuilderInfo {
    /// `kiln`.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Layer format version.
    pub layer_format: u32,
}

impl Manifest {
    /// Parse a manifest's JSON, its typed fields (digests, GUIDs, the root
    /// hash) checked as they are read, and [`check`](Manifest::check) it.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        // The schema first: JSON of another kind is not a manifest, whatever
        // its fields; a kiln manifest with a bad field is a bad manifest.
        #[derive(Deserialize)]
        struct Schema {
            schema: String,
        }
        let s: Schema =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::NotManifest(e.to_string()))?;
        if s.schema != SCHEMA {
            return Err(ManifestError::NotManifest(format!(
                "schema {:?}, not {SCHEMA:?}",
                s.schema
            )));
        }
        let m: Manifest = crate::util::record::parse_json(bytes).map_err(|e| match e.field {
            Some(field) => ManifestError::Field {
                field,
                message: e.message,
            },
            None => ManifestError::NotManifest(e.message),
        })?;
        m.check()?;
        Ok(m)
    }

    /// Check the fields that become paths and names (digests are checked
    /// by their types).
    pub fn check(&self) -> Result<(), ManifestError> {
        let bad = |field: String, message: String| Err(ManifestError::Field { field, message });
        for (field, value) in [("name", &self.name), ("version", &self.version)] {
            if !valid_name(value) {
                return bad(
                    field.into(),
                    format!("{value:?} is not an image {field} ([A-Za-z0-9][A-Za-z0-9._+-]*, at most {NAME_MAX} bytes)"),
                );
            }
        }
        if !valid_file_name(&self.image.file) {
            return bad(
                "image.file".into(),
                format!(
                    "{:?} is not a plain file name (no `/`, not hidden, no control characters)",
                    self.image.file
                ),
            );
        }
        Ok(())
    }

    /// The root hash sidecar of a disk image, as (file name, content):
    /// `NAME-VERSION.roothash` holding the root partition's dm-verity root
    /// hash in hex and a newline, the file systemd looks for beside
    /// `NAME-VERSION.raw` (systemd.exec(5) `RootHash=`, as systemd-repart
    /// and mkosi write it), so that systemd-dissect, systemd-nspawn
    /// `--image` and `RootImage=` set up verity for the root on their own.
    pub fn roothash_sidecar(&self) -> Option<(String, String)> {
        self.disk.as_ref().map(|d| {
            (
                format!("{}-{}.roothash", self.name, self.version),
                format!("{}\n", d.root_hash),
            )
        })
    }
}

impl BuilderInfo {
    /// This builder.
    pub fn current() -> Self {
        BuilderInfo {
            name: "kiln".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            layer_format: crate::fs::layer::LAYER_FORMAT_VERSION,
        }
    }
}

/// Where a build's SOURCE_DATE_EPOCH came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EpochSource {
    /// `image.source_date_epoch` in the recipe.
    Recipe,
    /// The `SOURCE_DATE_EPOCH` environment variable.
    Environment,
    /// Derived from the layers' packages (see the module documentation).
    Derived,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A well-formed manifest of `hello 1.0` (digests `sha256:11…`, `sha256:22…`, …).
    pub(crate) fn sample() -> Manifest {
        let h = |c: &str| Digest::parse_prefixed(&format!("sha256:{}", c.repeat(64))).unwrap();
        Manifest {
            schema: SCHEMA.into(),
            name: "hello".into(),
            version: "1.0".into(),
            recipe: RecipeRef {
                file: "hello.toml".into(),
                digest: h("1"),
            },
            source_date_epoch: 1_700_000_000,
            epoch_source: None,
            layers: vec![ManifestLayer {
                cache: None,
                name: "base/busybox".into(),
                kind: "base".into(),
                key: h("2"),
                digest: h("3"),
                diff_id: h("4"),
                size: 10,
                packages: vec![],
            }],
            image: ImageFile {
                format: "raw".into(),
                file: "hello-1.0.raw".into(),
                digest: h("5"),
                size: 100,
            },
            disk: None,
            test: None,
            builder: BuilderInfo {
                name: "kiln".into(),
                version: "0.1.0".into(),
                layer_format: 1,
            },
        }
    }

    #[test]
    fn valid_names() {
        for (s, ok) in [
            ("hello", true),
            ("1.0", true),
            ("a_b-c+d", true),
            ("", false),
            ("-x", false),
            (".", false),
            ("..", false),
            ("a b", false),
            ("a/b", false),
            ("a\tb", false),
        ] {
            assert_eq!(valid_name(s), ok, "{s:?}");
        }
        assert!(valid_name(&"a".repeat(NAME_MAX)));
        assert!(!valid_name(&"a".repeat(NAME_MAX + 1)));
    }

    #[test]
    fn valid_file_names() {
        for (s, ok) in [
            ("hello-1.0.raw", true),
            ("a", true),
            ("..raw", false),
            (".hidden", false),
            ("a\tb", false),
            ("", false),
            (".", false),
            ("..", false),
            ("../x.raw", false),
            ("/etc/passwd", false),
            ("a/b", false),
            ("a\0b", false),
        ] {
            assert_eq!(valid_file_name(s), ok, "{s:?}");
        }
        assert!(valid_file_name(&"x".repeat(255)));
        assert!(!valid_file_name(&"x".repeat(256)));
    }

    /// Every digest, GUID and hash of a manifest is refused where the
    /// manifest is read when it is not in the one spelling its field has,
    /// and the error names the field.
    #[test]
    fn from_json_refuses_a_malformed_digest_naming_its_field() {
        let mut good = sample();
        good.disk = Some(crate::model::disk::tests::signed_sample());
        good.layers[0].packages = vec![crate::model::deb::DebPackage {
            name: "busybox".into(),
            version: "1".into(),
            architecture: "amd64".into(),
            sha256: Some(good.image.digest),
            download: None,
        }];
        let mut json = serde_json::to_value(&good).unwrap();
        json["disk"]["partitions"] = serde_json::json!([{
            "index": 1, "name": "root", "offset": 0, "size": 0,
            "type_guid": "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
            "uuid": "00000000-0000-4000-8000-000000000001",
            "sha256": good.image.digest.to_string(),
        }]);
        let read = |j: &serde_json::Value| Manifest::from_json(&serde_json::to_vec(j).unwrap());
        let back = read(&json).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            json,
            "read as written"
        );
        let hex = "ab".repeat(32);
        let prefixed = format!("sha256:{hex}");
        let digests = [
            "recipe.digest",
            "layers.0.key",
            "layers.0.digest",
            "layers.0.diff_id",
            "layers.0.packages.0.sha256",
            "image.digest",
            "disk.uki_digest",
            "disk.init_digest",
            "disk.uki_signature.cert_fingerprint",
            "disk.uki_signature.authenticode_digest",
            "disk.partitions.0.sha256",
        ];
        let mut cases: Vec<(&str, String)> = Vec::new();
        for f in digests {
            for bad in [
                hex.clone(),
                prefixed.to_uppercase(),
                format!("sha256:{}", hex.to_uppercase()),
                prefixed[..70].to_string(),
                format!("{prefixed}0"),
                format!("sha512:{hex}"),
            ] {
                cases.push((f, bad));
            }
        }
        for f in ["disk.root_hash", "disk.pcr11_sha256"] {
            for bad in [
                prefixed.clone(),
                hex.to_uppercase(),
                hex[..62].to_string(),
                format!("{}\nX", &hex[..62]),
            ] {
                cases.push((f, bad));
            }
        }
        for f in [
            "disk.disk_guid",
            "disk.partitions.0.type_guid",
            "disk.partitions.0.uuid",
        ] {
            for bad in [
                "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
                "4f68bce3e8cd4db196e7fbcaf984b709",
                "{4f68bce3-e8cd-4db1-96e7-fbcaf984b709}",
                "urn:uuid:4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
                "4f68bce3-e8cd-4db1-96e7-fbcaf984b70",
            ] {
                cases.push((f, bad.to_string()));
            }
        }
        for (path, bad) in cases {
            let mut j = json.clone();
            let mut at = &mut j;
            for part in path.split('.') {
                at = match part.parse::<usize>() {
                    Ok(i) => &mut at[i],
                    Err(_) => &mut at[part],
                };
            }
            assert!(at.is_string(), "{path}");
            *at = bad.clone().into();
            let want: String = path
                .split('.')
                .map(|p| match p.parse::<usize>() {
                    Ok(i) => format!("[{i}]"),
                    Err(_) => format!(".{p}"),
                })
                .collect();
            match read(&j) {
                Err(ManifestError::Field { field, message }) => {
                    assert_eq!(format!(".{field}"), want, "{bad:?}: {message}");
                }
                other => panic!("{path} = {bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn from_json_checks_what_becomes_a_path() {
        let good = Manifest {
            disk: Some(crate::model::disk::tests::signed_sample()),
            ..sample()
        };
        let bytes = |m: &Manifest| serde_json::to_vec(m).unwrap();
        assert_eq!(Manifest::from_json(&bytes(&good)).unwrap(), good);
        let field = |edit: fn(&mut Manifest)| {
            let mut m = good.clone();
            edit(&mut m);
            match Manifest::from_json(&bytes(&m)) {
                Err(ManifestError::Field { field, .. }) => field,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(field(|m| m.name = "../../etc".into()), "name");
        assert_eq!(field(|m| m.version = "1.0\tname:evil".into()), "version");
        assert_eq!(
            field(|m| m.image.file = "../hello.raw".into()),
            "image.file"
        );
        assert_eq!(field(|m| m.image.file = String::new()), "image.file");
        let (name, content) = good.roothash_sidecar().unwrap();
        assert_eq!(name, format!("{}-{}.roothash", good.name, good.version));
        assert_eq!(
            content,
            format!("{}\n", good.disk.as_ref().unwrap().root_hash)
        );
        let mut other = sample();
        other.schema = "kiln.manifest/v9".into();
        assert!(matches!(
            Manifest::from_json(&bytes(&other)),
            Err(ManifestError::NotManifest(_))
        ));
        assert!(matches!(
            Manifest::from_json(b"{}"),
            Err(ManifestError::NotManifest(_))
        ));
        assert_eq!(
            Manifest::from_json(&[bytes(&good), b" x".to_vec()].concat())
                .map_err(|e| e.to_string())
                .unwrap_err()
                .split(" at ")
                .next(),
            Some("not a kiln manifest: trailing characters")
        );
        let e = ManifestError::Field {
            field: "name".into(),
            message: "bad".into(),
        }
        .in_file("x.manifest.json");
        assert_eq!(e.to_string(), "x.manifest.json: field `name`: bad");
    }
}
