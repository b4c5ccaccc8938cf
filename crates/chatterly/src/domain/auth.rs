//! Tokens (JWT HS256, contract 2.4), passwords (argon2id) and the revocation
//! denylist (contract 2.6).
//!
//! The auth check on every request must cost microseconds, so it never waits
//! on the database when it can avoid it: signature and expiry are checked in
//! memory; revocations are kept in an in-memory set loaded from the store at
//! start-up. In embedded (single-instance) mode that set is the whole truth.
//! When several instances share a database, a revocation made elsewhere is
//! found in Redis (`<prefix>:jwt_denylist:<jti>`, as the reference keeps it) or, without
//! Redis, in the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use chatterly_store::{Id, Store, Timestamp};
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use jsonwebtoken::{
    decode, encode, errors::ErrorKind, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

use super::{DomainError, DomainResult};
use crate::bus::{BusMessage, Deliver};
use crate::redis_keys::RedisKeys;

/// Claims as the reference issues them, in its order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub scp: String,
    pub aud: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// Who a valid token belongs to.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: Id,
    pub jti: String,
    pub expires_at: Timestamp,
    /// `iat`, Unix seconds.
    pub issued_at: i64,
}

pub const NO_TOKEN: &str = "You need to sign in or sign up before continuing.";

pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl Tokens {
    pub fn new(secret: &[u8], ttl: Duration) -> Tokens {
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    pub fn issue(&self, user_id: Id) -> DomainResult<String> {
        let iat = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            scp: "user".into(),
            aud: None,
            iat,
            exp: iat + self.ttl.as_secs() as i64,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        encode(&Header::default(), &claims, &self.encoding)
            .map_err(|e| DomainError::Internal(format!("signing a token: {e}")))
    }

    /// Checks signature and expiry; the messages are the contract's (2.7).
    pub fn verify(&self, token: &str) -> DomainResult<Identity> {
        let claims = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                DomainError::Unauthenticated(
                    match e.kind() {
                        ErrorKind::ExpiredSignature => "Signature has expired",
                        ErrorKind::InvalidSignature => "Signature verification failed",
                        _ => "Invalid token",
                    }
                    .into(),
                )
            })?
            .claims;
        let user_id = claims
            .sub
            .parse::<Id>()
            .map_err(|_| DomainError::Unauthenticated("nil user".into()))?;
        if claims.jti.is_empty() {
            return Err(DomainError::Unauthenticated("missing jti".into()));
        }
        let expires_at = DateTime::from_timestamp(claims.exp, 0)
            .ok_or_else(|| DomainError::Unauthenticated("Invalid token".into()))?;
        Ok(Identity {
            user_id,
            jti: claims.jti,
            expires_at,
            issued_at: claims.iat,
        })
    }
}

pub struct Passwords {
    argon2: Argon2<'static>,
    /// Each hash holds `memory_kib` of memory while it runs: bound how many run
    /// at once so a burst of logins cannot take gigabytes.
    running: tokio::sync::Semaphore,
    /// A hash of nothing in particular, verified against when a login names an
    /// unknown email so that the response takes as long as a real check.
    decoy: tokio::sync::OnceCell<String>,
}

impl Passwords {
    pub fn new(memory_kib: u32) -> DomainResult<Passwords> {
        let params = Params::new(memory_kib, 2, 1, None)
            .map_err(|e| DomainError::Internal(format!("argon2 parameters: {e}")))?;
        Ok(Passwords {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            running: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            decoy: tokio::sync::OnceCell::new(),
        })
    }

    /// Hashes off the async runtime: argon2 is deliberately slow.
    pub async fn hash(self: &Arc<Self>, password: String) -> DomainResult<String> {
        let _permit = self.slot().await?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            this.argon2
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| DomainError::Internal(format!("hashing a password: {e}")))
        })
        .await
        .map_err(|e| DomainError::Internal(format!("hashing task: {e}")))?
    }

    /// Waits for one of the bounded hashing slots.
    async fn slot(&self) -> DomainResult<tokio::sync::SemaphorePermit<'_>> {
        self.running
            .acquire()
            .await
            .map_err(|e| DomainError::Internal(format!("hashing slots: {e}")))
    }

    pub async fn decoy_hash(self: &Arc<Self>) -> DomainResult<String> {
        self.decoy
            .get_or_try_init(|| self.hash(uuid::Uuid::new_v4().to_string()))
            .await
            .cloned()
    }

    pub async fn verify(self: &Arc<Self>, password: String, hash: String) -> DomainResult<bool> {
        let _permit = self.slot().await?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash)
                .map_err(|e| DomainError::Internal(format!("stored password hash: {e}")))?;
            Ok(this
                .argon2
                .verify_password(password.as_bytes(), &parsed)
                .is_ok())
        })
        .await
        .map_err(|e| DomainError::Internal(format!("verifying task: {e}")))?
    }
}

/// The JWT denylist.
pub struct Revocations {
    /// jti → expiry; revocations this instance knows of.
    known: DashMap<String, Timestamp>,
    /// Whether other instances may revoke tokens (shared database).
    shared: bool,
    redis: Option<(redis::aio::ConnectionManager, RedisKeys)>,
}

impl Revocations {
    pub async fn load(
        store: &dyn Store,
        shared: bool,
        redis: Option<(redis::aio::ConnectionManager, RedisKeys)>,
    ) -> DomainResult<Revocations> {
        let known = DashMap::new();
        for (jti, expires_at) in store.active_revocations(chatterly_store::now()).await? {
            known.insert(jti, expires_at);
        }
        Ok(Revocations {
            known,
            shared,
            redis,
        })
    }

    pub async fn revoke(&self, store: &dyn Store, identity: &Identity) -> DomainResult<()> {
        store
            .revoke_token(&identity.jti, identity.expires_at)
            .await?;
        self.known.insert(identity.jti.clone(), identity.expires_at);
        if let Some((redis, keys)) = &self.redis {
            let ttl = (identity.expires_at - Utc::now()).num_seconds();
            if ttl > 0 {
                let mut conn = redis.clone();
                let result: redis::RedisResult<()> = redis::cmd("SETEX")
                    .arg(keys.key(format!("jwt_denylist:{}", identity.jti)))
                    .arg(ttl)
                    .arg("1")
                    .query_async(&mut conn)
                    .await;
                if let Err(error) = result {
                    // The store holds the truth; other instances fall back to it.
                    tracing::warn!(%error, "could not cache a revocation in Redis");
                }
            }
        }
        Ok(())
    }

    pub async fn is_revoked(&self, store: &dyn Store, jti: &str) -> DomainResult<bool> {
        if self.known.contains_key(jti) {
            return Ok(true);
        }
        if !self.shared {
            return Ok(false);
        }
        if let Some((redis, keys)) = &self.redis {
            let mut conn = redis.clone();
            let found: redis::RedisResult<bool> = redis::cmd("EXISTS")
                .arg(keys.key(format!("jwt_denylist:{jti}")))
                .query_async(&mut conn)
                .await;
            match found {
                Ok(found) => return Ok(found),
                Err(error) => {
                    tracing::warn!(%error, "Redis denylist check failed; asking the store")
                }
            }
        }
        Ok(store.is_token_revoked(jti).await?)
    }

    /// Forgets revocations of tokens that have expired anyway.
    pub fn purge_expired(&self, now: Timestamp) {
        self.known.retain(|_, expires_at| *expires_at > now);
    }
}

/// User ids known to exist and not be disabled, each with the `iat` (Unix
/// seconds) before which its tokens are refused (a password reset), so the
/// per-request "user is valid" check is a memory lookup. Users are never
/// deleted; disabling one or resetting their password (`chatterly users`)
/// publishes `SessionsEnded`, which removes the id here on every instance,
/// so the next check goes to the store.
#[derive(Default)]
pub struct KnownUsers {
    ids: DashMap<Id, i64>,
    /// Moves on every eviction: a lookup that started before one does not
    /// cache its (possibly stale) answer.
    evictions: AtomicU64,
}

impl KnownUsers {
    /// The user's token cutoff, if the user is known valid.
    pub fn cutoff(&self, id: Id) -> Option<i64> {
        self.ids.get(&id).map(|c| *c)
    }

    /// Where a lookup starts: pass it to [`KnownUsers::insert`].
    pub fn generation(&self) -> u64 {
        self.evictions.load(Ordering::Acquire)
    }

    /// Caches a user found valid by a lookup that started at `generation`,
    /// unless an eviction happened since (then the answer may be stale).
    pub fn insert(&self, id: Id, cutoff: i64, generation: u64) {
        self.ids.insert(id, cutoff);
        if self.evictions.load(Ordering::Acquire) != generation {
            self.ids.remove(&id);
        }
    }

    pub fn evict(&self, id: Id) {
        self.evictions.fetch_add(1, Ordering::AcqRel);
        self.ids.remove(&id);
    }
}

/// The `iat` before which a user's tokens are refused.
pub fn token_cutoff(user: &chatterly_store::User) -> i64 {
    user.sessions_revoked_at.map_or(i64::MIN, |t| t.timestamp())
}

impl Deliver for KnownUsers {
    fn deliver(&self, message: &BusMessage) {
        if let BusMessage::SessionsEnded { user_id } = message {
            self.evict(*user_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn issued_tokens_verify_and_carry_the_reference_claims() {
        let tokens = Tokens::new(SECRET, Duration::from_secs(86_400));
        let token = tokens.issue(42).expect("issued");
        let identity = tokens.verify(&token).expect("valid");
        assert_eq!(identity.user_id, 42);
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.validate_aud = false;
        let claims =
            decode::<serde_json::Value>(&token, &DecodingKey::from_secret(SECRET), &validation)
                .expect("decodes")
                .claims;
        assert_eq!(claims["sub"], "42");
        assert_eq!(claims["scp"], "user");
        assert!(claims["aud"].is_null());
        assert_eq!(
            claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
            86_400
        );
        assert_eq!(claims["jti"].as_str().expect("jti").len(), 36);
    }

    #[test]
    fn wrong_secret_and_expired_tokens_are_refused_with_the_contract_messages() {
        let tokens = Tokens::new(SECRET, Duration::from_secs(60));
        let other = Tokens::new(b"another-secret-another-secret-xx", Duration::from_secs(60));
        let token = other.issue(1).expect("issued");
        match tokens.verify(&token) {
            Err(DomainError::Unauthenticated(m)) => assert_eq!(m, "Signature verification failed"),
            other => panic!("unexpected {other:?}"),
        }
        let past = Claims {
            sub: "1".into(),
            scp: "user".into(),
            aud: None,
            iat: 1,
            exp: 2,
            jti: "x".into(),
        };
        let expired =
            encode(&Header::default(), &past, &EncodingKey::from_secret(SECRET)).expect("signed");
        match tokens.verify(&expired) {
            Err(DomainError::Unauthenticated(m)) => assert_eq!(m, "Signature has expired"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(tokens.verify("garbage").is_err());
    }

    #[test]
    fn known_users_do_not_cache_a_lookup_that_raced_an_eviction() {
        let known = KnownUsers::default();
        let before = known.generation();
        known.insert(1, 5, before);
        assert_eq!(known.cutoff(1), Some(5));
        let started = known.generation();
        known.deliver(&BusMessage::SessionsEnded { user_id: 1 });
        assert_eq!(known.cutoff(1), None);
        // A lookup that began before the eviction saw the user as valid.
        known.insert(1, 5, started);
        assert_eq!(known.cutoff(1), None);
        known.insert(1, 7, known.generation());
        assert_eq!(known.cutoff(1), Some(7));
    }

    #[tokio::test]
    async fn passwords_hash_and_verify() {
        let passwords = Arc::new(Passwords::new(64).expect("params"));
        let hash = passwords.hash("s3cret-pass".into()).await.expect("hashed");
        assert!(hash.starts_with("$argon2id$"));
        assert!(passwords
            .verify("s3cret-pass".into(), hash.clone())
            .await
            .expect("ran"));
        assert!(!passwords
            .verify("wrong-pass".into(), hash)
            .await
            .expect("ran"));
    }
}
