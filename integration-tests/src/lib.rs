//! Root-only tests across the plugins, in `tests/`: real namespaces, the
//! built plugin binaries, and the Go plugins side by side. Their fixtures
//! (throw-away namespaces and data dirs removed even when a test panics, a
//! runner that execs plugin binaries exactly as a container runtime does,
//! host snapshots) live in the dev-only crate `rcni-test-support`
//! (`test-support/`), shared with every other crate's tests.
