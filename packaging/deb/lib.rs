//! Packaging only: this crate exists to carry the `[package.metadata.deb]`
//! section that `cargo deb -p rcni-plugins-deb` turns into the
//! `rcni-cni-plugins` Debian package. It has no code.
