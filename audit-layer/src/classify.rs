//! Which requests are audited, and as what.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use audit_store::Action;
use http::Method;

/// How one method + route pattern is recorded: its category, action, and which path
/// parameter holds the resource id.
///
/// ```
/// use audit_layer::Rule;
/// use audit_store::Action;
///
/// let rule = Rule::new("Plan", Action::custom("change_model")?).resource_param("plan_id");
/// assert_eq!(rule.category(), "Plan");
/// # Ok::<(), audit_store::InvalidName>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    category: String,
    action: Action,
    resource: ResourceParam,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ResourceParam {
    /// The route's last path parameter, if it has one.
    Last,
    Named(String),
    None,
}

impl Rule {
    /// Records the route as `action` on `category`; the resource id is the route's last path
    /// parameter (if any) unless the handler sets it.
    pub fn new(category: impl Into<String>, action: Action) -> Self {
        Self {
            category: category.into(),
            action,
            resource: ResourceParam::Last,
        }
    }

    /// The resource id is the path parameter `name` (without braces).
    pub fn resource_param(mut self, name: impl Into<String>) -> Self {
        self.resource = ResourceParam::Named(name.into());
        self
    }

    /// No path parameter is the resource id (the handler may still set one).
    pub fn without_resource_param(mut self) -> Self {
        self.resource = ResourceParam::None;
        self
    }

    /// The category.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The action.
    pub fn action(&self) -> &Action {
        &self.action
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Record(Rule),
    Skip,
}

/// What to record for one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Classification {
    pub(crate) category: String,
    pub(crate) action: Action,
    pub(crate) resource_id: Option<String>,
}

/// The rules of one layer, keyed by route pattern then method.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    by_route: HashMap<String, Vec<(Method, Entry)>>,
    /// Routes skipped for every method.
    skipped_routes: HashMap<String, ()>,
    /// Category overrides for the defaults of a route.
    categories: HashMap<String, String>,
    /// Derived categories by route, computed once per route: deriving allocates several
    /// strings, and the set of route patterns is fixed by the app, so this stays small.
    derived: Arc<RwLock<HashMap<String, String>>>,
}

/// True for the methods recorded without a rule.
pub(crate) fn is_mutating(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

impl Rules {
    pub(crate) fn add(&mut self, method: Method, route: &str, rule: Rule) {
        self.set(method, route, Entry::Record(rule));
    }

    pub(crate) fn skip(&mut self, method: Method, route: &str) {
        self.set(method, route, Entry::Skip);
    }

    pub(crate) fn skip_route(&mut self, route: &str) {
        self.skipped_routes.insert(route.to_owned(), ());
    }

    pub(crate) fn set_category(&mut self, route: &str, category: String) {
        self.categories.insert(route.to_owned(), category);
    }

    fn set(&mut self, method: Method, route: &str, entry: Entry) {
        let entries = self.by_route.entry(route.to_owned()).or_default();
        entries.retain(|(m, _)| *m != method);
        entries.push((method, entry));
    }

    fn explicit(&self, method: &Method, route: &str) -> Option<&Entry> {
        self.by_route
            .get(route)?
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, entry)| entry)
    }

    /// True when the request is audited at all (cheap: no allocation).
    pub(crate) fn is_audited(&self, method: &Method, route: &str) -> bool {
        if self.skipped_routes.contains_key(route) {
            return false;
        }
        match self.explicit(method, route) {
            Some(Entry::Record(_)) => true,
            Some(Entry::Skip) => false,
            None => is_mutating(method),
        }
    }

    /// What to record for `method` on `route` requested as `path`, or `None` when the request
    /// is not audited.
    pub(crate) fn classify(
        &self,
        method: &Method,
        route: &str,
        path: &str,
    ) -> Option<Classification> {
        if self.skipped_routes.contains_key(route) {
            return None;
        }
        let (category, action, resource) = match self.explicit(method, route) {
            Some(Entry::Skip) => return None,
            Some(Entry::Record(rule)) => {
                (rule.category.clone(), rule.action.clone(), &rule.resource)
            }
            None => {
                let action = match *method {
                    Method::POST => Action::Create,
                    Method::PUT | Method::PATCH => Action::Update,
                    Method::DELETE => Action::Delete,
                    _ => return None,
                };
                let category = match self.categories.get(route) {
                    Some(category) => category.clone(),
                    None => self.derived_category(route),
                };
                (category, action, &ResourceParam::Last)
            }
        };
        let resource_id = match resource {
            ResourceParam::None => None,
            ResourceParam::Last => last_param(route).and_then(|name| path_param(route, path, name)),
            ResourceParam::Named(name) => path_param(route, path, name),
        };
        Some(Classification {
            category,
            action,
            resource_id,
        })
    }

    fn derived_category(&self, route: &str) -> String {
        let cached = self
            .derived
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
            .cloned();
        cached.unwrap_or_else(|| {
            let category = derive_category(route);
            self.derived
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(route.to_owned(), category.clone());
            category
        })
    }

    /// The mutating routes among `routes` that have neither an explicit rule nor an opt-out.
    pub(crate) fn unruled<'a>(
        &self,
        routes: impl IntoIterator<Item = (Method, &'a str)>,
    ) -> Vec<(Method, String)> {
        routes
            .into_iter()
            .filter(|(method, route)| {
                is_mutating(method)
                    && !self.skipped_routes.contains_key(*route)
                    && self.explicit(method, route).is_none()
            })
            .map(|(method, route)| (method, route.to_owned()))
            .collect()
    }
}

/// The category a route gets without a rule: the static segment naming the collection,
/// singularised and title-cased.
///
/// The collection is the segment before a trailing path parameter, or the last static
/// segment otherwise:
///
/// ```
/// use audit_layer::derive_category;
/// assert_eq!(derive_category("/api/dataset-rules/{id}"), "Dataset Rule");
/// assert_eq!(derive_category("/api/models"), "Model");
/// assert_eq!(derive_category("/api/companies/{id}"), "Company");
/// assert_eq!(derive_category("/api/models/{id}/versions"), "Version");
/// assert_eq!(derive_category("/api/marketing_touchpoints/{id}"), "Marketing Touchpoint");
/// assert_eq!(derive_category("/"), "Resource");
/// ```
pub fn derive_category(route: &str) -> String {
    let segment = route
        .split('/')
        .rev()
        .find(|segment| !segment.is_empty() && !is_param(segment));
    let Some(segment) = segment else {
        return "Resource".to_owned();
    };
    let words: Vec<&str> = segment
        .split(['-', '_', '.'])
        .filter(|word| !word.is_empty())
        .collect();
    let last = words.len().saturating_sub(1);
    words
        .iter()
        .enumerate()
        .map(|(index, word)| {
            if index == last {
                capitalise(&singular(word))
            } else {
                capitalise(&word.to_ascii_lowercase())
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn singular(word: &str) -> String {
    let lower = word.to_ascii_lowercase();
    if let Some(stem) = lower.strip_suffix("ies").filter(|stem| !stem.is_empty()) {
        return format!("{stem}y");
    }
    for suffix in ["sses", "uses", "shes", "ches", "xes", "zes"] {
        if lower.ends_with(suffix) {
            return lower[..lower.len() - 2].to_owned();
        }
    }
    if lower.ends_with('s') && !lower.ends_with("ss") && !lower.ends_with("us") && lower.len() > 1 {
        return lower[..lower.len() - 1].to_owned();
    }
    lower
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn is_param(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}') && !segment.starts_with("{{")
}

fn param_name(segment: &str) -> Option<&str> {
    is_param(segment).then(|| segment[1..segment.len() - 1].trim_start_matches('*'))
}

fn last_param(route: &str) -> Option<&str> {
    route.split('/').rev().find_map(param_name)
}

/// The percent-decoded value of parameter `name` of `route` in `path`.
fn path_param(route: &str, path: &str, name: &str) -> Option<String> {
    let mut path_segments = path.split('/');
    for segment in route.split('/') {
        let value = path_segments.next()?;
        if !is_param(segment) {
            continue;
        }
        let wildcard = segment.starts_with("{*");
        if param_name(segment)? == name {
            let raw = if wildcard {
                let rest: Vec<&str> = std::iter::once(value).chain(path_segments).collect();
                rest.join("/")
            } else {
                value.to_owned()
            };
            return Some(percent_decode(&raw));
        }
        if wildcard {
            return None;
        }
    }
    None
}

fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
            if let Some(byte) = hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                out.push(byte);
                index += 3;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        assert_eq!(
            path_param("/api/models/{id}/train", "/api/models/7/train", "id").as_deref(),
            Some("7")
        );
        assert_eq!(
            path_param("/files/{*path}", "/files/a/b%20c", "path").as_deref(),
            Some("a/b c")
        );
        assert_eq!(last_param("/a/{x}/b/{y}/c"), Some("y"));
        assert_eq!(percent_decode("a%2Fb%"), "a/b%");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
    }

    #[test]
    fn defaults() {
        let rules = Rules::default();
        let c = rules
            .classify(&Method::DELETE, "/api/fields/{id}", "/api/fields/3")
            .unwrap();
        assert_eq!(
            (c.category.as_str(), c.action, c.resource_id.as_deref()),
            ("Field", Action::Delete, Some("3"))
        );
        assert!(
            rules
                .classify(&Method::GET, "/api/fields/{id}", "/api/fields/3")
                .is_none()
        );
        assert!(
            rules
                .classify(&Method::HEAD, "/api/fields", "/api/fields")
                .is_none()
        );
        assert_eq!(singular("statuses"), "status");
        assert_eq!(singular("boxes"), "box");
        assert_eq!(singular("data"), "data");
    }
}
