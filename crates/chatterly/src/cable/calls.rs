//! CallChannel actions (contract 6.6.4): read the arguments, call the domain.
//! Refusals are silent on the socket (the reference sends nothing back), so
//! each outcome is only logged.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::protocol;
use crate::domain::auth::Identity;
use crate::domain::{Domain, DomainResult, Toggle};

/// Every argument any call action takes; `call_session_id` and `signal` are
/// kept as the client wrote them, since the signal relay echoes them
/// byte for byte.
#[derive(Deserialize)]
struct Args<'a> {
    #[serde(borrow)]
    call_session_id: Option<&'a RawValue>,
    #[serde(borrow)]
    target_user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    signal: Option<&'a RawValue>,
    muted: Option<bool>,
    camera_off: Option<bool>,
}

fn id_of(raw: Option<&RawValue>) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_str(raw?.get()).ok()?;
    protocol::integer(&value).filter(|id| *id > 0)
}

/// Runs one CallChannel action; returns whether it was a known action.
pub async fn perform(domain: &Domain, identity: &Identity, action: &str, data: &str) -> bool {
    let Ok(args) = serde_json::from_str::<Args<'_>>(data) else {
        tracing::debug!(action, "call action with unreadable arguments ignored");
        return true;
    };
    let Some(call_id) = id_of(args.call_session_id) else {
        tracing::debug!(action, "call action without a call_session_id ignored");
        return true;
    };
    let outcome: DomainResult<()> = match action {
        "accept_call" => domain
            .accept_call(identity, None, call_id)
            .await
            .map(|_| ()),
        "decline_call" => domain
            .decline_call(identity, None, call_id)
            .await
            .map(|_| ()),
        "end_call" => domain.hang_up(identity, call_id).await.map(|_| ()),
        "join_call" => domain.join_call(identity, None, call_id).await.map(|_| ()),
        "send_signal" => match (
            args.call_session_id,
            id_of(args.target_user_id),
            args.signal,
        ) {
            (Some(raw_call_id), Some(target), Some(signal)) => {
                domain
                    .relay_signal(identity, call_id, raw_call_id, target, signal)
                    .await
            }
            _ => {
                tracing::debug!("send_signal without a target_user_id or signal ignored");
                Ok(())
            }
        },
        "toggle_mute" => match args.muted {
            Some(muted) => {
                domain
                    .toggle_media(identity, call_id, Toggle::Mute(muted))
                    .await
            }
            None => Ok(()),
        },
        "toggle_camera" => match args.camera_off {
            Some(off) => {
                domain
                    .toggle_media(identity, call_id, Toggle::CameraOff(off))
                    .await
            }
            None => Ok(()),
        },
        _ => return false,
    };
    if let Err(error) = outcome {
        tracing::debug!(action, call_id, user_id = identity.user_id, %error, "call action refused");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_from_numbers_and_numeric_strings() {
        let args: Args<'_> = serde_json::from_str(
            r#"{"call_session_id":"31","target_user_id":43,"signal":{"type":"offer","sdp":"v=0"}}"#,
        )
        .expect("parses");
        assert_eq!(id_of(args.call_session_id), Some(31));
        assert_eq!(id_of(args.target_user_id), Some(43));
        assert_eq!(
            args.signal.map(RawValue::get),
            Some(r#"{"type":"offer","sdp":"v=0"}"#)
        );
        let bad: Args<'_> =
            serde_json::from_str(r#"{"call_session_id":-1,"target_user_id":"x"}"#).expect("parses");
        assert_eq!(id_of(bad.call_session_id), None);
        assert_eq!(id_of(bad.target_user_id), None);
    }
}
