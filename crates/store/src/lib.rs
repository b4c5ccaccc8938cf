//! The storage interface of Chatterly.
//!
//! One trait, [`Store`], implemented by `chatterly-store-sqlite` (embedded
//! default) and `chatterly-store-postgres` (scale-out). The domain depends on
//! this crate only; SQL never leaves the backends. The trait is deliberately
//! narrow: each method is one unit of work (one transaction where it writes),
//! and business rules (who may do what, validation) stay in the domain.

mod model;
mod search;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use model::*;
pub use search::*;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row the write depends on does not exist (e.g. it was deleted
    /// between the domain's check and the write).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule refused the write. The payload names the rule, one of
    /// the `CONFLICT_*` constants.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database failed (I/O, connection, unexpected constraint).
    #[error("database error: {0}")]
    Backend(String),
}

pub const CONFLICT_EMAIL: &str = "email";
pub const CONFLICT_USERNAME: &str = "username";
pub const CONFLICT_MEMBER: &str = "member";
pub const CONFLICT_REACTION: &str = "reaction";
/// The conversation already has a call that is not over (calling, ringing or
/// active).
pub const CONFLICT_CALL: &str = "call";
/// A retried job's `unique_key` is held by another pending or running job.
pub const CONFLICT_JOB: &str = "job";

/// An attachment of a send is not an unattached upload of the sender.
pub const CONFLICT_ATTACHMENT: &str = "attachment";
/// An upload would take its uploader past their quota.
pub const CONFLICT_QUOTA: &str = "quota";

/// Builds the job that must commit with a row, from the row as inserted (a
/// job that needs the row's id).
pub type JobFor<T> = Box<dyn FnOnce(&T) -> NewJob + Send>;

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is ("sqlite" or "postgres"), for logs and `/up`.
    fn backend(&self) -> &'static str;

    /// Pooled connections (in use, open), where the backend pools them
    /// (PostgreSQL), for the metrics endpoint.
    fn pool_usage(&self) -> Option<(u32, u32)> {
        None
    }

    /// A cheap round trip, for health checks.
    async fn ping(&self) -> StoreResult<()>;

    /// Periodic upkeep the backend needs (PostgreSQL: create the message
    /// partitions for this month and the next; both: purge expired token
    /// revocations). Idempotent and safe to run at any time on any instance.
    async fn maintain(&self, now: Timestamp) -> StoreResult<()>;

    // ---- users -------------------------------------------------------------

    /// Fails with `Conflict(CONFLICT_EMAIL | CONFLICT_USERNAME)`.
    async fn create_user(&self, user: NewUser) -> StoreResult<User>;
    async fn user_by_id(&self, id: Id) -> StoreResult<Option<User>>;
    /// `email` is already normalized (lowercase).
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// The users among `ids` that exist, ordered by id.
    async fn users_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<User>>;
    /// Case-insensitive substring match on username or display name (`%` and
    /// `_` in `query` act as wildcards, as in the reference), ordered by
    /// username, at most `limit`. `None` lists users ordered by username.
    async fn search_users(&self, query: Option<&str>, limit: u32) -> StoreResult<Vec<User>>;
    /// Fails with `NotFound`.
    async fn update_profile(&self, id: Id, update: ProfileUpdate) -> StoreResult<User>;
    /// Counts a failed login; when the count reaches `lock_after`, also sets
    /// `locked_at = now`. Returns the updated user.
    async fn record_failed_login(
        &self,
        id: Id,
        lock_after: i32,
        now: Timestamp,
    ) -> StoreResult<User>;
    /// Clears the failed-login counter and any lock (a successful login, or an
    /// expired lock).
    async fn reset_failed_logins(&self, id: Id) -> StoreResult<()>;
    async fn touch_last_seen(&self, id: Id, now: Timestamp) -> StoreResult<()>;
    /// `username` is already normalized (lowercase).
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>>;
    /// Applies an administrator's change and enqueues `job` (if any) in the
    /// same transaction, so what must follow the change (closing a disabled
    /// user's sockets everywhere) cannot be lost. Returns the updated user;
    /// `NotFound` if there is none.
    async fn change_account(
        &self,
        id: Id,
        change: AccountChange,
        job: Option<NewJob>,
    ) -> StoreResult<User>;

    // ---- token revocation (the JWT denylist) --------------------------------

    /// Idempotent.
    async fn revoke_token(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()>;
    async fn is_token_revoked(&self, jti: &str) -> StoreResult<bool>;
    /// Every revocation whose token has not yet expired (for warming caches).
    async fn active_revocations(&self, now: Timestamp) -> StoreResult<Vec<(String, Timestamp)>>;

    // ---- conversations and members ----------------------------------------

    /// Creates the conversation and all its memberships in one transaction
    /// (creator as admin). For `Direct`, `member_ids` holds exactly the other
    /// person, and if a direct conversation between the two already exists it is
    /// returned instead (`false`), race-free: concurrent creates of one pair
    /// leave exactly one row.
    async fn create_conversation(&self, new: NewConversation) -> StoreResult<(Conversation, bool)>;
    async fn conversation_by_id(&self, id: Id) -> StoreResult<Option<Conversation>>;
    /// The caller's conversations, most recent activity first (ties: id desc).
    async fn conversations_for_user(&self, user_id: Id) -> StoreResult<Vec<Conversation>>;
    /// Hard-deletes the conversation with its memberships, messages,
    /// reactions, calls and call participants, and hides its attachments
    /// (the cleanup job removes them). Returns whether it existed.
    async fn delete_conversation(&self, id: Id) -> StoreResult<bool>;
    /// The role of `user_id` in the conversation, or `None` if not a member.
    async fn membership(&self, conversation_id: Id, user_id: Id) -> StoreResult<Option<Role>>;
    /// Members of each of the given conversations, ordered by
    /// (conversation_id, user id).
    async fn members_of(&self, conversation_ids: &[Id]) -> StoreResult<Vec<Member>>;
    /// `(conversation_id, user_id)` of every member of the given
    /// conversations, in that order: the light form of `members_of` for
    /// rendering lists, where the same users recur (load each once with
    /// `users_by_ids`).
    async fn member_ids_of(&self, conversation_ids: &[Id]) -> StoreResult<Vec<(Id, Id)>>;
    /// Fails with `Conflict(CONFLICT_MEMBER)` if already a member, `NotFound`
    /// if the conversation is gone. The new member's read (and delivered)
    /// position starts at the conversation's `last_seq`: history from before
    /// they joined is not unread.
    async fn add_member(&self, conversation_id: Id, user_id: Id, role: Role) -> StoreResult<()>;
    /// Returns whether a membership was removed.
    async fn remove_member(&self, conversation_id: Id, user_id: Id) -> StoreResult<bool>;

    // ---- messages -----------------------------------------------------------

    /// Assigns the next `seq` of the conversation and inserts, in one
    /// transaction, also moving the conversation's `last_activity_at`, the
    /// sender's read and delivered positions (to the new `seq`, if behind:
    /// one's own messages are never unread), writing the message's
    /// mention rows and attaching its `attachment_ids` (one conditional
    /// update: `Conflict(CONFLICT_ATTACHMENT)`, nothing written, unless every
    /// one is an unattached, undeleted upload of the sender). With a `client_message_id` already used by this sender,
    /// returns `Inserted::Existing` and writes nothing. `NotFound` if the
    /// conversation is gone.
    async fn insert_message(&self, new: NewMessage) -> StoreResult<Inserted>;
    /// Any message by id, deleted ones included.
    async fn message_by_id(&self, id: Id) -> StoreResult<Option<Message>>;
    /// Non-deleted messages of a conversation (see [`HistoryPage`]).
    async fn history(&self, conversation_id: Id, page: HistoryPage) -> StoreResult<Vec<Message>>;
    /// Sets content, `edited_at` and the mentions (replacing the mention
    /// rows), in one transaction; `NotFound` if missing or deleted.
    async fn edit_message(
        &self,
        id: Id,
        content: &str,
        mentions: &Mentions,
        now: Timestamp,
    ) -> StoreResult<Message>;
    /// Sets `deleted_at` (row and content kept), removes its mention rows and
    /// hides its attachments (their `deleted_at`), in one transaction; `NotFound` if missing or already deleted.
    async fn soft_delete_message(&self, id: Id, now: Timestamp) -> StoreResult<()>;

    // ---- attachments ----------------------------------------------------------

    /// Inserts an uploaded file's row (its blobs are already stored), within
    /// the uploader's quota (see [`NewAttachment::quota`]).
    async fn create_attachment(&self, new: NewAttachment) -> StoreResult<Attachment>;
    /// Any attachment by id, hidden ones included.
    async fn attachment_by_id(&self, id: Id) -> StoreResult<Option<Attachment>>;
    /// The attachments among `ids` that exist (hidden ones included), by id.
    async fn attachments_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<Attachment>>;
    /// The visible attachments of the given messages, by (message_id, id): one
    /// query per page of history.
    async fn attachments_for(&self, message_ids: &[Id]) -> StoreResult<Vec<Attachment>>;
    /// Bytes the user's attachments that are not hidden take (the quota's
    /// measure).
    async fn attachment_usage(&self, user_id: Id) -> StoreResult<i64>;
    /// The cleanup's claim, one transaction: hides the uploads never attached
    /// that were created before `unattached_before`, then returns up to
    /// `limit` hidden attachments (these and any hidden earlier: deleted
    /// messages, conversations, retention, an interrupted cleanup), oldest
    /// first. A hidden attachment can no longer be attached, so removing its
    /// blobs is safe.
    async fn hidden_attachments(
        &self,
        unattached_before: Timestamp,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<Attachment>>;
    /// Deletes the rows among `ids` that are hidden (whose blobs are gone);
    /// returns how many.
    async fn remove_attachments(&self, ids: &[Id]) -> StoreResult<u64>;

    // ---- search -------------------------------------------------------------

    /// The best `limit` hits of the query among the non-deleted messages of
    /// the user's conversations, with the filters, best first (see
    /// [`SearchPosition`]), after `request.after` when given. One snapshot.
    /// The index behind it is written in the same transaction as the send,
    /// edit or delete of a message.
    async fn search_messages(&self, request: SearchRequest) -> StoreResult<Vec<SearchHit>>;

    // ---- read state and mentions ----------------------------------------------

    /// The user's conversations with their read state and newest message,
    /// most recent activity first (ties: id desc), as `conversations_for_user`.
    /// One snapshot; no history scan (see [`ReadState`]).
    async fn inbox(&self, user_id: Id) -> StoreResult<Vec<InboxEntry>>;
    /// A page of `inbox`: at most `limit` rows, those after `after` (`None`:
    /// from the start). The page's conversations are chosen first, so its
    /// cost follows `limit`, not the user's number of conversations.
    async fn inbox_page(
        &self,
        user_id: Id,
        after: Option<InboxCursor>,
        limit: u32,
    ) -> StoreResult<Vec<InboxEntry>>;
    /// One row of `inbox`; `None` if the user is not a member.
    async fn inbox_entry(
        &self,
        conversation_id: Id,
        user_id: Id,
    ) -> StoreResult<Option<InboxEntry>>;
    /// Moves the member's read or delivered position forward to `seq` (`None`:
    /// the conversation's `last_seq`), never back: a lower or equal `seq`
    /// changes nothing. One transaction, so concurrent marks and sends keep
    /// the counts exact. `Beyond` (nothing written) past `last_seq`;
    /// `NotFound` if not a member.
    async fn mark(
        &self,
        conversation_id: Id,
        user_id: Id,
        kind: MarkKind,
        seq: Option<i64>,
        now: Timestamp,
    ) -> StoreResult<Marked>;
    /// Every member's positions with their `read_receipts` setting, ordered by
    /// user id; at most `limit` (all with `None`).
    async fn receipts(&self, conversation_id: Id, limit: Option<u32>) -> StoreResult<Vec<Receipt>>;
    /// The members of the conversation among these (lowercase) usernames, as
    /// (user id, username), ordered by user id.
    async fn members_named(
        &self,
        conversation_id: Id,
        usernames: &[String],
    ) -> StoreResult<Vec<(Id, String)>>;
    /// The users a message's mention rows name, ascending.
    async fn mention_recipients(&self, message_id: Id) -> StoreResult<Vec<Id>>;
    /// The non-deleted messages mentioning the user in conversations they
    /// are a member of, newest first, with `id < before_id` when given, at
    /// most `limit`.
    async fn mentions_for(
        &self,
        user_id: Id,
        before_id: Option<Id>,
        limit: u32,
    ) -> StoreResult<Vec<Message>>;
    /// Retention: removes the messages created before `horizon`, with their
    /// reactions, without holding a write lock for long. SQLite deletes in
    /// batches of `batch` rows, each its own short write; PostgreSQL drops
    /// each monthly partition that ends at or before `horizon` (a partition
    /// straddling it is kept whole until it is entirely past) and deletes
    /// older rows of the default partition in batches. Replies whose parent
    /// went keep their `parent_message_id` on PostgreSQL (unchecked) and lose
    /// it on SQLite (`ON DELETE SET NULL`). Removed is read: in the same
    /// transaction every member's read and delivered positions move past the
    /// newest removed message of each conversation, and the removed
    /// messages' mention (and deletion) rows go, so counts stay exact. Their
    /// attachments are hidden in the same write.
    async fn purge_messages_before(&self, horizon: Timestamp, batch: u32) -> StoreResult<Purged>;

    // ---- reactions ----------------------------------------------------------

    /// Reactions of the given messages, ordered by id.
    async fn reactions_for(&self, message_ids: &[Id]) -> StoreResult<Vec<Reaction>>;
    /// Fails with `Conflict(CONFLICT_REACTION)` for a second (message, user,
    /// emoji). `message` is passed whole so a partitioned backend can prune.
    async fn add_reaction(
        &self,
        message: &Message,
        user_id: Id,
        emoji: &str,
    ) -> StoreResult<Reaction>;
    async fn reaction_by_id(&self, id: Id) -> StoreResult<Option<Reaction>>;
    /// Returns whether it existed.
    async fn remove_reaction(&self, id: Id) -> StoreResult<bool>;

    // ---- calls --------------------------------------------------------------

    /// Creates the call (created_at = now), its initiator's participant row,
    /// and the job `job` builds from it, in one transaction: the call and its
    /// missed-call timeout commit or vanish together. Fails with
    /// `Conflict(CONFLICT_CALL)` if the conversation has a call that is not
    /// over, `NotFound` if the conversation is gone.
    async fn create_call(&self, new: NewCall, job: JobFor<CallSession>)
        -> StoreResult<CallSession>;
    async fn call_by_id(&self, id: Id) -> StoreResult<Option<CallSession>>;
    /// The calls among `ids` that exist, ordered by id (for rendering
    /// call-log messages).
    async fn calls_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<CallSession>>;
    /// The conversation's call that is not over (calling, ringing or active),
    /// if any; there is at most one.
    async fn current_call(&self, conversation_id: Id) -> StoreResult<Option<CallSession>>;
    /// Ordered by (joined_at, user_id).
    async fn call_participants(&self, call_id: Id) -> StoreResult<Vec<CallParticipant>>;
    /// One atomic compare-and-set (see [`CallTransition`]): of two racing
    /// transitions from the same status, exactly one is `Applied`. `NotFound`
    /// if the call (or the participant's user) does not exist; nothing is
    /// written then.
    async fn transition_call(&self, transition: CallTransition) -> StoreResult<CallChange>;

    // ---- the durable job queue ------------------------------------------------

    /// Returns the new job's id, or `None` when `unique_key` is already held
    /// by a pending or running job (nothing written).
    async fn enqueue_job(&self, job: NewJob) -> StoreResult<Option<Id>>;
    /// Claims up to `limit` due jobs, earliest `run_at` first: pending ones
    /// with `run_at <= now`, and running ones whose lease (`locked_until`) has
    /// lapsed (their worker died). Each becomes `running` with `locked_until =
    /// now + lease` and `attempts + 1`. Each job goes to exactly one caller,
    /// however many workers claim at once (PostgreSQL: `FOR UPDATE SKIP
    /// LOCKED`).
    async fn claim_jobs(
        &self,
        now: Timestamp,
        lease: std::time::Duration,
        limit: u32,
    ) -> StoreResult<Vec<Job>>;
    /// The claimed job is done: deletes it and enqueues `next` (a recurring
    /// job's next run) in the same transaction. Acts only if the job is still
    /// running under that claim (`attempts == attempt`); returns whether it
    /// did.
    async fn complete_job(&self, id: Id, attempt: i32, next: Option<NewJob>) -> StoreResult<bool>;
    /// The claimed run failed: records `error`, and makes the job pending
    /// again at `retry_at`, or dead with `None`. Acts only under that claim,
    /// like `complete_job`.
    async fn fail_job(
        &self,
        id: Id,
        attempt: i32,
        error: &str,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Jobs with that status (all with `None`), by (run_at, id), at most
    /// `limit`.
    async fn list_jobs(&self, status: Option<JobStatus>, limit: u32) -> StoreResult<Vec<Job>>;
    /// A dead job becomes pending at `now` with `attempts = 0`. Returns false
    /// (nothing changed) unless it was dead; `Conflict(CONFLICT_JOB)` if
    /// another pending or running job holds its `unique_key`.
    async fn retry_job(&self, id: Id, now: Timestamp) -> StoreResult<bool>;
}
