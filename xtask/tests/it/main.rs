//! Integration tests: the real `xtask` binary on temp copies of pipeline files.

mod check;
mod local;
