//! pipeline.yaml, the one declaration of the VideoSearcher pipeline, as a
//! typed and checked model. `load` is the entry point; every error about the
//! file's content is a [`Diagnostic`] pointing at the line to change.

mod check;
pub mod contract;
mod diagnostic;
mod load;
mod model;
pub mod plan;
mod raw;
mod spans;
mod suggest;
pub mod timeouts;
mod units;

pub use diagnostic::{Diagnostic, Warning};
pub use load::{load, parse_manifest};
pub use model::*;
pub use units::{format_duration, parse_cpu, parse_duration, parse_memory};
