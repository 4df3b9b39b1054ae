//! tiergate's tools for AI agents over the Model Context Protocol, on the
//! official Rust SDK (`rmcp`):
//!
//! | tool | what it does | API calls |
//! |---|---|---|
//! | `request_payment` | a plain payment: its tier, status and what happens next | `POST /v1/authorizations` |
//! | `pay_x402` | an x402 `PaymentRequired`: signed by tiergate once the payment executes | `POST /v1/x402/payments` |
//! | `payment_status` | one payment by id, with its signed x402 payload once signed | `GET /v1/authorizations/{id}`, `GET /v1/x402/payments/{id}` |
//! | `my_payments` | the key's payments, newest first, paged | `GET /v1/authorizations` |
//! | `spending_limits` | what the agent may still spend before each guardrail escalates | `GET /v1/limits` |
//!
//! The server is a client of tiergate's HTTP API ([`Api`]): every tool
//! calls it with the agent's own key, so roles, tenant isolation and error
//! codes are exactly the API's, and an API error is a tool error
//! (`isError`) whose text starts with the API's code. A tool's answer is
//! the API's JSON (the structured content) and a few sentences an agent
//! can act on.
//!
//! `tiergate serve` mounts [`http_service`] at `/mcp` over its own routes,
//! called in process; `tiergate mcp` serves [`serve_stdio`] to a desktop
//! agent, over HTTP to a running service.
#![deny(missing_docs)]

mod api;
pub mod args;
mod serve;
mod tools;
mod words;

pub use api::{Api, ApiCall, ApiFuture, ApiReply, ApiUnreachable, Method};
pub use serve::{HttpService, HttpSettings, ServeError, http_service, serve_stdio};
pub use tools::{Credentials, TOOL_NAMES, Tiergate};
