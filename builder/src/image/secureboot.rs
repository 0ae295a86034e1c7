//! UEFI Secure Boot keys and the UKI's Authenticode signature
//! (ARCHITECTURE.md "Secure Boot").
//!
//! `kiln keygen --secure-boot` writes self-signed PK, KEK and db key pairs
//! (RSA 2048, PEM: PKCS#8 keys, X.509 certificates). A build given a db key
//! and certificate signs the UKI in process: the Authenticode digest of the
//! PE image ([`crate::fs::uki::authenticode`]) goes into an
//! `SpcIndirectDataContent`, which is signed as a PKCS#7 SignedData
//! (Microsoft's "Windows Authenticode Portable Executable Signature Format";
//! RFC 5652) with RSA PKCS#1 v1.5 over SHA-256. Only the content-type and
//! message-digest attributes are signed, never a signing time, and PKCS#1
//! v1.5 is deterministic, so the same UKI and key give the same bytes.
//!
//! A key or certificate that cannot be used (unreadable, not PEM/DER, not
//! RSA, shorter than 2048 bits, expired, not for code signing, or a key
//! that is not the certificate's) is bad input naming the file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cms::builder::{SignedDataBuilder, SignerInfoBuilder};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::ContentInfo;
use cms::signed_data::{EncapsulatedContentInfo, SignedData, SignerIdentifier};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::sha2::Sha256;
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::Serialize;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::referenced::OwnedToRef;
use x509_cert::der::{Any, Decode, DecodePem, Encode, EncodePem};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::Validity;
use x509_cert::Certificate;

use crate::fs::layer::sha256_digest;
use crate::fs::uki::authenticode;
use crate::model::disk::UkiSignature;
use crate::util::digest::Digest;
use crate::util::error::InputError;

/// `SPC_INDIRECT_DATA_OBJID` (Authenticode).
const SPC_INDIRECT_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.4");
/// `SPC_PE_IMAGE_DATAOBJ` (Authenticode).
const SPC_PE_IMAGE_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.15");
/// id-sha256 (RFC 5754).
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// id-kp-codeSigning (RFC 5280 4.2.1.12).
const KP_CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
/// anyExtendedKeyUsage (RFC 5280 4.2.1.12).
const ANY_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");
/// id-ce-keyUsage.
const ID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
/// id-ce-extKeyUsage.
const ID_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
/// The shortest RSA modulus kiln accepts (and generates).
pub const MIN_RSA_BITS: usize = 2048;
/// How long the certificates `kiln keygen --secure-boot` makes are valid.
const CERT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86_400);
/// The three key pairs of UEFI Secure Boot:
/// the platform key, the key exchange key, the signature database key.
pub const KEY_NAMES: [&str; 3] = ["PK", "KEK", "db"];

/// A db key and its certificate, checked to belong together and to be
/// usable for code signing now.
pub struct UkiSigner {
    key: SigningKey<Sha256>,
    cert: Certificate,
    /// `sha256:` of the certificate's DER.
    pub cert_fingerprint: Digest,
    /// The certificate's subject, as an RFC 4514 string.
    pub subject: String,
}

impl std::fmt::Debug for UkiSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UkiSigner")
            .field("subject", &self.subject)
            .field("cert_fingerprint", &self.cert_fingerprint)
            .finish_non_exhaustive()
    }
}

fn bad(path: &Path, message: impl Into<String>) -> anyhow::Error {
    InputError::file(path.display().to_string(), message).into()
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| bad(path, format!("cannot read the {what}: {e}")))
}

/// Read an X.509 certificate, PEM or DER.
pub fn read_certificate(path: &Path) -> Result<Certificate> {
    let bytes = read(path, "certificate")?;
    let parsed = if bytes.starts_with(b"-----BEGIN") {
        Certificate::from_pem(&bytes)
    } else {
        Certificate::from_der(&bytes)
    };
    parsed.map_err(|e| bad(path, format!("not an X.509 certificate (PEM or DER): {e}")))
}

/// The RSA public key of a certificate.
fn certificate_key(path: &Path, cert: &Certificate) -> Result<RsaPublicKey> {
    RsaPublicKey::try_from(cert.tbs_certificate.subject_public_key_info.owned_to_ref())
        .map_err(|e| bad(path, format!("the certificate's key is not RSA: {e}")))
}

/// Check that `cert` may sign code now: within its validity, and its key
/// usage and extended key usage (when present) allow code signing.
fn check_code_signing(path: &Path, cert: &Certificate, now: std::time::SystemTime) -> Result<()> {
    let validity = &cert.tbs_certificate.validity;
    if validity.not_after.to_system_time() < now {
        return Err(bad(
            path,
            format!("the certificate expired on {}", validity.not_after),
        ));
    }
    if validity.not_before.to_system_time() > now {
        return Err(bad(
            path,
            format!(
                "the certificate is not valid before {}",
                validity.not_before
            ),
        ));
    }
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        let value = ext.extn_value.as_bytes();
        if ext.extn_id == ID_KEY_USAGE {
            let ku = KeyUsage::from_der(value)
                .map_err(|e| bad(path, format!("unreadable keyUsage extension: {e}")))?;
            if !ku.digital_signature() {
                return Err(bad(
                    path,
                    "the certificate's keyUsage does not allow digitalSignature: it cannot sign code",
                ));
            }
        } else if ext.extn_id == ID_EXT_KEY_USAGE {
            let eku = ExtendedKeyUsage::from_der(value)
                .map_err(|e| bad(path, format!("unreadable extKeyUsage extension: {e}")))?;
            if !eku.0.iter().any(|o| *o == KP_CODE_SIGNING || *o == ANY_EKU) {
                return Err(bad(
                    path,
                    "the certificate's extKeyUsage does not include codeSigning",
                ));
            }
        }
    }
    Ok(())
}

/// Read an RSA private key: PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1
/// (`BEGIN RSA PRIVATE KEY`), or PKCS#8 DER. Encrypted keys are refused.
fn read_private_key(path: &Path) -> Result<RsaPrivateKey> {
    let bytes = read(path, "private key")?;
    let key = match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN RSA PRIVATE KEY") => {
            RsaPrivateKey::from_pkcs1_pem(text).map_err(|e| e.to_string())
        }
        Ok(text) if text.contains("-----BEGIN PRIVATE KEY") => {
            RsaPrivateKey::from_pkcs8_pem(text).map_err(|e| e.to_string())
        }
        Ok(text) if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY") => Err(
            "the key is encrypted: kiln needs it unencrypted (`openssl pkey -in KEY -out PLAIN`)"
                .into(),
        ),
        _ => RsaPrivateKey::from_pkcs8_der(&bytes).map_err(|e| e.to_string()),
    }
    .map_err(|e| {
        bad(
            path,
            format!("not an RSA private key (PEM PKCS#8 or PKCS#1): {e}"),
        )
    })?;
    if key.size() * 8 < MIN_RSA_BITS {
        return Err(bad(
            path,
            format!(
                "the RSA key has {} bits; Secure Boot signing needs at least {MIN_RSA_BITS}",
                key.size() * 8
            ),
        ));
    }
    Ok(key)
}

impl UkiSigner {
    /// Load and check a db key and certificate.
    pub fn load(key_path: &Path, cert_path: &Path) -> Result<Self> {
        Self::load_at(key_path, cert_path, std::time::SystemTime::now())
    }

    fn load_at(key_path: &Path, cert_path: &Path, now: std::time::SystemTime) -> Result<Self> {
        let cert = read_certificate(cert_path)?;
        let cert_key = certificate_key(cert_path, &cert)?;
        check_code_signing(cert_path, &cert, now)?;
        let key = read_private_key(key_path)?;
        if key.to_public_key() != cert_key {
            return Err(bad(
                key_path,
                format!(
                    "the key does not match the certificate {}",
                    cert_path.display()
                ),
            ));
        }
        let der = cert.to_der().context("encoding the certificate")?;
        Ok(UkiSigner {
            key: SigningKey::new(key),
            cert_fingerprint: Digest::of(&der),
            subject: cert.tbs_certificate.subject.to_string(),
            cert,
        })
    }
}

/// A DER TLV with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn oid(o: &ObjectIdentifier) -> Vec<u8> {
    tlv(0x06, o.as_bytes())
}

/// The `SpcIndirectDataContent` naming a PE image's SHA-256 Authenticode
/// digest, DER, as Authenticode signers write it (`SpcPeImageData` with no
/// flags and the customary obsolete file link).
fn spc_indirect_data(digest: &[u8; 32]) -> Vec<u8> {
    let obsolete: Vec<u8> = "<<<Obsolete>>>"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    // SpcLink.file [2] { SpcString.unicode [0] IMPLICIT BMPString }.
    let link = tlv(0xa2, &tlv(0x80, &obsolete));
    let pe_image_data = tlv(0x30, &[tlv(0x03, &[0]), tlv(0xa0, &link)].concat());
    let data = tlv(0x30, &[oid(&SPC_PE_IMAGE_DATA), pe_image_data].concat());
    let alg = tlv(0x30, &[oid(&ID_SHA256), vec![0x05, 0x00]].concat());
    let digest_info = tlv(0x30, &[alg, tlv(0x04, digest)].concat());
    tlv(0x30, &[data, digest_info].concat())
}

/// Sign a UKI in place: pad it, append the Authenticode signature, and
/// return what the manifest records of it.
pub fn sign_uki(uki: &mut Vec<u8>, signer: &UkiSigner) -> Result<UkiSignature> {
    authenticode::pad_for_signature(uki);
    let digest = authenticode::digest(uki).context("computing the UKI's Authenticode digest")?;
    let content = EncapsulatedContentInfo {
        econtent_type: SPC_INDIRECT_DATA,
        econtent: Some(Any::from_der(&spc_indirect_data(&digest))?),
    };
    let sha256 = AlgorithmIdentifierOwned {
        oid: ID_SHA256,
        parameters: Some(Any::null()),
    };
    let tbs = &signer.cert.tbs_certificate;
    let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: tbs.issuer.clone(),
        serial_number: tbs.serial_number.clone(),
    });
    let signer_info = SignerInfoBuilder::new(&signer.key, sid, sha256.clone(), &content, None)
        .map_err(|e| crate::env_err!("preparing the signer info: {e}"))?;
    let info = SignedDataBuilder::new(&content)
        .add_digest_algorithm(sha256)
        .and_then(|b| b.add_certificate(CertificateChoices::Certificate(signer.cert.clone())))
        .and_then(|b| b.add_signer_info::<_, rsa::pkcs1v15::Signature>(signer_info))
        .and_then(|b| b.build())
        .map_err(|e| crate::env_err!("signing the UKI: {e}"))?;
    // Authenticode's SignedData is version 1 whatever the content type
    // (RFC 5652 would say 3); the version is outside what is signed.
    let mut signed: SignedData = info.content.decode_as()?;
    signed.version = cms::content_info::CmsVersion::V1;
    let info = ContentInfo {
        content_type: info.content_type,
        content: Any::encode_from(&signed)?,
    };
    authenticode::attach(uki, &info.to_der()?).context("attaching the signature to the UKI")?;
    Ok(UkiSignature {
        signer: signer.subject.clone(),
        cert_fingerprint: signer.cert_fingerprint,
        authenticode_digest: Digest::from(digest),
    })
}

/// What `kiln keygen --secure-boot` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct KeygenReport {
    /// The directory.
    pub dir: PathBuf,
    /// Each key pair: name, key file, certificate file, its fingerprint.
    pub keys: Vec<GeneratedKey>,
}

/// One key pair of [`KeygenReport`].
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedKey {
    /// `PK`, `KEK` or `db`.
    pub name: String,
    /// The private key (mode 0600).
    pub key: PathBuf,
    /// The certificate.
    pub cert: PathBuf,
    /// `sha256:` of the certificate's DER.
    pub cert_fingerprint: String,
}

/// A self-signed certificate for a Secure Boot key.
fn self_signed(name: &str, key: &RsaPrivateKey) -> Result<Certificate> {
    let mut serial = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
    // Positive, without a leading zero octet.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let subject: Name = format!("CN=kiln Secure Boot {name}")
        .parse()
        .context("the certificate subject")?;
    let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key())
        .context("encoding the public key")?;
    let signer = SigningKey::<Sha256>::new(key.clone());
    let mut builder = CertificateBuilder::new(
        Profile::Manual { issuer: None },
        SerialNumber::new(&serial)?,
        Validity::from_now(CERT_LIFETIME)?,
        subject,
        spki,
        &signer,
    )?;
    let ca = name != "db";
    builder.add_extension(&BasicConstraints {
        ca,
        path_len_constraint: None,
    })?;
    let usage = if ca {
        KeyUsages::DigitalSignature | KeyUsages::KeyCertSign
    } else {
        KeyUsages::DigitalSignature.into()
    };
    builder.add_extension(&KeyUsage(usage))?;
    if !ca {
        builder.add_extension(&ExtendedKeyUsage(vec![KP_CODE_SIGNING]))?;
    }
    builder
        .build::<rsa::pkcs1v15::Signature>()
        .map_err(|e| crate::env_err!("signing the {name} certificate: {e}"))
}

/// `kiln keygen --secure-boot -o DIR`: PK, KEK and db key pairs. Refuses
/// to overwrite any of the six files; the keys are written mode 0600.
pub fn keygen(dir: &Path) -> Result<KeygenReport> {
    let files = |name: &str| {
        (
            dir.join(format!("{name}.key")),
            dir.join(format!("{name}.crt")),
        )
    };
    for name in KEY_NAMES {
        let (key, cert) = files(name);
        for p in [key, cert] {
            if p.exists() {
                return Err(bad(&p, "already exists; kiln never overwrites a key"));
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut keys = Vec::new();
    for name in KEY_NAMES {
        let (key_path, cert_path) = files(name);
        let key = RsaPrivateKey::new(&mut rand_core::OsRng, MIN_RSA_BITS)
            .with_context(|| format!("generating the {name} key"))?;
        let cert = self_signed(name, &key)?;
        let key_pem = key.to_pkcs8_pem(LineEnding::LF)?;
        let cert_pem = cert.to_pem(LineEnding::LF)?;
        let write = |path: &Path, data: &[u8], mode: u32| {
            crate::store::write_file(dir, path, mode, crate::store::Replace::No, |f| {
                std::io::Write::write_all(f, data).map_err(Into::into)
            })
        };
        write(&key_path, key_pem.as_bytes(), 0o600)?;
        write(&cert_path, cert_pem.as_bytes(), 0o644)?;
        keys.push(GeneratedKey {
            name: name.to_owned(),
            key: key_path,
            cert: cert_path,
            cert_fingerprint: sha256_digest(&cert.to_der()?),
        });
    }
    Ok(KeygenReport {
        dir: dir.to_path_buf(),
        keys,
    })
}

#[cfg(test)]
#[path = "secureboot_tests.rs"]
mod tests;
