//! Port conformance suites (filled in below).
