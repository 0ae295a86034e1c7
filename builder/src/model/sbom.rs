//! The software bill of materials written beside every image as
//! `NAME-VERSION.spdx.json`: SPDX 2.3 in its JSON serialisation
//! (<https://spdx.github.io/spdx-spec/v2.3/>). The image is the described
//! package; it CONTAINS its layers, and each layer CONTAINS the Debian
//! packages that went into it, with version, supplier, download location,
//! sha256 of the .deb and a `pkg:deb` package URL.
//!
//! Deterministic: the creation time is SOURCE_DATE_EPOCH and the document
//! namespace is derived from the image digest.

use serde_json::{json, Value};

use crate::model::manifest::Manifest;
use crate::util::digest::Digest;

/// An SPDX identifier from free text: `SPDXRef-` then `[A-Za-z0-9.-]` only.
fn spdx_id(kind: &str, i: usize, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{kind}-{i}-{clean}")
}

/// Percent-encode for a package URL component (purl-spec).
fn purl_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Seconds since the epoch as an SPDX timestamp (`YYYY-MM-DDThh:mm:ssZ`, RFC 3339 UTC).
pub fn spdx_time(secs: i64) -> String {
    crate::util::time::rfc3339(secs)
}

/// SPDX `checksums` of a digest: none where it is not known.
fn checksums(digest: Option<Digest>) -> Value {
    match digest {
        Some(d) => json!([{"algorithm": "SHA256", "checksumValue": d.hex()}]),
        None => json!([]),
    }
}

/// The SPDX document for an image.
pub fn document(m: &Manifest) -> Value {
    let image_id = "SPDXRef-Image".to_string();
    let mut packages = vec![json!({
        "SPDXID": image_id,
        "name": m.name,
        "versionInfo": m.version,
        "packageFileName": m.image.file,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "checksums": checksums(Some(m.image.digest)),
        "supplier": "NOASSERTION",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "comment": format!("kiln disk image built from {} ({})", m.recipe.file, m.recipe.digest),
    })];
    // Who signed the UKI for Secure Boot, as an attribution on the image.
    if let Some(sig) = m.disk.as_ref().and_then(|d| d.uki_signature.as_ref()) {
        packages[0]["attributionTexts"] = json!([format!(
            "UKI signed for UEFI Secure Boot by {} (certificate {}, Authenticode digest {})",
            sig.signer, sig.cert_fingerprint, sig.authenticode_digest
        )]);
    }
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    for (li, l) in m.layers.iter().enumerate() {
        let layer_id = spdx_id("Layer", li, &l.name);
        packages.push(json!({
            "SPDXID": layer_id,
            "name": l.name,
            "versionInfo": l.digest,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "checksums": checksums(Some(l.digest)),
            "supplier": "NOASSERTION",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "ARCHIVE",
            "comment": format!("kiln {} layer (zstd-compressed tar), key {}", l.kind, l.key),
        }));
        relationships.push(json!({"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": layer_id}));
        for (pi, p) in l.packages.iter().enumerate() {
            let id = spdx_id("Deb", li * 100_000 + pi, &p.name);
            packages.push(json!({
                "SPDXID": id,
                "name": p.name,
                "versionInfo": p.version,
                "downloadLocation": p.download.clone().unwrap_or_else(|| "NOASSERTION".into()),
                "filesAnalyzed": false,
                "checksums": checksums(p.sha256),
                "supplier": "Organization: Debian",
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": "NOASSERTION",
                "copyrightText": "NOASSERTION",
                "primaryPackagePurpose": "LIBRARY",
                "externalRefs": [{
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": format!("pkg:deb/debian/{}@{}?arch={}", purl_encode(&p.name), purl_encode(&p.version), purl_encode(&p.architecture)),
                }],
            }));
            relationships.push(json!({"spdxElementId": layer_id, "relationshipType": "CONTAINS", "relatedSpdxElement": id}));
        }
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}-{}", m.name, m.version),
        "documentNamespace": format!("https://kiln.invalid/spdx/{}-{}/{}", m.name, m.version, m.image.digest.hex()),
        "creationInfo": {
            "created": spdx_time(m.source_date_epoch),
            "creators": [format!("Tool: kiln-{}", m.builder.version)],
        },
        "documentDescribes": [image_id],
        "packages": packages,
        "relationships": relationships,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_ids() {
        assert_eq!(spdx_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(spdx_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(spdx_id("Deb", 3, "libstdc++6"), "SPDXRef-Deb-3-libstdc--6");
        assert_eq!(purl_encode("1:2.3+b1"), "1%3A2.3%2Bb1");
    }

    #[test]
    fn checksums_are_the_digests_hex() {
        let mut m = crate::model::manifest::tests::sample();
        let d = document(&m);
        let image = &d["packages"][0];
        assert_eq!(image["checksums"][0]["checksumValue"], "5".repeat(64));
        assert_eq!(
            d["packages"][1]["checksums"][0]["checksumValue"],
            "3".repeat(64)
        );
        assert_eq!(
            d["documentNamespace"],
            format!("https://kiln.invalid/spdx/hello-1.0/{}", "5".repeat(64))
        );
        // A .deb whose digest is not known has no checksum.
        m.layers[0].packages = vec![crate::model::deb::DebPackage {
            name: "busybox".into(),
            version: "1".into(),
            architecture: "amd64".into(),
            sha256: None,
            download: None,
        }];
        assert_eq!(document(&m)["packages"][2]["checksums"], json!([]));
    }

    #[test]
    fn a_signed_uki_names_its_signer() {
        let mut m = crate::model::manifest::tests::sample();
        assert!(document(&m)["packages"][0]
            .get("attributionTexts")
            .is_none());
        m.disk = Some(crate::model::disk::tests::signed_sample());
        let text = document(&m)["packages"][0]["attributionTexts"][0].clone();
        assert!(
            text.as_str()
                .unwrap()
                .contains("by CN=fleet db (certificate sha256:aaaa"),
            "{text}"
        );
    }
}
