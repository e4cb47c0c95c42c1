//! The integration tests: one binary, one module per command, helpers in `harness`.

mod archives;
mod binfmt;
mod build;
mod harness;
mod local;
mod registry;
mod registry_harness;
mod run;
mod verify;
