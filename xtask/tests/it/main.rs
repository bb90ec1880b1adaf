//! Integration tests: the real `xtask` binary on temp copies of pipeline files.

mod build;
mod check;
mod e2e;
mod experiment;
mod gateway;
mod kubernetes;
mod local;
mod orchestrator;
mod render;
mod scaling;
mod support;
