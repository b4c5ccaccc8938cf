//! SQLite errors as `StoreError`s: a unique violation the caller can act on
//! becomes `Conflict(CONFLICT_*)`, a foreign-key violation (what the write
//! depends on is gone) `NotFound`, anything else `Backend`.

use chatterly_store::{StoreError, CONFLICT_EMAIL, CONFLICT_USERNAME};
use rusqlite::ffi;

/// `result.db()`: any SQLite failure as `StoreError::Backend`.
pub(crate) trait Db<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> Db<T> for Result<T, rusqlite::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(backend)
    }
}

/// Any database failure that is not an expected constraint violation.
pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn extended_code(e: &rusqlite::Error) -> Option<i32> {
    match e {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.extended_code),
        _ => None,
    }
}

/// A UNIQUE constraint or a PRIMARY KEY (which is one too).
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        extended_code(e),
        Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}

pub(crate) fn is_foreign_key_violation(e: &rusqlite::Error) -> bool {
    extended_code(e) == Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

/// A missing referenced row (a foreign key) means what the write depends on is
/// gone: `NotFound`. Anything else is a backend failure.
pub(crate) fn not_found_or_backend(e: rusqlite::Error) -> StoreError {
    if is_foreign_key_violation(&e) {
        StoreError::NotFound
    } else {
        backend(e)
    }
}

/// A unique violation is `Conflict(conflict)`; otherwise as
/// [`not_found_or_backend`].
pub(crate) fn conflict_or_not_found(
    conflict: &'static str,
) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(conflict)
        } else {
            not_found_or_backend(e)
        }
    }
}

/// SQLite names the columns of a failed unique constraint in its message:
/// `UNIQUE constraint failed: users.email`.
pub(crate) fn user_conflict(e: rusqlite::Error) -> StoreError {
    if is_unique_violation(&e) {
        if let rusqlite::Error::SqliteFailure(_, Some(message)) = &e {
            if message.contains("users.email") {
                return StoreError::Conflict(CONFLICT_EMAIL);
            }
            if message.contains("users.username") {
                return StoreError::Conflict(CONFLICT_USERNAME);
            }
        }
    }
    backend(e)
}

/// The same error again, for every command of a batch that failed as a whole
/// (`StoreError` is not `Clone`).
pub(crate) fn again(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound => StoreError::NotFound,
        StoreError::Conflict(c) => StoreError::Conflict(c),
        StoreError::Backend(message) => StoreError::Backend(message.clone()),
    }
}
