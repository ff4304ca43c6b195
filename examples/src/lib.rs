//! The Mix Modeler demo lives in `src/bin/mix-modeler/`; run it with
//! `cargo run -p audit-examples --bin mix-modeler`.
//!
//! This library only exists so that the README's code samples are compiled as doctests by
//! `cargo test --workspace` and cannot drift from the real API.

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeSamples;
