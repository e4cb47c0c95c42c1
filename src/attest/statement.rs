//! in-toto statements (v1): `{"_type", "subject": [{name, digest}], "predicateType",
//! "predicate"}`, the envelope BuildKit, cosign and SLSA verifiers read.

use serde_json::{Value, json};

use crate::oci::Digest;
use crate::platform::Platform;
use crate::reference::Reference;

pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// BuildKit's earlier provenance predicate: recognised when read back.
pub const SLSA_PROVENANCE_V02: &str = "https://slsa.dev/provenance/v0.2";
pub const SPDX_DOCUMENT: &str = "https://spdx.dev/Document";
/// The layer annotation naming a statement's predicate type (BuildKit's).
pub const ANNOTATION_PREDICATE_TYPE: &str = "in-toto.io/predicate-type";

/// One statement, serialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub predicate_type: String,
    pub bytes: Vec<u8>,
}

impl Statement {
    /// A statement about the image manifest `digest` (named as `name`).
    pub fn new(name: &str, digest: &Digest, predicate_type: &str, predicate: Value) -> Statement {
        let statement = json!({
            "_type": STATEMENT_V1,
            "subject": [{
                "name": name,
                "digest": { digest.algorithm().name(): digest.hex() },
            }],
            "predicateType": predicate_type,
            "predicate": predicate,
        });
        Statement {
            predicate_type: predicate_type.to_string(),
            bytes: serde_json::to_vec(&statement).expect("JSON values always serialise"),
        }
    }
}

/// The package URL of an image for a platform (`pkg:docker/reg/name@tag?platform=linux%2Farm64`),
/// as BuildKit names its subjects and base images; `_` when the image has no name.
pub fn image_purl(reference: Option<&Reference>, platform: Option<&Platform>) -> String {
    let Some(r) = reference else {
        return "_".into();
    };
    let version = match (r.tag(), r.digest()) {
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "latest".into(),
    };
    let mut purl = format!("pkg:docker/{}@{version}", r.familiar_name());
    if let Some(p) = platform {
        purl.push_str("?platform=");
        purl.push_str(&p.to_string().replace('/', "%2F"));
    }
    purl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_their_subject_by_digest() {
        let d = Digest::sha256_of(b"manifest");
        let s = Statement::new("_", &d, SPDX_DOCUMENT, json!({"x": 1}));
        let v: Value = serde_json::from_slice(&s.bytes).unwrap();
        assert_eq!(v["_type"], STATEMENT_V1);
        assert_eq!(v["subject"][0]["digest"]["sha256"], d.hex());
        assert_eq!(v["predicateType"], SPDX_DOCUMENT);
        assert_eq!(v["predicate"]["x"], 1);
    }

    #[test]
    fn purls_name_image_and_platform() {
        let r = Reference::parse("127.0.0.1:5000/app/web:1.2").unwrap();
        let p = Platform::parse("linux/arm64").unwrap();
        assert_eq!(
            image_purl(Some(&r), Some(&p)),
            "pkg:docker/127.0.0.1:5000/app/web@1.2?platform=linux%2Farm64%2Fv8"
        );
        let hub = Reference::parse("busybox").unwrap();
        assert_eq!(image_purl(Some(&hub), None), "pkg:docker/busybox@latest");
        assert_eq!(image_purl(None, Some(&p)), "_");
    }
}
