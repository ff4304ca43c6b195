//! The request ID: kept from the client (or tower-http's `SetRequestId`) when valid,
//! generated otherwise, visible to inner services and echoed on the response.

use http::{HeaderName, HeaderValue, Request};
use tower_http::request_id::RequestId;

/// The default request-ID header.
pub const DEFAULT_REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request ID kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// True for 1–128 visible ASCII characters (`!` through `~`): what the contract accepts
/// from a client.
///
/// ```
/// use audit_layer::is_valid_request_id;
/// assert!(is_valid_request_id(b"req-42"));
/// assert!(!is_valid_request_id(b""));
/// assert!(!is_valid_request_id(b"has space"));
/// assert!(!is_valid_request_id(&[b'a'; 129]));
/// ```
pub fn is_valid_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&value.len())
        && value.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// Picks the request's ID, makes it the one inner services see (header and tower-http
/// [`RequestId`] extension), and returns it.
///
/// Preference: a valid tower-http [`RequestId`] already on the request (an outer
/// `SetRequestIdLayer` ran), then a valid header, then `generated`.
pub(crate) fn establish<B>(
    request: &mut Request<B>,
    header: &HeaderName,
    generated: impl FnOnce() -> String,
) -> HeaderValue {
    let existing = request
        .extensions()
        .get::<RequestId>()
        .map(RequestId::header_value)
        .filter(|value| is_valid_request_id(value.as_bytes()))
        .or_else(|| {
            request
                .headers()
                .get(header)
                .filter(|value| is_valid_request_id(value.as_bytes()))
        })
        .cloned();
    let value = match existing {
        Some(value) => value,
        None => match HeaderValue::try_from(generated()) {
            Ok(value) => value,
            // A UUID always converts; keep the request moving with a fixed marker if a
            // custom generator ever produced something unusable.
            Err(_) => HeaderValue::from_static("invalid-generated-request-id"),
        },
    };
    let headers = request.headers_mut();
    if headers.get(header) != Some(&value) {
        headers.insert(header.clone(), value.clone());
    }
    request
        .extensions_mut()
        .insert(RequestId::new(value.clone()));
    value
}
