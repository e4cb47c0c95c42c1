//! The integration tests: one binary, one module per command, helpers in `harness`.

mod harness;
mod registry;
mod registry_harness;
