//! The integration tests: one binary, one module per command, helpers in `harness`.

mod archives;
mod bake;
mod binfmt;
mod build;
mod fuzz;
mod harness;
mod local;
mod manifest;
mod registry;
mod registry_harness;
mod run;
mod sec_registry;
mod sec_store;
mod verify;
