//! The client side of the Action Cable gateway (contract 6): open a socket to
//! `ws://HOST/cable?token=JWT` with the `actioncable-v1-json` subprotocol,
//! wait for `welcome`, subscribe and wait for the confirmations, timing each
//! step; then hand the socket to a reader task that multiplexes many sockets
//! (one task per CPU, not one per socket) and passes every text frame to a
//! [`Frames`] handler.
//!
//! Buffers are set explicitly and small (see [`config`]): the client must not
//! need more memory than the server it measures.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::stream::SelectAll;
use futures::{SinkExt, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout_at;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::api::Outcome;
use crate::target::Target;

/// The subprotocol Action Cable clients offer and the server must select.
pub const SUBPROTOCOL: &str = "actioncable-v1-json";

pub const PRESENCE_IDENTIFIER: &str = r#"{"channel":"PresenceChannel"}"#;
pub const USER_IDENTIFIER: &str = r#"{"channel":"UserChannel"}"#;

pub type Ws = WebSocketStream<TcpStream>;

/// `{"channel":"ConversationChannel","conversation_id":9}`, as the reference
/// client writes it.
pub fn conversation_identifier(conversation_id: i64) -> String {
    format!(r#"{{"channel":"ConversationChannel","conversation_id":{conversation_id}}}"#)
}

/// `{"command":"subscribe","identifier":"<identifier as a JSON string>"}`.
pub fn subscribe_command(identifier: &str) -> String {
    json!({ "command": "subscribe", "identifier": identifier }).to_string()
}

/// Client socket configuration: a read buffer of `read_buffer` bytes
/// (tungstenite allocates it eagerly; its default is 128 KiB, far too much for
/// thousands of sockets), no write batching, and frame limits well above
/// anything the server sends.
pub fn config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Where sockets go: the server's address (loopback, resolved once) and the
/// `ws://` URL of `/cable`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub url: String,
}

impl Endpoint {
    pub async fn of(target: &Target) -> anyhow::Result<Endpoint> {
        Ok(Endpoint {
            addr: target.socket_addr().await?,
            url: target.cable_url(),
        })
    }
}

/// Local addresses to spread `n` sockets over so that no address runs out of
/// ephemeral ports: `127.0.0.2`, `127.0.0.3`, ... (`requested` of them, or
/// as many as `n / per_address` needs). Empty (the kernel chooses, usually
/// 127.0.0.1) when one address is enough or the server is not on IPv4.
pub fn source_addresses(
    server: SocketAddr,
    n: usize,
    requested: Option<u8>,
    per_address: usize,
) -> Vec<IpAddr> {
    if !server.is_ipv4() {
        return Vec::new();
    }
    let count = match requested {
        Some(k) => usize::from(k),
        None => n.div_ceil(per_address.max(1)),
    };
    if count <= 1 {
        return Vec::new();
    }
    (0..count.min(250))
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)))
        .collect()
}

/// The step of opening a socket at which an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// TCP connect and the HTTP upgrade (`101 Switching Protocols`).
    Upgrade,
    /// Waiting for `{"type":"welcome"}`.
    Welcome,
    /// Sending `subscribe` and waiting for every `confirm_subscription`.
    Subscribe,
}

/// A socket ready for use, with the time from the start of the attempt to the
/// end of each step.
pub struct Opened {
    pub ws: Ws,
    pub upgraded: Duration,
    pub welcomed: Duration,
    pub subscribed: Duration,
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub step: Step,
    pub outcome: Outcome,
    pub detail: String,
    /// When the steps before the failed one ended, from the start.
    pub upgraded: Option<Duration>,
    pub welcomed: Option<Duration>,
}

fn failure(step: Step, outcome: Outcome, detail: impl Into<String>) -> Failure {
    Failure {
        step,
        outcome,
        detail: detail.into(),
        upgraded: None,
        welcomed: None,
    }
}

/// Steps completed so far by an attempt.
#[derive(Default)]
struct Reached {
    upgraded: Option<Duration>,
    welcomed: Option<Duration>,
}

/// Names a failed TCP connect by its cause.
fn connect_outcome(e: &io::Error) -> Outcome {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => Outcome::Failed("client_nofile"),
        Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE) => Outcome::Failed("no_local_port"),
        Some(libc::ECONNREFUSED) => Outcome::Failed("refused"),
        Some(libc::ECONNRESET) => Outcome::Failed("reset"),
        Some(libc::ETIMEDOUT) => Outcome::Timeout,
        _ => Outcome::Connect,
    }
}

async fn tcp_connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = source {
        defer_port_choice(&socket)?;
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Lets the kernel pick the source port at `connect` rather than at `bind`
/// (`IP_BIND_ADDRESS_NO_PORT`), so a port need only be unique per
/// destination: several load processes aimed at several server ports can
/// share the same source addresses instead of each exhausting their ports.
/// tokio's `TcpSocket` has no setter for it, and socket2 adds nothing here.
#[cfg(target_os = "linux")]
fn defer_port_choice(socket: &TcpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid open socket descriptor, and a pointer to a c_int that
    // lives across the call with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn defer_port_choice(_socket: &TcpSocket) -> io::Result<()> {
    Ok(())
}

/// The control frames the handshake looks at.
#[derive(Debug, Deserialize)]
struct Control {
    #[serde(rename = "type")]
    kind: Option<String>,
    identifier: Option<String>,
    reason: Option<String>,
}

/// The next text frame; `Err` names how the socket ended.
async fn next_text(ws: &mut Ws) -> Result<Utf8Bytes, (Outcome, String)> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text),
            Some(Ok(Message::Close(frame))) => {
                return Err((Outcome::Failed("closed"), format!("closed: {frame:?}")))
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err((Outcome::Transport, e.to_string())),
            None => return Err((Outcome::Failed("closed"), "connection closed".into())),
        }
    }
}

/// Opens one socket: TCP connect (from `source` when given), upgrade with the
/// Action Cable subprotocol, `welcome`, then subscribes to every identifier
/// and waits for all confirmations, everything within `timeout`.
pub async fn open(
    endpoint: &Endpoint,
    source: Option<IpAddr>,
    token: &str,
    identifiers: &[String],
    config: WebSocketConfig,
    timeout: Duration,
) -> Result<Opened, Failure> {
    let mut reached = Reached::default();
    let opened = open_steps(
        endpoint,
        source,
        token,
        identifiers,
        config,
        timeout,
        &mut reached,
    )
    .await;
    opened.map_err(|f| Failure {
        upgraded: reached.upgraded,
        welcomed: reached.welcomed,
        ..f
    })
}

async fn open_steps(
    endpoint: &Endpoint,
    source: Option<IpAddr>,
    token: &str,
    identifiers: &[String],
    config: WebSocketConfig,
    timeout: Duration,
    reached: &mut Reached,
) -> Result<Opened, Failure> {
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + timeout);
    let timed_out = |step| {
        failure(
            step,
            Outcome::Timeout,
            format!("no answer within {timeout:?}"),
        )
    };

    let stream = match timeout_at(deadline, tcp_connect(endpoint.addr, source)).await {
        Err(_) => return Err(timed_out(Step::Upgrade)),
        Ok(Err(e)) => return Err(failure(Step::Upgrade, connect_outcome(&e), e.to_string())),
        Ok(Ok(stream)) => stream,
    };
    let mut request = format!("{}?token={token}", endpoint.url)
        .into_client_request()
        .map_err(|e| failure(Step::Upgrade, Outcome::Failed("request"), e.to_string()))?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let handshake = tokio_tungstenite::client_async_with_config(request, stream, Some(config));
    let (mut ws, response) = match timeout_at(deadline, handshake).await {
        Err(_) => return Err(timed_out(Step::Upgrade)),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            return Err(failure(
                Step::Upgrade,
                Outcome::Status(status),
                format!("upgrade answered {status}"),
            ));
        }
        Ok(Err(e)) => {
            return Err(failure(
                Step::Upgrade,
                Outcome::Failed("handshake"),
                e.to_string(),
            ))
        }
        Ok(Ok(pair)) => pair,
    };
    let protocol = response.headers().get("sec-websocket-protocol");
    if protocol.and_then(|v| v.to_str().ok()) != Some(SUBPROTOCOL) {
        return Err(failure(
            Step::Upgrade,
            Outcome::Failed("subprotocol"),
            format!("the server selected subprotocol {protocol:?}, not {SUBPROTOCOL}"),
        ));
    }
    let upgraded = start.elapsed();
    reached.upgraded = Some(upgraded);

    loop {
        let text = match timeout_at(deadline, next_text(&mut ws)).await {
            Err(_) => return Err(timed_out(Step::Welcome)),
            Ok(Err((outcome, detail))) => return Err(failure(Step::Welcome, outcome, detail)),
            Ok(Ok(text)) => text,
        };
        let control: Control = serde_json::from_str(&text).map_err(|_| {
            failure(
                Step::Welcome,
                Outcome::Failed("garbage"),
                format!("unexpected frame {text}"),
            )
        })?;
        match control.kind.as_deref() {
            Some("welcome") => break,
            Some("disconnect") => {
                return Err(failure(
                    Step::Welcome,
                    Outcome::Failed("disconnected"),
                    format!("disconnect: {}", control.reason.unwrap_or_default()),
                ))
            }
            _ => continue,
        }
    }
    let welcomed = start.elapsed();
    reached.welcomed = Some(welcomed);

    for identifier in identifiers {
        let sent = timeout_at(
            deadline,
            ws.send(Message::text(subscribe_command(identifier))),
        );
        match sent.await {
            Err(_) => return Err(timed_out(Step::Subscribe)),
            Ok(Err(e)) => return Err(failure(Step::Subscribe, Outcome::Transport, e.to_string())),
            Ok(Ok(())) => {}
        }
    }
    let mut pending: Vec<&str> = identifiers.iter().map(String::as_str).collect();
    while !pending.is_empty() {
        let text = match timeout_at(deadline, next_text(&mut ws)).await {
            Err(_) => return Err(timed_out(Step::Subscribe)),
            Ok(Err((outcome, detail))) => return Err(failure(Step::Subscribe, outcome, detail)),
            Ok(Ok(text)) => text,
        };
        // Channel data (a presence roster, say) may come before the
        // confirmation; only control frames matter here.
        let Ok(control) = serde_json::from_str::<Control>(&text) else {
            continue;
        };
        match (control.kind.as_deref(), control.identifier.as_deref()) {
            (Some("confirm_subscription"), Some(id)) => pending.retain(|p| *p != id),
            (Some("reject_subscription"), id) => {
                return Err(failure(
                    Step::Subscribe,
                    Outcome::Failed("rejected"),
                    format!("subscription rejected: {}", id.unwrap_or_default()),
                ))
            }
            (Some("disconnect"), _) => {
                return Err(failure(
                    Step::Subscribe,
                    Outcome::Failed("disconnected"),
                    format!("disconnect: {}", control.reason.unwrap_or_default()),
                ))
            }
            _ => {}
        }
    }
    Ok(Opened {
        ws,
        upgraded,
        welcomed,
        subscribed: start.elapsed(),
    })
}

/// What a reader task does with its sockets' frames. `slot` is the socket's
/// number in the run.
pub trait Frames: Send + 'static {
    /// A socket was handed to the reader.
    fn opened(&mut self, slot: usize, at: Instant);
    /// A text frame arrived.
    fn text(&mut self, slot: usize, text: &str, at: Instant);
    /// The socket ended (`close` frame, `eof` or `error`); no more frames.
    fn closed(&mut self, slot: usize, how: &'static str, at: Instant);
}

enum Event {
    Text(Utf8Bytes),
    Closed(&'static str),
}

/// A socket as one stream among many: yields its text frames tagged with its
/// slot, then exactly one `Closed`, then ends (dropping the connection).
struct Tagged {
    slot: usize,
    ws: Option<Ws>,
}

impl Stream for Tagged {
    type Item = (usize, Event);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let slot = this.slot;
        let Some(ws) = this.ws.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            let closed = match ws.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(Message::Text(text)))) => {
                    return Poll::Ready(Some((slot, Event::Text(text))))
                }
                Poll::Ready(Some(Ok(Message::Close(_)))) => "close",
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(Some(Err(_))) => "error",
                Poll::Ready(None) => "eof",
            };
            this.ws = None;
            return Poll::Ready(Some((slot, Event::Closed(closed))));
        }
    }
}

/// A reader task: takes sockets from `incoming`, reads all of them at once,
/// and passes their frames to `frames` until `stop` turns true (or its sender
/// goes away). The sockets are dropped (closed) when it returns.
pub async fn read_sockets<F: Frames>(
    mut incoming: mpsc::UnboundedReceiver<(usize, Ws)>,
    mut stop: watch::Receiver<bool>,
    mut frames: F,
) -> F {
    let mut sockets: SelectAll<Tagged> = SelectAll::new();
    let mut accepting = true;
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            opened = incoming.recv(), if accepting => match opened {
                Some((slot, ws)) => {
                    frames.opened(slot, Instant::now());
                    sockets.push(Tagged { slot, ws: Some(ws) });
                }
                None => accepting = false,
            },
            Some((slot, event)) = sockets.next(), if !sockets.is_empty() => {
                let at = Instant::now();
                match event {
                    Event::Text(text) => frames.text(slot, text.as_str(), at),
                    Event::Closed(how) => frames.closed(slot, how, at),
                }
            }
        }
    }
    frames
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn identifiers_and_commands_match_the_contract() {
        assert_eq!(
            conversation_identifier(9),
            r#"{"channel":"ConversationChannel","conversation_id":9}"#
        );
        assert_eq!(
            subscribe_command(&conversation_identifier(9)),
            r#"{"command":"subscribe","identifier":"{\"channel\":\"ConversationChannel\",\"conversation_id\":9}"}"#
        );
    }

    #[test]
    fn source_addresses_only_when_needed() {
        let v4: SocketAddr = "127.0.0.1:3001".parse().unwrap();
        assert!(source_addresses(v4, 1_000, None, 8_000).is_empty());
        let spread = source_addresses(v4, 18_000, None, 8_000);
        assert_eq!(
            spread,
            ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
                .map(|a| a.parse::<IpAddr>().unwrap())
                .to_vec()
        );
        assert_eq!(source_addresses(v4, 10, Some(2), 8_000).len(), 2);
        assert!(source_addresses(v4, 18_000, Some(1), 8_000).is_empty());
        assert_eq!(source_addresses(v4, 10, Some(255), 1).len(), 250);
        let v6: SocketAddr = "[::1]:3001".parse().unwrap();
        assert!(source_addresses(v6, 18_000, None, 8_000).is_empty());
    }

    #[test]
    fn connect_errors_are_named() {
        let named = |errno| connect_outcome(&io::Error::from_raw_os_error(errno)).key();
        assert_eq!(named(libc::EMFILE), "client_nofile");
        assert_eq!(named(libc::EADDRNOTAVAIL), "no_local_port");
        assert_eq!(named(libc::ECONNREFUSED), "refused");
        assert_eq!(named(libc::EHOSTUNREACH), "connect");
    }

    /// A tiny Action Cable server: selects the subprotocol, welcomes,
    /// confirms ConversationChannel (then sends a ping, one data frame and
    /// closes), rejects anything else.
    #[allow(clippy::result_large_err)] // the callback's type is tungstenite's
    pub(crate) async fn fake_cable() -> SocketAddr {
        use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let callback = |request: &Request, mut response: Response| {
                        assert_eq!(request.uri().query(), Some("token=tok"));
                        response.headers_mut().insert(
                            "sec-websocket-protocol",
                            HeaderValue::from_static(SUBPROTOCOL),
                        );
                        Ok(response)
                    };
                    let mut ws = tokio_tungstenite::accept_hdr_async(stream, callback)
                        .await
                        .unwrap();
                    ws.send(Message::text(r#"{"type":"welcome"}"#))
                        .await
                        .unwrap();
                    while let Some(Ok(Message::Text(text))) = ws.next().await {
                        let command: serde_json::Value = serde_json::from_str(&text).unwrap();
                        let identifier = command["identifier"].as_str().unwrap().to_owned();
                        if identifier.contains("ConversationChannel") {
                            let confirm =
                                json!({"identifier": identifier, "type": "confirm_subscription"});
                            ws.send(Message::text(confirm.to_string())).await.unwrap();
                            ws.send(Message::text(r#"{"type":"ping","message":1}"#))
                                .await
                                .unwrap();
                            let data = json!({"identifier": identifier, "message": {"type": "new_message"}});
                            ws.send(Message::text(data.to_string())).await.unwrap();
                            let _ = ws.close(None).await;
                            return;
                        }
                        let reject =
                            json!({"identifier": identifier, "type": "reject_subscription"});
                        ws.send(Message::text(reject.to_string())).await.unwrap();
                    }
                });
            }
        });
        addr
    }

    #[derive(Default)]
    pub(crate) struct Collect {
        pub opened: Vec<usize>,
        pub texts: Vec<(usize, String)>,
        pub closed: Vec<(usize, &'static str)>,
    }

    impl Frames for Collect {
        fn opened(&mut self, slot: usize, _at: Instant) {
            self.opened.push(slot);
        }
        fn text(&mut self, slot: usize, text: &str, _at: Instant) {
            self.texts.push((slot, text.to_owned()));
        }
        fn closed(&mut self, slot: usize, how: &'static str, _at: Instant) {
            self.closed.push((slot, how));
        }
    }

    #[tokio::test]
    async fn opens_subscribes_and_reads_from_a_cable() {
        let addr = fake_cable().await;
        let endpoint = Endpoint {
            addr,
            url: format!("ws://{addr}/cable"),
        };
        let timeout = Duration::from_secs(5);
        let ids = [conversation_identifier(9)];
        let opened = open(&endpoint, None, "tok", &ids, config(1024), timeout)
            .await
            .map_err(|f| f.detail)
            .unwrap();
        assert!(opened.upgraded <= opened.welcomed && opened.welcomed <= opened.subscribed);

        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let reader = tokio::spawn(read_sockets(rx, stop_rx, Collect::default()));
        tx.send((7, opened.ws)).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.send(true).unwrap();
        let seen = reader.await.unwrap();
        assert_eq!(seen.opened, [7]);
        assert_eq!(seen.texts.len(), 2, "{:?}", seen.texts);
        assert!(seen.texts[1].1.contains("new_message"));
        assert_eq!(seen.closed.len(), 1);
        assert_eq!(seen.closed[0].0, 7);

        let presence = [PRESENCE_IDENTIFIER.to_owned()];
        let refused = open(&endpoint, None, "tok", &presence, config(1024), timeout)
            .await
            .err()
            .expect("rejected");
        assert_eq!(refused.step, Step::Subscribe);
        assert_eq!(refused.outcome.key(), "rejected");
        assert!(refused.upgraded.is_some() && refused.welcomed.is_some());
    }

    #[tokio::test]
    async fn refused_connections_are_named() {
        // Bind then drop a listener: nothing listens on that port any more.
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let endpoint = Endpoint {
            addr,
            url: format!("ws://{addr}/cable"),
        };
        let failed = open(
            &endpoint,
            None,
            "tok",
            &[],
            config(1024),
            Duration::from_secs(2),
        )
        .await
        .err()
        .expect("refused");
        assert_eq!(failed.step, Step::Upgrade);
        assert_eq!(failed.outcome.key(), "refused");
    }

    #[test]
    fn client_buffers_are_small() {
        let c = config(1024);
        assert_eq!(c.read_buffer_size, 1024);
        assert_eq!(c.write_buffer_size, 0);
    }
}
