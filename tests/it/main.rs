//! The integration tests: one binary, one module per command, helpers in `harness`.

mod archives;
mod attest;
mod bake;
mod binfmt;
mod binfmt_managed;
mod build;
mod frontend;
mod fuzz;
mod harness;
mod help;
mod local;
mod manifest;
mod outputs;
mod registry;
mod registry_harness;
mod registry_quirks;
mod run;
mod sec_archive;
mod sec_build;
mod sec_confine;
mod sec_containers;
mod sec_network;
mod sec_registry;
mod sec_store;
mod services;
mod verify;
