//! Keeps secrets out of stored attributes.

use std::collections::BTreeSet;

use audit_store::Attributes;
use serde_json::Value;

/// What a redacted value is replaced with; the key is kept so a reader sees it was there.
pub const REDACTED: &str = "[redacted]";

/// The words that mark an attribute key as a secret by default.
pub const DEFAULT_SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "key",
    "apikey",
    "authorization",
    "auth",
    "cookie",
    "credential",
    "credentials",
    "session",
    "jwt",
    "bearer",
    "signature",
    "otp",
];

/// Replaces the values of attributes whose keys look like secrets with [`REDACTED`],
/// recursively (inside nested objects, arrays, and `changes`).
///
/// A key looks like a secret when one of its words — split at `_`, `-`, `.`, spaces and
/// camelCase humps, compared case-insensitively — or the whole key with separators removed
/// is a secret word: `password`, `api_key`, `accessToken`, `X-Auth-Token` and `APIKEY` all
/// match; `monkey` and `keyboard` do not.
///
/// ```
/// use audit_layer::{Redactor, REDACTED};
/// use serde_json::json;
///
/// let redactor = Redactor::default().with_words(["ssn"]);
/// let mut attributes = json!({
///     "name": "churn",
///     "apiKey": "k-123",
///     "owner": {"ssn": "078-05-1120"},
///     "changes": {"password": ["old", "new"], "title": ["a", "b"]},
/// });
/// redactor.redact_value(&mut attributes);
/// assert_eq!(attributes["apiKey"], REDACTED);
/// assert_eq!(attributes["owner"]["ssn"], REDACTED);
/// assert_eq!(attributes["changes"]["password"], REDACTED);
/// assert_eq!(attributes["changes"]["title"], json!(["a", "b"]));
/// assert_eq!(attributes["name"], "churn");
/// ```
#[derive(Debug, Clone)]
pub struct Redactor {
    words: BTreeSet<String>,
}

impl Default for Redactor {
    /// Redacts [`DEFAULT_SECRET_WORDS`].
    fn default() -> Self {
        Self::only(DEFAULT_SECRET_WORDS.iter().copied())
    }
}

impl Redactor {
    /// Redacts exactly `words` (replacing the defaults).
    pub fn only<I, S>(words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            words: words
                .into_iter()
                .map(|word| normalise(word.as_ref()))
                .filter(|word| !word.is_empty())
                .collect(),
        }
    }

    /// Also redacts `words`.
    pub fn with_words<I, S>(mut self, words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.words.extend(
            words
                .into_iter()
                .map(|word| normalise(word.as_ref()))
                .filter(|word| !word.is_empty()),
        );
        self
    }

    /// True when values under `key` are redacted.
    pub fn is_secret(&self, key: &str) -> bool {
        if self.words.contains(&normalise(key)) {
            return true;
        }
        words_of(key).any(|word| self.words.contains(&word))
    }

    /// Redacts every secret-looking key of `attributes`, at any depth.
    pub fn redact(&self, attributes: &mut Attributes) {
        for (key, value) in attributes.iter_mut() {
            if self.is_secret(key) {
                *value = Value::String(REDACTED.to_owned());
            } else {
                self.redact_value(value);
            }
        }
    }

    /// Redacts every secret-looking key inside `value`, at any depth.
    pub fn redact_value(&self, value: &mut Value) {
        match value {
            Value::Object(map) => self.redact(map),
            Value::Array(items) => items.iter_mut().for_each(|item| self.redact_value(item)),
            _ => {}
        }
    }
}

/// Lower case, separators removed: `X-Api_Key` → `xapikey`.
fn normalise(key: &str) -> String {
    key.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The lower-cased words of a key, split at non-alphanumerics and camelCase humps.
fn words_of(key: &str) -> impl Iterator<Item = String> + '_ {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in key.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys() {
        let redactor = Redactor::default();
        for key in [
            "password",
            "Password",
            "api_key",
            "apiKey",
            "APIKEY",
            "x-auth-token",
            "accessToken",
            "client_secret",
            "Authorization",
            "cookie",
            "session_id",
            "private.key",
        ] {
            assert!(redactor.is_secret(key), "{key} not redacted");
        }
        for key in [
            "name",
            "monkey",
            "keyboard",
            "author",
            "tokenizer_name",
            "title",
        ] {
            assert!(!redactor.is_secret(key), "{key} redacted");
        }
    }

    #[test]
    fn configurable() {
        let redactor = Redactor::only(["ssn"]);
        assert!(redactor.is_secret("owner_ssn"));
        assert!(!redactor.is_secret("password"));
    }
}
