//! The `latch` binary's library half: configuration, start-up, and the composition of every
//! Latch crate into one actix-web application. `main.rs` is only the CLI.

pub mod app;
pub mod bootstrap;
pub mod config;
pub mod expiry;
pub mod metrics;
pub mod retention;
pub mod shed;
pub mod telemetry;

pub use app::{AppState, configure};
pub use config::Config;
