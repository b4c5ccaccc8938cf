//! After a write run: read every conversation's whole history back and check
//! that what the server acknowledged is exactly what it stored (no loss, no
//! duplicates) and that the per-conversation `seq` numbers are 1..N without
//! gaps. The checks themselves are pure functions.

use std::collections::{HashMap, HashSet};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::api::{Api, PageMessage, Session};

/// How many missing or duplicated values a report lists (the counts are exact).
const LIST_AT_MOST: usize = 20;

/// Result of the `seq` check for one conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SeqCheck {
    /// Messages that carried a `seq`.
    pub count: u64,
    /// Messages without a `seq` field at all (a server without the extension).
    pub without_seq: u64,
    pub max_seq: i64,
    /// Values in 1..=max_seq that no message has.
    pub missing: u64,
    /// Extra messages sharing a `seq` with another one.
    pub duplicated: u64,
    /// Values outside 1..=max_seq (zero or negative).
    pub out_of_range: u64,
    /// The first few missing values, ascending.
    pub missing_examples: Vec<i64>,
    /// The first few duplicated values, ascending.
    pub duplicated_examples: Vec<i64>,
}

impl SeqCheck {
    pub fn ok(&self) -> bool {
        self.without_seq == 0 && self.missing == 0 && self.duplicated == 0 && self.out_of_range == 0
    }
}

/// Checks that `seqs` (any order) are exactly 1, 2, ..., N. `None` entries are
/// messages without a `seq`.
pub fn check_seqs(seqs: &[Option<i64>]) -> SeqCheck {
    let mut values: Vec<i64> = seqs.iter().flatten().copied().collect();
    values.sort_unstable();
    let mut check = SeqCheck {
        count: values.len() as u64,
        without_seq: (seqs.len() - values.len()) as u64,
        max_seq: values.last().copied().unwrap_or(0).max(0),
        ..SeqCheck::default()
    };
    let mut expected = 1i64;
    let mut previous: Option<i64> = None;
    for &v in &values {
        if v < 1 {
            check.out_of_range += 1;
            continue;
        }
        if previous == Some(v) {
            check.duplicated += 1;
            if check.duplicated_examples.last() != Some(&v)
                && check.duplicated_examples.len() < LIST_AT_MOST
            {
                check.duplicated_examples.push(v);
            }
            continue;
        }
        // Everything between the last value seen and this one is missing.
        while expected < v {
            check.missing += 1;
            if check.missing_examples.len() < LIST_AT_MOST {
                check.missing_examples.push(expected);
            } else {
                // Count the rest of the gap at once.
                check.missing += (v - expected - 1) as u64;
                break;
            }
            expected += 1;
        }
        expected = v + 1;
        previous = Some(v);
    }
    check
}

/// Result of comparing acknowledgements with stored messages (one
/// conversation or a whole run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCheck {
    /// 2xx answers to sends.
    pub acknowledged: u64,
    /// Messages found in history (distinct ids).
    pub stored: u64,
    /// Acknowledged `client_message_id`s that history does not contain.
    pub lost: u64,
    /// Extra stored messages repeating a `client_message_id` of this run.
    pub duplicated: u64,
    /// Stored messages of this run whose send got no 2xx (timed out or failed
    /// after the commit): not an error of the server, but reported.
    pub stored_unacknowledged: u64,
    /// Stored messages without a `client_message_id` of this run.
    pub foreign: u64,
}

impl DeliveryCheck {
    /// Nothing acknowledged is missing, nothing is stored twice, and nothing
    /// unexpected is stored. (A send that timed out on the client but was
    /// committed shows as `stored_unacknowledged`, which is not a failure.)
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.foreign == 0
    }

    pub fn add(&mut self, other: &DeliveryCheck) {
        self.acknowledged += other.acknowledged;
        self.stored += other.stored;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.stored_unacknowledged += other.stored_unacknowledged;
        self.foreign += other.foreign;
    }
}

/// Compares the `client_message_id`s the server acknowledged with those of the
/// stored messages. `run_prefix` marks the ids this run generated.
pub fn check_delivery(
    acked: &[String],
    stored: &[Option<String>],
    run_prefix: &str,
) -> DeliveryCheck {
    let mut check = DeliveryCheck {
        acknowledged: acked.len() as u64,
        stored: stored.len() as u64,
        ..DeliveryCheck::default()
    };
    let mut seen: HashMap<&str, u64> = HashMap::new();
    for cmid in stored {
        match cmid.as_deref() {
            Some(c) if c.starts_with(run_prefix) => *seen.entry(c).or_default() += 1,
            _ => check.foreign += 1,
        }
    }
    let acked_set: HashSet<&str> = acked.iter().map(String::as_str).collect();
    for c in &acked_set {
        if !seen.contains_key(c) {
            check.lost += 1;
        }
    }
    for (c, n) in &seen {
        check.duplicated += n - 1;
        if !acked_set.contains(c) {
            check.stored_unacknowledged += 1;
        }
    }
    check
}

/// Both checks for one conversation.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationCheck {
    pub conversation_id: i64,
    pub delivery: DeliveryCheck,
    pub seq: SeqCheck,
    /// History requests it took.
    pub pages: u64,
}

/// Reads the whole history of a conversation (paging back with `cursor`),
/// de-duplicated by message id.
pub async fn read_history(
    api: &Api,
    reader: &Session,
    conversation_id: i64,
) -> Result<(Vec<PageMessage>, u64)> {
    let mut messages = Vec::new();
    let mut ids = HashSet::new();
    let mut cursor = None;
    let mut pages = 0u64;
    loop {
        let page = api
            .history_page(reader, conversation_id, cursor, Some(100))
            .await?;
        pages += 1;
        for m in page.messages {
            if ids.insert(m.id) {
                messages.push(m);
            }
        }
        match page.next_cursor {
            Some(next) if Some(next) == cursor => {
                bail!("history of conversation {conversation_id} repeats cursor {next}")
            }
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok((messages, pages))
}

/// Reads back one conversation and checks it against what was acknowledged.
pub async fn check_conversation(
    api: &Api,
    reader: &Session,
    conversation_id: i64,
    acked: &[String],
    run_prefix: &str,
) -> Result<ConversationCheck> {
    let (messages, pages) = read_history(api, reader, conversation_id).await?;
    let seqs: Vec<Option<i64>> = messages.iter().map(|m| m.seq).collect();
    let cmids: Vec<Option<String>> = messages.into_iter().map(|m| m.client_message_id).collect();
    Ok(ConversationCheck {
        conversation_id,
        delivery: check_delivery(acked, &cmids, run_prefix),
        seq: check_seqs(&seqs),
        pages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(v: &[i64]) -> Vec<Option<i64>> {
        v.iter().copied().map(Some).collect()
    }

    #[test]
    fn contiguous_seqs_pass_in_any_order() {
        let c = check_seqs(&some(&[3, 1, 2, 5, 4]));
        assert!(c.ok(), "{c:?}");
        assert_eq!(c.count, 5);
        assert_eq!(c.max_seq, 5);
        assert!(check_seqs(&[]).ok());
    }

    #[test]
    fn finds_gaps_including_at_the_start() {
        let c = check_seqs(&some(&[2, 3, 6, 7, 10]));
        assert!(!c.ok());
        assert_eq!(c.missing, 5);
        assert_eq!(c.missing_examples, vec![1, 4, 5, 8, 9]);
        assert_eq!(c.duplicated, 0);
        assert_eq!(c.max_seq, 10);
    }

    #[test]
    fn finds_duplicates() {
        let c = check_seqs(&some(&[1, 2, 2, 2, 3, 3]));
        assert_eq!(c.duplicated, 3);
        assert_eq!(c.duplicated_examples, vec![2, 3]);
        assert_eq!(c.missing, 0);
        assert!(!c.ok());
    }

    #[test]
    fn counts_huge_gaps_without_listing_them() {
        let c = check_seqs(&some(&[1, 1_000_000]));
        assert_eq!(c.missing, 999_998);
        assert_eq!(c.missing_examples.len(), LIST_AT_MOST);
        assert_eq!(c.missing_examples[0], 2);
        let c = check_seqs(&some(&[1, 30, 60]));
        assert_eq!(c.missing, 28 + 29);
        assert_eq!(c.missing_examples.len(), LIST_AT_MOST);
    }

    #[test]
    fn missing_seq_fields_and_bad_values_fail() {
        let c = check_seqs(&[Some(1), None, Some(2)]);
        assert_eq!(c.without_seq, 1);
        assert!(!c.ok());
        let c = check_seqs(&some(&[0, 1, 2]));
        assert_eq!(c.out_of_range, 1);
        assert!(!c.ok());
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn stored(v: &[Option<&str>]) -> Vec<Option<String>> {
        v.iter().map(|s| s.map(str::to_owned)).collect()
    }

    #[test]
    fn delivery_exact_match_passes() {
        let c = check_delivery(
            &strings(&["r-1", "r-2"]),
            &stored(&[Some("r-2"), Some("r-1")]),
            "r-",
        );
        assert!(c.ok(), "{c:?}");
        assert_eq!(c.acknowledged, 2);
        assert_eq!(c.stored, 2);
    }

    #[test]
    fn delivery_finds_lost_duplicated_unacked_and_foreign() {
        let c = check_delivery(
            &strings(&["r-1", "r-2", "r-3"]),
            &stored(&[
                Some("r-1"),
                Some("r-1"),
                Some("r-3"),
                Some("r-9"),
                None,
                Some("other"),
            ]),
            "r-",
        );
        assert_eq!(c.lost, 1, "r-2");
        assert_eq!(c.duplicated, 1, "r-1 twice");
        assert_eq!(c.stored_unacknowledged, 1, "r-9");
        assert_eq!(c.foreign, 2);
        assert_eq!(c.stored, 6);
        assert!(!c.ok());
    }

    #[test]
    fn delivery_totals_add_up() {
        let mut total = DeliveryCheck::default();
        let a = check_delivery(&strings(&["r-1"]), &stored(&[Some("r-1")]), "r-");
        let b = check_delivery(&strings(&["r-2"]), &stored(&[]), "r-");
        total.add(&a);
        total.add(&b);
        assert_eq!(total.acknowledged, 2);
        assert_eq!(total.stored, 1);
        assert_eq!(total.lost, 1);
        assert!(!total.ok());
    }
}
