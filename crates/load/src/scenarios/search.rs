//! `search`: full-text search over a big history. One reader and `--peers`
//! users; `--conversations` conversations, the reader a member of two in
//! three; `--messages` messages in all, round robin over the conversations,
//! every `--match-every`th one containing the searched word. Workers
//! `GET /api/v1/search?q=<word>` as the reader (a ranked page of 50 with
//! snippets).
//!
//! Setup (not measured) seeds the history over REST. Before and after the
//! measured loop one walk of every page (by `next_cursor`) must find exactly
//! the matches the reader may see, each once, else the run fails.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;

use super::{get_repeatedly, register_users, run_id, Budget, Ctx};
use crate::api::{Api, Session};
use crate::cli::SearchArgs;
use crate::progress::Progress;
use crate::report::{Operation, Report, Setup};
use crate::stats::Live;

/// Setup requests in flight at once.
const PARALLELISM: usize = 32;
/// Filler words, so the messages are not all alike.
const FILLER: [&str; 16] = [
    "deploy", "lunch", "review", "budget", "standup", "release", "ticket", "design", "meeting",
    "coffee", "bug", "roadmap", "retro", "hiring", "offsite", "metrics",
];

#[derive(Deserialize)]
struct Page {
    data: PageData,
}

#[derive(Deserialize)]
struct PageData {
    results: Vec<Hit>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Hit {
    message: HitMessage,
}

#[derive(Deserialize)]
struct HitMessage {
    id: i64,
}

/// The content of the `i`th seeded message.
fn content(i: usize, word: &str, match_every: usize) -> String {
    let mut text = format!(
        "{} {} {} {i}",
        FILLER[i % 16],
        FILLER[(i / 16) % 16],
        FILLER[(i / 256 + 7) % 16]
    );
    if i.is_multiple_of(match_every) {
        text.push(' ');
        text.push_str(word);
    }
    text
}

pub async fn run(ctx: &Ctx, args: &SearchArgs) -> Result<Report> {
    let api = &ctx.api;
    let setup_start = Instant::now();
    let run = run_id();
    let users = register_users(ctx, args.peers as usize + 1, &run).await?;
    let (reader, peers) = users.split_first().context("the reader")?;
    let n = args.conversations as usize;

    ctx.say(format!("setup: creating {n} conversations"));
    let ids: Vec<i64> = futures::stream::iter(0..n)
        .map(|i| {
            let peer = &peers[i % peers.len()];
            let name = format!("search {run} {i}");
            async move {
                if i.is_multiple_of(3) {
                    api.create_group(peer, &name, &[]).await
                } else {
                    api.create_group(reader, &name, &[peer.id]).await
                }
            }
        })
        .buffered(PARALLELISM)
        .try_collect()
        .await?;

    let total = args.messages as usize;
    let every = args.match_every.max(1) as usize;
    let word = args.word.trim().to_lowercase();
    if word.is_empty() || !word.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!("--word must be one word of ASCII letters and digits");
    }
    ctx.say(format!("setup: seeding {total} messages"));
    futures::stream::iter(0..total)
        .map(|i| {
            let (id, author) = (ids[i % n], &peers[(i % n) % peers.len()]);
            let text = content(i, &word, every);
            async move { api.send_message(author, id, &text).await }
        })
        .buffered(PARALLELISM)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let visible = (0..total)
        .filter(|i| i.is_multiple_of(every) && !(i % n).is_multiple_of(3))
        .count();
    check(api, reader, &word, visible).await?;
    let setup = Setup {
        users: users.len(),
        conversation_ids: Vec::new(),
        seeded_messages: total,
        seconds: setup_start.elapsed().as_secs_f64(),
    };

    let url = Arc::new(api.endpoint(&format!("/api/v1/search?q={word}&sort={}", args.sort)));
    let reader = reader.clone();
    let live = Arc::new(Live::default());
    let date = crate::now_rfc3339();
    let budget = Budget::new(args.run.duration(), args.run.requests, ctx.stop.clone());
    let progress = Progress::start("search", live.clone(), args.run.duration(), ctx.chatty);
    let cpu = crate::report::CpuMeter::start(args.cpu.server_pid);
    let start = Instant::now();
    let all = get_repeatedly(api, &reader, &url, args.run.workers(), &budget, &live).await?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu.finish();
    progress.finish().await;

    check(api, &reader, &word, visible).await?;
    let operation = format!("search one word ({visible} visible matches in {total} messages)");
    let operations = vec![Operation::new(&operation, &all, elapsed)];
    let mut report = Report::new(
        "search",
        date,
        api.target().as_str(),
        args.parameters(),
        setup,
        elapsed,
        "request",
        &all,
        operations,
    );
    report.notes.push(format!(
        "the reader may see {visible} matches of {word:?} (of {} in all); each request asks \
         for sort={} (relevance ranks the newest --search-rank-window of them) and returns \
         50 with snippets",
        total.div_ceil(every),
        args.sort
    ));
    report.cpu = cpu.map(|c| c.per_request(report.requests));
    Ok(report)
}

/// Walks every page of the search: exactly `expected` distinct hits.
async fn check(api: &Api, reader: &Session, word: &str, expected: usize) -> Result<()> {
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = api.endpoint(&format!("/api/v1/search?q={word}&limit=100&sort=recent"));
        if let Some(c) = &cursor {
            url.push_str("&cursor=");
            url.push_str(c);
        }
        let page: Page = api.get_json(&url, reader).await?;
        for hit in &page.data.results {
            if !seen.insert(hit.message.id) {
                bail!("search returned message {} twice", hit.message.id);
            }
        }
        match page.data.next_cursor {
            Some(next) if !page.data.results.is_empty() => cursor = Some(next),
            _ => break,
        }
    }
    if seen.len() != expected {
        bail!(
            "search found {} messages; the reader may see {expected}",
            seen.len()
        );
    }
    Ok(())
}
