//! manifold: a daemonless, multi-architecture OCI image toolkit.
//!
//! Dependencies point one way: `cli` → feature modules (`archive`) → `content`/`store` →
//! `oci`/`reference`/`platform`. See DESIGN.md in the shared notes for the module map.

pub mod archive;
pub mod cli;
pub mod content;
pub mod manifest;
pub mod oci;
pub mod platform;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod store;
