//! Site administration (`chatterly users …`): run from the command line
//! against the database, next to (or without) running servers. The rules are
//! the API's (registration validation, password length); disabling enqueues
//! the `user.sessions_ended` job with the change, so whichever instance's worker
//! claims it tells every instance over the bus to close the user's sockets
//! and refuse their tokens.

use std::sync::Arc;

use chatterly_store::{AccountChange, Id, Store, User};

use super::accounts::{
    account_conflict, normalize_email, normalize_username, validate_password,
    validate_registration, Registration,
};
use super::auth::Passwords;
use super::{jobs, DomainError, DomainResult};

/// Names a user on the command line: an id, an email or a username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Id(Id),
    Email(String),
    Username(String),
}

impl std::str::FromStr for UserRef {
    type Err = String;

    fn from_str(text: &str) -> Result<UserRef, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("name a user by id, email or username".into());
        }
        if let Ok(id) = text.parse::<Id>() {
            return Ok(UserRef::Id(id));
        }
        if text.contains('@') {
            return Ok(UserRef::Email(normalize_email(text)));
        }
        Ok(UserRef::Username(normalize_username(text)))
    }
}

impl std::fmt::Display for UserRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserRef::Id(id) => write!(f, "id {id}"),
            UserRef::Email(email) => write!(f, "email {email}"),
            UserRef::Username(username) => write!(f, "username {username}"),
        }
    }
}

/// A new account made by an administrator.
#[derive(Debug)]
pub struct NewAccount {
    pub email: String,
    pub username: String,
    pub display_name: Option<String>,
    pub password: String,
    pub site_admin: bool,
}

pub struct Admin {
    store: Arc<dyn Store>,
    passwords: Arc<Passwords>,
}

impl Admin {
    pub fn new(store: Arc<dyn Store>, passwords: Passwords) -> Admin {
        Admin {
            store,
            passwords: Arc::new(passwords),
        }
    }

    pub async fn find(&self, who: &UserRef) -> DomainResult<User> {
        let found = match who {
            UserRef::Id(id) => self.store.user_by_id(*id).await?,
            UserRef::Email(email) => self.store.user_by_email(email).await?,
            UserRef::Username(username) => self.store.user_by_username(username).await?,
        };
        found.ok_or(DomainError::NotFound)
    }

    /// Users by username, at most `limit`.
    pub async fn list(&self, limit: u32) -> DomainResult<Vec<User>> {
        Ok(self.store.search_users(None, limit).await?)
    }

    pub async fn create(&self, account: NewAccount) -> DomainResult<User> {
        let valid = validate_registration(Registration {
            email: Some(account.email),
            password: Some(account.password),
            password_confirmation: None,
            username: Some(account.username),
            display_name: account.display_name,
        })?;
        let password_hash = self.passwords.hash(valid.password).await?;
        let user = self
            .store
            .create_user(chatterly_store::NewUser {
                email: valid.email,
                username: valid.username,
                display_name: valid.display_name,
                password_hash,
            })
            .await
            .map_err(account_conflict)?;
        if account.site_admin {
            return self.change(user.id, AccountChange::SiteAdmin(true)).await;
        }
        Ok(user)
    }

    /// Disables the account: logins are refused, and once the `user.sessions_ended`
    /// job runs (at once, on any instance with a worker) every token of the
    /// user is refused and every socket closes, on every instance.
    pub async fn disable(&self, who: &UserRef) -> DomainResult<User> {
        let user = self.find(who).await?;
        let now = chatterly_store::now();
        Ok(self
            .store
            .change_account(
                user.id,
                AccountChange::Disabled(Some(user.disabled_at.unwrap_or(now))),
                Some(jobs::sessions_ended(user.id, now)),
            )
            .await?)
    }

    pub async fn enable(&self, who: &UserRef) -> DomainResult<User> {
        let user = self.find(who).await?;
        self.change(user.id, AccountChange::Disabled(None)).await
    }

    /// Sets a new password, clears failed logins and any lock, and ends every
    /// session: tokens issued before it are refused and sockets close, on
    /// every instance (through the `user.sessions_ended` job, as `disable`).
    pub async fn reset_password(&self, who: &UserRef, password: String) -> DomainResult<User> {
        let user = self.find(who).await?;
        validate_password(&password)?;
        let hash = self.passwords.hash(password).await?;
        Ok(self
            .store
            .change_account(
                user.id,
                AccountChange::PasswordHash(hash),
                Some(jobs::sessions_ended(user.id, chatterly_store::now())),
            )
            .await?)
    }

    pub async fn set_site_admin(&self, who: &UserRef, admin: bool) -> DomainResult<User> {
        let user = self.find(who).await?;
        self.change(user.id, AccountChange::SiteAdmin(admin)).await
    }

    async fn change(&self, id: Id, change: AccountChange) -> DomainResult<User> {
        Ok(self.store.change_account(id, change, None).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_named_by_id_email_or_username() {
        assert_eq!("42".parse(), Ok(UserRef::Id(42)));
        assert_eq!(
            " Rana@Example.TEST ".parse(),
            Ok(UserRef::Email("rana@example.test".into()))
        );
        assert_eq!("Rana_h".parse(), Ok(UserRef::Username("rana_h".into())));
        assert!("  ".parse::<UserRef>().is_err());
    }
}
