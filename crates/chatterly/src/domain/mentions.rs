//! Mentions (beyond the reference): `@username` names a member; an admin's
//! `@channel` mentions every member and `@here` the members online. Names
//! that are unknown, or not members, stay plain text. A message's mentions
//! are resolved when it is sent and again when it is edited; the store keeps
//! one row per mentioned user (what `mention_count` and `GET
//! /api/v1/mentions` read), removed when the message is deleted.

use chatterly_store::{Broadcast, Id, Mentions, Message, Role};

use super::{Domain, DomainResult};

/// Distinct `@username`s one message may mention; further names are plain
/// text (bounds the lookup a message can cause).
pub const MENTIONS_MAX: usize = 50;
const NAME_MIN: usize = 3;
const NAME_MAX: usize = 30;

/// What the content names, before anything is looked up.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Parsed {
    /// Lowercased, distinct, in order of first appearance, at most
    /// [`MENTIONS_MAX`]; the broadcast keywords are not among them.
    pub names: Vec<String>,
    /// `@channel` wins over `@here` when both appear.
    pub broadcast: Option<Broadcast>,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Finds `@name` tokens: an `@` at the start or after a character that is
/// not a letter (of any script), digit, `_` or `@` (so `rana@example.test`
/// is no mention),
/// followed by 3 to 30 letters, digits or underscores (usernames are
/// lowercase; the match is case-insensitive). A longer run is no mention.
pub(super) fn parse(content: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut previous: Option<char> = None;
    let mut chars = content.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let starts =
            c == '@' && !previous.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '@');
        previous = Some(c);
        if !starts {
            continue;
        }
        let rest = &content[at + 1..];
        let len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        if len == 0 {
            continue;
        }
        let name = rest[..len].to_ascii_lowercase();
        // Skip the name (all ASCII, one byte per char).
        for _ in 0..len {
            previous = chars.next().map(|(_, c)| c);
        }
        if !(NAME_MIN..=NAME_MAX).contains(&len) {
            continue;
        }
        match name.as_str() {
            "channel" => parsed.broadcast = Some(Broadcast::Channel),
            "here" => {
                if parsed.broadcast.is_none() {
                    parsed.broadcast = Some(Broadcast::Here);
                }
            }
            _ => {
                if parsed.names.len() < MENTIONS_MAX && !parsed.names.contains(&name) {
                    parsed.names.push(name);
                }
            }
        }
    }
    parsed
}

impl Domain {
    /// Who `content`, written by `author` (with `role`) in the conversation,
    /// mentions. `@channel`/`@here` count only from an admin, and cost one
    /// token of the conversation's broadcast allowance when they are new (429
    /// without one, before anything is written). For an edit, `before` is the
    /// message as it was and the users its mention rows named: an unchanged
    /// broadcast keeps whoever it reached then.
    pub(super) async fn resolve_mentions(
        &self,
        author: Id,
        role: Role,
        conversation_id: Id,
        content: &str,
        before: Option<(&Message, &[Id])>,
    ) -> DomainResult<Mentions> {
        let parsed = parse(content);
        let broadcast = parsed.broadcast.filter(|_| role == Role::Admin);
        let mut user_ids: Vec<Id> = self
            .store
            .members_named(conversation_id, &parsed.names)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| *id != author)
            .collect();
        user_ids.sort_unstable();
        user_ids.dedup();

        let mut notified = user_ids.clone();
        if let Some(kind) = broadcast {
            let kept = before.filter(|(old, _)| old.broadcast == Some(kind));
            match kept {
                // Whoever the broadcast reached when it was sent keeps it.
                Some((old, recipients)) => notified.extend(
                    recipients
                        .iter()
                        .copied()
                        .filter(|id| !old.mentions.contains(id)),
                ),
                None => {
                    if let Some(rate) = &self.rate {
                        rate.check_broadcast(conversation_id)?;
                    }
                }
            }
            let members = self.store.members_of(&[conversation_id]).await?;
            notified.extend(
                members
                    .iter()
                    .map(|m| m.user.id)
                    .filter(|id| kind == Broadcast::Channel || self.online(*id)),
            );
        }
        notified.retain(|id| *id != author);
        notified.sort_unstable();
        notified.dedup();
        Ok(Mentions {
            user_ids,
            broadcast,
            notified,
        })
    }
}

/// The ids in `a` that are not in `b` (both ascending).
pub(super) fn minus(a: &[Id], b: &[Id]) -> Vec<Id> {
    a.iter()
        .copied()
        .filter(|id| b.binary_search(id).is_err())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(content: &str) -> Vec<String> {
        parse(content).names
    }

    #[test]
    fn finds_usernames_case_insensitively_once_each() {
        assert_eq!(
            names("hi @omar and @Rana_H, @omar again"),
            ["omar", "rana_h"]
        );
        assert_eq!(names("@omar: look"), ["omar"]);
        assert_eq!(names("(@omar)"), ["omar"]);
        assert_eq!(names("end with @omar."), ["omar"]);
    }

    #[test]
    fn emails_short_long_and_empty_names_are_plain_text() {
        assert!(names("mail rana@example.test").is_empty());
        assert!(names("@ab is too short").is_empty());
        assert!(names(&format!("@{} is too long", "a".repeat(31))).is_empty());
        assert_eq!(names(&format!("@{}", "a".repeat(30))), ["a".repeat(30)]);
        assert!(names("@ alone, @@omar, a@@b").is_empty());
        assert!(names("café@omar").is_empty());
    }

    #[test]
    fn broadcast_keywords_are_not_names() {
        let parsed = parse("@here and @omar");
        assert_eq!(parsed.broadcast, Some(Broadcast::Here));
        assert_eq!(parsed.names, ["omar"]);
        assert_eq!(
            parse("@here then @channel").broadcast,
            Some(Broadcast::Channel)
        );
        assert_eq!(parse("@CHANNEL").broadcast, Some(Broadcast::Channel));
        assert_eq!(parse("@channels").broadcast, None);
        assert_eq!(parse("@channels").names, ["channels"]);
    }

    #[test]
    fn at_most_the_cap_of_names() {
        let content: String = (0..80).map(|i| format!("@user{i:03} ")).collect();
        assert_eq!(names(&content).len(), MENTIONS_MAX);
    }

    #[test]
    fn minus_keeps_what_the_other_lacks() {
        assert_eq!(minus(&[1, 2, 3, 5], &[2, 5]), [1, 3]);
        assert!(minus(&[], &[1]).is_empty());
    }
}
