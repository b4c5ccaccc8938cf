//! The conformance suite: black-box over HTTP against the real server, every
//! test written once and run on SQLite and on PostgreSQL.
//!
//! Each test function takes the [`Backend`] and starts its own [`TestApp`]
//! (its own temporary directory or database), so tests are independent and
//! run in parallel. `conformance!(a, b, ...)` instantiates them as
//! `<area>::sqlite::a` and `<area>::postgres::a`; run one backend with
//! `cargo test -p chatterly --test conformance -- ::sqlite::` (or `::postgres::`).

#[path = "../common/mod.rs"]
mod common;
/// Real `chatterly serve` processes (the memory check of big uploads).
#[path = "../ops/mod.rs"]
mod ops;

/// Instantiates `async fn name(backend: Backend)` tests for both backends.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

mod attachments;
mod auth;
mod bad_input;
mod calls;
mod concurrency;
mod conversations;
mod cors_health_openapi;
mod memberships;
mod messages;
mod persistence;
mod reactions;
mod read_state;
mod search;
mod users;
