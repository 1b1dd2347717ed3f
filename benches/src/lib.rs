//! Benchmark tools for Tripline.
//!
//! - [`gen`]: a deterministic, seeded generator of the events a microservice
//!   fleet produces (HTTP access logs, authentication, CloudTrail records,
//!   host syslog), about 400 bytes a JSON event.
//! - [`stats`]: percentiles and peak RSS.
//! - [`daemon`]: the start-up handshake of `tripline serve`, for every tool
//!   and test that starts one.
//!
//! The binaries: `tripline-gen` (write a corpus), `tripline-load` (drive a
//! daemon over HTTP), `tripline-ceiling` (the same documents straight into
//! tantivy, and through serde_json alone), `tripline-query-bench` (query
//! latency, and ripgrep over the raw files).
//!
//! ```
//! use bench::gen::Generator;
//!
//! let mut a = Generator::new(7, 1_700_000_000_000_000_000);
//! let mut b = Generator::new(7, 1_700_000_000_000_000_000);
//! assert_eq!(a.next_json(), b.next_json());
//! ```

pub mod daemon;
pub mod fleet;
pub mod gen;
pub mod stats;
