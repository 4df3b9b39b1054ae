//! Content digests, written the one way tiergate writes them: `sha256:<hex>`.

use sha2::{Digest, Sha256};

/// `sha256:` and the lowercase hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256:");
    for b in digest {
        text.push_str(&format!("{b:02x}"));
    }
    text
}

/// [`sha256`] over several parts fed in order.
pub(crate) fn sha256_parts(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    let mut text = String::from("sha256:");
    for b in h.finalize() {
        text.push_str(&format!("{b:02x}"));
    }
    text
}
