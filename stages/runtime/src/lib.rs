//! What every VideoSearcher function shares. A function is a [`Handler`];
//! [`serve`] turns it into an HTTP server that keeps the OpenFaaS watchdog
//! contract, moves artifacts through the object store and measures each
//! invocation.
//!
//! Without the `server` feature only the wire types remain: [`Invocation`],
//! the answers, [`StageError`] and the [`plan`].
//!
//! Architecture invariant: nothing here knows a particular stage; stages never
//! depend on xtask.

#[cfg(feature = "server")]
mod config;
#[cfg(feature = "server")]
mod context;
mod envelope;
mod error;
#[cfg(feature = "server")]
mod function;
#[cfg(feature = "server")]
mod memory;
pub mod plan;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
mod store;

#[cfg(feature = "server")]
pub use config::{parse_duration, parse_var, var, Config, StoreConfig};
#[cfg(feature = "server")]
pub use context::{dead_work_dirs, many, one, Context, ToolOutput, Upload};
pub use envelope::{Artifact, Artifacts, ErrorResponse, Invocation, Metrics, Response, QUEUE_WAIT_HEADER};
pub use error::{ErrorKind, StageError};
#[cfg(feature = "server")]
pub use function::{ffmpeg, param, serve, Handler};
#[cfg(feature = "server")]
pub use store::{check_key, Store, DOCUMENT_LIMIT};

/// The exit status of a function that could not listen on its `PORT`
/// because something else holds it (98 is Linux's `EADDRINUSE`): the
/// runtime that chose the port starts it again on another one.
pub const EXIT_PORT_IN_USE: u8 = 98;
