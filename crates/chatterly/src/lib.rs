//! Chatterly: a self-hosted real-time team chat server. See ARCHITECTURE.md
//! for the rooms and how a message flows through them.

pub mod blobs;
pub mod bus;
pub mod cable;
pub mod config;
pub mod domain;
pub mod ephemeral;
pub mod http;
pub mod jobs;
pub mod media;
pub mod metrics;
pub mod ops;
pub mod redis_keys;
pub mod server;
pub mod views;
