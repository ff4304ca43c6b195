//! Signed checkpoints: an Ed25519 signature over the chain head at a moment.
//!
//! A hash chain alone cannot tell that its newest links were cut off; a checkpoint published
//! somewhere the database's writers cannot reach can. The recorder writes one periodically
//! and at shutdown, the retention purge writes one at the new start of the chain, and each
//! can be handed to a host callback for publishing.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::chain::{ChainHash, ChainHead, hex, unhex};
use crate::event::rfc3339_micros;

/// Why a checkpoint was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointKind {
    /// Written on the recorder's schedule.
    Periodic,
    /// Written when the recorder shut down.
    Shutdown,
    /// Written by the retention purge: the chain now starts after `seq`.
    Purge,
    /// Written on request.
    Manual,
}

impl CheckpointKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Periodic => "periodic",
            CheckpointKind::Shutdown => "shutdown",
            CheckpointKind::Purge => "purge",
            CheckpointKind::Manual => "manual",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            CheckpointKind::Periodic,
            CheckpointKind::Shutdown,
            CheckpointKind::Purge,
            CheckpointKind::Manual,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// A signed statement "the chain had `seq` events ending in `head` at `created_at`".
/// For a [`CheckpointKind::Purge`] checkpoint, `seq`/`head` is the last *removed* event: the
/// remaining chain continues from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Sequence number of the chain head.
    pub seq: u64,
    /// Hash of the chain head.
    pub head: ChainHash,
    /// When it was signed.
    #[serde(with = "rfc3339_micros")]
    pub created_at: DateTime<Utc>,
    /// Why it was written.
    pub kind: CheckpointKind,
    /// The signer's Ed25519 public key, hex.
    pub public_key: String,
    /// The Ed25519 signature over [`Checkpoint::signed_message`], hex.
    pub signature: String,
}

impl Checkpoint {
    /// The exact bytes that are signed.
    pub fn signed_message(
        seq: u64,
        head: &ChainHash,
        created_at: DateTime<Utc>,
        kind: CheckpointKind,
    ) -> Vec<u8> {
        let mut message = Vec::with_capacity(96);
        message.extend_from_slice(b"audit-checkpoint-v1\0");
        message.extend_from_slice(&seq.to_be_bytes());
        message.extend_from_slice(&head.0);
        message.extend_from_slice(&created_at.timestamp_micros().to_be_bytes());
        message.extend_from_slice(kind.as_str().as_bytes());
        message
    }

    /// Checks the signature against `key` (and that the checkpoint names that key).
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), CheckpointError> {
        if self.public_key != hex(key.as_bytes()) {
            return Err(CheckpointError::OtherKey);
        }
        let bytes = unhex(&self.signature).ok_or(CheckpointError::BadSignature)?;
        let bytes: [u8; 64] = bytes
            .try_into()
            .map_err(|_| CheckpointError::BadSignature)?;
        let message = Self::signed_message(self.seq, &self.head, self.created_at, self.kind);
        key.verify_strict(&message, &Signature::from_bytes(&bytes))
            .map_err(|_| CheckpointError::BadSignature)
    }

    /// The chain head this checkpoint vouches for.
    pub fn chain_head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.head,
        }
    }
}

/// Why a checkpoint does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The signature does not match the content: forged or altered.
    #[error("the signature does not match: the checkpoint was forged or altered")]
    BadSignature,
    /// Signed by a different key than the one trusted.
    #[error("signed by another key than the trusted one")]
    OtherKey,
}

/// A key file that cannot be read or created; see [`CheckpointSigner::load_or_create`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("signing key file {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("signing key file {}: {invalid}", path.display())]
    Invalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong with its content.
        #[source]
        invalid: InvalidKey,
    },
}

/// A key that is not a valid Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Ed25519 key: {0}")]
pub struct InvalidKey(&'static str);

/// Signs checkpoints with the host's Ed25519 key.
///
/// ```
/// use audit_store::{ChainHead, CheckpointKind, CheckpointSigner};
/// let signer = CheckpointSigner::from_seed([7; 32]);
/// let checkpoint = signer.sign(ChainHead::EMPTY, CheckpointKind::Manual);
/// assert!(checkpoint.verify(&signer.verifying_key()).is_ok());
/// ```
#[derive(Clone)]
pub struct CheckpointSigner {
    key: SigningKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("CheckpointSigner")
            .field("public_key", &self.public_key_hex())
            .finish()
    }
}

impl CheckpointSigner {
    /// A signer from a 32-byte Ed25519 seed (the secret key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// A signer from 64 hex digits.
    pub fn from_hex(seed: &str) -> Result<Self, InvalidKey> {
        let bytes = unhex(seed.trim()).ok_or(InvalidKey("expected 64 hex digits"))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| InvalidKey("expected 32 bytes"))?;
        Ok(Self::from_seed(seed))
    }

    /// The public key verifiers need.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as hex.
    pub fn public_key_hex(&self) -> String {
        hex(self.key.verifying_key().as_bytes())
    }

    /// Signs `message` for a purpose other than a checkpoint (an export manifest, say):
    /// returns the hex Ed25519 signature over `context ‖ 0x00 ‖ message`. Contexts starting
    /// with `audit-checkpoint` or containing a NUL are refused (`None`), so such a signature
    /// can never pass as a checkpoint's.
    pub fn sign_in_context(&self, context: &str, message: &[u8]) -> Option<String> {
        if context.starts_with("audit-checkpoint") || context.contains('\0') {
            return None;
        }
        let mut signed = Vec::with_capacity(context.len() + 1 + message.len());
        signed.extend_from_slice(context.as_bytes());
        signed.push(0);
        signed.extend_from_slice(message);
        Some(hex(&self.key.sign(&signed).to_bytes()))
    }

    /// The signer whose secret seed is kept in the file at `path` (64 hex digits), creating
    /// the file with a fresh random key first if it does not exist. A new file is written with
    /// mode 0600 (owner read/write only) on Unix, and is never overwritten. Returns the signer
    /// and whether the key was created now (print its public key then, so it can be recorded
    /// where verifiers find it).
    ///
    /// ```
    /// use audit_store::CheckpointSigner;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("audit-signing.key");
    /// let (first, created) = CheckpointSigner::load_or_create(&path).unwrap();
    /// assert!(created);
    /// let (again, created) = CheckpointSigner::load_or_create(&path).unwrap();
    /// assert!(!created);
    /// assert_eq!(first.public_key_hex(), again.public_key_hex());
    /// ```
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<(Self, bool), KeyFileError> {
        let path = path.as_ref();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let signer = Self::from_hex(&text).map_err(|invalid| KeyFileError::Invalid {
                    path: path.to_owned(),
                    invalid,
                })?;
                return Ok((signer, false));
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KeyFileError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let mut options = std::fs::OpenOptions::new();
        // `create_new`: two processes starting at once never overwrite each other's key;
        // the loser reads the winner's.
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = match options.open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Self::load_or_create(path);
            }
            Err(error) => return Err(io(error)),
        };
        use std::io::Write as _;
        file.write_all(format!("{}\n", hex(&seed)).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        Ok((Self::from_seed(seed), true))
    }

    /// Signs `head` now.
    pub fn sign(&self, head: ChainHead, kind: CheckpointKind) -> Checkpoint {
        let created_at = crate::event::truncate_to_micros(Utc::now());
        let message = Checkpoint::signed_message(head.seq, &head.hash, created_at, kind);
        Checkpoint {
            seq: head.seq,
            head: head.hash,
            created_at,
            kind,
            public_key: self.public_key_hex(),
            signature: hex(&self.key.sign(&message).to_bytes()),
        }
    }
}

/// Rebuilds a stored checkpoint (both backends store the same fields).
pub(crate) fn checkpoint_from_row(
    seq: i64,
    head: &[u8],
    created_at: Option<DateTime<Utc>>,
    kind: &str,
    public_key: String,
    signature: String,
) -> Result<Checkpoint, crate::StoreError> {
    let corrupt =
        |what: &str| crate::StoreError::CorruptRow(format!("checkpoint at seq {seq}: {what}"));
    Ok(Checkpoint {
        seq: u64::try_from(seq).map_err(|_| corrupt("negative seq"))?,
        head: ChainHash::from_slice(head).ok_or_else(|| corrupt("head is not 32 bytes"))?,
        created_at: created_at.ok_or_else(|| corrupt("time out of range"))?,
        kind: CheckpointKind::parse(kind).ok_or_else(|| corrupt("unknown kind"))?,
        public_key,
        signature,
    })
}

/// Parses a public key given as 64 hex digits.
///
/// ```
/// use audit_store::{CheckpointSigner, parse_public_key};
/// let signer = CheckpointSigner::from_seed([1; 32]);
/// assert_eq!(parse_public_key(&signer.public_key_hex()).unwrap(), signer.verifying_key());
/// ```
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, InvalidKey> {
    let bytes = unhex(text.trim()).ok_or(InvalidKey("expected 64 hex digits"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| InvalidKey("expected 32 bytes"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| InvalidKey("not a point on the curve"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn altered_checkpoints_fail() {
        let signer = CheckpointSigner::from_seed([3; 32]);
        let key = signer.verifying_key();
        let good = signer.sign(
            ChainHead {
                seq: 10,
                hash: ChainHash([9; 32]),
            },
            CheckpointKind::Periodic,
        );
        assert!(good.verify(&key).is_ok());
        let mut seq = good.clone();
        seq.seq = 11;
        assert_eq!(seq.verify(&key), Err(CheckpointError::BadSignature));
        let mut kind = good.clone();
        kind.kind = CheckpointKind::Purge;
        assert_eq!(kind.verify(&key), Err(CheckpointError::BadSignature));
        let other = CheckpointSigner::from_seed([4; 32]);
        assert_eq!(
            good.verify(&other.verifying_key()),
            Err(CheckpointError::OtherKey)
        );
        let mut garbage = good;
        garbage.signature = "xyz".into();
        assert_eq!(garbage.verify(&key), Err(CheckpointError::BadSignature));
    }
}
