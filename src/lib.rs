//! The `tripline` binary as a library: the daemon's wiring, the HTTP API,
//! tokens, configuration and the CLI client. `main.rs` only parses the
//! command line; tests drive [`api::router`] in process (with
//! `tower::ServiceExt::oneshot`) where a socket is not the point, and
//! [`daemon::run`] on a port-0 listener where it is.
//!
//! ```
//! let config = tripline::config::Config::default();
//! config.validate().unwrap();
//! assert!(config.listen.ip().is_loopback());
//! ```

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod detection;
pub mod http;
pub mod hunt;
