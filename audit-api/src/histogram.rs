//! `GET /histogram`: allowed and denied events per hour or day, for the page's chart.
//!
//! Every bar is two bounded counts ([`audit_store::AuditStore::count`]) of the request's
//! filter narrowed to the bar's time range and to one outcome, so the histogram needs no SQL
//! of its own, agrees with `/events` by construction, and costs at most
//! `2 × bars × (bound + 1)` rows whatever the log's size.

use std::str::FromStr;

use audit_store::{EventFilter, MatchCount, Outcome};
use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::{DateTime, Duration, DurationRound, SecondsFormat, Utc};
use futures_util::{StreamExt, stream};
use serde::Serialize;

use crate::error::ApiError;
use crate::guard::CanView;
use crate::handlers::count_if_supported;
use crate::params::{Endpoint, parse_query};
use crate::router::AppState;

/// The most bars one histogram has.
pub(crate) const MAX_BUCKETS: i64 = 1000;

/// How many counts run at the same time.
const PARALLEL_COUNTS: usize = 4;

/// The width of a histogram bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Interval {
    /// One hour, from a full UTC hour.
    Hour,
    /// One day, from 00:00 UTC.
    #[default]
    Day,
}

impl Interval {
    fn as_str(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
        }
    }

    fn width(self) -> Duration {
        match self {
            Interval::Hour => Duration::hours(1),
            Interval::Day => Duration::days(1),
        }
    }

    /// How far back the histogram reaches when the filter gives no `from`.
    fn default_span(self) -> Duration {
        match self {
            Interval::Hour => Duration::hours(48),
            Interval::Day => Duration::days(30),
        }
    }
}

impl FromStr for Interval {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "hour" => Ok(Interval::Hour),
            "day" => Ok(Interval::Day),
            _ => Err("must be `hour` or `day`".into()),
        }
    }
}

/// The body of `GET /histogram`.
#[derive(Debug, Serialize)]
pub(crate) struct Histogram {
    interval: &'static str,
    from: String,
    to: String,
    buckets: Vec<Bucket>,
}

/// One bar, `[start, end)`.
#[derive(Debug, Serialize)]
pub(crate) struct Bucket {
    start: String,
    end: String,
    allow: MatchCount,
    deny: MatchCount,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `GET /histogram`
pub(crate) async fn histogram(
    CanView(viewer): CanView,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Histogram>, ApiError> {
    let query = parse_query(raw.as_deref(), Endpoint::Histogram)?;
    let interval = query.interval.unwrap_or_default();
    let width = interval.width();
    let to = query.filter.to.unwrap_or_else(Utc::now);
    let from = query.filter.from.unwrap_or(to - interval.default_span());
    // Bars start at whole UTC hours or days; the first covers `from`.
    let first = from
        .duration_trunc(width)
        .map_err(|e| ApiError::invalid_parameter("from", e.to_string()))?;
    let bars = (to - first).num_seconds().div_euclid(width.num_seconds())
        + i64::from((to - first).num_seconds().rem_euclid(width.num_seconds()) != 0);
    if bars > MAX_BUCKETS {
        return Err(ApiError::invalid_parameter(
            "interval",
            format!(
                "{bars} bars of one {} are too many (at most {MAX_BUCKETS}): narrow `from`/`to` \
                 or use a wider interval",
                interval.as_str()
            ),
        ));
    }
    // Each bar is the filter within [start, end), clipped to the filter's own range.
    let mut jobs = Vec::new();
    for index in 0..bars.max(0) {
        let start = first + width * i32::try_from(index).unwrap_or(i32::MAX);
        let end = start + width;
        for outcome in [Outcome::Allow, Outcome::Deny] {
            let wanted =
                query.filter.outcomes.is_empty() || query.filter.outcomes.contains(&outcome);
            let filter = EventFilter {
                outcomes: vec![outcome],
                from: Some(start.max(from)),
                to: Some(end.min(to)),
                ..query.filter.clone()
            };
            jobs.push((index, outcome, wanted.then_some(filter)));
        }
    }
    let bound = state.count_bound;
    let counted: Vec<_> = stream::iter(jobs)
        .map(|(index, outcome, filter)| {
            let store = std::sync::Arc::clone(&state.store);
            let scope = viewer.tenants.clone();
            async move {
                let count = match filter {
                    None => Ok(Some(MatchCount::bounded(0, bound))),
                    Some(filter) => count_if_supported(&*store, &filter, &scope, bound).await,
                };
                (index, outcome, count)
            }
        })
        .buffered(PARALLEL_COUNTS)
        .collect()
        .await;
    let zero = MatchCount::bounded(0, bound);
    let mut buckets: Vec<Bucket> = (0..bars.max(0))
        .map(|index| {
            let start = first + width * i32::try_from(index).unwrap_or(i32::MAX);
            Bucket {
                start: rfc3339(start),
                end: rfc3339(start + width),
                allow: zero,
                deny: zero,
            }
        })
        .collect();
    for (index, outcome, count) in counted {
        let Some(count) = count? else {
            return Err(ApiError::NotConfigured(
                "this store cannot count events".into(),
            ));
        };
        if let Some(bucket) = usize::try_from(index).ok().and_then(|i| buckets.get_mut(i)) {
            match outcome {
                Outcome::Allow => bucket.allow = count,
                Outcome::Deny => bucket.deny = count,
            }
        }
    }
    Ok(Json(Histogram {
        interval: interval.as_str(),
        from: rfc3339(first),
        to: rfc3339(first + width * i32::try_from(bars.max(0)).unwrap_or(i32::MAX)),
        buckets,
    }))
}
