//! Full-text message search: the query as the domain parsed it, and what a
//! backend answers. Each backend renders [`SearchQuery`] into its own syntax
//! (FTS5 on SQLite, `tsquery` on PostgreSQL); user text never reaches either
//! parser as syntax, so no query can fail there.

use crate::{Id, Message, Timestamp};

/// Marks the start of a match in [`SearchHit::snippet`] (a private-use code
/// point, as Slack's search uses; the domain turns it into markup).
pub const SNIPPET_OPEN: char = '\u{E000}';
/// Marks the end of a match in [`SearchHit::snippet`].
pub const SNIPPET_CLOSE: char = '\u{E001}';

/// A parsed query: a message matches when it matches every term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// Never empty.
    pub terms: Vec<SearchTerm>,
}

/// One term. Every word is lowercase and made only of letters and digits
/// (`char::is_alphanumeric`), so it can be quoted safely in any backend's
/// syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchTerm {
    /// The word.
    Word(String),
    /// A word starting with this.
    Prefix(String),
    /// These words, adjacent and in this order (at least two).
    Phrase(Vec<String>),
}

/// A search of the messages a user may read.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Only messages of conversations this user is a member of.
    pub user_id: Id,
    pub query: SearchQuery,
    /// Only messages of this conversation.
    pub conversation_id: Option<Id>,
    /// Only messages sent by this user.
    pub from_user_id: Option<Id>,
    /// Only messages created strictly before this.
    pub created_before: Option<Timestamp>,
    /// Only messages created at or after this.
    pub created_from: Option<Timestamp>,
    /// Only hits ranked after this one (the previous page's last).
    pub after: Option<SearchPosition>,
    pub limit: u32,
    pub order: SearchOrder,
}

/// How hits are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchOrder {
    /// Best first, among the newest `window` matches the searcher may read
    /// (`None`: among all of them). Ranking costs work per match, so the
    /// window bounds a query's cost whatever the history holds: a word in
    /// one message in a hundred is as cheap as one in a thousand.
    Relevance { window: Option<u32> },
    /// Newest first, nothing ranked: a query stops as soon as its page is
    /// full.
    Recent,
}

/// A hit's place in the ranking: by `score` descending, then `id`
/// descending (newer first among equals). Under [`SearchOrder::Recent`] the
/// score is what the backend orders by besides the id (PostgreSQL: the
/// creation time in milliseconds; SQLite: 0, its ids being in send order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchPosition {
    pub score: f64,
    pub id: Id,
}

/// A matching message: never deleted, always in a conversation the searcher
/// is a member of.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub message: Message,
    /// Relevance, higher is better; comparable only within one backend and
    /// one query.
    pub score: f64,
    /// An excerpt of the content around the matches, each match between
    /// [`SNIPPET_OPEN`] and [`SNIPPET_CLOSE`].
    pub snippet: String,
}

impl SearchHit {
    pub fn position(&self) -> SearchPosition {
        SearchPosition {
            score: self.score,
            id: self.message.id,
        }
    }
}
