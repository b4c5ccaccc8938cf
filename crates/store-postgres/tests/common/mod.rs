//! Test harness: every test gets its own fresh database, dropped afterwards
//! (also when the test panics). PostgreSQL being unreachable is a failure,
//! never a skip.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use chatterly_store::{
    Conversation, ConversationKind, Id, Message, MessageKind, NewConversation, NewMessage, NewUser,
    Store, Timestamp, User,
};
use chatterly_store_postgres::PgStore;
use chrono::{DateTime, Datelike, Utc};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn admin_url() -> String {
    std::env::var("CHATTERLY_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string())
}

/// `url` with its database name replaced by `name` (query string kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let host_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[host_start..]
        .find('/')
        .map(|i| host_start + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..path_start], name);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

async fn admin_connection(admin: &str) -> PgConnection {
    PgConnection::connect(admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is unreachable at {admin} ({e}); start it or set CHATTERLY_TEST_PG_URL")
    })
}

/// A fresh, empty database on the test server, dropped when this is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let admin = admin_url();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "chatterly_store_test_{}_{}_{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = admin_connection(&admin).await;
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        conn.close().await.ok();
        TestDb {
            url: with_database(&admin, &name),
            name,
            admin,
        }
    }

    /// A fresh database, migrated, and a store on it.
    pub async fn migrated() -> (TestDb, PgStore) {
        let db = TestDb::new().await;
        let store = db.connect().await;
        store.migrate().await.expect("migrate");
        (db, store)
    }

    pub async fn connect(&self) -> PgStore {
        PgStore::connect(&self.url, 16)
            .await
            .expect("connect PgStore")
    }

    /// A plain pool on the test database, for looking behind the store.
    pub async fn raw(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.url)
            .await
            .expect("connect raw pool")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on:
        // do it on a thread with its own.
        let outcome = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                conn.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("the drop thread panicked".to_string()),
        };
        if let Some(e) = failure {
            if std::thread::panicking() {
                eprintln!("could not drop test database {}: {e}", self.name);
            } else {
                panic!("could not drop test database {}: {e}", self.name);
            }
        }
    }
}

// ---- fixtures ----------------------------------------------------------------

pub fn ts(rfc3339: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("valid timestamp")
        .with_timezone(&Utc)
}

pub fn month_table(ts: Timestamp) -> String {
    format!("messages_{:04}_{:02}", ts.year(), ts.month())
}

pub fn next_month_table(ts: Timestamp) -> String {
    if ts.month() == 12 {
        format!("messages_{:04}_01", ts.year() + 1)
    } else {
        format!("messages_{:04}_{:02}", ts.year(), ts.month() + 1)
    }
}

pub async fn user(store: &PgStore, username: &str) -> User {
    store
        .create_user(NewUser {
            email: format!("{username}@example.com"),
            username: username.to_string(),
            display_name: None,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_string(),
        })
        .await
        .expect("create user")
}

pub async fn group(store: &PgStore, creator: &User, members: &[&User]) -> Conversation {
    let (conversation, created) = store
        .create_conversation(NewConversation {
            kind: ConversationKind::Group,
            name: Some("team".to_string()),
            description: None,
            created_by_id: creator.id,
            member_ids: members.iter().map(|u| u.id).collect(),
        })
        .await
        .expect("create group");
    assert!(created);
    conversation
}

pub fn text(conversation_id: Id, user_id: Id, content: &str) -> NewMessage {
    NewMessage {
        attachment_ids: Vec::new(),
        conversation_id,
        user_id,
        content: content.to_string(),
        kind: MessageKind::Text,
        parent_message_id: None,
        call_session_id: None,
        client_message_id: None,
        mentions: Default::default(),
    }
}

pub async fn send(
    store: &PgStore,
    conversation: &Conversation,
    user: &User,
    content: &str,
) -> Message {
    store
        .insert_message(text(conversation.id, user.id, content))
        .await
        .expect("insert message")
        .into_message()
}

/// The partition (table) a message row lives in.
pub async fn partition_of(raw: &PgPool, message_id: Id) -> String {
    sqlx::query_scalar("SELECT tableoid::regclass::text FROM messages WHERE id = $1")
        .bind(message_id)
        .fetch_one(raw)
        .await
        .expect("message row")
}

/// The partitions attached to `messages`, by name.
pub async fn partitions(raw: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'messages'::regclass ORDER BY 1",
    )
    .fetch_all(raw)
    .await
    .expect("list partitions")
}

pub async fn count(raw: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(raw)
        .await
        .expect("count query")
}
