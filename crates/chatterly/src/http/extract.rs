//! Extractors that turn a request into typed input or a contract-shaped
//! error: never a plain-text rejection, never a panic.
//!
//! Bodies are read as JSON whatever the content type says (the reference
//! client always sends JSON) and then unwrapped the way Rails' params wrapping
//! does (contract 1.6): the wrapper object if present, else the flat keys.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chatterly_store::Id;
use serde_json::{Map, Value};

use super::AppState;
use crate::domain::auth::Identity;
use crate::domain::DomainError;

/// The caller, authenticated by `Authorization: Bearer <jwt>` (contract 2.5).
pub struct Auth(pub Identity);

/// The token of `Authorization: Bearer <token>`; the scheme is matched
/// case-sensitively, as the reference does.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let mut words = value.split_whitespace();
    match (words.next(), words.next()) {
        (Some("Bearer"), Some(token)) => Some(token),
        _ => None,
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = DomainError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Auth, DomainError> {
        state
            .domain
            .authenticate(bearer_token(parts))
            .await
            .map(Auth)
    }
}

/// The caller of a download: `Authorization: Bearer <jwt>`, or the
/// `access_token` query parameter, which `<img src>` and download links can
/// carry (the request span never logs the query string).
pub struct DownloadAuth(pub Identity);

impl FromRequestParts<AppState> for DownloadAuth {
    type Rejection = DomainError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<DownloadAuth, DomainError> {
        if let Some(token) = bearer_token(parts) {
            return state
                .domain
                .authenticate(Some(token))
                .await
                .map(DownloadAuth);
        }
        let QueryParams(query) = QueryParams::from_request_parts(parts, state).await?;
        state
            .domain
            .authenticate(query.get("access_token").map(String::as_str))
            .await
            .map(DownloadAuth)
    }
}

/// The raw bearer token, if any (logout needs it even when invalid).
pub struct BearerToken(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = DomainError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<BearerToken, DomainError> {
        Ok(BearerToken(bearer_token(parts).map(str::to_owned)))
    }
}

/// The client's address, for per-address rate limits: the peer's, or, when
/// the peer is a trusted proxy (`--trusted-proxy`), the address that proxy
/// reports in `X-Forwarded-For`.
pub struct ClientIp(pub IpAddr);

/// The proxies whose `X-Forwarded-For` is believed (a request extension).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub std::sync::Arc<Vec<IpAddr>>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = DomainError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientIp, DomainError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let trusted = parts
            .extensions
            .get::<TrustedProxies>()
            .map(|t| t.0.as_slice())
            .unwrap_or(&[]);
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(ClientIp(client_ip(peer, trusted, forwarded)))
    }
}

/// Walks `X-Forwarded-For` from the right (the hop nearest to us) while the
/// hop is a trusted proxy; the first address that is not one is the client.
/// Anything a client wrote further left is never believed.
pub fn client_ip<'a>(
    peer: IpAddr,
    trusted: &[IpAddr],
    forwarded: impl Iterator<Item = &'a str>,
) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded.flat_map(|v| v.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted.contains(&ip) {
                    return ip;
                }
            }
            // A malformed hop: stop at the last address we could trust.
            Err(_) => return client,
        }
    }
    client
}

/// Every path parameter parsed as an id. A parameter that is not a positive
/// 64-bit integer names no record: 404, as a failed lookup would.
pub struct Ids(pub Vec<Id>);

impl<S: Send + Sync> FromRequestParts<S> for Ids {
    type Rejection = DomainError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Ids, DomainError> {
        let Path(raw) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| DomainError::NotFound)?;
        raw.iter()
            .map(|(_, value)| {
                value
                    .parse::<Id>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or(DomainError::NotFound)
            })
            .collect::<Result<_, _>>()
            .map(Ids)
    }
}

impl Ids {
    pub fn one(&self) -> Result<Id, DomainError> {
        match self.0.as_slice() {
            [id] => Ok(*id),
            _ => Err(DomainError::NotFound),
        }
    }

    pub fn two(&self) -> Result<(Id, Id), DomainError> {
        match self.0.as_slice() {
            [a, b] => Ok((*a, *b)),
            _ => Err(DomainError::NotFound),
        }
    }
}

/// Query parameters; an undecodable query string is a 400.
pub struct QueryParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = DomainError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<QueryParams, DomainError> {
        let Query(map) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| DomainError::bad_request(format!("invalid query string: {e}")))?;
        Ok(QueryParams(map))
    }
}

impl QueryParams {
    pub fn string(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// An optional integer parameter; present but not an integer is a 400.
    pub fn integer(&self, key: &str) -> Result<Option<i64>, DomainError> {
        match self.0.get(key).map(|v| v.trim()) {
            None | Some("") => Ok(None),
            Some(value) => value
                .parse::<i64>()
                .map(Some)
                .map_err(|_| DomainError::bad_request(format!("{key} must be an integer"))),
        }
    }
}

/// A JSON object body. An empty body counts as `{}`; malformed JSON or a
/// non-object is a 400; a body over the limit is a 413.
pub struct JsonBody(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = DomainError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody, DomainError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    DomainError::PayloadTooLarge
                } else {
                    DomainError::bad_request(format!("unreadable body: {rejection}"))
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonBody(map)),
            Ok(_) => Err(DomainError::bad_request("the body must be a JSON object")),
            Err(e) => Err(DomainError::bad_request(format!("malformed JSON: {e}"))),
        }
    }
}

impl JsonBody {
    /// Rails-style params wrapping (contract 1.6): the `wrapper` object if the
    /// body has one, else the listed flat keys. Empty → 400.
    pub fn wrapped(&self, wrapper: &str, flat_keys: &[&str]) -> Result<Params, DomainError> {
        let params = match self.0.get(wrapper) {
            Some(Value::Object(inner)) => inner.clone(),
            Some(_) => return Err(DomainError::BadRequest(None)),
            None => flat_keys
                .iter()
                .filter_map(|key| self.0.get(*key).map(|v| ((*key).to_owned(), v.clone())))
                .collect(),
        };
        if params.is_empty() {
            return Err(DomainError::BadRequest(None));
        }
        Ok(Params(params))
    }

    /// The mandatory wrapper object (auth routes, calls), if present.
    pub fn wrapper(&self, wrapper: &str) -> Option<Params> {
        match self.0.get(wrapper) {
            Some(Value::Object(inner)) => Some(Params(inner.clone())),
            _ => None,
        }
    }

    /// Top-level parameters (`member_ids`, `user_id`).
    pub fn top_level(&self) -> Params {
        Params(self.0.clone())
    }
}

/// Request parameters with typed getters whose failures are 422s naming the
/// field.
pub struct Params(pub Map<String, Value>);

fn type_error(key: &str, expected: &str) -> DomainError {
    DomainError::invalid(format!("{} must be {expected}", humanize(key)))
}

/// PostgreSQL text cannot hold U+0000 (SQLite can): refuse it on input, so
/// both backends give the same 422 instead of one of them a 500.
fn storable(key: &str, s: &str) -> Result<String, DomainError> {
    if s.contains('\0') {
        Err(DomainError::invalid(format!(
            "{} must not contain null characters",
            humanize(key)
        )))
    } else {
        Ok(s.to_owned())
    }
}

/// `parent_message_id` → `Parent message id`, as Rails names attributes.
fn humanize(key: &str) -> String {
    let text = key.replace('_', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

fn as_id(value: &Value) -> Option<Id> {
    match value {
        Value::Number(n) => n.as_i64(),
        // Rails casts numeric strings; the contract's clients send numbers.
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Params {
    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Absent or null → `None`; a string → `Some`; anything else is a 422.
    pub fn string(&self, key: &str) -> Result<Option<String>, DomainError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => storable(key, s).map(Some),
            Some(_) => Err(type_error(key, "a string")),
        }
    }

    /// Absent → `None`; null → `Some(None)`; a string → `Some(Some)`.
    pub fn nullable_string(&self, key: &str) -> Result<Option<Option<String>>, DomainError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => storable(key, s).map(|s| Some(Some(s))),
            Some(_) => Err(type_error(key, "a string or null")),
        }
    }

    /// Absent or null → `None`; `true`/`false` → `Some`; anything else is a
    /// 422.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, DomainError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(type_error(key, "true or false")),
        }
    }

    /// An integer (a JSON number without a fraction, or a numeric string);
    /// absent or null → `None`; anything else is a 422. Unlike [`Params::id`]
    /// it may be zero or negative (the domain judges the value).
    pub fn integer(&self, key: &str) -> Result<Option<i64>, DomainError> {
        self.id(key)
    }

    pub fn id(&self, key: &str) -> Result<Option<Id>, DomainError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => as_id(value)
                .map(Some)
                .ok_or_else(|| type_error(key, "an integer")),
        }
    }

    pub fn ids(&self, key: &str) -> Result<Vec<Id>, DomainError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| as_id(v).ok_or_else(|| type_error(key, "an array of integers")))
                .collect(),
            Some(_) => Err(type_error(key, "an array of integers")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
        let client: IpAddr = "203.0.113.7".parse().expect("ip");
        let trusted = [proxy];
        // Not a trusted peer: its header is ignored.
        assert_eq!(client_ip(client, &trusted, ["1.2.3.4"].into_iter()), client);
        // The proxy reports the client (after anything the client forged).
        assert_eq!(
            client_ip(proxy, &trusted, ["1.2.3.4, 203.0.113.7"].into_iter()),
            client
        );
        // Two trusted hops, over two headers.
        assert_eq!(
            client_ip(proxy, &trusted, ["203.0.113.7", "10.0.0.1"].into_iter()),
            client
        );
        // No header, or a malformed hop: the proxy itself.
        assert_eq!(client_ip(proxy, &trusted, std::iter::empty()), proxy);
        assert_eq!(client_ip(proxy, &trusted, ["junk"].into_iter()), proxy);
        assert_eq!(client_ip(proxy, &[], ["1.2.3.4"].into_iter()), proxy);
    }
    use serde_json::json;

    fn body(value: Value) -> JsonBody {
        match value {
            Value::Object(map) => JsonBody(map),
            _ => panic!("object expected"),
        }
    }

    #[test]
    fn accepts_flat_and_wrapped_bodies() {
        let flat = body(json!({"content": "hi", "message_type": "text", "other": 1}));
        let params = flat
            .wrapped("message", &["content", "message_type"])
            .expect("params");
        assert_eq!(params.string("content").expect("string"), Some("hi".into()));
        assert!(!params.has("other"));
        let wrapped = body(json!({"message": {"content": "yo"}}));
        let params = wrapped.wrapped("message", &["content"]).expect("params");
        assert_eq!(params.string("content").expect("string"), Some("yo".into()));
    }

    #[test]
    fn an_empty_wrapper_is_the_contract_400() {
        let only_members = body(json!({"member_ids": [1]}));
        assert!(matches!(
            only_members.wrapped("conversation", &["name"]),
            Err(DomainError::BadRequest(None))
        ));
        let not_object = body(json!({"message": "text"}));
        assert!(matches!(
            not_object.wrapped("message", &["content"]),
            Err(DomainError::BadRequest(None))
        ));
    }

    #[test]
    fn wrong_types_are_422_naming_the_field() {
        let params = Params(
            json!({"content": 5, "parent_message_id": "x", "member_ids": [1, "2", true]})
                .as_object()
                .cloned()
                .expect("object"),
        );
        match params.string("content") {
            Err(DomainError::Invalid(e)) => assert_eq!(e, ["Content must be a string"]),
            other => panic!("unexpected {other:?}"),
        }
        match params.id("parent_message_id") {
            Err(DomainError::Invalid(e)) => assert_eq!(e, ["Parent message id must be an integer"]),
            other => panic!("unexpected {other:?}"),
        }
        assert!(params.ids("member_ids").is_err());
    }

    #[test]
    fn nul_characters_are_422_naming_the_field() {
        let params = Params(
            json!({"content": "a\u{0}b", "display_name": "\u{0}"})
                .as_object()
                .cloned()
                .expect("object"),
        );
        match params.string("content") {
            Err(DomainError::Invalid(e)) => {
                assert_eq!(e, ["Content must not contain null characters"])
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(params.nullable_string("display_name").is_err());
    }
}
