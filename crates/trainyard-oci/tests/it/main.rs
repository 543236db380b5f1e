//! trainyard-oci's integration tests, one binary.
//!
//! - `layout`: pulls from hand-built `oci:` layouts (always run): contents, run config,
//!   corruption, leases and eviction, single-flight.
//! - `registry`: a real registry on loopback (Debian's docker-registry, started by
//!   scripts/registry-up.sh, test images from scripts/test-images.sh); feature `registry`.
//! - `podman`: an image built with `podman build` and never pushed; feature `podman`.
//!
//! Environment-gated tests are ignored without their feature and fail without their
//! environment when it is on.

mod common;
mod layout;
mod podman;
mod registry;
