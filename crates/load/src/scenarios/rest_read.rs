//! `rest-read`: history pages and the caller's profile, as a client opening
//! and scrolling a conversation would ask for them.
//!
//! Setup: `--users` users, one group conversation with all of them, seeded with
//! `--seed-messages` messages; the cursors of its history pages are collected
//! once. Each worker (reading as user `worker mod users`) then loops over a
//! fixed mix: half first pages, a quarter pages further back (`cursor`), a
//! quarter `GET /api/v1/users/me`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use super::{create_group, register_users, run_id, run_workers, seed_messages, Budget, Ctx};
use crate::api::{history_path, Api, Session};
use crate::cli::RestReadArgs;
use crate::progress::Progress;
use crate::report::{Operation, Report, Setup};
use crate::stats::{Live, Recorder};

const FIRST_PAGE: usize = 0;
const OLDER_PAGE: usize = 1;
const ME: usize = 2;
const OPERATIONS: [&str; 3] = ["history (first page)", "history (cursor)", "users/me"];

struct Urls {
    first_page: String,
    older_pages: Vec<String>,
    me: String,
}

impl Urls {
    /// The request a worker makes at step `i` (offset by the worker number so
    /// workers are not in lockstep).
    fn pick(&self, worker: usize, i: usize) -> (usize, &str) {
        match (i + worker) % 4 {
            3 => (ME, &self.me),
            1 if !self.older_pages.is_empty() => {
                let page = (i / 4 + worker) % self.older_pages.len();
                (OLDER_PAGE, &self.older_pages[page])
            }
            _ => (FIRST_PAGE, &self.first_page),
        }
    }
}

pub async fn run(ctx: &Ctx, args: &RestReadArgs) -> Result<Report> {
    let api = &ctx.api;
    let setup_start = Instant::now();
    let run = run_id();
    let users = register_users(ctx, args.users as usize, &run).await?;
    let conversation = create_group(ctx, &users, &format!("load rest-read {run}")).await?;
    seed_messages(ctx, &users, conversation, args.seed_messages as usize).await?;
    let cursors = collect_cursors(api, &users[0], conversation, args.page_limit).await?;
    let setup = Setup {
        users: users.len(),
        conversation_ids: vec![conversation],
        seeded_messages: args.seed_messages as usize,
        seconds: setup_start.elapsed().as_secs_f64(),
    };
    let urls = Arc::new(Urls {
        first_page: api.endpoint(&history_path(conversation, None, args.page_limit)),
        older_pages: cursors
            .iter()
            .map(|&c| api.endpoint(&history_path(conversation, Some(c), args.page_limit)))
            .collect(),
        me: api.endpoint("/api/v1/users/me"),
    });
    let users = Arc::new(users);

    let live = Arc::new(Live::default());
    let date = crate::now_rfc3339();
    let budget = Budget::new(args.run.duration(), args.run.requests, ctx.stop.clone());
    let progress = Progress::start("rest-read", live.clone(), args.run.duration(), ctx.chatty);
    let cpu = crate::report::CpuMeter::start(args.cpu.server_pid);
    let start = Instant::now();
    let results = run_workers(args.run.workers(), |w| {
        let api = api.clone();
        let session = users[w % users.len()].clone();
        let (urls, budget, live) = (urls.clone(), budget.clone(), live.clone());
        worker(api, session, urls, budget, live, w)
    })
    .await?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu.finish();
    progress.finish().await;

    let mut per_op: [Recorder; 3] = Default::default();
    for worker in &results {
        for (total, part) in per_op.iter_mut().zip(worker) {
            total.merge(part);
        }
    }
    let mut all = Recorder::default();
    for op in &per_op {
        all.merge(op);
    }
    let operations = OPERATIONS
        .iter()
        .zip(&per_op)
        .map(|(name, rec)| Operation::new(name, rec, elapsed))
        .collect();
    let mut report = Report::new(
        "rest-read",
        date,
        api.target().as_str(),
        args.parameters(),
        setup,
        elapsed,
        "request",
        &all,
        operations,
    );
    if cursors.is_empty() {
        report.notes.push(
            "history fits on one page: no cursor requests were made (seed more messages)".into(),
        );
    }
    report.cpu = cpu.map(|c| c.per_request(report.requests));
    Ok(report)
}

async fn worker(
    api: Api,
    session: Session,
    urls: Arc<Urls>,
    budget: Arc<Budget>,
    live: Arc<Live>,
    w: usize,
) -> [Recorder; 3] {
    let mut recorders: [Recorder; 3] = Default::default();
    let mut i = 0usize;
    while budget.take() {
        let (op, url) = urls.pick(w, i);
        let (outcome, latency) = Api::timed(api.get(url, &session)).await;
        live.count(outcome.is_success());
        recorders[op].record(outcome, latency);
        i += 1;
    }
    recorders
}

/// Pages back through the whole history once and returns every `next_cursor`.
async fn collect_cursors(
    api: &Api,
    reader: &Session,
    conversation: i64,
    limit: Option<u32>,
) -> Result<Vec<i64>> {
    let mut cursors = Vec::new();
    let mut cursor = None;
    while let Some(next) = api
        .history_page(reader, conversation, cursor, limit)
        .await?
        .next_cursor
    {
        if Some(next) == cursor || cursors.len() > 100_000 {
            break;
        }
        cursors.push(next);
        cursor = Some(next);
    }
    Ok(cursors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(older: usize) -> Urls {
        Urls {
            first_page: "first".into(),
            older_pages: (0..older).map(|i| format!("older{i}")).collect(),
            me: "me".into(),
        }
    }

    #[test]
    fn mix_is_half_first_pages_quarter_cursor_quarter_me() {
        let u = urls(3);
        let mut counts = [0usize; 3];
        for w in 0..8 {
            for i in 0..400 {
                counts[u.pick(w, i).0] += 1;
            }
        }
        assert_eq!(counts, [1600, 800, 800]);
        // Cursor requests cycle through every older page.
        let pages: std::collections::HashSet<&str> = (0..40)
            .map(|i| u.pick(0, i))
            .filter(|p| p.0 == OLDER_PAGE)
            .map(|p| p.1)
            .collect();
        assert_eq!(pages.len(), 3);
    }

    #[test]
    fn without_older_pages_cursor_turns_into_first_page() {
        let u = urls(0);
        assert!((0..100).all(|i| u.pick(0, i).0 != OLDER_PAGE));
    }
}
