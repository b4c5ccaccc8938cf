//! Full-text message search (beyond the reference): the user's query parsed
//! here into [`SearchQuery`] (so no user syntax ever reaches a database
//! parser, and every malformed query is a 400 naming the problem), the
//! filters, the cursor, and the snippet as safe HTML.

use chatterly_store::{
    Id, SearchOrder, SearchPosition, SearchQuery, SearchRequest, SearchTerm, Timestamp,
    SNIPPET_CLOSE, SNIPPET_OPEN,
};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use super::auth::Identity;
use super::{Domain, DomainError, DomainResult};
use crate::views::{SearchHitView, SearchPage};

/// The longest query accepted, in characters.
pub const QUERY_MAX_CHARS: usize = 256;
/// The most terms (words, prefixes, phrases) in one query.
pub const QUERY_MAX_TERMS: usize = 16;
/// The shortest prefix of a `word*` term, in characters.
pub const PREFIX_MIN_CHARS: usize = 2;

/// What the caller asked for, as the HTTP layer read it (strings unparsed).
#[derive(Debug, Default, Clone)]
pub struct SearchParams {
    pub q: Option<String>,
    pub conversation_id: Option<Id>,
    pub from: Option<Id>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
    /// `relevance` (the default) or `recent`.
    pub sort: Option<String>,
}

fn bad(message: impl Into<String>) -> DomainError {
    DomainError::bad_request(message)
}

/// The words of a piece of text as the indexes see them: runs of letters and
/// digits, lowercased.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// One or more adjacent words as a term (two or more are a phrase, as the
/// index would have split them: `foo-bar` finds "foo bar").
fn words_term(mut words: Vec<String>) -> Option<SearchTerm> {
    match words.len() {
        0 => None,
        1 => words.pop().map(SearchTerm::Word),
        _ => Some(SearchTerm::Phrase(words)),
    }
}

/// Parses a user's query. The grammar: terms separated by spaces, all of
/// which must match; `"two words"` is a phrase; `word*` is a prefix (at
/// least [`PREFIX_MIN_CHARS`] letters or digits before the `*`); any other
/// punctuation separates words. Errors are the 400's message.
pub fn parse_query(q: &str) -> Result<SearchQuery, String> {
    let q = q.trim();
    if q.is_empty() {
        return Err("q must not be empty".into());
    }
    if q.chars().count() > QUERY_MAX_CHARS {
        return Err(format!("q is longer than {QUERY_MAX_CHARS} characters"));
    }
    let mut terms = Vec::new();
    let mut rest = q;
    while let Some(start) = rest.find(|c: char| !c.is_whitespace()) {
        rest = &rest[start..];
        if let Some(inner) = rest.strip_prefix('"') {
            let Some(end) = inner.find('"') else {
                return Err("q has an opening \" without its closing \"".into());
            };
            let phrase = &inner[..end];
            rest = &inner[end + 1..];
            if phrase.contains('*') {
                return Err(
                    "a * ends a word outside quotes (prefix search), not inside a phrase".into(),
                );
            }
            if rest.starts_with('*') {
                return Err("a * ends a word (prefix search), not a phrase".into());
            }
            match words_term(words(phrase)) {
                Some(term) => terms.push(term),
                None => return Err("q has a phrase without words".into()),
            }
            continue;
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '"')
            .unwrap_or(rest.len());
        let chunk = &rest[..end];
        rest = &rest[end..];
        if let Some(stem) = chunk.strip_suffix('*') {
            if stem.contains('*') || stem.is_empty() || !stem.chars().all(char::is_alphanumeric) {
                return Err(format!(
                    "{chunk:?}: a prefix is one word of letters and digits followed by one *"
                ));
            }
            if stem.chars().count() < PREFIX_MIN_CHARS {
                return Err(format!(
                    "{chunk:?}: a prefix needs at least {PREFIX_MIN_CHARS} characters before the *"
                ));
            }
            terms.push(SearchTerm::Prefix(stem.to_lowercase()));
        } else if chunk.contains('*') {
            return Err(format!(
                "{chunk:?}: a * may only end a word (prefix search)"
            ));
        } else if let Some(term) = words_term(words(chunk)) {
            terms.push(term);
        }
        // Punctuation alone ("-", "&&") separates words and adds no term.
    }
    if terms.is_empty() {
        return Err("q has no words to search for (letters or digits)".into());
    }
    if terms.len() > QUERY_MAX_TERMS {
        return Err(format!("q has more than {QUERY_MAX_TERMS} terms"));
    }
    Ok(SearchQuery { terms })
}

/// A date bound: `YYYY-MM-DD` (a UTC day) or an RFC 3339 time. `before` is
/// exclusive (a day: before it began); `after` is exclusive too (a day:
/// after it ended). Returns the bound as the store takes it:
/// `created_at < before`, `created_at >= from`.
fn parse_bound(key: &str, value: &str, after: bool) -> DomainResult<Timestamp> {
    let value = value.trim();
    let invalid = || {
        bad(format!(
            "{key} must be a date (YYYY-MM-DD) or an RFC 3339 time"
        ))
    };
    if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let day = if after {
            day.succ_opt().ok_or_else(invalid)?
        } else {
            day
        };
        let start = day.and_hms_opt(0, 0, 0).ok_or_else(invalid)?;
        return Ok(start.and_utc());
    }
    let time = DateTime::parse_from_rfc3339(value)
        .map_err(|_| invalid())?
        .with_timezone(&Utc);
    // Stored at millisecond precision: "strictly after" is from the next
    // millisecond; "before" a time with a fraction of a millisecond is
    // before the millisecond after it.
    let ms = chatterly_store::millis(time);
    Ok(if after || ms < time {
        ms + TimeDelta::milliseconds(1)
    } else {
        ms
    })
}

/// The opaque cursor of a page: the last hit's score (its exact bits) and
/// id.
fn encode_cursor(position: SearchPosition) -> String {
    format!("{:016x}.{}", position.score.to_bits(), position.id)
}

fn decode_cursor(cursor: &str) -> DomainResult<SearchPosition> {
    let invalid = || bad("cursor is not one this endpoint returned (next_cursor)");
    let (bits, id) = cursor.trim().split_once('.').ok_or_else(invalid)?;
    let bits = u64::from_str_radix(bits, 16).map_err(|_| invalid())?;
    let score = f64::from_bits(bits);
    let id: Id = id.parse().map_err(|_| invalid())?;
    if !score.is_finite() || id < 1 {
        return Err(invalid());
    }
    Ok(SearchPosition { score, id })
}

/// The snippet as HTML: the text escaped, each match in `<mark>…</mark>`
/// (always balanced, whatever markers the content itself held).
pub fn snippet_html(snippet: &str) -> String {
    let mut out = String::with_capacity(snippet.len() + 16);
    let mut open = false;
    for c in snippet.chars() {
        match c {
            SNIPPET_OPEN if !open => {
                out.push_str("<mark>");
                open = true;
            }
            SNIPPET_CLOSE if open => {
                out.push_str("</mark>");
                open = false;
            }
            SNIPPET_OPEN | SNIPPET_CLOSE => {}
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    if open {
        out.push_str("</mark>");
    }
    out
}

impl Domain {
    /// Searches the messages the caller can read (see [`parse_query`]): best
    /// first among the newest `--search-rank-window` matches (or newest
    /// first, `sort=recent`), a page of `limit` (default and clamp as history), with the
    /// cursor of the next page when this one is full. A `conversation_id`
    /// the caller is not a member of is a 404, as everywhere.
    pub async fn search(
        &self,
        identity: &Identity,
        params: SearchParams,
    ) -> DomainResult<SearchPage> {
        let q = params.q.as_deref().ok_or_else(|| bad("q is required"))?;
        let query = parse_query(q).map_err(bad)?;
        let created_before = params
            .before
            .as_deref()
            .map(|v| parse_bound("before", v, false))
            .transpose()?;
        let created_from = params
            .after
            .as_deref()
            .map(|v| parse_bound("after", v, true))
            .transpose()?;
        let after = params
            .cursor
            .as_deref()
            .filter(|c| !c.trim().is_empty())
            .map(decode_cursor)
            .transpose()?;
        let limit = self.limits.page_size(params.limit);
        let order = match params.sort.as_deref().map(str::trim) {
            None | Some("" | "relevance") => SearchOrder::Relevance {
                window: self.limits.search_rank_window,
            },
            Some("recent") => SearchOrder::Recent,
            Some(_) => return Err(bad("sort must be relevance or recent")),
        };
        if let Some(conversation_id) = params.conversation_id {
            self.member_of(identity, conversation_id).await?;
        }
        let hits = self
            .store
            .search_messages(SearchRequest {
                user_id: identity.user_id,
                query,
                conversation_id: params.conversation_id,
                from_user_id: params.from,
                created_before,
                created_from,
                after,
                limit,
                order,
            })
            .await?;
        let next_cursor = if hits.len() == limit as usize {
            hits.last().map(|hit| encode_cursor(hit.position()))
        } else {
            None
        };
        let messages: Vec<_> = hits.iter().map(|hit| hit.message.clone()).collect();
        let views = self.render_messages(&messages).await?;
        let results = hits
            .iter()
            .zip(views)
            .map(|(hit, message)| SearchHitView {
                snippet: snippet_html(&hit.snippet),
                message,
            })
            .collect();
        Ok(SearchPage {
            results,
            next_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(w: &str) -> SearchTerm {
        SearchTerm::Word(w.into())
    }

    #[test]
    fn queries_parse_into_safe_terms() {
        let parse = |q: &str| parse_query(q).expect(q).terms;
        assert_eq!(
            parse("Deploy  Friday"),
            vec![word("deploy"), word("friday")]
        );
        assert_eq!(
            parse(r#""New York" roll*"#),
            vec![
                SearchTerm::Phrase(vec!["new".into(), "york".into()]),
                SearchTerm::Prefix("roll".into()),
            ]
        );
        // Punctuation splits words as the index does; a quoted single word
        // is a word; FTS5 and tsquery operators are plain text.
        assert_eq!(
            parse("foo-bar \"x\" NEAR(a) -b"),
            vec![
                SearchTerm::Phrase(vec!["foo".into(), "bar".into()]),
                word("x"),
                SearchTerm::Phrase(vec!["near".into(), "a".into()]),
                word("b"),
            ]
        );
        assert_eq!(parse("café ünïcode"), vec![word("café"), word("ünïcode")]);
    }

    #[test]
    fn bad_queries_are_refused_with_a_reason() {
        for q in [
            "",
            "   ",
            "\"open",
            "\"\"",
            "a*",
            "*",
            "fo*o",
            "**",
            "foo-ba*",
            "\"a b*\"",
            "\"a b\"*",
            "&& || --",
            "a b c d e f g h i j k l m n o p q",
        ] {
            assert!(parse_query(q).is_err(), "{q:?} is refused");
        }
        assert!(parse_query(&"x".repeat(QUERY_MAX_CHARS + 1)).is_err());
        assert!(parse_query(&"x".repeat(QUERY_MAX_CHARS)).is_ok());
    }

    proptest::proptest! {
        /// Whatever the text: refused, or terms every backend can quote
        /// (non-empty words of lowercase letters and digits, within limits).
        #[test]
        fn any_text_parses_into_safe_terms_or_is_refused(text in "[a-zA-Z0-9 \"*():'&|!^<>\\-éß日٣\u{E000}]{0,40}") {
            if let Ok(query) = parse_query(&text) {
                proptest::prop_assert!(!query.terms.is_empty() && query.terms.len() <= QUERY_MAX_TERMS);
                let safe = |w: &String| {
                    !w.is_empty()
                        && w.chars().all(char::is_alphanumeric)
                        && *w == w.to_lowercase()
                };
                for term in &query.terms {
                    let ok = match term {
                        SearchTerm::Word(w) => safe(w),
                        SearchTerm::Prefix(p) => safe(p) && p.chars().count() >= PREFIX_MIN_CHARS,
                        SearchTerm::Phrase(ws) => ws.len() >= 2 && ws.iter().all(safe),
                    };
                    proptest::prop_assert!(ok, "{:?} from {:?}", term, text);
                }
            }
        }
    }

    #[test]
    fn snippets_are_escaped_and_balanced() {
        let s = format!("a <b> & {SNIPPET_OPEN}x{SNIPPET_CLOSE} {SNIPPET_CLOSE}{SNIPPET_OPEN}y");
        assert_eq!(
            snippet_html(&s),
            "a &lt;b&gt; &amp; <mark>x</mark> <mark>y</mark>"
        );
    }

    #[test]
    fn cursors_round_trip_exactly() {
        let position = SearchPosition {
            score: 0.1 + 0.2,
            id: 42,
        };
        assert_eq!(
            decode_cursor(&encode_cursor(position)).expect("cursor"),
            position
        );
        for bad in [
            "",
            "x",
            "12.",
            ".3",
            "zz.3",
            "7ff0000000000000.3",
            "3ff0000000000000.0",
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn date_bounds_are_exclusive() {
        let day = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect(s)
                .with_timezone(&Utc)
        };
        assert_eq!(
            parse_bound("before", "2026-12-01", false).expect("date"),
            day("2026-12-01T00:00:00Z")
        );
        assert_eq!(
            parse_bound("after", "2026-12-01", true).expect("date"),
            day("2026-12-02T00:00:00Z")
        );
        assert_eq!(
            parse_bound("after", "2026-12-01T10:00:00Z", true).expect("time"),
            day("2026-12-01T10:00:00.001Z")
        );
        assert!(parse_bound("before", "yesterday", false).is_err());
        assert!(parse_bound("before", "2026-13-01", false).is_err());
    }
}
