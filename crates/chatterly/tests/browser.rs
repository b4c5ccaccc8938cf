//! The web client (`crates/chatterly/web/`, served by the binary at `/`).
//!
//! - The browser suite in `tests/browser/`: two people in real headless
//!   Chromium (Debian's `chromium`, driven by `playwright-core` from npm,
//!   which downloads no browser) against the real `chatterly` binary, which
//!   the suite starts, restarts and stops itself. Its packages come from
//!   `npm ci --prefix crates/chatterly/tests/browser` (`scripts/test` runs
//!   it, and installs Chromium with apt-get when it is missing). Missing
//!   Chromium or packages fail the test; nothing is skipped. Screenshots of
//!   the main screens go to `docs/screenshots/` (`CHATTERLY_SCREENSHOTS`
//!   names another directory).
//!
//!   Where the machine allows it (root, or user namespaces), the suite runs
//!   in a network namespace of its own with loopback only, so neither the
//!   browser nor WebRTC can reach anything but the server under test.
//! - How the files are served: content types, caching, security headers, the
//!   client routes, and that the API's own 404s are untouched.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, TestApp};
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_chatterly");
const SUITE_LIMIT: Duration = Duration::from_secs(300);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHATTERLY_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "Chromium is not at {} (set CHATTERLY_CHROMIUM, or `apt-get install chromium`; \
         scripts/test installs it)",
        path.display()
    );
    path
}

fn require_packages() {
    for package in ["playwright-core", "@rails/actioncable"] {
        let manifest = browser_dir()
            .join("node_modules")
            .join(package)
            .join("package.json");
        assert!(
            manifest.is_file(),
            "the browser test packages are not installed ({} is missing): run \
             `npm ci --prefix crates/chatterly/tests/browser` (scripts/test does it)",
            manifest.display()
        );
    }
}

fn screenshots_dir() -> PathBuf {
    std::env::var_os("CHATTERLY_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots"))
}

/// Whether `unshare --net` works here (with loopback brought up), so the suite
/// can run with no network but its own loopback.
fn isolation() -> Option<Vec<String>> {
    for flags in [&["--net"][..], &["--user", "--map-root-user", "--net"][..]] {
        let ok = Command::new("unshare")
            .args(flags)
            .args(["sh", "-c", "ip link set lo up"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(flags.iter().map(|s| (*s).to_owned()).collect());
        }
    }
    None
}

/// Runs the `*.test.mjs` files in order and fails (printing Node's output)
/// unless every test passed and none was skipped.
#[test]
fn web_client_end_to_end_in_chromium() {
    let chromium = chromium();
    require_packages();
    let dir = browser_dir();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/browser exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.test.mjs in {}", dir.display());

    let node_args: Vec<String> = [
        "node",
        "--test",
        "--test-reporter=spec",
        // One browser at a time: the machines have two cores.
        "--test-concurrency=1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain(files.iter().cloned())
    .collect();
    let isolated = isolation();
    let mut command = match &isolated {
        Some(flags) => {
            let mut c = Command::new("unshare");
            c.args(flags)
                .args(["sh", "-c", "ip link set lo up && exec \"$@\"", "sh"])
                .args(&node_args);
            c
        }
        None => {
            let mut c = Command::new(&node_args[0]);
            c.args(&node_args[1..]);
            c
        }
    };
    command
        .current_dir(&dir)
        .env("CHATTERLY_BIN", BIN)
        .env("CHATTERLY_CHROMIUM", &chromium)
        .env("CHATTERLY_SCREENSHOTS", screenshots_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`node` is not on PATH: the browser tests need Node.js 20 or newer")
        }
        Err(e) => panic!("cannot start the browser suite: {e}"),
    };
    let id = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output();
        let _ = done_tx.send(());
        output
    });
    if done_rx.recv_timeout(SUITE_LIMIT).is_err() {
        let _ = Command::new("kill").arg(id.to_string()).status();
        panic!("the browser suite did not finish within {SUITE_LIMIT:?}");
    }
    let output = waiter.join().expect("waiter thread").expect("suite output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = format!(
        "browser suite {files:?} ({}) exited with {} after {:.1?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        if isolated.is_some() {
            "in a loopback-only network namespace"
        } else {
            "unisolated: `unshare --net` is not available here"
        },
        output.status,
        started.elapsed()
    );
    assert!(output.status.success(), "{report}");
    let count = |label: &str| -> Option<u64> {
        stdout.lines().find_map(|line| {
            line.trim_start_matches(|c: char| !c.is_ascii_alphabetic())
                .strip_prefix(label)?
                .trim()
                .parse()
                .ok()
        })
    };
    assert_eq!(count("fail "), Some(0), "{report}");
    assert_eq!(
        count("skipped "),
        Some(0),
        "no test may be skipped\n{report}"
    );
    assert!(
        count("pass ").is_some_and(|n| n >= 10),
        "the suite ran too few tests\n{report}"
    );
    println!("{report}");
}

/// The vendored Action Cable client is the npm package's ESM build, unchanged.
#[test]
fn the_vendored_action_cable_client_is_the_official_build() {
    require_packages();
    let official = browser_dir()
        .join("node_modules/@rails/actioncable/app/assets/javascripts/actioncable.esm.js");
    let vendored = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/vendor/actioncable.esm.js");
    assert!(
        std::fs::read(&official).expect("npm build") == std::fs::read(&vendored).expect("vendored"),
        "{} differs from {}: copy it again (and keep the version in tests/browser/package.json and \
         web/vendor/actioncable.LICENSE.txt in step)",
        vendored.display(),
        official.display()
    );
}

// ---- how the files are served -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_files_are_served_with_types_caching_and_security_headers() {
    let app = TestApp::start(Backend::Sqlite).await;
    let index = app.get("/", None).await;
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    assert_eq!(index.header("x-content-type-options"), Some("nosniff"));
    let csp = index.header("content-security-policy").expect("a CSP");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    // Client routes get the same page.
    let route = app.get("/c/42", None).await;
    assert_eq!(route.status, 200);
    assert_eq!(route.text, index.text);

    // Every file the page names is there, typed, and cached for good.
    let mut assets: Vec<String> = index
        .text
        .split('"')
        .filter(|s| s.starts_with("/assets/"))
        .map(str::to_owned)
        .collect();
    assert!(
        assets.iter().any(|a| a.ends_with("/js/main.js")),
        "{assets:?}"
    );
    let version = assets[0].split('/').nth(2).expect("version").to_owned();
    assets.push(format!("/assets/{version}/vendor/actioncable.esm.js"));
    assets.push(format!("/assets/{version}/js/views/messages.js"));
    for asset in &assets {
        let resp = app.get(asset, None).await;
        assert_eq!(resp.status, 200, "{asset}");
        let expected = match asset.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected asset type {other:?}"),
        };
        assert_eq!(resp.header("content-type"), Some(expected), "{asset}");
        assert_eq!(
            resp.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{asset}"
        );
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    }
    // Revalidation: the ETag answers 304 with no body.
    let etag = index.header("etag").expect("an ETag").to_owned();
    let again = app
        .client
        .get(app.url("/"))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .expect("GET /");
    assert_eq!(again.status(), 304);
    assert_eq!(
        again.headers().get(ETAG).map(|v| v.as_bytes()),
        Some(etag.as_bytes())
    );
    assert_eq!(
        again.headers().get(CACHE_CONTROL).map(|v| v.as_bytes()),
        Some(&b"no-cache"[..])
    );
    assert!(again.bytes().await.expect("body").is_empty());
    // Another build's files, or files that do not exist: 404.
    for path in [
        "/assets/000000000000/js/main.js".to_owned(),
        format!("/assets/{version}/js/nope.js"),
        format!("/assets/{version}/../Cargo.toml"),
    ] {
        assert_eq!(app.get(&path, None).await.status, 404, "{path}");
    }
    // A HEAD is answered too (no body).
    let head = app
        .client
        .head(app.url(&assets[0]))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), 200);
    assert!(head.headers().get(CONTENT_TYPE).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_its_routes_and_json_404s() {
    let app = TestApp::start(Backend::Sqlite).await;
    let not_found = json!({"status": 404, "error": "Not Found"});
    for path in [
        "/nope",
        "/api/v1/nope",
        "/auth/nope",
        "/c",
        "/c/1/x",
        "/index.html",
    ] {
        app.get(path, None)
            .await
            .expect_body(404, not_found.clone());
    }
    assert_eq!(app.get("/up", None).await.status, 200);
    app.get("/api/openapi.json", None).await.expect(200);
    // /cable still refuses a plain GET.
    assert_eq!(app.get("/cable", None).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_config_gives_signed_in_users_the_ice_servers() {
    let servers = json!([
        {"urls": "stun:stun.example.org:3478"},
        {"urls": ["turn:turn.example.org:3478"], "username": "chat", "credential": "s3cret"}
    ]);
    let app = TestApp::start_with(
        Backend::Sqlite,
        &[
            "--ice-servers",
            &servers.to_string(),
            "--call-ring-timeout",
            "12",
        ],
    )
    .await;
    // TURN credentials are for signed-in users only.
    assert_eq!(app.get("/api/v1/client-config", None).await.status, 401);
    let rana = app.register("rana_h").await;
    let config = app
        .get("/api/v1/client-config", Some(&rana.token))
        .await
        .expect(200);
    assert_eq!(config["ice_servers"], servers);
    assert_eq!(config["call_ring_timeout"], 12);
    assert_eq!(config["max_message_chars"], 4000);

    // Default: none (peers on one network reach each other directly).
    let plain = TestApp::start(Backend::Sqlite).await;
    let user = plain.register("omar").await;
    let config = plain
        .get("/api/v1/client-config", Some(&user.token))
        .await
        .expect(200);
    assert_eq!(config["ice_servers"], json!([]));
    // Documented in the OpenAPI document.
    let doc = plain.get("/api/openapi.json", None).await.expect(200);
    assert!(doc["paths"]["/api/v1/client-config"]["get"].is_object());
}
