//! Placeholder: see the open issues.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
