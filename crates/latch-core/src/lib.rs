//! Latch's domain: typed identifiers, entities, errors, the ports (store and session traits) the
//! adapters implement, the one use-case that ends sessions ([`logout::Logout::end`]) and the user
//! use-cases ([`users`]: create, block, unblock, delete).
//!
//! **Invariant:** this crate does no I/O. It knows nothing of actix, diesel or Redis; it only
//! describes what they must do.

pub mod cache;
pub mod clock;
pub mod connection_options;
pub mod connector;
pub mod error;
pub mod ids;
pub mod logout;
pub mod metrics;
pub mod model;
pub mod net;
pub mod paths;
pub mod periodic;
pub mod provision;
pub mod secret;
pub mod session;
pub mod store;
pub mod throttle;
pub mod users;
pub mod validate;

pub use clock::{Clock, SystemClock};
pub use error::{SessionError, StoreError, ValidationError};
pub use ids::*;
pub use secret::{SecretString, SessionSecret};
