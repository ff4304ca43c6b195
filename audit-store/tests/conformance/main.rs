//! One conformance suite, run against every backend.
//!
//! Each test body in `suite.rs` is generic over a [`Harness`]; the `conformance!` macro
//! instantiates every body once per backend. SQLite runs always (a fresh file per test);
//! PostgreSQL runs when `AUDIT_TEST_POSTGRES_URL` is set (a fresh schema per test).

mod forwarding;
mod harness;
mod model;
mod suite;

macro_rules! conformance {
    ($backend:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(harness) = crate::harness::$backend(stringify!($test)).await else {
                        return;
                    };
                    crate::suite::$test(&harness).await;
                    harness.cleanup().await;
                }
            )*
        }
    };
}

macro_rules! all_backends {
    ($($test:ident),* $(,)?) => {
        conformance!(sqlite: $($test),*);
        conformance!(postgres: $($test),*);
    };
}

all_backends!(
    round_trip_every_field,
    empty_batch_is_a_no_op,
    fast_verification_path_writes_the_canonical_json,
    nul_characters_are_stored_as_replacement_characters,
    overlong_indexed_values_are_cut_not_refused,
    every_filter_alone,
    combined_filters_and_repeated_values,
    counts_are_exact_up_to_the_bound,
    user_filter_matches_id_or_email_ignoring_case,
    resource_name_is_a_literal_case_insensitive_substring,
    time_range_edges,
    invalid_filters_are_typed_errors,
    pagination_walks_have_no_gap_or_duplicate,
    pagination_with_identical_timestamps,
    every_plan_gives_the_same_answer,
    events_inserted_while_paging,
    cursor_cannot_change_query_or_scope,
    tenant_scope_applies_everywhere,
    get_by_id,
    export_equals_paged_results,
    export_batches_hold_every_kind_of_value,
    facets_within_scope,
    purge_removes_only_older_events,
    update_and_delete_are_rejected_by_the_database,
    concurrent_appends_lose_nothing,
    failed_batch_is_atomic,
    retried_batches_are_idempotent,
    quarantine_keeps_refused_events,
    recorder_runs_are_kept_per_instance,
    two_stores_share_one_database,
    clean_chain_verifies,
    modified_row_is_detected,
    attributes_in_another_json_form_verify_and_changed_ones_do_not,
    deleted_middle_row_is_detected,
    deleted_newest_rows_are_detected,
    swapped_rows_are_detected,
    edited_checkpoint_is_detected,
    purge_keeps_the_chain_verifiable,
    concurrent_writers_keep_one_valid_chain,
    chain_walk_crosses_gaps_wider_than_a_chunk,
    forward_cursors_start_where_asked_and_report_lag,
    forward_lease_is_exclusive_until_it_lapses,
    forward_halt_waits_for_the_operator,
    checkpoints_after_resume_in_store_order,
);
