//! ECDSA P-256 keys as cosign and openssl write them: private keys in PKCS#8 PEM (`PRIVATE
//! KEY`), SEC1 PEM (`EC PRIVATE KEY`, what `openssl ecparam -genkey` prints) or cosign's
//! encrypted form (`ENCRYPTED SIGSTORE PRIVATE KEY`, also `ENCRYPTED COSIGN PRIVATE KEY`: a JSON
//! document holding the PKCS#8 key sealed with NaCl secretbox under a scrypt key); public keys
//! in SPKI PEM (`PUBLIC KEY`, cosign.pub). Signatures are ECDSA with SHA-256 over the payload,
//! DER-encoded (RFC 6979 nonces: signing the same payload twice gives the same signature).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::aead::Aead;
use crypto_secretbox::{KeyInit, XSalsa20Poly1305};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use serde_json::{Value, json};

use crate::hint::Hint;

const COSIGN_ENCRYPTED: [&str; 2] = [
    "ENCRYPTED SIGSTORE PRIVATE KEY",
    "ENCRYPTED COSIGN PRIVATE KEY",
];
/// scrypt's cost as cosign writes it (N = 2^15, r = 8, p = 1); older keys used N = 2^16.
/// Other parameters are refused: a key file must not make us spend unbounded memory.
const SCRYPT_LOG_N: [u8; 2] = [15, 16];
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("`{path}` holds no PEM block")]
    NotPem { path: String },
    #[error("`{path}` holds a `{label}` block, which manifold cannot use as {wanted}")]
    Unsupported {
        path: String,
        label: String,
        wanted: &'static str,
    },
    #[error("`{path}` is not an ECDSA P-256 key: {why}")]
    NotP256 { path: String, why: String },
    #[error("`{path}` is encrypted and no password was given")]
    NoPassword { path: String },
    #[error("`{path}` cannot be decrypted: wrong password, or the file is damaged")]
    WrongPassword { path: String },
    #[error("`{path}` is not a valid encrypted cosign key: {why}")]
    BadEncrypted { path: String, why: String },
}

impl Hint for KeyError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            KeyError::NotPem { .. } | KeyError::Unsupported { .. } | KeyError::NotP256 { .. } => {
                "use an ECDSA P-256 key: `manifold sign --generate-key KEY.pem` makes one, as does `openssl ecparam -genkey -name prime256v1 | openssl pkcs8 -topk8 -nocrypt`; verify takes the public key (`openssl ec -in KEY.pem -pubout`)".into()
            }
            KeyError::NoPassword { .. } => {
                "give the key's password in COSIGN_PASSWORD (cosign's variable)".into()
            }
            KeyError::WrongPassword { .. } => "check COSIGN_PASSWORD".into(),
            KeyError::BadEncrypted { .. } => return None,
        })
    }
}

/// A PEM block: its label and decoded bytes.
struct Block {
    label: String,
    der: Vec<u8>,
}

/// Every PEM block of `text` (openssl's `ecparam -genkey` writes `EC PARAMETERS` before the
/// key).
fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut rest = text;
    // Each iteration consumes a BEGIN line: bounded by the text's length.
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = after[..label_end].to_string();
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = body_start.find(&end_marker) else {
            break;
        };
        let body: String = body_start[..end]
            .lines()
            .filter(|l| !l.contains(':'))
            .collect::<String>()
            .split_whitespace()
            .collect();
        if let Ok(der) = STANDARD.decode(body) {
            out.push(Block { label, der });
        }
        rest = &body_start[end + end_marker.len()..];
    }
    out
}

/// A signing key loaded from a file.
#[derive(Clone)]
pub struct PrivateKey(SigningKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

/// A verification key.
#[derive(Debug, Clone)]
pub struct PublicKey(VerifyingKey);

impl PrivateKey {
    /// Parse a private key; `password` is asked only for an encrypted one (None: none given).
    pub fn from_pem(
        path: &str,
        text: &str,
        password: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Result<PrivateKey, KeyError> {
        let not_p256 = |e: &dyn std::fmt::Display| KeyError::NotP256 {
            path: path.to_string(),
            why: e.to_string(),
        };
        let all = blocks(text);
        let Some(block) = all.iter().find(|b| b.label != "EC PARAMETERS") else {
            return Err(KeyError::NotPem {
                path: path.to_string(),
            });
        };
        let key = match block.label.as_str() {
            "PRIVATE KEY" => {
                p256::SecretKey::from_pkcs8_der(&block.der).map_err(|e| not_p256(&e))?
            }
            "EC PRIVATE KEY" => {
                p256::SecretKey::from_sec1_der(&block.der).map_err(|e| not_p256(&e))?
            }
            l if COSIGN_ENCRYPTED.contains(&l) => {
                let password = password().ok_or_else(|| KeyError::NoPassword {
                    path: path.to_string(),
                })?;
                let der = decrypt(path, &block.der, &password)?;
                p256::SecretKey::from_pkcs8_der(&der).map_err(|e| not_p256(&e))?
            }
            other => {
                return Err(KeyError::Unsupported {
                    path: path.to_string(),
                    label: other.to_string(),
                    wanted: "a private key",
                });
            }
        };
        Ok(PrivateKey(SigningKey::from(key)))
    }

    /// A new random key.
    pub fn generate() -> PrivateKey {
        // A random 32-byte string is a valid scalar unless it is zero or not below the group
        // order: a chance of about 2^-32 per try.
        loop {
            let bytes = crate::runtime::containers::random_bytes::<32>();
            if let Ok(k) = SigningKey::from_slice(&bytes) {
                return PrivateKey(k);
            }
        }
    }

    /// PKCS#8 PEM, unencrypted.
    pub fn to_pem(&self) -> String {
        self.0
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .expect("a P-256 key encodes")
            .to_string()
    }

    /// cosign's encrypted form (`ENCRYPTED SIGSTORE PRIVATE KEY`) under `password`.
    pub fn to_encrypted_pem(&self, password: &[u8]) -> String {
        let der = self.0.to_pkcs8_der().expect("a P-256 key encodes");
        let salt = crate::runtime::containers::random_bytes::<32>();
        let nonce = crate::runtime::containers::random_bytes::<24>();
        let key = scrypt_key(password, &salt, SCRYPT_LOG_N[0]);
        let sealed = XSalsa20Poly1305::new(&key.into())
            .encrypt(&nonce.into(), der.as_bytes())
            .expect("secretbox seals any message");
        let doc = json!({
            "kdf": {
                "name": "scrypt",
                "params": {"N": 1u32 << SCRYPT_LOG_N[0], "r": SCRYPT_R, "p": SCRYPT_P},
                "salt": STANDARD.encode(salt),
            },
            "cipher": {"name": "nacl/secretbox", "nonce": STANDARD.encode(nonce)},
            "ciphertext": STANDARD.encode(sealed),
        });
        let body = STANDARD.encode(serde_json::to_vec(&doc).expect("JSON serialises"));
        pem(COSIGN_ENCRYPTED[0], &body)
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }

    /// The DER-encoded ECDSA signature of `payload` (SHA-256).
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let sig: Signature = self.0.sign(payload);
        sig.to_der().as_bytes().to_vec()
    }
}

fn pem(label: &str, base64_body: &str) -> String {
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in base64_body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn scrypt_key(password: &[u8], salt: &[u8], log_n: u8) -> [u8; 32] {
    let params =
        scrypt::Params::new(log_n, SCRYPT_R, SCRYPT_P, 32).expect("the parameters are valid");
    let mut key = [0u8; 32];
    scrypt::scrypt(password, salt, &params, &mut key).expect("the output length is valid");
    key
}

/// Open cosign's encrypted key document (the PEM block's bytes are its JSON).
fn decrypt(path: &str, doc: &[u8], password: &[u8]) -> Result<Vec<u8>, KeyError> {
    let bad = |why: &str| KeyError::BadEncrypted {
        path: path.to_string(),
        why: why.to_string(),
    };
    let v: Value = serde_json::from_slice(doc).map_err(|_| bad("not JSON"))?;
    if v["kdf"]["name"] != "scrypt" || v["cipher"]["name"] != "nacl/secretbox" {
        return Err(bad("only scrypt with nacl/secretbox is known"));
    }
    let params = &v["kdf"]["params"];
    let n = params["N"].as_u64().ok_or_else(|| bad("no scrypt N"))?;
    let log_n = SCRYPT_LOG_N
        .into_iter()
        .find(|l| 1u64 << l == n)
        .filter(|_| params["r"] == SCRYPT_R && params["p"] == SCRYPT_P)
        .ok_or_else(|| bad("unexpected scrypt parameters"))?;
    let field = |v: &Value, what: &str| -> Result<Vec<u8>, KeyError> {
        v.as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or_else(|| bad(&format!("no valid `{what}`")))
    };
    let salt = field(&v["kdf"]["salt"], "salt")?;
    let nonce = field(&v["cipher"]["nonce"], "nonce")?;
    let sealed = field(&v["ciphertext"], "ciphertext")?;
    let nonce: [u8; 24] = nonce
        .try_into()
        .map_err(|_| bad("the nonce is not 24 bytes"))?;
    let key = scrypt_key(password, &salt, log_n);
    XSalsa20Poly1305::new(&key.into())
        .decrypt(&nonce.into(), sealed.as_slice())
        .map_err(|_| KeyError::WrongPassword {
            path: path.to_string(),
        })
}

impl PublicKey {
    /// Parse a public key (SPKI PEM, as cosign.pub and `openssl ec -pubout` write it).
    pub fn from_pem(path: &str, text: &str) -> Result<PublicKey, KeyError> {
        let all = blocks(text);
        let block = all.first().ok_or_else(|| KeyError::NotPem {
            path: path.to_string(),
        })?;
        if block.label != "PUBLIC KEY" {
            return Err(KeyError::Unsupported {
                path: path.to_string(),
                label: block.label.clone(),
                wanted: "a public key",
            });
        }
        let key =
            p256::PublicKey::from_public_key_der(&block.der).map_err(|e| KeyError::NotP256 {
                path: path.to_string(),
                why: e.to_string(),
            })?;
        Ok(PublicKey(VerifyingKey::from(key)))
    }

    /// SPKI PEM.
    pub fn to_pem(&self) -> String {
        self.0
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("a P-256 key encodes")
    }

    /// Whether `der` is a valid signature of `payload` by this key.
    pub fn verify(&self, payload: &[u8], der: &[u8]) -> bool {
        Signature::from_der(der).is_ok_and(|sig| self.0.verify(payload, &sig).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify_and_round_trip() {
        let k = PrivateKey::generate();
        let sig = k.sign(b"payload");
        assert!(k.public().verify(b"payload", &sig));
        assert!(!k.public().verify(b"other", &sig));
        assert_eq!(sig, k.sign(b"payload"), "RFC 6979: deterministic");
        let again = PrivateKey::from_pem("k", &k.to_pem(), || None).unwrap();
        assert!(again.public().verify(b"payload", &sig));
        let public = PublicKey::from_pem("p", &k.public().to_pem()).unwrap();
        assert!(public.verify(b"payload", &sig));
    }

    #[test]
    fn cosign_encrypted_keys_round_trip_with_their_password_only() {
        let k = PrivateKey::generate();
        let pem = k.to_encrypted_pem(b"hello");
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let opened = PrivateKey::from_pem("k", &pem, || Some(b"hello".to_vec())).unwrap();
        assert!(opened.public().verify(b"x", &k.sign(b"x")));
        assert!(matches!(
            PrivateKey::from_pem("k", &pem, || Some(b"wrong".to_vec())),
            Err(KeyError::WrongPassword { .. })
        ));
        assert!(matches!(
            PrivateKey::from_pem("k", &pem, || None),
            Err(KeyError::NoPassword { .. })
        ));
    }

    /// A key cosign wrote (`cosign generate-key-pair` with an empty COSIGN_PASSWORD, scrypt
    /// N = 2^16), as published in conforma/cli's tests of cosign's key loading.
    const COSIGN_EMPTY_PASSWORD_KEY: &str = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----
eyJrZGYiOnsibmFtZSI6InNjcnlwdCIsInBhcmFtcyI6eyJOIjo2NTUzNiwiciI6
OCwicCI6MX0sInNhbHQiOiJLYU9OQzduQVJLOVgxM1FoaWFucjAwTTBGYys2Sitr
dnAxN1FuanpiVk9nPSJ9LCJjaXBoZXIiOnsibmFtZSI6Im5hY2wvc2VjcmV0Ym94
Iiwibm9uY2UiOiJVOHZqWWtqMlZOUFZGdlZFZWZ3bXZ5VGloUERrelBoaCJ9LCJj
aXBoZXJ0ZXh0IjoidWNWMnQ4TTZVNFJvb29FOXc0d3dkc3E1RDYrS2RKY245dERT
KzFwRDRGN040SVJOWEgzSTBua3h1a3NackFOUHR1emIvTkVYQ201dUp3Zjh3Qzl1
VlprbXdwNU5jRUZ6b3ZNS3JCZmNvdXdjaEkrMzkrQ0NhbVZPbzBucmRnZjhvcmpK
dXdrWDBYL1phY0RUTERGaUxyc1laMWVMMmlqMGU1MVRpZmVQNTl4WXNPK1FnM1Jv
OURRVjNQMk9ndDFDaVFHeGg1VXhUZytGc3c9PSJ9
-----END ENCRYPTED SIGSTORE PRIVATE KEY-----
";

    #[test]
    fn a_key_cosign_wrote_opens_with_its_empty_password() {
        let k = PrivateKey::from_pem("cosign.key", COSIGN_EMPTY_PASSWORD_KEY, || Some(Vec::new()))
            .unwrap();
        assert!(k.public().verify(b"x", &k.sign(b"x")));
        assert!(matches!(
            PrivateKey::from_pem("cosign.key", COSIGN_EMPTY_PASSWORD_KEY, || Some(
                b"x".to_vec()
            )),
            Err(KeyError::WrongPassword { .. })
        ));
    }

    #[test]
    fn wrong_kinds_of_file_are_named() {
        assert!(matches!(
            PrivateKey::from_pem("k", "hello", || None),
            Err(KeyError::NotPem { .. })
        ));
        let public = PrivateKey::generate().public().to_pem();
        let e = PrivateKey::from_pem("k", &public, || None).unwrap_err();
        assert!(e.to_string().contains("`PUBLIC KEY` block"), "{e}");
        let private = PrivateKey::generate().to_pem();
        assert!(matches!(
            PublicKey::from_pem("p", &private),
            Err(KeyError::Unsupported { .. })
        ));
    }
}
