//! Tests that need the real binary: `--help`, start-up refusals, `migrate`,
//! and durability across `kill -9`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::{pg_admin_url, PgDatabase, PG_JWT_SECRET};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_chatterly");

/// The binary with a clean environment (no DATABASE_URL or CHATTERLY_* from
/// the caller), and backtraces on, so a panic could not hide.
fn chatterly() -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null());
    command
}

/// Runs to completion, failing the test if it takes longer than `limit`
/// (a setting that should be refused must not start a server).
fn run(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chatterly");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "{command:?} still running after {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every long flag of `serve`, as clap knows them.
fn serve_flags() -> Vec<String> {
    use clap::Args;
    let command = chatterly::config::ServeArgs::augment_args(clap::Command::new("serve"));
    command
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .filter(|l| l != "--help" && l != "--version")
        .collect()
}

#[test]
fn help_documents_every_flag() {
    let flags = serve_flags();
    for must in [
        "--listen",
        "--data-dir",
        "--database-url",
        "--jwt-secret",
        "--rate-limits",
        "--max-body-bytes",
    ] {
        assert!(
            flags.iter().any(|f| f == must),
            "{must} is a flag: {flags:?}"
        );
    }
    for args in [&["--help"][..], &["serve", "--help"][..]] {
        let mut command = chatterly();
        command.args(args);
        let output = run(command, Duration::from_secs(20));
        assert!(output.status.success(), "{args:?}: {output:?}");
        let help = text(&output.stdout);
        for flag in &flags {
            assert!(
                help.contains(flag.as_str()),
                "`chatterly {}` does not document {flag}:\n{help}",
                args.join(" ")
            );
        }
        for env in ["DATABASE_URL", "CHATTERLY_LISTEN", "CHATTERLY_JWT_SECRET"] {
            assert!(
                help.contains(env),
                "`chatterly {}` names the variable {env}",
                args.join(" ")
            );
        }
    }
    let mut command = chatterly();
    command.arg("--help");
    let help = text(&run(command, Duration::from_secs(20)).stdout);
    assert!(
        help.contains("serve") && help.contains("migrate"),
        "commands listed:\n{help}"
    );
    let mut command = chatterly();
    command.args(["migrate", "--help"]);
    let output = run(command, Duration::from_secs(20));
    assert!(output.status.success());
    let help = text(&output.stdout);
    assert!(
        help.contains("--data-dir") && help.contains("--database-url"),
        "{help}"
    );
    let mut command = chatterly();
    command.arg("--version");
    let output = run(command, Duration::from_secs(20));
    assert!(output.status.success());
    assert!(text(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// Asserts a refused start-up: non-zero exit, the first stderr line names the
/// setting, no panic; `one_line` when our own validation (not clap's parser,
/// which adds a usage hint) refused it.
#[track_caller]
fn assert_refused(output: &Output, setting: &str, one_line: bool, what: &str) {
    let stderr = text(&output.stderr);
    assert!(
        !output.status.success(),
        "{what}: started or exited 0\nstderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.to_lowercase().contains("backtrace"),
        "{what}: panicked:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let first = lines.first().copied().unwrap_or("");
    assert!(first.starts_with("error:"), "{what}: first line {first:?}");
    assert!(
        first.contains(setting),
        "{what}: {first:?} does not name {setting}"
    );
    if one_line {
        assert_eq!(lines.len(), 1, "{what}: one line only:\n{stderr}");
    }
}

#[test]
fn wrong_settings_stop_start_up_with_one_line_naming_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().display().to_string();
    let pg = "postgres://chatterly@127.0.0.1:5432/chatterly";
    let secret = "0123456789abcdef0123456789abcdef";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--listen", "nope"], "--listen"),
        (vec!["--listen", "127.0.0.1:99999"], "--listen"),
        (vec!["--database-url", "mysql://x"], "--database-url"),
        (vec!["--database-url", pg], "--jwt-secret"),
        (
            vec!["--database-url", pg, "--jwt-secret", "short"],
            "--jwt-secret",
        ),
        (vec!["--jwt-secret", "too-short-for-hs256"], "--jwt-secret"),
        (
            vec![
                "--database-url",
                pg,
                "--jwt-secret",
                secret,
                "--db-pool",
                "0",
            ],
            "--db-pool",
        ),
        (vec!["--redis-url", "http://localhost:6379"], "--redis-url"),
        (vec!["--cors-origin", "localhost:3000"], "--cors-origin"),
        (vec!["--max-page", "0"], "--max-page"),
        (vec!["--max-body-bytes", "0"], "--max-body-bytes"),
        (vec!["--max-message-chars", "0"], "--max-message-chars"),
        (vec!["--lock-after", "0"], "--lock-after"),
        (vec!["--token-ttl", "0"], "--token-ttl"),
        (vec!["--argon2-memory-kib", "1"], "--argon2-memory-kib"),
    ];
    for (args, setting) in cases {
        let mut command = chatterly();
        command
            .arg("serve")
            .args(["--data-dir", &data_dir])
            .args(&args);
        let output = run(command, Duration::from_secs(30));
        assert_refused(&output, setting, true, &format!("serve {args:?}"));
    }
    // The same through the environment.
    let mut command = chatterly();
    command
        .arg("serve")
        .env("CHATTERLY_DATA_DIR", &data_dir)
        .env("CHATTERLY_LISTEN", "nope");
    assert_refused(
        &run(command, Duration::from_secs(30)),
        "CHATTERLY_LISTEN",
        true,
        "CHATTERLY_LISTEN=nope",
    );
    let mut command = chatterly();
    command
        .arg("serve")
        .env("CHATTERLY_DATA_DIR", &data_dir)
        .env("DATABASE_URL", pg);
    assert_refused(
        &run(command, Duration::from_secs(30)),
        "--jwt-secret",
        true,
        "DATABASE_URL without secret",
    );
    // Values clap cannot parse: its error names the flag on the first line.
    for (args, setting) in [
        (vec!["--rate-limits", "maybe"], "--rate-limits"),
        (vec!["--db-pool", "lots"], "--db-pool"),
        (vec!["--max-page=-1"], "--max-page"),
        (vec!["--log-format", "xml"], "--log-format"),
    ] {
        let mut command = chatterly();
        command
            .arg("serve")
            .args(["--data-dir", &data_dir])
            .args(&args);
        let output = run(command, Duration::from_secs(30));
        assert_refused(&output, setting, false, &format!("serve {args:?}"));
    }
    // Nothing was served or written for any of them: no database file.
    assert!(
        !dir.path().join("chatterly.sqlite3").exists(),
        "refused settings wrote nothing"
    );
}

#[test]
fn unusable_resources_stop_start_up_with_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let mut command = chatterly();
    command.args([
        "serve",
        "--data-dir",
        &dir.path().display().to_string(),
        "--listen",
    ]);
    command.arg(format!("127.0.0.1:{port}"));
    assert_refused(
        &run(command, Duration::from_secs(60)),
        "--listen",
        true,
        "port in use",
    );
    // The data directory cannot be created (a file is in the way).
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let mut command = chatterly();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(file.join("data"));
    assert_refused(
        &run(command, Duration::from_secs(60)),
        "--data-dir",
        true,
        "data dir not creatable",
    );
    // PostgreSQL answers, but the database does not exist.
    let admin = pg_admin_url();
    let base = &admin[..admin.rfind('/').expect("admin URL names a database")];
    let mut command = chatterly();
    command.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--jwt-secret",
        PG_JWT_SECRET,
        "--database-url",
    ]);
    command.arg(format!("{base}/chatterly_no_such_database"));
    assert_refused(
        &run(command, Duration::from_secs(60)),
        "--database-url",
        true,
        "missing database",
    );
}

#[test]
fn migrate_applies_migrations_and_exits() {
    // SQLite: a fresh data directory, twice (idempotent).
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("nested").join("data");
    for _ in 0..2 {
        let mut command = chatterly();
        command.arg("migrate").arg("--data-dir").arg(&data_dir);
        let output = run(command, Duration::from_secs(60));
        assert!(output.status.success(), "{output:?}");
        assert!(text(&output.stdout).contains("migrations applied"));
        assert!(!text(&output.stderr).contains("panicked"));
    }
    assert!(
        data_dir.join("chatterly.sqlite3").exists(),
        "the database file was created"
    );
    // A bad URL is refused like serve refuses it.
    let mut command = chatterly();
    command
        .args(["migrate", "--database-url", "mysql://x", "--data-dir"])
        .arg(&data_dir);
    assert_refused(
        &run(command, Duration::from_secs(30)),
        "--database-url",
        true,
        "migrate mysql://",
    );

    // PostgreSQL: a fresh database gets the schema.
    let db = PgDatabase::create();
    for _ in 0..2 {
        let mut command = chatterly();
        command.args(["migrate", "--database-url", &db.url]);
        command.arg("--data-dir").arg(dir.path());
        let output = run(command, Duration::from_secs(60));
        assert!(output.status.success(), "{output:?}");
    }
    let url = db.url.clone();
    let tables: i64 = tokio::runtime::Runtime::new().expect("runtime").block_on(async move {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables
             WHERE table_schema = 'public' AND table_name IN ('users', 'conversations', 'messages', 'reactions')",
        )
        .fetch_one(&mut conn)
        .await
        .expect("query")
    });
    assert_eq!(tables, 4, "the schema exists");
}

// ---- kill -9 -------------------------------------------------------------------

/// A server process; killed (SIGKILL) when dropped.
struct Process {
    child: Child,
    base: String,
    stderr: Arc<Mutex<String>>,
}

impl Process {
    fn start(args: &[String]) -> Process {
        let mut child = chatterly()
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chatterly");
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                let mut sink = sink.lock().expect("lock");
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining stdout so the server never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split('/').next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not start: {}", stderr.lock().expect("lock"));
            }
        };
        Process {
            child,
            base: format!("http://{addr}"),
            stderr,
        }
    }

    fn kill9(&mut self) {
        // std's kill is SIGKILL on Unix: no shutdown code runs.
        self.child.kill().expect("kill");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_up(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = client
            .get(format!("{base}/up"))
            .header("accept", "application/json")
            .send()
            .await
        {
            if resp.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{base}/up never answered 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Acknowledged writes survive SIGKILL in the middle of a stream of sends.
async fn acknowledged_writes_survive_kill_9(args: Vec<String>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let mut server = Process::start(&args);
    wait_up(&client, &server.base).await;
    let base = server.base.clone();

    let resp = client
        .post(format!("{base}/auth/register"))
        .json(&json!({"user": {"email": "rana@example.test", "password": "s3cret-pass", "username": "rana_h"}}))
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status().as_u16(), 201);
    let token = resp
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .expect("token")
        .to_owned();
    let (status, body) = json_of(
        client
            .post(format!("{base}/api/v1/conversations"))
            .bearer_auth(&token)
            .json(&json!({"name": "Durable", "conversation_type": "group"}))
            .send()
            .await
            .expect("create"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let conversation = body["data"]["id"].as_i64().expect("id");

    // Four senders stream messages; every 201 is recorded.
    let acked: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
    let mut senders = Vec::new();
    for sender in 0..4 {
        let client = client.clone();
        let token = token.clone();
        let acked = Arc::clone(&acked);
        let url = format!("{base}/api/v1/conversations/{conversation}/messages");
        senders.push(tokio::spawn(async move {
            for i in 0.. {
                let content = format!("s{sender}-m{i}");
                let sent = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"content": content, "client_message_id": content}))
                    .send()
                    .await;
                let Ok(resp) = sent else { return };
                let (status, body) = json_of(resp).await;
                match status {
                    // Acknowledged only if the whole answer arrived.
                    201 if body["data"]["id"].is_i64() => {
                        acked.lock().expect("lock").push(body["data"].clone())
                    }
                    201 => return,
                    other => panic!("send answered {other}: {body}"),
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().expect("lock").len() < 60 {
        assert!(Instant::now() < deadline, "sends too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    for sender in senders {
        // A sender whose request died with the process just stops.
        let _ = sender.await;
    }
    let acked = acked.lock().expect("lock").clone();
    let stderr = server.stderr.lock().expect("lock").clone();
    assert!(!stderr.contains("panicked"), "{stderr}");
    drop(server);

    let server = Process::start(&args);
    wait_up(&client, &server.base).await;
    let base = server.base.clone();
    // The session survived too (the signing secret is durable).
    let (status, _) = json_of(
        client
            .get(format!("{base}/api/v1/users/me"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("me"),
    )
    .await;
    assert_eq!(status, 200);
    let mut stored: Vec<Value> = Vec::new();
    let mut query = "limit=100".to_owned();
    loop {
        let (status, body) = json_of(
            client
                .get(format!(
                    "{base}/api/v1/conversations/{conversation}/messages?{query}"
                ))
                .bearer_auth(&token)
                .send()
                .await
                .expect("history"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let mut page = body["data"]["messages"]
            .as_array()
            .expect("messages")
            .clone();
        page.append(&mut stored);
        stored = page;
        match body["data"]["next_cursor"].as_i64() {
            Some(cursor) => query = format!("limit=100&cursor={cursor}"),
            None => break,
        }
    }
    let seqs: Vec<i64> = stored
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "gap-free after the crash"
    );
    for message in &acked {
        let found = stored.iter().find(|m| m["id"] == message["id"]);
        let found = found.unwrap_or_else(|| panic!("acknowledged message lost: {message}"));
        assert_eq!(found["content"], message["content"]);
        assert_eq!(found["seq"], message["seq"]);
    }
    assert!(stored.len() >= acked.len());
    // Retrying an unacknowledged send is safe: every key maps to one message.
    let mut keys: Vec<&str> = stored
        .iter()
        .filter_map(|m| m["client_message_id"].as_str())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), stored.len());
}

fn free_args(data_dir: &Path) -> Vec<String> {
    vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--rate-limits".into(),
        "off".into(),
        "--argon2-memory-kib".into(),
        "64".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    acknowledged_writes_survive_kill_9(free_args(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = PgDatabase::create();
    let mut args = free_args(dir.path());
    args.extend([
        "--database-url".into(),
        db.url.clone(),
        "--jwt-secret".into(),
        PG_JWT_SECRET.into(),
    ]);
    acknowledged_writes_survive_kill_9(args).await;
    drop(db);
}

// ---- the durable job queue -------------------------------------------------------

/// `chatterly jobs ARGS... --data-dir DIR` on SQLite, run to completion.
fn jobs_cli(data_dir: &Path, args: &[&str]) -> Output {
    jobs_cli_on(data_dir, None, args)
}

/// `chatterly jobs` on SQLite in `data_dir`, or on PostgreSQL at `database_url`.
fn jobs_cli_on(data_dir: &Path, database_url: Option<&str>, args: &[&str]) -> Output {
    let mut command = chatterly();
    command
        .arg("jobs")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir);
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    run(command, Duration::from_secs(60))
}

/// One row of `chatterly jobs list`.
#[derive(Debug)]
struct JobRow {
    id: i64,
    status: String,
    kind: String,
    /// The last error or the payload.
    detail: String,
}

/// The rows of a successful `chatterly jobs list`; checks the table's header
/// and its closing `N job(s)` line.
#[track_caller]
fn job_rows(output: &Output) -> Vec<JobRow> {
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "jobs list failed: {output:?}\nstderr: {}",
        text(&output.stderr)
    );
    // A first run may log its migration before the table.
    let mut lines = stdout
        .lines()
        .skip_while(|l| !(l.trim_start().starts_with("ID") && l.contains("STATUS")));
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no table header:\n{stdout}"));
    for column in ["ID", "STATUS", "KIND", "RUN AT", "ATTEMPTS"] {
        assert!(header.contains(column), "header lacks {column}: {header}");
    }
    let mut rows = Vec::new();
    for line in lines {
        if let Some(n) = line.strip_suffix(" job(s)") {
            assert_eq!(
                n.parse::<usize>().ok(),
                Some(rows.len()),
                "count line {line:?}:\n{stdout}"
            );
            return rows;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 5, "not a job row: {line:?}");
        rows.push(JobRow {
            id: fields[0]
                .parse()
                .unwrap_or_else(|_| panic!("job id in {line:?}")),
            status: fields[1].to_owned(),
            kind: fields[2].to_owned(),
            detail: fields[5..].join(" "),
        });
    }
    panic!("no `N job(s)` line:\n{stdout}");
}

/// A refused `jobs` command: non-zero exit, one line on stderr, no panic.
#[track_caller]
fn assert_one_line_error(output: &Output, mentions: &str, what: &str) -> String {
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{what}: exited 0\n{output:?}");
    assert!(!stderr.contains("panicked"), "{what}: panicked:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: one line only:\n{stderr}");
    assert!(lines[0].starts_with("error:"), "{what}: {stderr}");
    assert!(
        lines[0].contains(mentions),
        "{what}: {:?} does not mention {mentions:?}",
        lines[0]
    );
    lines[0].to_owned()
}

#[test]
fn jobs_cli_lists_an_empty_queue_and_refuses_to_retry_a_job_that_is_not_dead() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    // A queue nobody used: an empty table, for every filter.
    for filter in [
        &[][..],
        &["--status", "all"],
        &["--status", "pending"],
        &["--status", "running"],
        &["--status", "dead"],
    ] {
        let args: Vec<&str> = ["list"].into_iter().chain(filter.iter().copied()).collect();
        let rows = job_rows(&jobs_cli(&data_dir, &args));
        assert!(rows.is_empty(), "jobs {args:?} on an empty queue: {rows:?}");
    }
    // Retrying a job that does not exist.
    assert_one_line_error(
        &jobs_cli(&data_dir, &["retry", "4242"]),
        "4242",
        "retry of a missing job",
    );
    // A bad filter is refused by the parser, naming the flag.
    let output = jobs_cli(&data_dir, &["list", "--status", "finished"]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("--status"), "{output:?}");

    // A server run enqueues the recurring maintenance job: pending, not dead.
    let mut server = Process::start(&free_args(&data_dir));
    server.kill9();
    let rows = job_rows(&jobs_cli(&data_dir, &["list", "--status", "pending"]));
    let maintenance = rows
        .iter()
        .find(|r| r.kind == "store.maintain")
        .unwrap_or_else(|| panic!("the maintenance job is queued: {rows:?}"));
    assert_eq!(maintenance.status, "pending");
    assert!(job_rows(&jobs_cli(&data_dir, &["list", "--status", "dead"])).is_empty());
    let id = maintenance.id.to_string();
    let line = assert_one_line_error(
        &jobs_cli(&data_dir, &["retry", &id]),
        &id,
        "retry of a pending job",
    );
    assert!(line.contains("not a dead job"), "{line}");
    // Nothing changed.
    let after = job_rows(&jobs_cli(&data_dir, &["list"]));
    assert_eq!(after.len(), rows.len(), "{after:?}");
    assert!(after
        .iter()
        .any(|r| r.id == maintenance.id && r.status == "pending"));
}

async fn register_at(client: &reqwest::Client, base: &str, name: &str) -> (i64, String) {
    let resp = client
        .post(format!("{base}/auth/register"))
        .json(&json!({"user": {"email": format!("{name}@example.test"), "password": "s3cret-pass", "username": name}}))
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status().as_u16(), 201);
    let token = resp
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .expect("token")
        .to_owned();
    let body: Value = resp.json().await.expect("json");
    (body["user"]["id"].as_i64().expect("id"), token)
}

/// The call logs of `call_id` in the conversation's (first 100 messages of)
/// history.
async fn call_logs(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    conversation: i64,
    call_id: i64,
) -> Vec<Value> {
    let (status, body) = json_of(
        client
            .get(format!(
                "{base}/api/v1/conversations/{conversation}/messages?limit=100"
            ))
            .bearer_auth(token)
            .send()
            .await
            .expect("history"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["message_type"] == "call" && m["call_session"]["id"] == call_id)
        .cloned()
        .collect()
}

/// The missed-call timeout is durable: enqueued with the call, it survives a
/// SIGKILL of the server right after the 201, and the restarted server runs
/// it, once, even though it came due while nothing was running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_ringing_call_is_missed_once_after_kill_9_and_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = free_args(dir.path());
    args.extend(["--call-ring-timeout".to_owned(), "2".to_owned()]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let mut server = Process::start(&args);
    wait_up(&client, &server.base).await;
    let base = server.base.clone();
    let (alice, alice_token) = register_at(&client, &base, "alice").await;
    let (bob, bob_token) = register_at(&client, &base, "bob").await;
    let (status, body) = json_of(
        client
            .post(format!("{base}/api/v1/conversations"))
            .bearer_auth(&alice_token)
            .json(&json!({"conversation_type": "direct", "member_ids": [bob]}))
            .send()
            .await
            .expect("create"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let conversation = body["data"]["id"].as_i64().expect("id");
    let (status, body) = json_of(
        client
            .post(format!("{base}/api/v1/conversations/{conversation}/calls"))
            .bearer_auth(&alice_token)
            .json(&json!({"call": {"call_type": "audio"}}))
            .send()
            .await
            .expect("start call"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    server.kill9();
    let killed = Instant::now();
    let call_id = body["data"]["id"].as_i64().expect("call id");
    assert_eq!(body["data"]["status"], "ringing");
    let stderr = server.stderr.lock().expect("lock").clone();
    assert!(!stderr.contains("panicked"), "{stderr}");
    drop(server);

    // While nothing runs, the timeout waits in the queue, for this call.
    let payload = format!("\"call_id\":{call_id}");
    let pending = job_rows(&jobs_cli(dir.path(), &["list", "--status", "pending"]));
    let missed: Vec<&JobRow> = pending.iter().filter(|r| r.kind == "call.missed").collect();
    assert_eq!(
        missed.len(),
        1,
        "one missed-call job is queued: {pending:?}"
    );
    assert!(missed[0].detail.contains(&payload), "{:?}", missed[0]);

    // Back up only after it came due.
    let due = Duration::from_millis(2500);
    if let Some(wait) = due.checked_sub(killed.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    let mut server = Process::start(&args);
    wait_up(&client, &server.base).await;
    let base = server.base.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while call_logs(&client, &base, &bob_token, conversation, call_id)
        .await
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the call was never missed after the restart: {}",
            server.stderr.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several worker polls later: still exactly one log.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let logs = call_logs(&client, &base, &alice_token, conversation, call_id).await;
    assert_eq!(logs.len(), 1, "exactly one call log: {logs:?}");
    let log = &logs[0];
    assert_eq!(log["content"], "call");
    assert_eq!(
        log["user"]["id"], alice,
        "the log's author is the initiator"
    );
    assert_eq!(log["call_session"]["status"], "missed", "{log}");
    assert_eq!(log["call_session"]["initiator_id"], alice);
    assert!(log["call_session"]["duration"].is_null(), "{log}");
    // It is over: not active, not acceptable.
    let active = client
        .get(format!(
            "{base}/api/v1/conversations/{conversation}/calls/active"
        ))
        .bearer_auth(&bob_token)
        .send()
        .await
        .expect("active");
    assert_eq!(active.status().as_u16(), 404);
    let (status, body) = json_of(
        client
            .put(format!(
                "{base}/api/v1/conversations/{conversation}/calls/{call_id}/accept"
            ))
            .bearer_auth(&bob_token)
            .send()
            .await
            .expect("accept"),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    // The job is gone from the queue (not pending, not dead, not claimed).
    let all = job_rows(&jobs_cli(dir.path(), &["list", "--status", "all"]));
    assert!(
        !all.iter().any(|r| r.kind == "call.missed"),
        "the missed-call job is done: {all:?}"
    );

    // Another crash and restart do not miss it again.
    server.kill9();
    drop(server);
    let server = Process::start(&args);
    wait_up(&client, &server.base).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let logs = call_logs(&client, &server.base, &alice_token, conversation, call_id).await;
    assert_eq!(logs.len(), 1, "still one call log: {logs:?}");
    assert_eq!(logs[0]["call_session"]["status"], "missed");
    let stderr = server.stderr.lock().expect("lock").clone();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `--jobs off`: this instance runs no job, so a call it started stays
/// ringing past its timeout, its job pending, until a server with a worker
/// runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_jobs_off_the_timeout_waits_for_a_worker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = free_args(dir.path());
    args.extend(["--call-ring-timeout".to_owned(), "1".to_owned()]);
    let mut without_worker = args.clone();
    without_worker.extend(["--jobs".to_owned(), "off".to_owned()]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let mut server = Process::start(&without_worker);
    wait_up(&client, &server.base).await;
    let base = server.base.clone();
    let (_, alice_token) = register_at(&client, &base, "alice").await;
    let (bob, bob_token) = register_at(&client, &base, "bob").await;
    let (status, body) = json_of(
        client
            .post(format!("{base}/api/v1/conversations"))
            .bearer_auth(&alice_token)
            .json(&json!({"conversation_type": "direct", "member_ids": [bob]}))
            .send()
            .await
            .expect("create"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let conversation = body["data"]["id"].as_i64().expect("id");
    let (status, body) = json_of(
        client
            .post(format!("{base}/api/v1/conversations/{conversation}/calls"))
            .bearer_auth(&alice_token)
            .json(&json!({"call": {"call_type": "video"}}))
            .send()
            .await
            .expect("start call"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let call_id = body["data"]["id"].as_i64().expect("call id");
    // Twice the timeout later: nobody missed it; it still rings (a second
    // call is refused) and its job is still pending, overdue.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(call_logs(&client, &base, &bob_token, conversation, call_id)
        .await
        .is_empty());
    let (status, body) = json_of(
        client
            .post(format!("{base}/api/v1/conversations/{conversation}/calls"))
            .bearer_auth(&bob_token)
            .json(&json!({"call": {"call_type": "audio"}}))
            .send()
            .await
            .expect("second call"),
    )
    .await;
    assert_eq!(status, 422, "the first call is not over: {body}");
    let pending = job_rows(&jobs_cli(dir.path(), &["list", "--status", "pending"]));
    assert!(
        pending.iter().any(
            |r| r.kind == "call.missed" && r.detail.contains(&format!("\"call_id\":{call_id}"))
        ),
        "the job waits: {pending:?}"
    );
    server.kill9();
    drop(server);

    // A server with a worker runs it at once.
    let server = Process::start(&args);
    wait_up(&client, &server.base).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = call_logs(&client, &server.base, &bob_token, conversation, call_id).await;
        if let Some(log) = logs.first() {
            assert_eq!(logs.len(), 1, "{logs:?}");
            assert_eq!(log["call_session"]["status"], "missed", "{log}");
            break;
        }
        assert!(Instant::now() < deadline, "the worker never ran the job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `chatterly jobs retry` makes a dead job due again, and a running worker
/// runs it. (The dead job is written straight into the queue table: a job
/// only dies after ten failed runs, which a test cannot provoke quickly.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_retried_dead_job_runs_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = PgDatabase::create();
    let mut args = free_args(dir.path());
    args.extend([
        "--database-url".into(),
        db.url.clone(),
        "--jwt-secret".into(),
        PG_JWT_SECRET.into(),
    ]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    // Calls ring for the default 30 s: only the retried job can miss this one.
    let server = Process::start(&args);
    wait_up(&client, &server.base).await;
    let base = server.base.clone();
    let (_, alice_token) = register_at(&client, &base, "alice").await;
    let (bob, bob_token) = register_at(&client, &base, "bob").await;
    let (status, body) = json_of(
        client
            .post(format!("{base}/api/v1/conversations"))
            .bearer_auth(&alice_token)
            .json(&json!({"conversation_type": "direct", "member_ids": [bob]}))
            .send()
            .await
            .expect("create"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let conversation = body["data"]["id"].as_i64().expect("id");
    let (status, body) = json_of(
        client
            .post(format!("{base}/api/v1/conversations/{conversation}/calls"))
            .bearer_auth(&alice_token)
            .json(&json!({"call": {"call_type": "audio"}}))
            .send()
            .await
            .expect("start call"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let call_id = body["data"]["id"].as_i64().expect("call id");

    let url = db.url.clone();
    let payload = json!({ "call_id": call_id }).to_string();
    let dead_id: i64 = {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query_scalar(
            "INSERT INTO jobs (kind, payload, status, run_at, attempts, max_attempts, last_error, created_at, updated_at)
             VALUES ('call.missed', $1, 2, now(), 10, 10, 'simulated: database went away', now(), now())
             RETURNING id",
        )
        .bind(&payload)
        .fetch_one(&mut conn)
        .await
        .expect("insert a dead job")
    };
    let storage = Some(db.url.as_str());
    let dead = job_rows(&jobs_cli_on(
        dir.path(),
        storage,
        &["list", "--status", "dead"],
    ));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].id, dead_id);
    assert_eq!(dead[0].status, "dead");
    assert_eq!(dead[0].kind, "call.missed");
    assert!(
        dead[0].detail.contains("simulated: database went away"),
        "the last error is shown: {dead:?}"
    );
    // Still ringing: a dead job does nothing by itself.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(call_logs(&client, &base, &bob_token, conversation, call_id)
        .await
        .is_empty());

    let id = dead_id.to_string();
    let output = jobs_cli_on(dir.path(), storage, &["retry", &id]);
    assert!(output.status.success(), "retry: {output:?}");
    assert!(
        text(&output.stdout).contains(&format!("job {id} is pending again")),
        "{output:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = call_logs(&client, &base, &bob_token, conversation, call_id).await;
        if !logs.is_empty() {
            break logs;
        }
        assert!(Instant::now() < deadline, "the retried job never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0]["call_session"]["status"], "missed");
    // Done: not dead any more, and it cannot be retried twice.
    assert!(job_rows(&jobs_cli_on(
        dir.path(),
        storage,
        &["list", "--status", "dead"]
    ))
    .is_empty());
    assert_one_line_error(
        &jobs_cli_on(dir.path(), storage, &["retry", &id]),
        &id,
        "a second retry",
    );
    drop(server);
    drop(db);
}
