//! Entities Latch keeps in its relational store.

mod client;
mod connection;
mod key;
mod log;
mod log_stream;
mod outbox;
mod scim;
mod token;
mod user;

pub use client::*;
pub use connection::*;
pub use key::*;
pub use log::*;
pub use log_stream::*;
pub use outbox::*;
pub use scim::*;
pub use token::*;
pub use user::*;
