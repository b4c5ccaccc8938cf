//! Full-text search on the FTS5 index `messages_fts` (migration 0005): the
//! parsed query rendered as an FTS5 expression, one ranked statement for the
//! page, then a snippet per hit.

use chatterly_store::{
    Id, SearchHit, SearchOrder, SearchRequest, SearchTerm, StoreResult, SNIPPET_CLOSE, SNIPPET_OPEN,
};
use rusqlite::{params, Connection};

use crate::error::Db;
use crate::rows::{self, message_columns, to_millis};

/// The FTS5 expression of a query: terms side by side (FTS5's implicit AND),
/// each word double-quoted. Words are letters and digits only (see
/// [`SearchTerm`]), so no quote or operator of the user's can appear.
pub(crate) fn fts5_expression(terms: &[SearchTerm]) -> String {
    let mut out = String::new();
    for term in terms {
        if !out.is_empty() {
            out.push(' ');
        }
        match term {
            SearchTerm::Word(word) => {
                out.push('"');
                out.push_str(word);
                out.push('"');
            }
            SearchTerm::Prefix(prefix) => {
                out.push('"');
                out.push_str(prefix);
                out.push_str("\"*");
            }
            SearchTerm::Phrase(words) => {
                out.push('"');
                out.push_str(&words.join(" "));
                out.push('"');
            }
        }
    }
    out
}

/// The matches the searcher may read, newest first: `CROSS JOIN` fixes the
/// join order (SQLite never reorders it), from the FTS5 match (which yields
/// rowids in descending order itself, so a `LIMIT` stops it early) to each
/// message by rowid and its membership by primary key, never from the
/// searcher's memberships through all their history.
macro_rules! visible_matches {
    ($select:literal) => {
        concat!(
            $select,
            " FROM messages_fts",
            " CROSS JOIN messages m ON m.id = messages_fts.rowid",
            " CROSS JOIN conversation_members cm",
            "   ON cm.conversation_id = m.conversation_id AND cm.user_id = ?2",
            " WHERE messages_fts MATCH ?1 AND m.deleted_at IS NULL",
            "   AND (?3 IS NULL OR m.conversation_id = ?3)",
            "   AND (?4 IS NULL OR m.user_id = ?4)",
            "   AND (?5 IS NULL OR m.created_at < ?5)",
            "   AND (?6 IS NULL OR m.created_at >= ?6)",
        )
    };
}

/// The page's message rows, in the page's order.
macro_rules! hit_messages {
    () => {
        concat!(
            " SELECT hits.score, ",
            message_columns!(),
            " FROM hits JOIN messages ON messages.id = hits.hit_id",
            " ORDER BY hits.score DESC, messages.id DESC"
        )
    };
}

/// The page of best-ranked hits (bm25, negated so higher is better) among
/// the newest `?10` visible matches (-1: all of them), after the cursor
/// `(?7, ?8)`. Only the window's matches are scored, which is what bounds
/// the cost of a common word.
pub(crate) const RANKED_PAGE: &str = concat!(
    "WITH candidates AS (",
    visible_matches!("SELECT messages_fts.rowid AS hit_id, -bm25(messages_fts) AS score"),
    " ORDER BY messages_fts.rowid DESC LIMIT ?10),",
    " hits AS (SELECT hit_id, score FROM candidates",
    "   WHERE ?7 IS NULL OR score < ?7 OR (score = ?7 AND hit_id < ?8)",
    "   ORDER BY score DESC, hit_id DESC LIMIT ?9)",
    hit_messages!()
);

/// The page of newest hits before the cursor's id `?8` (scores are all 0;
/// `?7` is bound but unused): the match stops once the page is full.
pub(crate) const RECENT_PAGE: &str = concat!(
    "WITH hits AS (",
    visible_matches!("SELECT messages_fts.rowid AS hit_id, 0.0 AS score"),
    "   AND messages_fts.rowid < ?8",
    " ORDER BY messages_fts.rowid DESC LIMIT ?9)",
    hit_messages!()
);

/// The excerpt of one hit: FTS5 picks the 16-token window with the most
/// matches.
const SNIPPET: &str = "SELECT snippet(messages_fts, 0, ?3, ?4, '…', 16) \
     FROM messages_fts WHERE messages_fts MATCH ?1 AND rowid = ?2";

/// Runs the search in one read transaction (the caller's snapshot).
pub(crate) fn search(c: &Connection, request: &SearchRequest) -> StoreResult<Vec<SearchHit>> {
    let expression = fts5_expression(&request.query.terms);
    let (after_score, after_id) = match request.after {
        Some(position) => (Some(position.score), Some(position.id)),
        None => (None, None),
    };
    let created_before = request.created_before.map(to_millis);
    let created_from = request.created_from.map(to_millis);
    let after_id = after_id.unwrap_or(Id::MAX);
    let limit = i64::from(request.limit);
    let window: i64;
    // The same numbered parameters in both statements; the ranked one also
    // takes the window (-1: every match).
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![
        &expression,
        &request.user_id,
        &request.conversation_id,
        &request.from_user_id,
        &created_before,
        &created_from,
        &after_score,
        &after_id,
        &limit,
    ];
    let statement = match request.order {
        SearchOrder::Relevance { window: bound } => {
            window = bound.map_or(-1, i64::from);
            values.push(&window);
            RANKED_PAGE
        }
        SearchOrder::Recent => RECENT_PAGE,
    };
    let mut page = c.prepare_cached(statement).db()?;
    let found: Vec<(f64, chatterly_store::Message)> = rows::all(
        &mut page,
        values.as_slice(),
        request.limit.min(256) as usize,
        |row| {
            let score: f64 = row.get(0).db()?;
            let message = rows::message_at(row, 1)?.ok_or_else(|| {
                chatterly_store::StoreError::Backend("a search hit without a message".into())
            })?;
            Ok((score, message))
        },
    )?;

    let mut snippet = c.prepare_cached(SNIPPET).db()?;
    let (open, close) = (SNIPPET_OPEN.to_string(), SNIPPET_CLOSE.to_string());
    let mut hits = Vec::with_capacity(found.len());
    for (score, message) in found {
        let excerpt: String = snippet
            .query_row(params![expression, message.id, open, close], |row| {
                row.get(0)
            })
            .db()?;
        hits.push(SearchHit {
            message,
            score,
            snippet: excerpt,
        });
    }
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_quote_every_word() {
        let terms = vec![
            SearchTerm::Word("deploy".into()),
            SearchTerm::Prefix("rol".into()),
            SearchTerm::Phrase(vec!["new".into(), "york".into()]),
        ];
        assert_eq!(fts5_expression(&terms), r#""deploy" "rol"* "new york""#);
    }
}
