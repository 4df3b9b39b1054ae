//! Content digests, written the one way tiergate writes them: `sha256:<hex>`.

use sha2::{Digest, Sha256};

/// `sha256:` and the lowercase hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    written(Sha256::digest(bytes).as_slice())
}

/// A SHA-256 being fed through `std::io::Write`, so a serializer can write
/// straight into it instead of into a buffer first.
#[derive(Default)]
pub struct Sha256Writer(Sha256);

impl Sha256Writer {
    /// Feeds `bytes`.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest, written `sha256:<hex>`.
    pub fn finish(self) -> String {
        written(self.0.finalize().as_slice())
    }
}

impl std::io::Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `sha256:` and the digest in lowercase hex. Audit chains hash several
/// events per payment, so this is a table lookup, not a `format!` per byte.
fn written(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(7 + 2 * digest.len());
    text.push_str("sha256:");
    for &b in digest {
        text.push(HEX[usize::from(b >> 4)] as char);
        text.push(HEX[usize::from(b & 0xf)] as char);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_the_standard_sha256_in_lowercase_hex() {
        assert_eq!(
            sha256(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut w = Sha256Writer::default();
        w.feed(b"ab");
        std::io::Write::write_all(&mut w, b"c").unwrap();
        assert_eq!(w.finish(), sha256(b"abc"));
    }
}
