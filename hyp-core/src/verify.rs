//! What the hypervisor checks of the images it starts, when the deployment was signed: the
//! signed plan carries each domain kernel's SHA-256 (`ferrum,sha256`) and an Ed25519 public
//! key for updates (`/chosen/ferrum,update-key`). An image that `hypctl update` loads later
//! must come with a signature by that key over [`update_message`] (the domain's name and the
//! image's SHA-256), so an image signed for one domain is refused for another.
//!
//! Invariants: nothing here panics on any input; a signature verifies only for exactly the
//! name and image it was made for, with the plan's key.

use sha2::{Digest, Sha256};

/// Bytes of an Ed25519 public key.
pub const KEY_SIZE: usize = 32;
/// Bytes of an Ed25519 signature.
pub const SIG_SIZE: usize = 64;
/// Bytes of a SHA-256 digest.
pub const DIGEST_SIZE: usize = 32;

/// What is signed for an update: a fixed prefix, the domain's name, a NUL, the image's
/// SHA-256.
pub fn update_message(name: &str, digest: &[u8; DIGEST_SIZE]) -> alloc::vec::Vec<u8> {
    let mut m = alloc::vec::Vec::with_capacity(24 + name.len() + DIGEST_SIZE);
    m.extend_from_slice(b"ferrum-update-v1\0");
    m.extend_from_slice(name.as_bytes());
    m.push(0);
    m.extend_from_slice(digest);
    m
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; DIGEST_SIZE] {
    Sha256::digest(data).into()
}

/// SHA-256 over data fed in pieces (an image read page by page).
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The digest.
    pub fn finish(self) -> [u8; DIGEST_SIZE] {
        self.0.finalize().into()
    }
}

/// Why an update's signature is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigError {
    /// The deployment names an update key and no signature came.
    Missing,
    /// The signature does not verify with the plan's key for this domain and image.
    Invalid,
}

impl core::fmt::Display for SigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SigError::Missing => "the signed deployment requires a signature by its update key, and none came",
            SigError::Invalid => "its signature does not verify with the signed deployment's update key",
        })
    }
}

/// Checks `sig` over the update of domain `name` to the image whose SHA-256 is `digest`.
pub fn check_update_sig(
    key: &[u8; KEY_SIZE],
    name: &str,
    digest: &[u8; DIGEST_SIZE],
    sig: Option<&[u8; SIG_SIZE]>,
) -> Result<(), SigError> {
    let sig = sig.ok_or(SigError::Missing)?;
    let pk = ed25519_compact::PublicKey::from_slice(key).map_err(|_| SigError::Invalid)?;
    let s = ed25519_compact::Signature::from_slice(sig).map_err(|_| SigError::Invalid)?;
    pk.verify(update_message(name, digest), &s).map_err(|_| SigError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(seed: u8) -> ed25519_compact::KeyPair {
        ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]))
    }

    fn sign(kp: &ed25519_compact::KeyPair, name: &str, image: &[u8]) -> [u8; SIG_SIZE] {
        *kp.sk.sign(update_message(name, &sha256(image)), None)
    }

    #[test]
    fn sha256_of_abc() {
        let d = sha256(b"abc");
        assert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]);
        let mut h = Hasher::default();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), d);
    }

    #[test]
    fn signatures_bind_key_name_and_image() {
        let (kp, other) = (keypair(1), keypair(2));
        let key: [u8; KEY_SIZE] = *kp.pk;
        let image = b"an image".as_slice();
        let d = sha256(image);
        let sig = sign(&kp, "web", image);
        assert_eq!(check_update_sig(&key, "web", &d, Some(&sig)), Ok(()));
        assert_eq!(check_update_sig(&key, "web", &d, None), Err(SigError::Missing));
        assert_eq!(check_update_sig(&key, "kv", &d, Some(&sig)), Err(SigError::Invalid), "another domain");
        assert_eq!(check_update_sig(&key, "web", &sha256(b"other"), Some(&sig)), Err(SigError::Invalid));
        let by_other = sign(&other, "web", image);
        assert_eq!(check_update_sig(&key, "web", &d, Some(&by_other)), Err(SigError::Invalid), "another key");
        let mut flipped = sig;
        flipped[10] ^= 1;
        assert_eq!(check_update_sig(&key, "web", &d, Some(&flipped)), Err(SigError::Invalid));
        assert_eq!(check_update_sig(&[0xff; 32], "web", &d, Some(&sig)), Err(SigError::Invalid), "not a key");
        assert_eq!(check_update_sig(&key, "web", &d, Some(&[0xff; 64])), Err(SigError::Invalid));
    }
}
