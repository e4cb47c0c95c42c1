//! `build`: Dockerfile → stages → a plan per platform → execution with a content-addressed
//! cache. Three layers that never mix, as in BuildKit's frontend: `syntax` (the
//! parse-dockerfile crate, lines, continuations), `instructions` (typed, flags checked) and
//! `plan` (expansion, stage graph, platforms; no I/O). The executor then runs the plan.

pub mod cache;
pub mod context;
pub mod copy;
pub mod dockerignore;
pub mod expand;
pub mod fetch;
pub mod instructions;
pub mod layer;
pub mod plan;
pub mod syntax;
pub mod tree;

pub use syntax::DockerfileError;
