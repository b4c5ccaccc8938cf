//! Full-text search on the FTS5 index `messages_fts` (migration 0005): the
//! parsed query rendered as an FTS5 expression, one ranked statement for the
//! page, then a snippet per hit.

use chatterly_store::{
    Id, SearchHit, SearchRequest, SearchTerm, StoreResult, SNIPPET_CLOSE, SNIPPET_OPEN,
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

/// The page of hits: the best-ranked matches (bm25, negated so higher is
/// better) among the searcher's conversations, then the message rows.
/// `CROSS JOIN` fixes the join order (SQLite never reorders it): from the
/// FTS5 match to each message by rowid and its membership by primary key,
/// never from the searcher's memberships through all their history. Every
/// match is scored, which is what ranking costs.
pub(crate) const PAGE: &str = concat!(
    "WITH hits AS (",
    "SELECT messages_fts.rowid AS hit_id, -bm25(messages_fts) AS score",
    " FROM messages_fts",
    " CROSS JOIN messages m ON m.id = messages_fts.rowid",
    " CROSS JOIN conversation_members cm",
    "   ON cm.conversation_id = m.conversation_id AND cm.user_id = ?2",
    " WHERE messages_fts MATCH ?1 AND m.deleted_at IS NULL",
    "   AND (?3 IS NULL OR m.conversation_id = ?3)",
    "   AND (?4 IS NULL OR m.user_id = ?4)",
    "   AND (?5 IS NULL OR m.created_at < ?5)",
    "   AND (?6 IS NULL OR m.created_at >= ?6)",
    "   AND (?7 IS NULL OR -bm25(messages_fts) < ?7",
    "        OR (-bm25(messages_fts) = ?7 AND messages_fts.rowid < ?8))",
    " ORDER BY score DESC, hit_id DESC LIMIT ?9)",
    " SELECT hits.score, ",
    message_columns!(),
    " FROM hits JOIN messages ON messages.id = hits.hit_id",
    " ORDER BY hits.score DESC, messages.id DESC"
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
    let mut page = c.prepare_cached(PAGE).db()?;
    let found: Vec<(f64, chatterly_store::Message)> = rows::all(
        &mut page,
        params![
            expression,
            request.user_id,
            request.conversation_id,
            request.from_user_id,
            request.created_before.map(to_millis),
            request.created_from.map(to_millis),
            after_score,
            after_id.unwrap_or(Id::MAX),
            i64::from(request.limit),
        ],
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
