//! `GET /api/v1/search`: full-text message search (beyond the reference).

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{Auth, QueryParams};
use super::AppState;
use crate::domain::{DomainResult, SearchParams};
use crate::views::SearchPage;

/// An optional text parameter; empty counts as absent.
fn present(query: &QueryParams, key: &str) -> Option<String> {
    query
        .string(key)
        .filter(|v| !v.trim().is_empty())
        .map(str::to_owned)
}

#[derive(Serialize, ToSchema)]
pub struct SearchBody {
    data: SearchPage,
}

/// Search the messages of the caller's conversations. Every term must match:
/// words, `"exact phrases"`, and prefixes (`deplo*`, at least 2 characters
/// before the `*`); other punctuation separates words and is not syntax.
/// Deleted messages never match; an edited one matches its current text only.
/// Results are ranked by relevance (ties: newest first) among the newest
/// `--search-rank-window` matches (default 2,000), which bounds the cost of a
/// common word; `sort=recent` lists every match newest first instead. Each
/// hit has an HTML snippet (`<mark>` around the matches, everything else
/// escaped).
#[utoipa::path(get, path = "/api/v1/search", tag = "search",
    security(("bearer" = [])),
    params(("q" = String, Query, description = "The query (at most 256 characters, 16 terms)"),
           ("conversation_id" = Option<i64>, Query, description = "Only this conversation (404 unless a member)"),
           ("from" = Option<i64>, Query, description = "Only messages sent by this user id"),
           ("before" = Option<String>, Query, description = "Only messages created before this: a UTC day (YYYY-MM-DD, before it began) or an RFC 3339 time"),
           ("after" = Option<String>, Query, description = "Only messages created after this: a UTC day (YYYY-MM-DD, after it ended) or an RFC 3339 time"),
           ("cursor" = Option<String>, Query, description = "The next_cursor of the previous page (same query)"),
           ("limit" = Option<i64>, Query, description = "Page size, default 50, clamped to 1..=--max-page"),
           ("sort" = Option<String>, Query, description = "relevance (default: best first among the newest --search-rank-window matches) or recent (newest first)")),
    responses((status = 200, body = SearchBody),
              (status = 400, description = "Missing or malformed q (the error says what is wrong), or a bad parameter"),
              (status = 401, description = "Not authenticated"),
              (status = 404, description = "conversation_id is not a conversation of the caller")))]
pub async fn search(
    State(state): State<AppState>,
    Auth(identity): Auth,
    query: QueryParams,
) -> DomainResult<Json<SearchBody>> {
    let params = SearchParams {
        q: query.string("q").map(str::to_owned),
        conversation_id: query.integer("conversation_id")?,
        from: query.integer("from")?,
        before: present(&query, "before"),
        after: present(&query, "after"),
        cursor: present(&query, "cursor"),
        limit: query.integer("limit")?,
        sort: present(&query, "sort"),
    };
    Ok(Json(SearchBody {
        data: state.domain.search(&identity, params).await?,
    }))
}
