//! The SQLite store's inverted index of equality filters: every event's *terms* in one
//! contentless FTS5 table (`audit_terms`, rowid = `seq`).
//!
//! A term is a kind letter and a hash of one filterable value: `t` tenant, `c` category, `a`
//! action, `o` outcome, `u` actor id, `e` e-mail (ASCII lower case, as the user filter
//! compares it), `r` resource id, `n` resource name, `q` request id. FTS5 keeps these as
//! sorted segments that it merges in the background of later inserts, so a batch's terms are
//! written in a few sequential runs instead of a B-tree insert per value per event: that is
//! what makes nine filterable columns cheap to append (ARCHITECTURE.md, "Appending").
//!
//! A term only finds *candidates*: every query still compares the columns themselves, so a
//! hash collision can cost a row read, never a wrong answer. Request ids, unique per event,
//! are hashed into 2^20 buckets, which keeps the index's vocabulary (and its merges) small at
//! the price of a few candidates per look-up.

use std::fmt::Write as _;

pub(crate) use crate::indexing::Filterable;
use crate::term_plan::{TermGroups, TermKind};

/// How many bits of the value's hash a term keeps: request ids, unique per event, are
/// hashed into 2^20 buckets.
fn bits(kind: TermKind) -> u32 {
    match kind {
        TermKind::RequestId => 20,
        _ => 64,
    }
}

/// FNV-1a, 64 bits: stable across platforms and releases (terms are stored), fast on short
/// values. Collisions only add candidates (see the module documentation).
fn hash(kind: TermKind, value: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in std::iter::once(kind.letter() as u8).chain(value.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Appends the term for `value` to `out` (lowercase ASCII letters and digits only, so the
/// `ascii` tokenizer keeps it whole).
pub(crate) fn push_term(out: &mut String, kind: TermKind, value: &str) {
    let value_hash = hash(kind, value) >> (64 - bits(kind));
    let _ = write!(out, "{}{value_hash:x}", kind.letter());
}

/// The FTS5 query of `groups`: `(t1 OR t2) AND (c1)`. Terms are lowercase letters and
/// digits, so the expression holds nothing a user typed and needs no quoting.
pub(crate) fn match_expression(groups: &TermGroups) -> String {
    let mut out = String::new();
    for (g, group) in groups.0.iter().enumerate() {
        if g > 0 {
            out.push_str(" AND ");
        }
        out.push('(');
        for (t, (kind, value)) in group.0.iter().enumerate() {
            if t > 0 {
                out.push_str(" OR ");
            }
            if *kind == TermKind::ActorEmail {
                push_term(&mut out, *kind, &value.to_ascii_lowercase());
            } else {
                push_term(&mut out, *kind, value);
            }
        }
        out.push(')');
    }
    out
}

impl Filterable<'_> {
    /// Every term, space-separated, appended to `out`.
    pub(crate) fn push_terms(&self, out: &mut String) {
        let start = out.len();
        let mut add = |kind: TermKind, value: Option<&str>| {
            if let Some(value) = value {
                if out.len() > start {
                    out.push(' ');
                }
                push_term(out, kind, value);
            }
        };
        add(TermKind::Tenant, self.tenant);
        add(TermKind::Category, Some(self.category));
        add(TermKind::Action, Some(self.action));
        add(TermKind::Outcome, Some(self.outcome));
        add(TermKind::ActorId, self.actor_id);
        let email = self.actor_email.map(str::to_ascii_lowercase);
        add(TermKind::ActorEmail, email.as_deref());
        add(TermKind::ResourceId, self.resource_id);
        add(TermKind::ResourceName, self.resource_name);
        add(TermKind::RequestId, Some(self.request_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Action, AuditEvent};

    // FNV-1a 64 of "cModel", computed independently.
    const PINNED_MODEL: &str = "cfcd022da4339a3ef";

    #[test]
    fn terms_are_stable_single_tokens() {
        // Stored terms must never change meaning: these are fixed for good.
        let term = |kind, value| {
            let mut out = String::new();
            push_term(&mut out, kind, value);
            out
        };
        assert_eq!(term(TermKind::Category, "Model"), PINNED_MODEL);
        let model = term(TermKind::Category, "Model");
        assert!(model.starts_with('c') && model[1..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(model, term(TermKind::Category, "model"));
        assert_ne!(term(TermKind::Category, "x"), term(TermKind::Tenant, "x"));
        let request = term(TermKind::RequestId, "abc");
        assert!(u64::from_str_radix(&request[1..], 16).unwrap() < (1 << 20));
        let event = AuditEvent::builder("Model", Action::Create)
            .internal("job")
            .actor_email("Alice@Acme.test")
            .build();
        let mut terms = String::new();
        Filterable::of(&event).push_terms(&mut terms);
        assert!(terms.contains(&term(TermKind::ActorEmail, "alice@acme.test")));
        assert!(!terms.contains('t'), "no tenant, no tenant term: {terms}");
        assert!(
            terms
                .split(' ')
                .all(|t| t.chars().all(|c| c.is_ascii_alphanumeric()))
        );
    }
}
