//! Standard Webhooks signatures (standardwebhooks.com): a receiver checks
//! `webhook-signature` against HMAC-SHA256 of `id.timestamp.body` under
//! the shared secret, `whsec_` followed by the key in base64.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::DeliverError;

/// Bytes of a generated key (Svix and the specification use 24 to 64).
const KEY_BYTES: usize = 32;
const PREFIX: &str = "whsec_";

/// A signing secret. Its `Debug` shows nothing of it, so it cannot reach a
/// log by accident; [`Secret::reveal`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl Secret {
    /// A new random secret.
    pub fn generate() -> Result<Secret, DeliverError> {
        let mut key = vec![0u8; KEY_BYTES];
        getrandom::fill(&mut key).map_err(|e| DeliverError::Internal(format!("no randomness for a secret: {e}")))?;
        Ok(Secret { key })
    }

    /// Reads `whsec_<base64>`; the key must be 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Secret, DeliverError> {
        let bad = |why: &str| DeliverError::BadWebhook(format!("secret: {why}"));
        let b64 = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("must start with whsec_ followed by the key in base64"))?;
        let key = B64
            .decode(b64.trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64.trim_end_matches('=')))
            .map_err(|_| bad("the part after whsec_ is not base64"))?;
        if !(24..=64).contains(&key.len()) {
            return Err(bad("the key must be 24 to 64 bytes"));
        }
        Ok(Secret { key })
    }

    /// The secret as `whsec_<base64>`: shown once when generated, written
    /// to the outbox so deliveries can be signed, never logged.
    pub fn reveal(&self) -> String {
        format!("{PREFIX}{}", B64.encode(&self.key))
    }

    /// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: one signature per secret, space
/// separated (the current one first, then one still in its rotation
/// overlap).
pub fn signature_header(secrets: &[&Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries.
    #[test]
    fn signs_as_the_specification_example() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("the example secret");
        let sig = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused() {
        let s = Secret::generate().expect("randomness");
        assert_eq!(Secret::parse(&s.reveal()).expect("its own form"), s);
        assert_eq!(format!("{s:?}"), "Secret(redacted)");
        for bad in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_c2hvcnQ="] {
            assert!(Secret::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rotation_sends_both_signatures() {
        let (a, b) = (Secret::generate().expect("rng"), Secret::generate().expect("rng"));
        let h = signature_header(&[&a, &b], "msg_1", 1, b"{}");
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(parts, vec![a.sign("msg_1", 1, b"{}"), b.sign("msg_1", 1, b"{}")]);
    }
}
