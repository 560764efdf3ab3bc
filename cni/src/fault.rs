//! Named fault points for tests: a plugin built with debug assertions (the
//! test builds) aborts at the point whose name is in `RCNI_FAULT`, as if it
//! had been killed right there, with nothing undone. The tests then check
//! that a DEL (or a GC) leaves the host exactly as it was before the ADD.
//!
//! Release builds compile every point to nothing and never read the
//! variable, so a production host cannot be made to crash this way.

/// The environment variable holding the name of the point to abort at.
pub const ENV: &str = "RCNI_FAULT";

/// Aborts the process when this is a debug build and `RCNI_FAULT` is `name`.
#[inline]
pub fn point(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os(ENV).is_some_and(|v| v == name) {
        eprintln!("{ENV}: aborting at {name}");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
