//! The Dockerfile frontend, pure (no I/O): three layers that never mix, as in BuildKit's frontend
//! — `syntax` (the parse-dockerfile crate, source lines), `instructions` (typed, flags checked)
//! and `plan` (ARG/ENV expansion with `expand`'s shell rules, the stage graph, platforms) — and
//! `dockerignore`, the context's ignore rules. The builder (`crate::builder`) executes the plans.

pub mod dockerignore;
pub mod expand;
pub mod instructions;
pub mod plan;
pub mod syntax;

pub use syntax::DockerfileError;
