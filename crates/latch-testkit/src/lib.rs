//! Dev-only support for Latch's tests: the backend matrix (which real services a run may use),
//! entity fixtures, and the conformance suites every store and session backend must pass.
//!
//! **Boundary:** depends on `latch-core` only (plus diesel to make a scratch PostgreSQL schema,
//! diesel and redis to read what a backend stored, and samael to play a SAML IdP), so every crate
//! can use it from its tests without a dependency cycle.

// Test support: a failed step is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod at_rest;
pub mod env;
pub mod fixtures;
pub mod http;
pub mod saml;
pub mod session_conformance;
pub mod store_conformance;

use std::sync::Arc;

/// A store under test, with whatever must live as long as it (temp dir, scratch schema).
pub struct StoreHarness {
    pub store: Arc<dyn latch_core::store::Store>,
    pub guard: Box<dyn std::any::Any + Send + Sync>,
}

/// A session store under test.
pub struct SessionHarness {
    pub sessions: Arc<dyn latch_core::session::SessionStore>,
    /// Where it keeps what it stores, for checks on what is at rest.
    pub at_rest: at_rest::AtRest,
    pub guard: Box<dyn std::any::Any + Send + Sync>,
}
