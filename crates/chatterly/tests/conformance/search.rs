//! Full-text search (beyond the reference): who sees what (members only,
//! never deleted messages, edits re-indexed), ranking and snippets,
//! pagination, phrases and prefixes, filters, bad queries (400 with JSON,
//! never a 500), and the OpenAPI entry.

use serde_json::Value;

use crate::common::*;

/// `GET /api/v1/search?{query}` as `user`; the raw response.
async fn search_raw(app: &TestApp, user: &TestUser, query: &str) -> Resp {
    app.get(&format!("/api/v1/search?{query}"), Some(&user.token))
        .await
}

/// The page (results, next_cursor) of a successful search.
async fn search(app: &TestApp, user: &TestUser, query: &str) -> (Vec<Value>, Option<String>) {
    let body = search_raw(app, user, query).await.expect(200);
    let data = &body["data"];
    let results = data["results"].as_array().expect("results").clone();
    for hit in &results {
        assert_message(&hit["message"]);
        assert!(hit["snippet"].is_string(), "{hit}");
    }
    let next = data["next_cursor"].as_str().map(str::to_owned);
    assert!(
        next.is_some() || data["next_cursor"].is_null(),
        "next_cursor is a string or null: {data}"
    );
    (results, next)
}

/// The ids of the messages a search finds, in rank order.
async fn found(app: &TestApp, user: &TestUser, query: &str) -> Vec<i64> {
    search(app, user, query)
        .await
        .0
        .iter()
        .map(|hit| assert_id(&hit["message"]["id"]))
        .collect()
}

fn id_of(message: &Value) -> i64 {
    assert_id(&message["id"])
}

fn q(text: &str) -> String {
    format!("q={}", urlencode(text))
}

/// Percent-encodes a query value (everything but unreserved ASCII).
fn urlencode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

// ---- tests -------------------------------------------------------------------------

async fn only_members_find_and_never_deleted_or_stale_text(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana").await;
    let omar = app.register("omar").await;
    let lina = app.register("lina").await;
    let shared = app.group(&rana, "Shared", &[&omar]).await;
    let private = app.group(&lina, "Private", &[]).await;

    let visible = app.send(&rana, shared, "kiwi rollout plan").await;
    let hidden = app.send(&lina, private, "kiwi secret plan").await;
    assert_eq!(found(&app, &omar, &q("kiwi")).await, vec![id_of(&visible)]);
    assert_eq!(found(&app, &rana, &q("kiwi")).await, vec![id_of(&visible)]);
    assert_eq!(found(&app, &lina, &q("kiwi")).await, vec![id_of(&hidden)]);
    // Naming a conversation one is not a member of is a 404, as everywhere.
    search_raw(
        &app,
        &omar,
        &format!("{}&conversation_id={private}", q("kiwi")),
    )
    .await
    .expect_body(404, not_found_body());

    // Deleted: gone from search at once.
    let doomed = app.send(&rana, shared, "kiwi to be deleted").await;
    assert_eq!(
        found(&app, &omar, &q("deleted")).await,
        vec![id_of(&doomed)]
    );
    app.delete(
        &format!("/api/v1/conversations/{shared}/messages/{}", id_of(&doomed)),
        Some(&rana.token),
    )
    .await
    .expect(200);
    assert!(found(&app, &omar, &q("deleted")).await.is_empty());
    assert_eq!(found(&app, &omar, &q("kiwi")).await, vec![id_of(&visible)]);

    // Edited: the old words no longer match, the new ones do, once.
    let edited = app.send(&omar, shared, "mango smoothie").await;
    let edited_id = id_of(&edited);
    app.patch(
        &format!("/api/v1/conversations/{shared}/messages/{edited_id}"),
        Some(&omar.token),
        serde_json::json!({ "content": "papaya smoothie" }),
    )
    .await
    .expect(200);
    assert!(found(&app, &rana, &q("mango")).await.is_empty());
    assert_eq!(found(&app, &rana, &q("papaya")).await, vec![edited_id]);
    assert_eq!(found(&app, &rana, &q("smoothie")).await, vec![edited_id]);
    let (hits, _) = search(&app, &rana, &q("papaya")).await;
    assert_eq!(hits[0]["message"]["content"], "papaya smoothie");

    // A member who leaves no longer finds the conversation's messages.
    app.delete(
        &format!("/api/v1/conversations/{shared}/memberships/{}", omar.id),
        Some(&rana.token),
    )
    .await
    .expect(200);
    assert!(found(&app, &omar, &q("kiwi")).await.is_empty());
    assert_eq!(found(&app, &rana, &q("kiwi")).await, vec![id_of(&visible)]);
}

async fn results_are_ranked_with_escaped_highlighted_snippets(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana").await;
    let room = app.group(&rana, "Room", &[]).await;
    let long = app
        .send(
            &rana,
            room,
            "we talked about lunch, the weather, the roadmap, hiring, the offsite, \
             the budget for next year and, briefly, rust",
        )
        .await;
    let dense = app.send(&rana, room, "Rust, rust and more rust").await;
    app.send(&rana, room, "nothing to see here").await;
    let markup = app
        .send(
            &rana,
            room,
            "<script>alert(1)</script> rust & <b>friends</b>",
        )
        .await;

    let (hits, _) = search(&app, &rana, &q("rust")).await;
    let ids: Vec<i64> = hits.iter().map(|h| id_of(&h["message"])).collect();
    assert_eq!(ids.len(), 3, "{hits:?}");
    assert_eq!(
        ids[0],
        id_of(&dense),
        "the densest match ranks first: {hits:?}"
    );
    assert!(ids.contains(&id_of(&long)) && ids.contains(&id_of(&markup)));

    let snippet = |id: i64| -> String {
        hits.iter()
            .find(|h| id_of(&h["message"]) == id)
            .and_then(|h| h["snippet"].as_str())
            .expect("snippet")
            .to_owned()
    };
    let dense_snippet = snippet(id_of(&dense));
    assert!(
        dense_snippet.contains("<mark>Rust</mark>") && dense_snippet.contains("<mark>rust</mark>"),
        "{dense_snippet}"
    );
    assert!(!dense_snippet.contains("<mark>more"), "{dense_snippet}");
    // The content's own markup is escaped: <mark> is the only tag.
    let markup_snippet = snippet(id_of(&markup));
    assert!(
        markup_snippet.contains("<mark>rust</mark>"),
        "{markup_snippet}"
    );
    let without_marks = markup_snippet.replace("<mark>", "").replace("</mark>", "");
    assert!(
        !without_marks.contains('<') && !without_marks.contains('>'),
        "{markup_snippet}"
    );
}

async fn pages_follow_the_cursor_without_gaps_or_repeats(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana").await;
    let room = app.group(&rana, "Room", &[]).await;
    // Equal scores (same text) are ordered newest first.
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(id_of(&app.send(&rana, room, "zebra crossing").await));
        sent.push(id_of(
            &app.send(&rana, room, &format!("zebra {i} zebra")).await,
        ));
    }
    let all = found(&app, &rana, &format!("{}&limit=50", q("zebra"))).await;
    assert_eq!(all.len(), 10);
    let crossings: Vec<i64> = all
        .iter()
        .copied()
        .filter(|id| {
            sent.iter()
                .position(|s| s == id)
                .is_some_and(|p| p % 2 == 0)
        })
        .collect();
    let mut newest_first = crossings.clone();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(crossings, newest_first, "ties go newest first");

    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = format!("{}&limit=3", q("zebra"));
        if let Some(c) = &cursor {
            query.push_str(&format!("&cursor={}", urlencode(c)));
        }
        let (hits, next) = search(&app, &rana, &query).await;
        pages += 1;
        assert!(hits.len() <= 3);
        paged.extend(hits.iter().map(|h| id_of(&h["message"])));
        match next {
            Some(next) => {
                assert_eq!(hits.len(), 3, "only a full page has a next cursor");
                cursor = Some(next);
            }
            None => break,
        }
        assert!(pages < 10, "the cursor ends");
    }
    assert_eq!(paged, all, "pages in order, no gaps, no repeats");
    assert_eq!(pages, 4);
}

async fn phrases_and_prefixes(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana").await;
    let room = app.group(&rana, "Room", &[]).await;
    let quick_brown = id_of(&app.send(&rana, room, "the quick brown fox").await);
    let brown_quick = id_of(&app.send(&rana, room, "brown, quick fox").await);
    let broccoli = id_of(&app.send(&rana, room, "broccoli soup").await);
    let hyphen = id_of(&app.send(&rana, room, "see the foo-bar module").await);

    let sorted = |mut ids: Vec<i64>| {
        ids.sort_unstable();
        ids
    };
    assert_eq!(
        found(&app, &rana, &q("\"quick brown\"")).await,
        vec![quick_brown]
    );
    assert_eq!(
        sorted(found(&app, &rana, &q("quick brown")).await),
        vec![quick_brown, brown_quick],
        "words without quotes match in any order"
    );
    assert_eq!(
        sorted(found(&app, &rana, &q("bro*")).await),
        vec![quick_brown, brown_quick, broccoli]
    );
    assert_eq!(found(&app, &rana, &q("BROC*")).await, vec![broccoli]);
    assert_eq!(
        found(&app, &rana, &q("\"quick brown\" fo*")).await,
        vec![quick_brown]
    );
    assert!(found(&app, &rana, &q("\"brown quick\" soup"))
        .await
        .is_empty());
    // Punctuation inside a word splits it as the index does.
    assert_eq!(found(&app, &rana, &q("foo-bar")).await, vec![hyphen]);
    assert_eq!(found(&app, &rana, &q("bar")).await, vec![hyphen]);
    // The backends' own operators are plain words here, never syntax.
    assert!(found(&app, &rana, &q("quick OR soup")).await.is_empty());
    assert_eq!(
        found(&app, &rana, &q("NEAR(quick fox)")).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        sorted(found(&app, &rana, &q("quick & !fox")).await),
        vec![quick_brown, brown_quick]
    );
}

async fn filters_narrow_the_results(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana").await;
    let omar = app.register("omar").await;
    let one = app.group(&rana, "One", &[&omar]).await;
    let two = app.group(&rana, "Two", &[&omar]).await;
    let before_sends = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let a = id_of(&app.send(&rana, one, "orbit report").await);
    let b = id_of(&app.send(&omar, one, "orbit update").await);
    let c = id_of(&app.send(&omar, two, "orbit notes").await);

    let sorted = |mut ids: Vec<i64>| {
        ids.sort_unstable();
        ids
    };
    let orbit = q("orbit");
    assert_eq!(sorted(found(&app, &rana, &orbit).await), vec![a, b, c]);
    assert_eq!(
        sorted(found(&app, &rana, &format!("{orbit}&conversation_id={one}")).await),
        vec![a, b]
    );
    assert_eq!(
        sorted(found(&app, &rana, &format!("{orbit}&from={}", omar.id)).await),
        vec![b, c]
    );
    assert_eq!(
        found(
            &app,
            &rana,
            &format!("{orbit}&from={}&conversation_id={two}", omar.id)
        )
        .await,
        vec![c]
    );

    let today = chrono::Utc::now().date_naive();
    let day = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
    let tomorrow = today.succ_opt().expect("tomorrow");
    let yesterday = today.pred_opt().expect("yesterday");
    // A day as `before`: before it began; as `after`: after it ended.
    assert_eq!(
        found(&app, &rana, &format!("{orbit}&before={}", day(tomorrow)))
            .await
            .len(),
        3
    );
    assert!(
        found(&app, &rana, &format!("{orbit}&before={}", day(today)))
            .await
            .is_empty()
    );
    assert_eq!(
        found(&app, &rana, &format!("{orbit}&after={}", day(yesterday)))
            .await
            .len(),
        3
    );
    assert!(found(&app, &rana, &format!("{orbit}&after={}", day(today)))
        .await
        .is_empty());
    // An RFC 3339 time.
    let since = urlencode(&before_sends.to_rfc3339());
    assert_eq!(
        found(&app, &rana, &format!("{orbit}&after={since}"))
            .await
            .len(),
        3
    );
    assert!(found(&app, &rana, &format!("{orbit}&before={since}"))
        .await
        .is_empty());
    // Empty parameters count as absent.
    assert_eq!(
        found(
            &app,
            &rana,
            &format!("{orbit}&before=&after=&from=&cursor=")
        )
        .await
        .len(),
        3
    );
}

async fn bad_queries_are_400_with_json_and_change_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rana = app.register("rana").await;
    let room = app.group(&rana, "Room", &[]).await;
    app.send(&rana, room, "alpha beta gamma").await;

    let long = "x".repeat(257);
    let many = "a b c d e f g h i j k l m n o p q";
    let mut bad: Vec<String> = [
        "",
        "   ",
        "\"open",
        "\"\"",
        "fo*o",
        "*",
        "a*",
        "**",
        "\"alpha beta*\"",
        "\"alpha\"*",
        "&& || !",
        "(",
        long.as_str(),
        many,
    ]
    .iter()
    .map(|text| q(text))
    .collect();
    bad.extend([
        String::new(),
        "qq=alpha".to_owned(),
        format!("{}&limit=ten", q("alpha")),
        format!("{}&from=rana", q("alpha")),
        format!("{}&conversation_id=x", q("alpha")),
        format!("{}&before=yesterday", q("alpha")),
        format!("{}&after=2026-02-30", q("alpha")),
        format!("{}&cursor=nonsense", q("alpha")),
        format!("{}&cursor=7ff8000000000000.1", q("alpha")),
        format!("{}&sort=oldest", q("alpha")),
        "q=%FF%FE".to_owned(),
    ]);
    for query in &bad {
        assert_400(&search_raw(&app, &rana, query).await);
    }
    // What either database's parser would choke on is plain text here.
    for text in [
        "alpha AND",
        "alpha:beta",
        "'alpha'",
        "alpha | !beta",
        "NEAR(alpha beta)",
        "alpha -beta",
        "beta^2",
        "alpha\\",
        "{alpha}",
        "alpha <-> beta",
        "alph*",
    ] {
        let resp = search_raw(&app, &rana, &q(text)).await;
        assert_eq!(resp.status, 200, "{text:?}: {}", resp.json());
    }
    // Whatever the text, the answer is 200 or a 400 with JSON, never a 500:
    // 300 deterministic strings over quotes, stars, both databases'
    // operators, digits and non-ASCII letters.
    const PIECES: [&str; 24] = [
        "\"", "*", "alpha", "be", "ta", " ", "  ", "-", "(", ")", ":", "'", "&", "|", "!", "^",
        "NEAR", "OR", "<->", "\\", "é", "日本", "٣", "\u{E000}",
    ];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let (mut answered, mut refused) = (0, 0);
    for _ in 0..300 {
        let mut text = String::new();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = 1 + state % 8;
        for k in 0..len {
            let pick = (state >> (k * 5 + 3)) % PIECES.len() as u64;
            text.push_str(PIECES[pick as usize]);
        }
        let resp = search_raw(&app, &rana, &q(&text)).await;
        match resp.status.as_u16() {
            200 => {
                search(&app, &rana, &q(&text)).await;
                answered += 1;
            }
            400 => {
                assert_400(&resp);
                refused += 1;
            }
            other => panic!("{text:?}: {other} {}", resp.text),
        }
    }
    assert!(
        answered > 30 && refused > 30,
        "{answered} answered, {refused} refused"
    );
    app.get(&format!("/api/v1/search?{}", q("alpha")), None)
        .await
        .expect_body(401, no_token_body());
    // Nothing changed: the message is still there and still found.
    assert_eq!(found(&app, &rana, &q("gamma")).await.len(), 1);
    assert_eq!(app.all_messages(&rana, room).await.len(), 1);
}

async fn the_search_language_applies_to_postgres(backend: Backend) {
    let app = TestApp::start_with(backend, &["--search-language", "english"]).await;
    let rana = app.register("rana").await;
    let room = app.group(&rana, "Room", &[]).await;
    let runs = id_of(&app.send(&rana, room, "the deploy runs nightly").await);
    match backend {
        // English stems on PostgreSQL (the start-up re-indexed with it) ...
        Backend::Postgres => {
            assert_eq!(found(&app, &rana, &q("running")).await, vec![runs]);
            assert_eq!(found(&app, &rana, &q("deploys")).await, vec![runs]);
        }
        // ... and SQLite ignores the flag (unicode61, no stemming).
        Backend::Sqlite => {
            assert!(found(&app, &rana, &q("running")).await.is_empty());
            assert_eq!(found(&app, &rana, &q("runs")).await, vec![runs]);
        }
    }
    if backend == Backend::Postgres {
        // A configuration PostgreSQL does not have stops start-up, naming
        // the setting.
        let db = PgDatabase::create();
        let refused = chatterly::server::open_store(
            &chatterly::config::Database::Postgres {
                url: db.url.clone(),
                pool: 2,
                search_language: "klingon".to_owned(),
            },
            app.data_dir.path(),
        )
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .expect("an unknown language is refused");
        assert!(
            refused.contains("--search-language") && refused.contains("klingon"),
            "{refused}"
        );
    }
}

async fn search_is_documented(backend: Backend) {
    let app = TestApp::start(backend).await;
    let doc = app.get("/api/openapi.json", None).await.expect(200);
    let get = &doc["paths"]["/api/v1/search"]["get"];
    assert!(get["responses"]["200"].is_object(), "{get}");
    assert!(get["responses"]["400"].is_object(), "{get}");
    let params: Vec<&str> = get["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in [
        "q",
        "conversation_id",
        "from",
        "before",
        "after",
        "cursor",
        "limit",
    ] {
        assert!(params.contains(&name), "{name} in {params:?}");
    }
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["SearchHitView"]["properties"]["snippet"].is_object());
    assert!(schemas["SearchPage"]["properties"]["next_cursor"].is_object());
}

/// Pages of a search, followed to the end: the ids in order.
async fn all_pages(app: &TestApp, user: &TestUser, query: &str, limit: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let mut page_query = format!("{query}&limit={limit}");
        if let Some(c) = &cursor {
            page_query.push_str(&format!("&cursor={}", urlencode(c)));
        }
        let (hits, next) = search(app, user, &page_query).await;
        ids.extend(hits.iter().map(|h| id_of(&h["message"])));
        match next {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
    panic!("the cursor of {query} never ends");
}

async fn ranking_is_bounded_to_the_newest_matches_and_recent_lists_all(backend: Backend) {
    // A window of 4: only the 4 newest visible matches are ranked.
    let app = TestApp::start_with(backend, &["--search-rank-window", "4"]).await;
    let rana = app.register("rana").await;
    let omar = app.register("omar").await;
    let lina = app.register("lina").await;
    let room = app.group(&rana, "Room", &[&omar]).await;
    let elsewhere = app.group(&lina, "Elsewhere", &[]).await;
    // The oldest match is the best one (the word three times).
    let best_but_old = id_of(&app.send(&rana, room, "yak yak yak").await);
    let mut newer = Vec::new();
    for i in 0..6 {
        let content = format!("yak number {i} of many words here");
        newer.push(id_of(&app.send(&omar, room, &content).await));
        // Matches the reader cannot see do not take places in the window.
        app.send(&lina, elsewhere, "yak yak").await;
    }
    let deleted = id_of(&app.send(&rana, room, "yak to delete").await);
    app.delete(
        &format!("/api/v1/conversations/{room}/messages/{deleted}"),
        Some(&rana.token),
    )
    .await
    .expect(200);

    let ranked = found(&app, &rana, &q("yak")).await;
    let mut expected: Vec<i64> = newer[2..].to_vec();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    let mut got = ranked.clone();
    got.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(got, expected, "the 4 newest visible matches, ranked");
    assert!(!ranked.contains(&best_but_old));
    assert_eq!(
        all_pages(&app, &rana, &q("yak"), 3).await,
        ranked,
        "pages of the window"
    );

    // Newest first lists every visible match, page by page.
    let mut everything = newer.clone();
    everything.push(best_but_old);
    everything.sort_unstable_by(|a, b| b.cmp(a));
    let recent = format!("{}&sort=recent", q("yak"));
    assert_eq!(found(&app, &rana, &recent).await, everything);
    assert_eq!(all_pages(&app, &rana, &recent, 2).await, everything);
    // Filters apply before the window: only Rana's messages, so the old one
    // is in it and ranks first.
    let from_rana = format!("{}&from={}&sort=relevance", q("yak"), rana.id);
    assert_eq!(found(&app, &rana, &from_rana).await, vec![best_but_old]);

    // Window 0 ranks every match: the oldest, best one comes first.
    let unbounded = TestApp::start_with(backend, &["--search-rank-window", "0"]).await;
    let omar = unbounded.register("omar").await;
    let room = unbounded.group(&omar, "Room", &[]).await;
    let best = id_of(&unbounded.send(&omar, room, "yak yak yak").await);
    for i in 0..6 {
        unbounded
            .send(&omar, room, &format!("yak number {i} of many words here"))
            .await;
    }
    assert_eq!(
        found(&unbounded, &omar, &q("yak")).await.first(),
        Some(&best)
    );
}

conformance!(
    only_members_find_and_never_deleted_or_stale_text,
    results_are_ranked_with_escaped_highlighted_snippets,
    pages_follow_the_cursor_without_gaps_or_repeats,
    ranking_is_bounded_to_the_newest_matches_and_recent_lists_all,
    phrases_and_prefixes,
    filters_narrow_the_results,
    bad_queries_are_400_with_json_and_change_nothing,
    the_search_language_applies_to_postgres,
    search_is_documented,
);
