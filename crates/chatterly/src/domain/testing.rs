//! A real domain on a real (SQLite, temporary) store for unit tests, with a
//! bus that records what is published.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatterly_store::{ConversationKind, Id, NewConversation, NewUser, Store};
use chatterly_store_sqlite::SqliteStore;

use crate::bus::{Bus, BusMessage, Deliver};
use crate::config::ServeArgs;
use crate::domain::auth::{Identity, Passwords, Revocations, Tokens};
use crate::domain::{Domain, DomainParts, MembershipCache, RosterCache};
use crate::ephemeral::Presence;

/// Keeps every bus message, and hands them to the roster cache as the real
/// receivers do.
pub struct Recorder {
    messages: Mutex<Vec<BusMessage>>,
    calls: Arc<RosterCache>,
}

impl Bus for Recorder {
    fn publish(&self, message: BusMessage) {
        self.calls.deliver(&message);
        self.messages.lock().expect("lock").push(message);
    }
}

impl Recorder {
    pub fn take(&self) -> Vec<BusMessage> {
        std::mem::take(&mut *self.messages.lock().expect("lock"))
    }
}

pub struct World {
    pub domain: Arc<Domain>,
    pub store: Arc<SqliteStore>,
    pub bus: Arc<Recorder>,
    /// The initiator, two other members, and someone outside.
    pub users: [Identity; 4],
    pub conversation_id: Id,
    _dir: tempfile::TempDir,
}

fn identity(user_id: Id) -> Identity {
    Identity {
        user_id,
        jti: format!("jti-{user_id}"),
        expires_at: chatterly_store::now() + chrono::TimeDelta::hours(1),
        issued_at: chatterly_store::now().timestamp(),
    }
}

/// Four users (the first three in one group conversation, the fourth
/// outside it) on a fresh store.
pub async fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("calls.sqlite3"))
            .await
            .expect("open"),
    );
    store.migrate().await.expect("migrate");
    let mut ids = Vec::new();
    for name in ["rana", "omar", "lina", "zaid"] {
        let user = store
            .create_user(NewUser {
                email: format!("{name}@example.test"),
                username: name.to_owned(),
                display_name: None,
                password_hash: "x".to_owned(),
            })
            .await
            .expect("user");
        ids.push(user.id);
    }
    let (conversation, _) = store
        .create_conversation(NewConversation {
            kind: ConversationKind::Group,
            name: Some("Crew".into()),
            description: None,
            created_by_id: ids[0],
            member_ids: vec![ids[1], ids[2]],
        })
        .await
        .expect("conversation");
    let calls = Arc::new(RosterCache::default());
    let bus = Arc::new(Recorder {
        messages: Mutex::default(),
        calls: Arc::clone(&calls),
    });
    let dyn_store: Arc<dyn Store> = store.clone();
    let revocations = Revocations::load(&*dyn_store, false, None)
        .await
        .expect("revocations");
    let config = ServeArgs::defaults().validate().expect("defaults");
    let domain = Arc::new(Domain::new(DomainParts {
        store: dyn_store,
        bus: bus.clone(),
        presence: Arc::new(Presence::default()),
        tokens: Tokens::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60)),
        passwords: Passwords::new(64).expect("passwords"),
        revocations,
        known_users: Arc::default(),
        memberships: Arc::new(MembershipCache::default()),
        calls,
        limits: config.limits,
        rate: None,
        blobs: Arc::new(crate::blobs::Blobs::local(&dir.path().join("blobs")).expect("blob dir")),
    }));
    World {
        domain,
        store,
        bus,
        users: [
            identity(ids[0]),
            identity(ids[1]),
            identity(ids[2]),
            identity(ids[3]),
        ],
        conversation_id: conversation.id,
        _dir: dir,
    }
}
