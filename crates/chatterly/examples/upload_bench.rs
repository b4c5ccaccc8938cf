//! Upload throughput and the server's memory during big uploads.
//!
//! Starts the given `chatterly` binary on a fresh data directory (SQLite,
//! blobs in the data directory), registers a user, uploads generated files
//! streamed over loopback (never held whole by this tool either), and samples
//! the server process's resident memory (`/proc/<pid>/status`) every 10 ms.
//!
//! ```sh
//! cargo build --release -p chatterly
//! cargo run --release -p chatterly --example upload_bench -- target/release/chatterly 100 3
//! ```
//! Arguments: the server binary, MiB per upload (default 100), uploads
//! (default 3). Extra environment for the server via `UPLOAD_BENCH_ENV`
//! (e.g. `MIMALLOC_ARENA_EAGER_COMMIT=0`).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

const BOUNDARY: &str = "upload-bench-boundary";

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn body(len: u64) -> reqwest::Body {
    const CHUNK: u64 = 256 * 1024;
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench.bin\"\r\n\r\n"
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    // One generated chunk, sent again and again: the tool's own cost stays
    // out of the figure, and no file is ever held whole.
    let chunk = Bytes::from(
        (0..CHUNK)
            .map(|i| (i.wrapping_mul(31) ^ (i >> 11)) as u8)
            .collect::<Vec<u8>>(),
    );
    let data = futures::stream::unfold(0u64, move |at| {
        let chunk = chunk.clone();
        async move {
            (at < len).then(|| {
                let n = CHUNK.min(len - at);
                (Ok::<_, std::io::Error>(chunk.slice(..n as usize)), at + n)
            })
        }
    });
    let stream = futures::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(data)
        .chain(futures::stream::once(async move { Ok(Bytes::from(tail)) }));
    reqwest::Body::wrap_stream(stream)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| "target/release/chatterly".to_owned());
    let mib: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let uploads: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let data_dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut command = Command::new(&server);
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--rate-limits", "off", "--max-upload-bytes", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Ok(extra) = std::env::var("UPLOAD_BENCH_ENV") {
        for pair in extra.split_whitespace() {
            if let Some((k, v)) = pair.split_once('=') {
                command.env(k, v);
            }
        }
    }
    let mut child = command.spawn()?;
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/up")).send().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let registered = client
        .post(format!("{base}/auth/register"))
        .json(
            &serde_json::json!({ "user": { "email": "bench@example.test",
            "password": "s3cret-pass-bench", "username": "bench" } }),
        )
        .send()
        .await?;
    let token = registered
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no token"))?;
    let baseline = rss_kib(pid);
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let running = running.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while running.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    let len = mib * 1024 * 1024;
    let started = Instant::now();
    for _ in 0..uploads {
        let response = client
            .post(format!("{base}/api/v1/attachments"))
            .header("authorization", &token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body(len))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 201, "upload: {}", response.status());
    }
    let elapsed = started.elapsed();
    running.store(false, Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    let total_mib = (mib * u64::from(uploads)) as f64;
    println!(
        "{uploads} uploads of {mib} MiB in {:.2} s: {:.0} MiB/s; server RSS {} KiB before, peak {} KiB (+{:.1} MiB)",
        elapsed.as_secs_f64(),
        total_mib / elapsed.as_secs_f64(),
        baseline,
        peak,
        peak.saturating_sub(baseline) as f64 / 1024.0
    );
    Ok(())
}
