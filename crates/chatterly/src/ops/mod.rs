//! The operator's commands other than `serve`: each turns a subcommand into
//! domain or store calls and prints the outcome. `main` dispatches to them.

pub mod backup;
pub mod doctor;
pub mod users;
