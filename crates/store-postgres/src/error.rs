//! sqlx errors → `StoreError`.

use chatterly_store::StoreError;
use sqlx::error::ErrorKind;

/// Any database failure not handled more specifically.
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// What a failed statement violated, when it is a constraint we map.
pub(crate) enum Violation<'a> {
    /// A unique or primary key constraint, by name.
    Unique(Option<&'a str>),
    /// A foreign key: the row the write points at does not exist.
    ForeignKey,
}

pub(crate) fn violation(e: &sqlx::Error) -> Option<Violation<'_>> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    match db.kind() {
        ErrorKind::UniqueViolation => Some(Violation::Unique(db.constraint())),
        ErrorKind::ForeignKeyViolation => Some(Violation::ForeignKey),
        _ => None,
    }
}

/// A foreign key violation means the row depended on is gone.
pub(crate) fn fk_not_found(e: sqlx::Error) -> StoreError {
    match violation(&e) {
        Some(Violation::ForeignKey) => StoreError::NotFound,
        _ => backend(e),
    }
}
