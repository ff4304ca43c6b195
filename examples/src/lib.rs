//! Example host applications live here (see the demo issue).
