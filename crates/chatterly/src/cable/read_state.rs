//! ConversationChannel read-state actions (beyond the reference):
//! `mark_read` and `mark_delivered`, each with an optional `seq` (absent: the
//! newest message). They do what `PUT …/read` and `PUT …/delivered` do, and
//! the events go out the same way. Refusals (a bad `seq`, a member no
//! more) are silent on the socket, like every other channel action; each
//! is logged.

use serde_json::{Map, Value};

use super::protocol;
use crate::domain::auth::Identity;
use crate::domain::Domain;

/// Runs one read-state action of a ConversationChannel subscription; returns
/// whether it was one.
pub async fn perform(
    domain: &Domain,
    identity: &Identity,
    conversation_id: i64,
    action: &str,
    args: &Map<String, Value>,
) -> bool {
    let seq = match args.get("seq") {
        None | Some(Value::Null) => None,
        Some(value) => match protocol::integer(value) {
            Some(seq) => Some(seq),
            None => {
                tracing::debug!(
                    action,
                    "read-state action with a seq that is no integer ignored"
                );
                return true;
            }
        },
    };
    let outcome = match action {
        "mark_read" => domain.mark_read(identity, conversation_id, seq).await,
        "mark_delivered" => domain.mark_delivered(identity, conversation_id, seq).await,
        _ => return false,
    };
    if let Err(error) = outcome {
        tracing::debug!(%error, action, conversation_id, "read-state action refused");
    }
    true
}
