//! Full-text search on `messages.search_vector` (migration 0005): the parsed
//! query rendered as `tsquery` text, one ranked statement, and the search
//! language kept in the database.

use chatterly_store::{
    Id, SearchHit, SearchOrder, SearchRequest, SearchTerm, StoreError, StoreResult, SNIPPET_CLOSE,
    SNIPPET_OPEN,
};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use sqlx::PgPool;

use crate::error::backend;
use crate::rows::{message_columns, MessageRow};

/// The `tsquery` text of a query, for `to_tsquery`: terms joined by `&`, a
/// prefix as `'word':*`, a phrase as `'a' <-> 'b'`. Words are letters and
/// digits only (see [`SearchTerm`]), so each quotes safely and the text
/// always parses; `to_tsquery` then normalizes each word with the search
/// language (a stop word matches nothing).
pub(crate) fn tsquery_text(terms: &[SearchTerm]) -> String {
    let quoted = |word: &str| format!("'{word}'");
    terms
        .iter()
        .map(|term| match term {
            SearchTerm::Word(word) => quoted(word),
            SearchTerm::Prefix(prefix) => format!("{}:*", quoted(prefix)),
            SearchTerm::Phrase(words) => format!(
                "({})",
                words
                    .iter()
                    .map(|w| quoted(w))
                    .collect::<Vec<_>>()
                    .join(" <-> ")
            ),
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

/// `ts_headline` options: up to two fragments of 8 to 20 words around the
/// matches, each match between the snippet markers.
fn headline_options() -> String {
    format!(
        "StartSel=\"{SNIPPET_OPEN}\", StopSel=\"{SNIPPET_CLOSE}\", MaxWords=20, MinWords=8, \
         ShortWord=2, MaxFragments=2, FragmentDelimiter=\" … \""
    )
}

/// The text search query of every statement: the parsed query (`$2`) in the
/// search language.
macro_rules! tsquery {
    () => {
        "to_tsquery(chatterly_search_language(), $2)"
    };
}

/// The searcher's visible matches in one span of time (`$5 <= created_at <
/// $6`, NULL: unbounded), newest first, at most `$7` (NULL: all), each with its rank
/// (`ts_rank_cd`, cover density: how often and how close the terms occur,
/// divided by 1 + log of the length) and, when `$8` is set, only those before
/// the position `($8, $9)` in creation order. The span prunes the statement
/// to its partitions; the GIN index of each finds the matches.
const SPAN: &str = concat!(
    "SELECT m.id, m.created_at, ts_rank_cd(m.search_vector, ",
    tsquery!(),
    ", 1)::float8 AS score
     FROM messages m
     JOIN conversation_members cm
       ON cm.conversation_id = m.conversation_id AND cm.user_id = $1
     WHERE m.search_vector @@ ",
    tsquery!(),
    " AND m.deleted_at IS NULL
       AND ($3::bigint IS NULL OR m.conversation_id = $3)
       AND ($4::bigint IS NULL OR m.user_id = $4)
       AND ($5::timestamptz IS NULL OR m.created_at >= $5)
       AND ($6::timestamptz IS NULL OR m.created_at < $6)
       AND ($8::timestamptz IS NULL OR (m.created_at, m.id) < ($8, $9))
     ORDER BY m.created_at DESC, m.id DESC
     LIMIT $7"
);

/// The page's messages and headlines, in the page's order (`$1`, `$2`: ids
/// and creation times, which find each row in its partition).
const PAGE: &str = concat!(
    "SELECT hit.ord, ts_headline(chatterly_search_language(), msg.content, ",
    tsquery!(),
    ", $3) AS snippet, msg.*
     FROM unnest($1::bigint[], $4::timestamptz[]) WITH ORDINALITY AS hit(id, created_at, ord)
     CROSS JOIN LATERAL (
         SELECT ",
    message_columns!(),
    " FROM messages WHERE id = hit.id AND created_at = hit.created_at
     ) msg
     ORDER BY hit.ord"
);

#[derive(sqlx::FromRow)]
struct Candidate {
    id: Id,
    created_at: DateTime<Utc>,
    score: f64,
}

#[derive(sqlx::FromRow)]
struct PageRow {
    ord: i64,
    snippet: String,
    #[sqlx(flatten)]
    message: MessageRow,
}

/// How far back each step of a search reaches from the newest message it
/// may return: a month, then four, then everything. Most searches of a
/// common word fill their window or page in the first spans and never read
/// the older partitions; a rare word reads them all, in three statements.
const SPANS: [TimeDelta; 2] = [TimeDelta::days(31), TimeDelta::days(124)];

/// The creation time a recent-order score stands for (its milliseconds).
fn score_time(score: f64) -> Option<DateTime<Utc>> {
    if !score.is_finite() {
        return None;
    }
    Utc.timestamp_millis_opt(score as i64).single()
}

/// Runs a search in one snapshot (a repeatable-read transaction): the
/// visible matches span by span back in time, newest first, until the
/// ranking window (or, in recent order, the page) is full; then, ranked,
/// the page of the best after the cursor; then the headline of the page's
/// rows only.
pub(crate) async fn search(pool: &PgPool, request: &SearchRequest) -> StoreResult<Vec<SearchHit>> {
    let query = tsquery_text(&request.query.terms);
    let (wanted, recent_after) = match request.order {
        SearchOrder::Relevance { window } => (window.map(i64::from), None),
        SearchOrder::Recent => (
            Some(i64::from(request.limit)),
            request
                .after
                .and_then(|position| Some((score_time(position.score)?, position.id))),
        ),
    };
    let mut tx = pool.begin().await.map_err(backend)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(backend)?;

    let newest = request.created_before.unwrap_or_else(Utc::now);
    let mut upper = request.created_before;
    let mut candidates: Vec<Candidate> = Vec::new();
    for step in 0..=SPANS.len() {
        // The last step reaches back to `created_from` (or the first message).
        let lower = match SPANS
            .get(step)
            .and_then(|span| newest.checked_sub_signed(*span))
        {
            Some(lower) => Some(request.created_from.map_or(lower, |from| lower.max(from))),
            None => request.created_from,
        };
        let room = wanted.map(|wanted| wanted - candidates.len() as i64);
        let mut found: Vec<Candidate> = sqlx::query_as(SPAN)
            .bind(request.user_id)
            .bind(&query)
            .bind(request.conversation_id)
            .bind(request.from_user_id)
            .bind(lower)
            .bind(upper)
            .bind(room)
            .bind(recent_after.map(|(time, _)| time))
            .bind(recent_after.map_or(Id::MAX, |(_, id)| id))
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        candidates.append(&mut found);
        let full = wanted.is_some_and(|wanted| candidates.len() as i64 >= wanted);
        let reached_the_start = lower.is_none() || lower == request.created_from;
        if full || reached_the_start {
            break;
        }
        upper = lower;
    }

    match request.order {
        SearchOrder::Relevance { .. } => {
            if let Some(after) = request.after {
                candidates.retain(|c| (c.score, c.id) < (after.score, after.id));
            }
            candidates.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(b.id.cmp(&a.id)));
        }
        SearchOrder::Recent => {
            // The position a cursor keeps: the creation time's milliseconds
            // (exact in an f64) with the id.
            for candidate in &mut candidates {
                candidate.score = candidate.created_at.timestamp_millis() as f64;
            }
        }
    }
    candidates.truncate(request.limit as usize);

    let ids: Vec<Id> = candidates.iter().map(|c| c.id).collect();
    let times: Vec<DateTime<Utc>> = candidates.iter().map(|c| c.created_at).collect();
    let rows: Vec<PageRow> = sqlx::query_as(PAGE)
        .bind(&ids)
        .bind(&query)
        .bind(headline_options())
        .bind(&times)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    rows.into_iter()
        .map(|row| {
            let score = usize::try_from(row.ord - 1)
                .ok()
                .and_then(|i| candidates.get(i))
                .map(|c| c.score)
                .ok_or_else(|| StoreError::Backend("a search page row out of order".into()))?;
            Ok(SearchHit {
                message: row.message.try_into()?,
                score,
                snippet: row.snippet,
            })
        })
        .collect()
}

/// Makes `language` the search language: refused (naming it) if PostgreSQL
/// has no such text search configuration; when it differs from the one in
/// use, replaces `chatterly_search_language()` and re-indexes every
/// non-deleted message, in one transaction under an advisory lock (several
/// instances starting at once do it once). A re-index reads and writes every
/// message: change the language on a quiet database.
pub(crate) async fn set_language(pool: &PgPool, language: &str) -> StoreResult<bool> {
    let mut tx = pool.begin().await.map_err(backend)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('chatterly.search_language'))")
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    // Looked up in the catalog (`schema.name` or a visible `name`) rather
    // than cast, so an unknown name is an answer, not an error.
    let (schema, name) = match language.split_once('.') {
        Some((schema, name)) => (Some(schema), name),
        None => (None, language),
    };
    let wanted: Option<String> = sqlx::query_scalar(
        "SELECT c.oid::regconfig::text
         FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace
         WHERE c.cfgname = $2
           AND CASE WHEN $1::text IS NULL THEN pg_ts_config_is_visible(c.oid)
                    ELSE n.nspname = $1 END
         LIMIT 1",
    )
    .bind(schema)
    .bind(name)
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend)?;
    let Some(wanted) = wanted else {
        return Err(StoreError::Backend(format!(
            "PostgreSQL has no text search configuration named {language:?} \
             (see \\dF in psql for the installed ones)"
        )));
    };
    let current: String = sqlx::query_scalar("SELECT chatterly_search_language()::text")
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
    if current == wanted {
        return Ok(false);
    }
    // The name comes from pg_ts_config (regconfig's own quoting), never from
    // the caller; it is quoted again as a literal for the function body.
    let literal = wanted.replace('\'', "''");
    sqlx::query(&format!(
        "CREATE OR REPLACE FUNCTION chatterly_search_language() RETURNS regconfig \
         LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $body$ SELECT '{literal}'::regconfig $body$"
    ))
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    sqlx::query(
        "UPDATE messages SET search_vector = to_tsvector(chatterly_search_language(), content) \
         WHERE deleted_at IS NULL",
    )
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsquery_text_quotes_every_word() {
        let terms = vec![
            SearchTerm::Word("deploy".into()),
            SearchTerm::Prefix("rol".into()),
            SearchTerm::Phrase(vec!["new".into(), "york".into()]),
        ];
        assert_eq!(
            tsquery_text(&terms),
            "'deploy' & 'rol':* & ('new' <-> 'york')"
        );
    }
}
