//! The webhook signature scheme, for senders and receivers.
//!
//! Every request carries
//!
//! ```text
//! Audit-Webhook-Timestamp: 1767225600                  (Unix seconds when it was sent)
//! Audit-Webhook-Signature: v1=<64 lowercase hex digits>
//! ```
//!
//! where the hex is `HMAC-SHA256(secret, timestamp ‖ "." ‖ body)` over the exact bytes of
//! the body. A receiver recomputes it, compares in constant time, and refuses a timestamp
//! too far from its own clock (5 minutes by default), so a captured request cannot be
//! replayed later. Several `v1=` values separated by commas may appear (a sender rotating
//! its secret); one match suffices. In Python:
//!
//! ```text
//! mac = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
//! ok = any(hmac.compare_digest(mac, v[3:]) for v in sig.split(",") if v.startswith("v1="))
//! ok = ok and abs(time.time() - int(ts)) <= 300
//! ```

use std::time::Duration;

use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2_hmac::Sha256>;

/// The header holding the Unix time (seconds) the request was signed at.
pub const TIMESTAMP_HEADER: &str = "Audit-Webhook-Timestamp";
/// The header holding `v1=<hex HMAC>`.
pub const SIGNATURE_HEADER: &str = "Audit-Webhook-Signature";
/// How far a timestamp may be from the receiver's clock by default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// The MAC over `timestamp ‖ "." ‖ body`; `None` only if the HMAC refused the key, which
/// HMAC (any key length) never does.
fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The `Audit-Webhook-Signature` value for `body` sent at `timestamp` (Unix seconds).
///
/// ```
/// use audit_forward::webhook::{sign, verify};
/// let signature = sign(b"secret", 1_767_225_600, b"{\"id\":1}\n");
/// assert!(signature.starts_with("v1="));
/// assert!(verify(b"secret", "1767225600", &signature, b"{\"id\":1}\n", 1_767_225_700, std::time::Duration::from_secs(300)).is_ok());
/// ```
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let digest = mac(secret, &timestamp.to_string(), body)
        .map(|mac| audit_store::hex(&mac.finalize().into_bytes()))
        .unwrap_or_default();
    format!("v1={digest}")
}

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The timestamp header is missing or not a number.
    #[error("the {TIMESTAMP_HEADER} header is missing or not a Unix time")]
    BadTimestamp,
    /// The timestamp is further from now than the tolerance: a replay or a wrong clock.
    #[error("the request was signed {0} s from now, beyond the tolerance")]
    Stale(u64),
    /// No `v1=` value matches the body: a wrong secret, or the body was altered.
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks a received request: `timestamp` and `signature` are the two header values, `body`
/// the raw bytes, `now` the receiver's Unix time in seconds.
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: u64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let at: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let skew = now.abs_diff(at);
    if skew > tolerance.as_secs() {
        return Err(SignatureError::Stale(skew));
    }
    let matches = signature
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("v1="))
        .filter_map(audit_store::unhex)
        .any(|candidate| {
            mac(secret, timestamp.trim(), body)
                .is_some_and(|mac| mac.verify_slice(&candidate).is_ok())
        });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// [`verify`] against the current time and [`DEFAULT_TOLERANCE`].
pub fn verify_now(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
) -> Result<(), SignatureError> {
    verify(
        secret,
        timestamp,
        signature,
        body,
        unix_now(),
        DEFAULT_TOLERANCE,
    )
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn altered_bodies_wrong_secrets_and_old_requests_fail() {
        let body = b"{\"a\":1}\n";
        let good = sign(b"s3cret", 100, body);
        let ok = |secret: &[u8], ts: &str, sig: &str, body: &[u8], now| {
            verify(secret, ts, sig, body, now, Duration::from_secs(300))
        };
        assert_eq!(ok(b"s3cret", "100", &good, body, 100), Ok(()));
        assert_eq!(
            ok(b"s3cret", "100", &good, b"{\"a\":2}\n", 100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            ok(b"other", "100", &good, body, 100),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        assert_eq!(
            ok(b"s3cret", "101", &good, body, 101),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            ok(b"s3cret", "100", &good, body, 401),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            ok(b"s3cret", "soon", &good, body, 100),
            Err(SignatureError::BadTimestamp)
        );
        let rotated = format!("v1=00ff, {good}");
        assert_eq!(ok(b"s3cret", "100", &rotated, body, 100), Ok(()));
        assert_eq!(
            ok(b"s3cret", "100", "v0=abc", body, 100),
            Err(SignatureError::Mismatch)
        );
    }
}
