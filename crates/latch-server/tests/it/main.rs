//! End-to-end tests of the composed server: the management API in-process on every backend
//! pair, and the real `latch` binary as an operator runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_ui;
mod api;
mod backchannel;
mod browser;
mod gtr;
mod health;
mod hostile;
mod oidc;
mod peers;
mod process;
mod saml;
mod support;
