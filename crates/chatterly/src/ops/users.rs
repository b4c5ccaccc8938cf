//! `chatterly users …`: account administration through `domain::admin`.

use std::io::BufRead;

use anyhow::{anyhow, bail, Context};
use chatterly_store::User;

use crate::config::{PasswordArgs, UsersArgs, UsersCommand};
use crate::domain::admin::{Admin, NewAccount, UserRef};
use crate::domain::auth::Passwords;
use crate::domain::DomainError;
use crate::server;

pub async fn run(args: UsersArgs) -> anyhow::Result<()> {
    let storage = args.command.storage();
    let database = storage.database()?;
    let store = server::open_store(&database, &storage.data_dir).await?;
    let argon2 = match &args.command {
        UsersCommand::Create { password, .. } | UsersCommand::ResetPassword { password, .. } => {
            password.argon2_memory_kib
        }
        _ => 8,
    };
    let passwords = Passwords::new(argon2).map_err(|e| anyhow!("{e}"))?;
    let admin = Admin::new(store, passwords);
    match args.command {
        UsersCommand::List { limit, .. } => {
            let users = admin.list(limit).await.map_err(failed("list users"))?;
            print!("{}", table(&users));
        }
        UsersCommand::Create {
            email,
            username,
            display_name,
            admin: site_admin,
            password,
            ..
        } => {
            let (secret, generated) = new_password(&password)?;
            let user = admin
                .create(NewAccount {
                    email,
                    username,
                    display_name,
                    password: secret.clone(),
                    site_admin,
                })
                .await
                .map_err(failed("create the user"))?;
            println!("created user {} ({})", user.id, user.username);
            if generated {
                println!("password: {secret}");
            }
        }
        UsersCommand::Disable { user, .. } => {
            let who = user_ref(&user)?;
            let user = admin
                .disable(&who)
                .await
                .map_err(failed_for("disable", &who))?;
            println!(
                "disabled user {} ({}); running instances close its sockets and refuse its tokens now",
                user.id, user.username
            );
        }
        UsersCommand::Enable { user, .. } => {
            let who = user_ref(&user)?;
            let user = admin
                .enable(&who)
                .await
                .map_err(failed_for("enable", &who))?;
            println!("enabled user {} ({})", user.id, user.username);
        }
        UsersCommand::ResetPassword { user, password, .. } => {
            let who = user_ref(&user)?;
            let (secret, generated) = new_password(&password)?;
            let user = admin
                .reset_password(&who, secret.clone())
                .await
                .map_err(failed_for("reset the password of", &who))?;
            println!("new password set for user {} ({})", user.id, user.username);
            if generated {
                println!("password: {secret}");
            }
        }
        UsersCommand::Promote { user, .. } => {
            let who = user_ref(&user)?;
            let user = admin
                .set_site_admin(&who, true)
                .await
                .map_err(failed_for("promote", &who))?;
            println!(
                "user {} ({}) is a site administrator",
                user.id, user.username
            );
        }
        UsersCommand::Demote { user, .. } => {
            let who = user_ref(&user)?;
            let user = admin
                .set_site_admin(&who, false)
                .await
                .map_err(failed_for("demote", &who))?;
            println!(
                "user {} ({}) is no longer a site administrator",
                user.id, user.username
            );
        }
    }
    Ok(())
}

fn user_ref(text: &str) -> anyhow::Result<UserRef> {
    text.parse::<UserRef>().map_err(|e| anyhow!(e))
}

fn describe(error: DomainError) -> String {
    match error {
        DomainError::Invalid(messages) => messages.join("; "),
        other => other.to_string(),
    }
}

fn failed(what: &'static str) -> impl Fn(DomainError) -> anyhow::Error {
    move |e| anyhow!("cannot {what}: {}", describe(e))
}

fn failed_for(what: &'static str, who: &UserRef) -> impl Fn(DomainError) -> anyhow::Error {
    let who = who.clone();
    move |e| match e {
        DomainError::NotFound => anyhow!("no user with {who}"),
        other => anyhow!("cannot {what} the user with {who}: {}", describe(other)),
    }
}

/// The password to set, and whether it was generated (and must be shown).
fn new_password(args: &PasswordArgs) -> anyhow::Result<(String, bool)> {
    if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let password = line.trim_end_matches(['\r', '\n']).to_owned();
        if password.is_empty() {
            bail!("no password on standard input (--password-stdin)");
        }
        return Ok((password, false));
    }
    use rand::distributions::{Alphanumeric, DistString};
    Ok((Alphanumeric.sample_string(&mut rand::rngs::OsRng, 20), true))
}

/// `chatterly users list` output.
pub fn table(users: &[User]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8}  {:<30}  {:<40}  {:<6}  {:<8}  CREATED",
        "ID", "USERNAME", "EMAIL", "ROLE", "STATUS"
    );
    for user in users {
        let status = if user.disabled_at.is_some() {
            "disabled"
        } else if user.locked_at.is_some() {
            "locked"
        } else {
            "active"
        };
        let _ = writeln!(
            out,
            "{:>8}  {:<30}  {:<40}  {:<6}  {:<8}  {}",
            user.id,
            user.username,
            user.email,
            if user.site_admin { "admin" } else { "user" },
            status,
            crate::views::format_timestamp(&user.created_at)
        );
    }
    let _ = writeln!(out, "{} user(s)", users.len());
    out
}
