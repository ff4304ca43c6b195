//! Signed export manifests: what an export contained, vouched for with the host's key.
//!
//! A manifest is one JSON object (see [`crate::export`] and `GET /export/manifest`). Its
//! `signature` is the hex Ed25519 signature over
//! `"audit-export-manifest-v1" ‖ 0x00 ‖ canonical JSON of the manifest without "signature"`,
//! where canonical JSON is compact (no white space), object keys sorted by their UTF-8 bytes
//! at every level, strings escaped as serde_json does (`"`, `\`, control characters; no
//! other escaping) and numbers as integers. Every other field, including any a later version
//! adds, is covered by the signature.

use audit_store::{ChainHash, CheckpointSigner, canonical_value_json, unhex};
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Map, Value};

/// The signing context of manifests.
pub const MANIFEST_CONTEXT: &str = "audit-export-manifest-v1";

/// The `version` this code writes and checks.
pub const MANIFEST_VERSION: u64 = 1;

/// The canonical serialisation of `manifest` without its `signature` field.
///
/// ```
/// use serde_json::json;
/// let manifest = json!({"b": [1, {"z": null, "a": "x"}], "a": 2, "signature": "00"});
/// let bytes = audit_api::manifest::canonical_bytes(manifest.as_object().unwrap());
/// assert_eq!(bytes, br#"{"a":2,"b":[1,{"a":"x","z":null}]}"#);
/// ```
pub fn canonical_bytes(manifest: &Map<String, Value>) -> Vec<u8> {
    let mut unsigned = manifest.clone();
    unsigned.remove("signature");
    // The same canonical form as the hash chain's, so one definition serves both.
    canonical_value_json(&Value::Object(unsigned))
}

/// Adds `public_key` and `signature` to `manifest`; `None` if the signer refused.
pub fn sign(mut manifest: Map<String, Value>, signer: &CheckpointSigner) -> Option<Value> {
    manifest.insert("public_key".into(), Value::from(signer.public_key_hex()));
    manifest.remove("signature");
    let signature = signer.sign_in_context(MANIFEST_CONTEXT, &canonical_bytes(&manifest))?;
    manifest.insert("signature".into(), Value::from(signature));
    Some(Value::Object(manifest))
}

/// Why a manifest does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not a JSON object with `public_key` and `signature` strings.
    #[error("not a manifest: {0}")]
    Malformed(&'static str),
    /// Signed by another key than the trusted one.
    #[error("the manifest is signed by another key than the trusted one")]
    OtherKey,
    /// The signature does not match the content.
    #[error("the manifest's signature does not match: the manifest was forged or altered")]
    BadSignature,
    /// A version this code does not know.
    #[error("unsupported manifest version {0}")]
    Version(String),
}

/// Checks `manifest`'s signature against `key` (and that it names that key and version 1).
pub fn verify(manifest: &Value, key: &VerifyingKey) -> Result<(), ManifestError> {
    let object = manifest
        .as_object()
        .ok_or(ManifestError::Malformed("expected a JSON object"))?;
    let text = |name: &'static str| {
        object
            .get(name)
            .and_then(Value::as_str)
            .ok_or(ManifestError::Malformed(name))
    };
    let public_key = text("public_key")?;
    let signature = text("signature")?;
    if ChainHash(key.to_bytes()).to_hex() != public_key {
        return Err(ManifestError::OtherKey);
    }
    let bytes = unhex(signature).ok_or(ManifestError::BadSignature)?;
    let bytes: [u8; 64] = bytes.try_into().map_err(|_| ManifestError::BadSignature)?;
    let mut message = MANIFEST_CONTEXT.as_bytes().to_vec();
    message.push(0);
    message.extend_from_slice(&canonical_bytes(object));
    key.verify_strict(&message, &Signature::from_bytes(&bytes))
        .map_err(|_| ManifestError::BadSignature)?;
    match object.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(MANIFEST_VERSION) => Ok(()),
        other => Err(ManifestError::Version(
            other.map_or_else(|| "(missing)".into(), Value::to_string),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signed_manifests_verify_and_any_change_fails() {
        let signer = CheckpointSigner::from_seed([9; 32]);
        let key = signer.verifying_key();
        let manifest = json!({"version": 1, "row_count": 3, "filters": {"tenant": ["a"]}});
        let signed = sign(manifest.as_object().unwrap().clone(), &signer).unwrap();
        assert_eq!(verify(&signed, &key), Ok(()));
        let mut altered = signed.clone();
        altered["row_count"] = json!(2);
        assert_eq!(verify(&altered, &key), Err(ManifestError::BadSignature));
        let mut added = signed.clone();
        added["extra"] = json!(true);
        assert_eq!(verify(&added, &key), Err(ManifestError::BadSignature));
        let other = CheckpointSigner::from_seed([1; 32]).verifying_key();
        assert_eq!(verify(&signed, &other), Err(ManifestError::OtherKey));
        assert!(verify(&json!([1]), &key).is_err());
        // Key order in the file does not matter; the canonical form sorts.
        let reordered: Value =
            serde_json::from_str(&serde_json::to_string_pretty(&signed).unwrap()).unwrap();
        assert_eq!(verify(&reordered, &key), Ok(()));
    }
}
