//! `conversation-list`: the list a client loads first, at its biggest. One
//! reader belongs to `--conversations` conversations (default 1,000), each
//! with a few members and messages, some mentioning the reader, half of them
//! read; every worker asks for the reader's `GET /api/v1/conversations`,
//! whose rows carry `unread_count`, `mention_count` and `last_message`.
//!
//! Setup (not measured): registers the reader and `--peers` users; creates
//! the conversations (the reader's, with 1 to 3 peers each, round robin);
//! seeds `--messages` messages per conversation from its peers, every
//! `--mention-every`th one naming the reader with `@username`; the reader
//! marks every other conversation read. The measured loop drains each body
//! without parsing it; afterwards one parsed list must hold every
//! conversation with the counts the setup implies, else the run fails.
//! With `--page N` every request asks for the first page of N
//! (`?limit=N`), checked once before the run.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::json;

use super::{get_repeatedly, register_users, run_id, Budget, Ctx};
use crate::api::{Api, Session};
use crate::cli::ConversationListArgs;
use crate::progress::Progress;
use crate::report::{Operation, Report, Setup};
use crate::stats::Live;

/// Setup requests in flight at once.
const PARALLELISM: usize = 16;

#[derive(Deserialize)]
struct List {
    data: Vec<Row>,
}

#[derive(Deserialize)]
struct Row {
    id: i64,
    unread_count: i64,
    mention_count: i64,
}

/// What the list should show once the setup is done.
struct Expected {
    conversations: usize,
    unread: i64,
    mentions: i64,
}

pub async fn run(ctx: &Ctx, args: &ConversationListArgs) -> Result<Report> {
    let api = &ctx.api;
    let setup_start = Instant::now();
    let run = run_id();
    let users = register_users(ctx, args.peers as usize + 1, &run).await?;
    let (reader, peers) = users.split_first().context("the reader")?;
    let reader_name = format!("lt_{run}_0");
    let n = args.conversations as usize;

    ctx.say(format!("setup: creating {n} conversations"));
    let ids: Vec<i64> = futures::stream::iter(0..n)
        .map(|i| {
            let members: Vec<i64> = (0..1 + i % 3)
                .map(|k| peers[(i + k) % peers.len()].id)
                .collect();
            let name = format!("list {run} {i}");
            async move { api.create_group(reader, &name, &members).await }
        })
        .buffered(PARALLELISM)
        .try_collect()
        .await?;

    let per = args.messages as usize;
    ctx.say(format!("setup: seeding {} messages", n * per));
    let mention_every = args.mention_every.max(1) as usize;
    let sends: Vec<(i64, &Session, String)> = ids
        .iter()
        .enumerate()
        .flat_map(|(i, &id)| {
            let reader_name = &reader_name;
            (0..per).map(move |m| {
                let author = &peers[(i + m % (1 + i % 3)) % peers.len()];
                let content = if (i * per + m).is_multiple_of(mention_every) {
                    format!("@{reader_name} have a look ({i}/{m})")
                } else {
                    format!("list message {i}/{m}")
                };
                (id, author, content)
            })
        })
        .collect();
    futures::stream::iter(&sends)
        .map(|(id, author, content)| api.send_message(author, *id, content))
        .buffered(PARALLELISM)
        .try_for_each(|_| async { Ok(()) })
        .await?;

    ctx.say("setup: marking every other conversation read");
    futures::stream::iter(ids.iter().step_by(2))
        .map(|id| async move {
            let url = api.endpoint(&format!("/api/v1/conversations/{id}/read"));
            let response = api
                .post_json(&url, reader, &json!({}))
                .send()
                .await
                .with_context(|| format!("POST {url}"))?;
            if !response.status().is_success() {
                bail!("POST {url} answered {}", response.status());
            }
            Ok(())
        })
        .buffered(PARALLELISM)
        .try_for_each(|_| async { Ok(()) })
        .await?;

    let unread_ids = ids.iter().enumerate().filter(|(i, _)| i % 2 == 1);
    let expected = Expected {
        conversations: n,
        unread: (unread_ids.clone().count() * per) as i64,
        mentions: unread_ids
            .map(|(i, _)| {
                (0..per)
                    .filter(|m| (i * per + m).is_multiple_of(mention_every))
                    .count() as i64
            })
            .sum(),
    };
    check(api, reader, &expected).await?;
    let setup = Setup {
        users: users.len(),
        conversation_ids: Vec::new(),
        seeded_messages: sends.len(),
        seconds: setup_start.elapsed().as_secs_f64(),
    };

    let url = Arc::new(match args.page {
        Some(page) => {
            let url = api.endpoint(&format!("/api/v1/conversations?limit={page}"));
            check_page(api, reader, &url, page, n).await?;
            url
        }
        None => api.endpoint("/api/v1/conversations"),
    });
    let reader = reader.clone();
    let live = Arc::new(Live::default());
    let date = crate::now_rfc3339();
    let budget = Budget::new(args.run.duration(), args.run.requests, ctx.stop.clone());
    let progress = Progress::start(
        "conversation-list",
        live.clone(),
        args.run.duration(),
        ctx.chatty,
    );
    let cpu = crate::report::CpuMeter::start(args.cpu.server_pid);
    let start = Instant::now();
    let all = get_repeatedly(api, &reader, &url, args.run.workers(), &budget, &live).await?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu.finish();
    progress.finish().await;

    // Nothing the run did may have changed the list.
    check(api, &reader, &expected).await?;
    let operation = match args.page {
        Some(page) => format!("conversations (first {page} of {n})"),
        None => format!("conversations ({n})"),
    };
    let operations = vec![Operation::new(&operation, &all, elapsed)];
    let mut report = Report::new(
        "conversation-list",
        date,
        api.target().as_str(),
        args.parameters(),
        setup,
        elapsed,
        "request",
        &all,
        operations,
    );
    let response = match args.page {
        Some(page) => format!("is the first page of {page} of the reader's {n} conversations"),
        None => format!("lists {n} conversations"),
    };
    report.notes.push(format!(
        "each response {response} ({} unread messages, {} mentions in all)",
        expected.unread, expected.mentions
    ));
    report.cpu = cpu.map(|c| c.per_request(report.requests));
    Ok(report)
}

/// The first page of `page` at `url`: as many rows as asked for (or as
/// there are), and a cursor when more follow.
async fn check_page(
    api: &Api,
    reader: &Session,
    url: &str,
    page: u32,
    conversations: usize,
) -> Result<()> {
    let body: serde_json::Value = api.get_json(url, reader).await?;
    let rows = body["data"].as_array().map_or(0, Vec::len);
    let expected = (page as usize).min(conversations);
    // The server may clamp the page to its --max-page.
    if rows == 0 || rows > expected {
        bail!("GET {url}: {rows} conversations, expected up to {expected}");
    }
    if rows < conversations && !body["next_cursor"].is_string() {
        bail!("GET {url}: a partial list without next_cursor");
    }
    Ok(())
}

/// One parsed list: every conversation there, with the expected totals.
async fn check(api: &Api, reader: &Session, expected: &Expected) -> Result<()> {
    let url = api.endpoint("/api/v1/conversations");
    let list: List = api.get_json(&url, reader).await?;
    let unread: i64 = list.data.iter().map(|r| r.unread_count).sum();
    let mentions: i64 = list.data.iter().map(|r| r.mention_count).sum();
    let mut ids: Vec<i64> = list.data.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != expected.conversations
        || unread != expected.unread
        || mentions != expected.mentions
    {
        bail!(
            "the conversation list is wrong: {} conversations, {unread} unread, {mentions} \
             mentions; expected {}, {}, {}",
            ids.len(),
            expected.conversations,
            expected.unread,
            expected.mentions
        );
    }
    Ok(())
}
