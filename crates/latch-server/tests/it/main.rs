//! End-to-end tests of the composed server: the management API in-process on every backend
//! pair, and the real `latch` binary as an operator runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access_tokens;
mod admin_ui;
mod api;
mod at_rest;
mod backchannel;
mod body_limits;
mod browser;
mod expiry;
mod federated_more;
mod front_channel;
mod fuzz_seeds;
mod gtr;
mod gtr_send;
mod hardening;
mod health;
mod hostile;
mod initiators;
mod log_streams;
mod metrics;
mod multi_instance;
mod no_panic;
mod oidc;
mod openapi;
mod outage;
mod outbound;
mod packaging;
mod peers;
mod process;
mod retention;
mod saml;
mod samlp;
mod samlp_e2e;
mod scim;
mod scim_api;
mod shed;
mod support;
mod throttle;
mod upstream_slo;
