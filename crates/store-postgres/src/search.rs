//! Full-text search on `messages.search_vector` (migration 0005): the parsed
//! query rendered as `tsquery` text, one ranked statement, and the search
//! language kept in the database.

use chatterly_store::{
    Id, SearchHit, SearchRequest, SearchTerm, StoreError, StoreResult, SNIPPET_CLOSE, SNIPPET_OPEN,
};
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

#[derive(sqlx::FromRow)]
struct HitRow {
    score: f64,
    snippet: String,
    #[sqlx(flatten)]
    message: MessageRow,
}

/// The best-ranked matches among the searcher's conversations
/// (`ts_rank_cd`, cover density: how often and how close the terms occur, divided by 1 + log of the length; every match is ranked, which is
/// what ranking costs), then the headline of the page's rows only. The GIN
/// index finds the matches in every partition; a date bound prunes them.
pub(crate) async fn search(pool: &PgPool, request: &SearchRequest) -> StoreResult<Vec<SearchHit>> {
    let (after_score, after_id) = match request.after {
        Some(position) => (Some(position.score), Some(position.id)),
        None => (None, None),
    };
    let rows: Vec<HitRow> = sqlx::query_as(concat!(
        "WITH hits AS (
             SELECT m.id, m.created_at,
                    ts_rank_cd(m.search_vector, to_tsquery(chatterly_search_language(), $2), 1)::float8
                        AS score
             FROM messages m
             JOIN conversation_members cm
               ON cm.conversation_id = m.conversation_id AND cm.user_id = $1
             WHERE m.search_vector @@ to_tsquery(chatterly_search_language(), $2)
               AND m.deleted_at IS NULL
               AND ($3::bigint IS NULL OR m.conversation_id = $3)
               AND ($4::bigint IS NULL OR m.user_id = $4)
               AND ($5::timestamptz IS NULL OR m.created_at < $5)
               AND ($6::timestamptz IS NULL OR m.created_at >= $6)
               AND ($7::float8 IS NULL
                    OR (ts_rank_cd(m.search_vector, to_tsquery(chatterly_search_language(), $2), 1)
                            ::float8, m.id) < ($7, $8))
             ORDER BY score DESC, m.id DESC
             LIMIT $9
         )
         SELECT hits.score,
                ts_headline(chatterly_search_language(), msg.content,
                            to_tsquery(chatterly_search_language(), $2), $10) AS snippet,
                msg.*
         FROM hits
         CROSS JOIN LATERAL (
             SELECT ",
        message_columns!(),
        " FROM messages WHERE id = hits.id AND created_at = hits.created_at
         ) msg
         ORDER BY hits.score DESC, hits.id DESC"
    ))
    .bind(request.user_id)
    .bind(tsquery_text(&request.query.terms))
    .bind(request.conversation_id)
    .bind(request.from_user_id)
    .bind(request.created_before)
    .bind(request.created_from)
    .bind(after_score)
    .bind(after_id.unwrap_or(Id::MAX))
    .bind(i64::from(request.limit))
    .bind(headline_options())
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    rows.into_iter()
        .map(|row| {
            Ok(SearchHit {
                message: row.message.try_into()?,
                score: row.score,
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
