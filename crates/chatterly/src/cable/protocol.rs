//! The Action Cable JSON protocol (contract 6.3, 6.4): parsing client
//! commands and building server frames. Pure functions, no I/O.

use chatterly_store::Id;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// A client command, with the identifier kept as the raw string the client
/// sent (it is echoed byte for byte).
#[derive(Debug, PartialEq)]
pub enum Command {
    Subscribe { identifier: String },
    Unsubscribe { identifier: String },
    Message { identifier: String, data: String },
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame is not JSON: {0}")]
    NotJson(String),
    #[error("frame lacks {0}")]
    Missing(&'static str),
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
}

#[derive(Deserialize)]
struct RawCommand {
    command: Option<String>,
    identifier: Option<Value>,
    data: Option<Value>,
}

/// `identifier` and `data` are JSON strings holding JSON; a client that sends
/// an object instead is forgiven (re-encoded), since nothing else could be meant.
fn text_of(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

pub fn parse_command(text: &str) -> Result<Command, ProtocolError> {
    let raw: RawCommand =
        serde_json::from_str(text).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    let command = raw.command.ok_or(ProtocolError::Missing("command"))?;
    let identifier = raw
        .identifier
        .map(text_of)
        .ok_or(ProtocolError::Missing("identifier"))?;
    match command.as_str() {
        "subscribe" => Ok(Command::Subscribe { identifier }),
        "unsubscribe" => Ok(Command::Unsubscribe { identifier }),
        "message" => Ok(Command::Message {
            identifier,
            data: raw
                .data
                .map(text_of)
                .ok_or(ProtocolError::Missing("data"))?,
        }),
        _ => Err(ProtocolError::UnknownCommand(command)),
    }
}

/// The channels a client can subscribe to (contract 6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `since_seq` asks for every message after it before live events.
    Conversation {
        conversation_id: Id,
        since_seq: Option<i64>,
    },
    Presence,
    User,
    Calls,
}

/// Reads an identifier; `None` for anything that names no known channel or
/// lacks a required parameter (answered with `reject_subscription`).
pub fn parse_identifier(identifier: &str) -> Option<Channel> {
    let params: Map<String, Value> = serde_json::from_str(identifier).ok()?;
    match params.get("channel")?.as_str()? {
        "ConversationChannel" => Some(Channel::Conversation {
            conversation_id: integer(params.get("conversation_id")?)?,
            since_seq: match params.get("since_seq") {
                None | Some(Value::Null) => None,
                Some(value) => Some(integer(value).filter(|s| *s >= 0)?),
            },
        }),
        "PresenceChannel" => Some(Channel::Presence),
        "UserChannel" => Some(Channel::User),
        "CallChannel" => Some(Channel::Calls),
        _ => None,
    }
}

/// An integer sent as a JSON number or a numeric string.
pub fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The `action` of a `message` command's data, and the data itself.
pub fn parse_action(data: &str) -> Option<(String, Map<String, Value>)> {
    let mut map: Map<String, Value> = serde_json::from_str(data).ok()?;
    match map.remove("action")? {
        Value::String(action) => Some((action, map)),
        _ => None,
    }
}

pub fn welcome() -> String {
    r#"{"type":"welcome"}"#.to_owned()
}

pub fn ping(unix_seconds: i64) -> String {
    format!(r#"{{"type":"ping","message":{unix_seconds}}}"#)
}

pub fn confirm(identifier: &str) -> String {
    json!({ "identifier": identifier, "type": "confirm_subscription" }).to_string()
}

pub fn reject(identifier: &str) -> String {
    json!({ "identifier": identifier, "type": "reject_subscription" }).to_string()
}

pub fn disconnect(reason: &str, reconnect: bool) -> String {
    json!({ "type": "disconnect", "reason": reason, "reconnect": reconnect }).to_string()
}

/// A channel-data frame carrying `message` for one subscription.
pub fn data(identifier: &str, message: &Value) -> String {
    json!({ "identifier": identifier, "message": message }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_reference_clients_commands() {
        let sub = r#"{"command":"subscribe","identifier":"{\"channel\":\"ConversationChannel\",\"conversation_id\":9}"}"#;
        assert_eq!(
            parse_command(sub),
            Ok(Command::Subscribe {
                identifier: r#"{"channel":"ConversationChannel","conversation_id":9}"#.into()
            })
        );
        let msg = r#"{"command":"message","identifier":"{\"channel\":\"CallChannel\"}","data":"{\"call_session_id\":31,\"action\":\"accept_call\"}"}"#;
        match parse_command(msg) {
            Ok(Command::Message { identifier, data }) => {
                assert_eq!(identifier, r#"{"channel":"CallChannel"}"#);
                let (action, args) = parse_action(&data).expect("action");
                assert_eq!(action, "accept_call");
                assert_eq!(args["call_session_id"], 31);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn refuses_garbage_with_a_reason() {
        assert!(matches!(
            parse_command("not json"),
            Err(ProtocolError::NotJson(_))
        ));
        assert_eq!(
            parse_command(r#"{"identifier":"{}"}"#),
            Err(ProtocolError::Missing("command"))
        );
        assert_eq!(
            parse_command(r#"{"command":"dance","identifier":"{}"}"#),
            Err(ProtocolError::UnknownCommand("dance".into()))
        );
        assert_eq!(
            parse_command(r#"{"command":"message","identifier":"{}"}"#),
            Err(ProtocolError::Missing("data"))
        );
    }

    #[test]
    fn identifiers_name_channels_and_parameters() {
        assert_eq!(
            parse_identifier(
                r#"{"channel":"ConversationChannel","conversation_id":9,"since_seq":4}"#
            ),
            Some(Channel::Conversation {
                conversation_id: 9,
                since_seq: Some(4)
            })
        );
        assert_eq!(
            parse_identifier(r#"{"channel":"PresenceChannel"}"#),
            Some(Channel::Presence)
        );
        assert_eq!(
            parse_identifier(r#"{"channel":"ConversationChannel"}"#),
            None
        );
        assert_eq!(
            parse_identifier(
                r#"{"channel":"ConversationChannel","conversation_id":9,"since_seq":-1}"#
            ),
            None
        );
        assert_eq!(parse_identifier(r#"{"channel":"NopeChannel"}"#), None);
        assert_eq!(parse_identifier("[]"), None);
    }

    #[test]
    fn frames_have_the_contract_shapes() {
        assert_eq!(welcome(), r#"{"type":"welcome"}"#);
        assert_eq!(ping(1775207003), r#"{"type":"ping","message":1775207003}"#);
        let id = r#"{"channel":"UserChannel"}"#;
        let confirm: Value = serde_json::from_str(&confirm(id)).expect("json");
        assert_eq!(confirm["identifier"], id);
        assert_eq!(confirm["type"], "confirm_subscription");
        let bye: Value = serde_json::from_str(&disconnect("unauthorized", false)).expect("json");
        assert_eq!(
            bye,
            json!({"type":"disconnect","reason":"unauthorized","reconnect":false})
        );
    }
}
