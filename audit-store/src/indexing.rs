//! What the store derives from each event to answer filters without an index per column:
//! its filterable values, and the facet values the filter menus offer.

use std::collections::HashSet;

use crate::event::AuditEvent;

/// The filterable values of one event, borrowed from an [`AuditEvent`] or a stored row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Filterable<'a> {
    pub(crate) tenant: Option<&'a str>,
    pub(crate) category: &'a str,
    pub(crate) action: &'a str,
    pub(crate) outcome: &'a str,
    pub(crate) actor_id: Option<&'a str>,
    pub(crate) actor_email: Option<&'a str>,
    pub(crate) actor_name: Option<&'a str>,
    // Read by the SQLite terms index only: PostgreSQL computes its terms on the server.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) resource_id: Option<&'a str>,
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) resource_name: Option<&'a str>,
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) request_id: &'a str,
}

impl<'a> Filterable<'a> {
    pub(crate) fn of(event: &'a AuditEvent) -> Self {
        Filterable {
            tenant: event.tenant.as_deref(),
            category: &event.category,
            action: event.action.as_str(),
            outcome: event.outcome.as_str(),
            actor_id: event.actor_id.as_deref(),
            actor_email: event.actor_email.as_deref(),
            actor_name: event.actor_name.as_deref(),
            resource_id: event.resource_id.as_deref(),
            resource_name: event.resource_name.as_deref(),
            request_id: &event.request_id,
        }
    }

    /// The facet rows the event contributes: `[tenant, kind, value, email, name]` with kind
    /// `category`, `action`, `outcome`, and `user` when it has an actor id or e-mail.
    pub(crate) fn facet_rows(&self) -> impl Iterator<Item = [Option<&'a str>; 5]> + use<'a> {
        let tenant = self.tenant;
        let user = (self.actor_id.is_some() || self.actor_email.is_some()).then_some([
            tenant,
            Some("user"),
            self.actor_id,
            self.actor_email,
            self.actor_name,
        ]);
        [
            Some([tenant, Some("category"), Some(self.category), None, None]),
            Some([tenant, Some("action"), Some(self.action), None, None]),
            Some([tenant, Some("outcome"), Some(self.outcome), None, None]),
            user,
        ]
        .into_iter()
        .flatten()
    }
}

/// FNV-1a over `parts`, each preceded by a presence byte so `None` and `""` differ.
pub(crate) fn fingerprint(parts: &[Option<&str>]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |byte: u8| {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for part in parts {
        match part {
            None => eat(0),
            Some(text) => {
                eat(1);
                text.bytes().for_each(&mut eat);
                eat(0xff);
            }
        }
    }
    hash
}

/// How many facet values and names a store remembers as written before it starts over
/// (forgetting costs a redundant insert that the database ignores, never a wrong facet).
const REMEMBERED: usize = 200_000;

/// The facet values and resource names of a batch that this store has not written yet.
#[derive(Debug, Default)]
pub(crate) struct NewValues {
    /// `[tenant, kind, value, email, name]`.
    pub(crate) facets: Vec<[Option<String>; 5]>,
    pub(crate) names: Vec<String>,
    fingerprints: Vec<u64>,
}

/// The facet values and resource names a store knows are written, by fingerprint.
#[derive(Debug, Default)]
pub(crate) struct Written {
    seen: HashSet<u64>,
}

impl Written {
    /// What of `events` is not known to be written.
    pub(crate) fn new_values(&self, events: &[AuditEvent]) -> NewValues {
        let mut new = NewValues::default();
        let mut now = HashSet::new();
        for event in events {
            let filterable = Filterable::of(event);
            for facet in filterable.facet_rows() {
                let print = fingerprint(&facet);
                if !self.seen.contains(&print) && now.insert(print) {
                    new.facets.push(facet.map(|part| part.map(str::to_owned)));
                    new.fingerprints.push(print);
                }
            }
            if let Some(name) = event.resource_name.as_deref() {
                let print = fingerprint(&[None, Some(name)]);
                if !self.seen.contains(&print) && now.insert(print) {
                    new.names.push(name.to_owned());
                    new.fingerprints.push(print);
                }
            }
        }
        new
    }

    /// Remembers `new` as written (after its transaction committed).
    pub(crate) fn remember(&mut self, new: &NewValues) {
        if self.seen.len() + new.fingerprints.len() > REMEMBERED {
            self.seen.clear();
        }
        self.seen.extend(&new.fingerprints);
    }
}
