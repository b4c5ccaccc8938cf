//! Accounts: register, login (with lockout, contract 2.8), logout
//! (revocation), profiles and user search.

use std::net::IpAddr;

use chatterly_store::{
    Id, NewUser, ProfileUpdate, StoreError, User, CONFLICT_EMAIL, CONFLICT_USERNAME,
};

use super::auth::{Identity, NO_TOKEN};
use super::validate::Errors;
use super::{Domain, DomainError, DomainResult, ACCOUNT_DISABLED};
use crate::bus::BusMessage;
use crate::views::{UserPublic, UserWithEmail};

#[derive(Debug, Default)]
pub struct Registration {
    pub email: Option<String>,
    pub password: Option<String>,
    pub password_confirmation: Option<String>,
    pub username: Option<String>,
    pub display_name: Option<String>,
}

#[derive(Debug, Default)]
pub struct Login {
    pub email: Option<String>,
    pub password: Option<String>,
}

/// `None` leaves a field alone; `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct ProfileChanges {
    pub display_name: Option<Option<String>>,
    pub avatar_url: Option<Option<String>>,
    /// Beyond the reference: send read receipts (and see others').
    pub read_receipts: Option<bool>,
}

const EMAIL_MAX: usize = 255;
const PASSWORD_MIN: usize = 8;
const PASSWORD_MAX: usize = 128;
const USERNAME_MIN: usize = 3;
const USERNAME_MAX: usize = 30;
const DISPLAY_NAME_MAX: usize = 50;
const AVATAR_URL_MAX: usize = 2048;
const INVALID_LOGIN: &str = "Invalid email or password.";
const LOCKED: &str = "Your account is locked.";

pub(crate) fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// `^[^@\s]+@[^@\s]+$`
fn email_is_valid(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            let ok = |part: &str| {
                !part.is_empty() && !part.contains('@') && !part.chars().any(char::is_whitespace)
            };
            ok(local) && ok(domain)
        }
        None => false,
    }
}

fn username_is_valid(username: &str) -> bool {
    username
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A registration that passed validation (normalized).
pub(crate) struct ValidAccount {
    pub email: String,
    pub username: String,
    pub password: String,
    pub display_name: Option<String>,
}

/// The registration rules (contract 2.1), shared by `register` and
/// `chatterly users create`.
pub(crate) fn validate_registration(form: Registration) -> DomainResult<ValidAccount> {
    let email = form.email.as_deref().map(normalize_email);
    let username = form.username.as_deref().map(str::to_lowercase);
    let mut errors = Errors::default();
    if let Some(email) = errors.required("Email", email.as_deref()) {
        if !email_is_valid(email) {
            errors.add("Email is invalid");
        }
        errors.max_chars("Email", Some(email), EMAIL_MAX);
    }
    if let Some(password) = errors.required("Password", form.password.as_deref()) {
        errors.min_chars("Password", Some(password), PASSWORD_MIN);
        errors.max_chars("Password", Some(password), PASSWORD_MAX);
    }
    if let Some(confirmation) = &form.password_confirmation {
        if Some(confirmation) != form.password.as_ref() {
            errors.add("Password confirmation doesn't match Password");
        }
    }
    if let Some(username) = errors.required("Username", username.as_deref()) {
        if !username_is_valid(username) {
            errors.add("Username only lowercase letters, numbers, and underscores");
        }
        errors.min_chars("Username", Some(username), USERNAME_MIN);
        errors.max_chars("Username", Some(username), USERNAME_MAX);
    }
    errors.max_chars(
        "Display name",
        form.display_name.as_deref(),
        DISPLAY_NAME_MAX,
    );
    errors.into_result()?;
    let (Some(email), Some(username), Some(password)) = (email, username, form.password) else {
        return Err(DomainError::Internal(
            "validated registration lost a field".into(),
        ));
    };
    Ok(ValidAccount {
        email,
        username,
        password,
        display_name: form.display_name,
    })
}

/// The password rules alone (`chatterly users reset-password`).
pub(crate) fn validate_password(password: &str) -> DomainResult<()> {
    let mut errors = Errors::default();
    errors.min_chars("Password", Some(password), PASSWORD_MIN);
    errors.max_chars("Password", Some(password), PASSWORD_MAX);
    errors.into_result()
}

/// The message for an email or username already taken.
pub(crate) fn account_conflict(error: StoreError) -> DomainError {
    match error {
        StoreError::Conflict(CONFLICT_EMAIL) => {
            DomainError::invalid("Email has already been taken")
        }
        StoreError::Conflict(CONFLICT_USERNAME) => {
            DomainError::invalid("Username has already been taken")
        }
        other => other.into(),
    }
}

pub(crate) fn normalize_username(username: &str) -> String {
    username.trim().to_lowercase()
}

impl Domain {
    /// Registers and signs in: the new user and their first token.
    pub async fn register(
        &self,
        client: IpAddr,
        form: Registration,
    ) -> DomainResult<(UserWithEmail, String)> {
        if let Some(rate) = &self.rate {
            rate.check_auth(client)?;
        }
        let account = validate_registration(form)?;
        let (email, username, password) = (account.email, account.username, account.password);
        // Spare the password hashing when the answer is already known.
        if self.store.user_by_email(&email).await?.is_some() {
            return Err(DomainError::invalid("Email has already been taken"));
        }
        let password_hash = self.passwords.hash(password).await?;
        let user = self
            .store
            .create_user(NewUser {
                email,
                username,
                display_name: account.display_name,
                password_hash,
            })
            .await
            .map_err(account_conflict)?;
        self.known_users
            .insert(user.id, i64::MIN, self.known_users.generation());
        let token = self.tokens.issue(user.id)?;
        Ok((UserWithEmail::new(&user, self.online(user.id)), token))
    }

    /// Signs in: the user and a new token. Ten failures in a row lock the
    /// account for the configured time (contract 2.8).
    pub async fn login(
        &self,
        client: IpAddr,
        form: Login,
    ) -> DomainResult<(UserWithEmail, String)> {
        if let Some(rate) = &self.rate {
            rate.check_auth(client)?;
        }
        let (Some(email), Some(password)) = (form.email, form.password) else {
            return Err(DomainError::Unauthenticated(NO_TOKEN.into()));
        };
        let email = normalize_email(&email);
        let generation = self.known_users.generation();
        let Some(mut user) = self.store.user_by_email(&email).await? else {
            // Spend the same time as a real check, so response times do not tell
            // which emails exist.
            self.passwords
                .verify(password, self.passwords.decoy_hash().await?)
                .await?;
            return Err(DomainError::Unauthenticated(INVALID_LOGIN.into()));
        };
        let now = chatterly_store::now();
        if let Some(locked_at) = user.locked_at {
            let lock = chrono::Duration::from_std(self.limits.lock_duration)
                .unwrap_or(chrono::Duration::MAX);
            if now < locked_at + lock {
                return Err(DomainError::Unauthenticated(LOCKED.into()));
            }
            self.store.reset_failed_logins(user.id).await?;
            user.failed_attempts = 0;
            user.locked_at = None;
        }
        if !self
            .passwords
            .verify(password, user.password_hash.clone())
            .await?
        {
            let user = self
                .store
                .record_failed_login(user.id, self.limits.lock_after, now)
                .await?;
            let message = if user.locked_at.is_some() {
                LOCKED
            } else {
                INVALID_LOGIN
            };
            return Err(DomainError::Unauthenticated(message.into()));
        }
        if user.disabled_at.is_some() {
            // Said only to someone who knows the password.
            return Err(DomainError::Unauthenticated(ACCOUNT_DISABLED.into()));
        }
        if user.failed_attempts > 0 {
            self.store.reset_failed_logins(user.id).await?;
        }
        self.known_users
            .insert(user.id, super::auth::token_cutoff(&user), generation);
        let token = self.tokens.issue(user.id)?;
        Ok((UserWithEmail::new(&user, self.online(user.id)), token))
    }

    /// Revokes the token if it is valid; idempotent, never fails for a bad token
    /// (contract 2.3).
    pub async fn logout(&self, token: Option<&str>) -> DomainResult<()> {
        let Some(token) = token else { return Ok(()) };
        let Ok(identity) = self.tokens.verify(token) else {
            return Ok(());
        };
        self.revocations.revoke(&*self.store, &identity).await?;
        self.bus.publish(BusMessage::TokenRevoked {
            user_id: identity.user_id,
            jti: identity.jti,
        });
        Ok(())
    }

    pub(super) async fn user(&self, id: Id) -> DomainResult<User> {
        self.store
            .user_by_id(id)
            .await?
            .ok_or(DomainError::NotFound)
    }

    pub async fn me(&self, identity: &Identity) -> DomainResult<UserWithEmail> {
        let user = self.user(identity.user_id).await?;
        Ok(UserWithEmail::new(&user, self.online(user.id)))
    }

    pub async fn show_user(&self, id: Id) -> DomainResult<UserPublic> {
        Ok(self.user_public(&self.user(id).await?))
    }

    pub async fn search_users(&self, query: Option<&str>) -> DomainResult<Vec<UserPublic>> {
        let query = query.map(str::trim).filter(|q| !q.is_empty());
        if query.is_some_and(|q| q.contains('\0')) {
            // No stored name holds U+0000 (refused on input), and PostgreSQL
            // cannot even compare it.
            return Ok(Vec::new());
        }
        let users = self
            .store
            .search_users(query, self.limits.user_search_limit)
            .await?;
        Ok(users.iter().map(|u| self.user_public(u)).collect())
    }

    pub async fn update_profile(
        &self,
        identity: &Identity,
        id: Id,
        changes: ProfileChanges,
    ) -> DomainResult<UserWithEmail> {
        self.user(id).await?;
        if id != identity.user_id {
            return Err(DomainError::Forbidden);
        }
        if changes.display_name.is_none()
            && changes.avatar_url.is_none()
            && changes.read_receipts.is_none()
        {
            return Err(DomainError::BadRequest(None));
        }
        let mut errors = Errors::default();
        errors.max_chars(
            "Display name",
            changes.display_name.as_ref().and_then(|v| v.as_deref()),
            DISPLAY_NAME_MAX,
        );
        errors.max_chars(
            "Avatar url",
            changes.avatar_url.as_ref().and_then(|v| v.as_deref()),
            AVATAR_URL_MAX,
        );
        errors.into_result()?;
        let user = self
            .store
            .update_profile(
                id,
                ProfileUpdate {
                    display_name: changes.display_name,
                    avatar_url: changes.avatar_url,
                    read_receipts: changes.read_receipts,
                },
            )
            .await?;
        Ok(UserWithEmail::new(&user, self.online(user.id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_shape_follows_the_reference_pattern() {
        assert!(email_is_valid("rana@example.test"));
        assert!(email_is_valid("a@b"));
        assert!(!email_is_valid("rana.example.test"));
        assert!(!email_is_valid("@example.test"));
        assert!(!email_is_valid("rana@"));
        assert!(!email_is_valid("ra na@example.test"));
        assert!(!email_is_valid("a@b@c"));
    }

    #[test]
    fn usernames_are_lowercase_letters_digits_underscores() {
        assert!(username_is_valid("rana_h42"));
        assert!(!username_is_valid("rana-h"));
        assert!(!username_is_valid("Rana"));
        assert!(!username_is_valid("raña"));
    }
}
