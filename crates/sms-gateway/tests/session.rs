//! Session behaviour the Perl SMSC cannot be told to show: silence, a
//! connection cut mid-message, the SMSC's own enquire_link, a slow answer
//! during shutdown, a message that keeps failing. Each test scripts a
//! small SMSC here with rusmpp's codec, one PDU at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusmpp::pdus::{BindTransmitterResp, SubmitSmResp};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::COctetString;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use sms_gateway::{MemoryOutbox, MemoryStatus, Outbox, Secret, SmppConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

/// How long a test waits for anything before failing.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// One SMSC-side connection.
struct Peer {
    stream: Box<dyn Stream>,
    codec: CommandCodec,
    buffer: BytesMut,
}

impl Peer {
    /// Expects the gateway's unbind and answers it.
    async fn answer_unbind(&mut self) {
        let unbind = self.expect(CommandId::Unbind).await;
        self.write(Command::new(
            CommandStatus::EsmeRok,
            unbind.sequence_number(),
            Pdu::UnbindResp,
        ))
        .await;
    }

    async fn accept(listener: &TcpListener) -> Peer {
        let (stream, _) = tokio::time::timeout(STEP_TIMEOUT, listener.accept())
            .await
            .expect("the gateway connects")
            .expect("accept");
        Peer::over(Box::new(stream))
    }

    fn over(stream: Box<dyn Stream>) -> Peer {
        Peer {
            stream,
            codec: CommandCodec::new(),
            buffer: BytesMut::new(),
        }
    }

    /// The next PDU, or `None` when the gateway closed the connection.
    async fn read(&mut self) -> Option<Command> {
        loop {
            if let Some(command) = self
                .codec
                .decode(&mut self.buffer)
                .expect("valid PDU from the gateway")
            {
                return Some(command);
            }
            let read = tokio::time::timeout(STEP_TIMEOUT, self.stream.read_buf(&mut self.buffer))
                .await
                .expect("the gateway sends something")
                .ok()?;
            if read == 0 {
                return None;
            }
        }
    }

    async fn expect(&mut self, id: CommandId) -> Command {
        let command = self.read().await.expect("connection open");
        assert_eq!(command.id(), id, "{command:?}");
        command
    }

    async fn write(&mut self, command: Command) {
        let mut octets = BytesMut::new();
        self.codec.encode(command, &mut octets).expect("encodable");
        self.stream
            .write_all(&octets)
            .await
            .expect("write to the gateway");
    }

    async fn bind(listener: &TcpListener) -> Peer {
        Peer::accept(listener).await.answer_bind().await
    }

    /// Answers the gateway's bind_transmitter with success.
    async fn answer_bind(mut self) -> Peer {
        let bind = self.expect(CommandId::BindTransmitter).await;
        let response = BindTransmitterResp::builder()
            .system_id(COctetString::from_str_checked("fake"))
            .build();
        self.write(Command::new(
            CommandStatus::EsmeRok,
            bind.sequence_number(),
            response,
        ))
        .await;
        self
    }

    async fn answer_submit(&mut self, submit: &Command, status: CommandStatus, message_id: &str) {
        let response = SubmitSmResp::builder()
            .message_id(COctetString::from_str_checked(message_id))
            .build();
        self.write(Command::new(status, submit.sequence_number(), response))
            .await;
    }
}

trait FromStrChecked {
    fn from_str_checked(text: &str) -> Self;
}

impl<const MIN: usize, const MAX: usize> FromStrChecked for COctetString<MIN, MAX> {
    fn from_str_checked(text: &str) -> Self {
        COctetString::from_string(text.to_owned()).expect("valid C-octet string")
    }
}

fn config(port: u16) -> SmppConfig {
    SmppConfig {
        smsc: format!("127.0.0.1:{port}"),
        system_id: "postern".to_owned(),
        password: Secret::new("pw"),
        source: "+41440000000".to_owned(),
        rate_per_second: 0,
        reconnect_min_ms: 20,
        reconnect_max_ms: 100,
        retry_min_ms: 10,
        retry_max_ms: 50,
        response_timeout_secs: 1,
        ..SmppConfig::default()
    }
}

struct Gateway {
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Waits for the task to end (after `shutdown`), bounded.
    async fn stopped(self) {
        tokio::time::timeout(STEP_TIMEOUT, self.task)
            .await
            .expect("stops")
            .expect("no panic");
    }
}

fn start(config: SmppConfig, outbox: &Arc<MemoryOutbox>) -> Gateway {
    let (shutdown, receiver) = watch::channel(false);
    let outbox: Arc<dyn Outbox> = outbox.clone();
    let task = tokio::spawn(sms_gateway::run(config, outbox, receiver));
    Gateway { shutdown, task }
}

async fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let port = listener.local_addr().expect("local address").port();
    (listener, port)
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn number() -> sms::PhoneNumber {
    "+41791234567".parse().expect("valid number")
}

fn status(outbox: &MemoryOutbox, id: u64) -> MemoryStatus {
    outbox.entry(id).expect("queued").status
}

#[tokio::test]
async fn unanswered_submit_is_retried_after_the_response_timeout() {
    let (listener, port) = listener().await;
    let outbox = Arc::new(MemoryOutbox::new());
    let id = outbox.queue(number(), "hello", false);
    let gateway = start(config(port), &outbox);
    let mut peer = Peer::bind(&listener).await;
    let first = peer.expect(CommandId::SubmitSm).await;
    // No answer: after the 1 s response timeout the message goes back to
    // the outbox and comes again on the same session.
    let second = peer.expect(CommandId::SubmitSm).await;
    assert_ne!(first.sequence_number(), second.sequence_number());
    let entry = outbox.entry(id).expect("queued");
    assert_eq!(entry.sms.attempts, 1);
    peer.answer_submit(&second, CommandStatus::EsmeRok, "m1")
        .await;
    // A late answer to the first attempt must not be credited to anything.
    peer.answer_submit(&first, CommandStatus::EsmeRok, "late")
        .await;
    wait_until("sent", || {
        matches!(status(&outbox, id), MemoryStatus::Sent { .. })
    })
    .await;
    assert_eq!(
        status(&outbox, id),
        MemoryStatus::Sent {
            smsc_message_ids: vec!["m1".to_owned()]
        }
    );
    let _ = gateway.shutdown.send(true);
    peer.answer_unbind().await;
    gateway.stopped().await;
    assert!(outbox.unexpected().is_empty(), "{:?}", outbox.unexpected());
}

#[tokio::test]
async fn connection_lost_mid_message_is_retried_after_reconnect() {
    let (listener, port) = listener().await;
    let outbox = Arc::new(MemoryOutbox::new());
    // Three UCS-2 segments.
    let id = outbox.queue(number(), "ж".repeat(150), false);
    let mut config = config(port);
    config.window_max = 1;
    let gateway = start(config, &outbox);
    let mut peer = Peer::bind(&listener).await;
    let first = peer.expect(CommandId::SubmitSm).await;
    peer.answer_submit(&first, CommandStatus::EsmeRok, "a1")
        .await;
    let _second = peer.expect(CommandId::SubmitSm).await;
    drop(peer);
    // The gateway reconnects and sends the whole message again.
    let mut peer = Peer::bind(&listener).await;
    let mut message_ids = Vec::new();
    for n in 1..=3 {
        let submit = peer.expect(CommandId::SubmitSm).await;
        peer.answer_submit(&submit, CommandStatus::EsmeRok, &format!("b{n}"))
            .await;
        message_ids.push(format!("b{n}"));
    }
    wait_until("sent", || {
        matches!(status(&outbox, id), MemoryStatus::Sent { .. })
    })
    .await;
    let entry = outbox.entry(id).expect("queued");
    assert_eq!(
        entry.status,
        MemoryStatus::Sent {
            smsc_message_ids: message_ids
        }
    );
    assert_eq!(
        entry.sms.attempts, 1,
        "the lost connection counted one attempt"
    );
    let _ = gateway.shutdown.send(true);
    let _ = peer.expect(CommandId::Unbind).await;
    gateway.stopped().await;
}

#[tokio::test]
async fn enquire_link_both_ways() {
    let (listener, port) = listener().await;
    let outbox = Arc::new(MemoryOutbox::new());
    let mut config = config(port);
    config.enquire_link_secs = 1;
    config.response_timeout_secs = 5;
    let gateway = start(config, &outbox);
    let mut peer = Peer::bind(&listener).await;
    // The SMSC asks; the gateway answers with the same sequence number.
    peer.write(Command::new(CommandStatus::EsmeRok, 77, Pdu::EnquireLink))
        .await;
    let response = peer.expect(CommandId::EnquireLinkResp).await;
    assert_eq!(response.sequence_number(), 77);
    // An idle link: the gateway asks after enquire_link_secs.
    let enquire = peer.expect(CommandId::EnquireLink).await;
    peer.write(Command::new(
        CommandStatus::EsmeRok,
        enquire.sequence_number(),
        Pdu::EnquireLinkResp,
    ))
    .await;
    // Unknown requests get generic_nack ESME_RINVCMDID.
    peer.write(Command::new(
        CommandStatus::EsmeRok,
        78,
        Pdu::Outbind(Default::default()),
    ))
    .await;
    let nack = peer.expect(CommandId::GenericNack).await;
    assert_eq!(nack.sequence_number(), 78);
    assert_eq!(nack.status(), CommandStatus::EsmeRinvcmdid);
    let _ = gateway.shutdown.send(true);
    peer.answer_unbind().await;
    gateway.stopped().await;
}

#[tokio::test]
async fn unanswered_enquire_link_drops_the_session_and_reconnects() {
    let (listener, port) = listener().await;
    let outbox = Arc::new(MemoryOutbox::new());
    let mut config = config(port);
    config.enquire_link_secs = 1;
    let gateway = start(config, &outbox);
    let mut peer = Peer::bind(&listener).await;
    let _ignored = peer.expect(CommandId::EnquireLink).await;
    // No answer within the response timeout: a new connection and bind.
    let _peer = Peer::bind(&listener).await;
    let _ = gateway.shutdown.send(true);
    gateway.stopped().await;
}

#[tokio::test]
async fn shutdown_waits_for_answers_in_flight() {
    let (listener, port) = listener().await;
    let outbox = Arc::new(MemoryOutbox::new());
    let id = outbox.queue(number(), "answer me", false);
    let mut config = config(port);
    config.response_timeout_secs = 5;
    let gateway = start(config, &outbox);
    let mut peer = Peer::bind(&listener).await;
    let submit = peer.expect(CommandId::SubmitSm).await;
    let _ = gateway.shutdown.send(true);
    // The gateway waits for the answer before it unbinds.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!gateway.task.is_finished());
    peer.answer_submit(&submit, CommandStatus::EsmeRok, "m9")
        .await;
    peer.answer_unbind().await;
    gateway.stopped().await;
    assert_eq!(
        status(&outbox, id),
        MemoryStatus::Sent {
            smsc_message_ids: vec!["m9".to_owned()]
        }
    );
}

#[tokio::test]
async fn temporary_failures_give_up_after_attempts_max() {
    let (listener, port) = listener().await;
    let outbox = Arc::new(MemoryOutbox::new());
    let id = outbox.queue(number(), "never", false);
    let mut config = config(port);
    config.attempts_max = 3;
    let gateway = start(config, &outbox);
    let mut peer = Peer::bind(&listener).await;
    for _ in 0..3 {
        let submit = peer.expect(CommandId::SubmitSm).await;
        peer.answer_submit(&submit, CommandStatus::EsmeRsyserr, "")
            .await;
    }
    wait_until("failed", || {
        matches!(status(&outbox, id), MemoryStatus::Failed { .. })
    })
    .await;
    let MemoryStatus::Failed { reason } = status(&outbox, id) else {
        unreachable!()
    };
    assert!(reason.starts_with("gave up after 3 attempts"), "{reason}");
    assert!(
        reason.contains("ESME_RSYSERR (0x00000008): System error"),
        "{reason}"
    );
    let _ = gateway.shutdown.send(true);
    gateway.stopped().await;
}

#[tokio::test]
async fn tls_with_a_private_ca_file() {
    let names = vec!["localhost".to_owned()];
    let generated = rcgen::generate_simple_self_signed(names).expect("certificate");
    let dir = tempfile::tempdir().expect("temporary directory");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, generated.cert.pem()).expect("write CA file");
    let key = rustls_pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .expect("private key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![generated.cert.der().clone()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));

    let (listener, port) = listener().await;
    let outbox = Arc::new(MemoryOutbox::new());
    let id = outbox.queue(number(), "over TLS", false);
    let mut config = config(port);
    config.smsc = format!("localhost:{port}");
    config.tls = true;
    config.tls_ca_file = Some(ca_file);
    let gateway = start(config, &outbox);
    let (tcp, _) = tokio::time::timeout(STEP_TIMEOUT, listener.accept())
        .await
        .expect("the gateway connects")
        .expect("accept");
    let tls = acceptor
        .accept(tcp)
        .await
        .expect("TLS handshake with our CA");
    let mut peer = Peer::over(Box::new(tls)).answer_bind().await;
    let submit = peer.expect(CommandId::SubmitSm).await;
    peer.answer_submit(&submit, CommandStatus::EsmeRok, "t1")
        .await;
    wait_until("sent", || {
        matches!(status(&outbox, id), MemoryStatus::Sent { .. })
    })
    .await;
    let _ = gateway.shutdown.send(true);
    peer.answer_unbind().await;
    gateway.stopped().await;
}

#[tokio::test]
async fn tls_refuses_a_certificate_outside_the_trusted_roots() {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let key = rustls_pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .expect("private key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![generated.cert.der().clone()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let (listener, port) = listener().await;
    let outbox = Arc::new(MemoryOutbox::new());
    let mut config = config(port);
    config.smsc = format!("localhost:{port}");
    config.tls = true; // web PKI roots: a self-signed SMSC is refused
    let gateway = start(config, &outbox);
    for _ in 0..2 {
        let (tcp, _) = tokio::time::timeout(STEP_TIMEOUT, listener.accept())
            .await
            .expect("the gateway connects (and after a refusal, again)")
            .expect("accept");
        assert!(
            acceptor.accept(tcp).await.is_err(),
            "the gateway must reject the certificate"
        );
    }
    let _ = gateway.shutdown.send(true);
    gateway.stopped().await;
}
