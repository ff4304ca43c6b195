//! The app's own data: named resources kept in memory, separately for each tenant.
//!
//! Only the audit log is persistent in this demo; everything here is lost on restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde_json::{Map, Value};

/// The kinds of resource the API manages, with their audit category and URL segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    DatasetRule,
    Field,
    Touchpoint,
    Conversion,
    Model,
    Plan,
}

impl Kind {
    /// The kinds with the plain create / update / delete routes.
    pub const CRUD: [Kind; 5] = [
        Kind::DatasetRule,
        Kind::Field,
        Kind::Touchpoint,
        Kind::Conversion,
        Kind::Model,
    ];

    /// The audit category (DESIGN.md's table).
    pub fn category(self) -> &'static str {
        match self {
            Kind::DatasetRule => "Dataset Rule",
            Kind::Field => "Field",
            Kind::Touchpoint => "Marketing Touchpoint",
            Kind::Conversion => "Conversion",
            Kind::Model => "Model",
            Kind::Plan => "Plan",
        }
    }

    /// The collection's path, e.g. `/api/dataset-rules`.
    pub fn collection_path(self) -> &'static str {
        match self {
            Kind::DatasetRule => "/api/dataset-rules",
            Kind::Field => "/api/fields",
            Kind::Touchpoint => "/api/touchpoints",
            Kind::Conversion => "/api/conversions",
            Kind::Model => "/api/models",
            Kind::Plan => "/api/plans",
        }
    }

    /// The path of one item, e.g. `/api/dataset-rules/{id}`.
    pub fn item_path(self) -> String {
        format!("{}/{{id}}", self.collection_path())
    }
}

/// One resource: an id, a name, and whatever other fields the client sent.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Item {
    /// The value of `field` as JSON (`name` included), or null when unset.
    pub fn get(&self, field: &str) -> Value {
        if field == "name" {
            Value::String(self.name.clone())
        } else {
            self.fields.get(field).cloned().unwrap_or(Value::Null)
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    items: HashMap<(String, Kind), BTreeMap<u64, Item>>,
}

/// Every tenant's resources.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    inner: Arc<Mutex<Inner>>,
}

/// Parses an id from the URL; ids are positive integers, anything else matches nothing.
fn key(id: &str) -> Option<u64> {
    id.parse().ok()
}

impl Resources {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every mutation below completes under the lock without panicking paths, so a
        // poisoned lock still guards consistent data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every item of `kind` in `tenant`, oldest first.
    pub fn list(&self, tenant: &str, kind: Kind) -> Vec<Item> {
        self.lock()
            .items
            .get(&(tenant.to_owned(), kind))
            .map(|items| items.values().cloned().collect())
            .unwrap_or_default()
    }

    /// One item.
    pub fn get(&self, tenant: &str, kind: Kind, id: &str) -> Option<Item> {
        let key = key(id)?;
        self.lock()
            .items
            .get(&(tenant.to_owned(), kind))?
            .get(&key)
            .cloned()
    }

    /// Creates an item and returns it.
    pub fn create(
        &self,
        tenant: &str,
        kind: Kind,
        name: String,
        fields: Map<String, Value>,
    ) -> Item {
        let mut inner = self.lock();
        inner.next_id += 1;
        let key = inner.next_id;
        let item = Item {
            id: key.to_string(),
            name,
            fields,
        };
        inner
            .items
            .entry((tenant.to_owned(), kind))
            .or_default()
            .insert(key, item.clone());
        item
    }

    /// Applies `changes` (`name` included) to an item; returns it before and after.
    pub fn update(
        &self,
        tenant: &str,
        kind: Kind,
        id: &str,
        changes: &Map<String, Value>,
    ) -> Option<(Item, Item)> {
        let key = key(id)?;
        let mut inner = self.lock();
        let item = inner
            .items
            .get_mut(&(tenant.to_owned(), kind))?
            .get_mut(&key)?;
        let before = item.clone();
        for (field, value) in changes {
            match (field.as_str(), value) {
                ("id", _) => {}
                ("name", Value::String(name)) => item.name = name.clone(),
                (_, Value::Null) => {
                    item.fields.remove(field);
                }
                _ => {
                    item.fields.insert(field.clone(), value.clone());
                }
            }
        }
        Some((before, item.clone()))
    }

    /// Deletes an item and returns it.
    pub fn delete(&self, tenant: &str, kind: Kind, id: &str) -> Option<Item> {
        let key = key(id)?;
        self.lock()
            .items
            .get_mut(&(tenant.to_owned(), kind))?
            .remove(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_do_not_see_each_other() {
        let resources = Resources::default();
        let model = resources.create("acme", Kind::Model, "Churn".into(), Map::new());
        assert!(resources.get("acme", Kind::Model, &model.id).is_some());
        assert!(resources.get("globex", Kind::Model, &model.id).is_none());
        assert!(resources.get("acme", Kind::Plan, &model.id).is_none());
        assert!(resources.delete("globex", Kind::Model, &model.id).is_none());
        assert_eq!(resources.list("acme", Kind::Model).len(), 1);
    }

    #[test]
    fn updates_return_before_and_after() {
        let resources = Resources::default();
        let rule = resources.create("acme", Kind::DatasetRule, "Dedupe".into(), Map::new());
        let changes: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"name": "Dedupe v2", "window": 7})).unwrap();
        let (before, after) = resources
            .update("acme", Kind::DatasetRule, &rule.id, &changes)
            .unwrap();
        assert_eq!(before.name, "Dedupe");
        assert_eq!(after.name, "Dedupe v2");
        assert_eq!(after.get("window"), 7);
        assert_eq!(before.get("window"), Value::Null);
    }
}
