//! Throw-away directories.

use crate::names::unique_name;
use std::path::{Path, PathBuf};

/// A uniquely named directory under the system temp dir, removed with all
/// it holds on drop (also when the test panics).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// `rcni-test-<pid>-<n>`.
    pub fn new() -> TempDir {
        TempDir::named("rcni-test")
    }

    /// `<prefix>-<pid>-<n>`: a prefix that tells whose it is when one is
    /// left (a killed test). Whatever a dead process of the same pid left
    /// under that name is removed first.
    pub fn named(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique_name(prefix));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
        TempDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside it.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.0.join(rel)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
