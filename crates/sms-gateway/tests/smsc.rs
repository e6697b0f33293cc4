//! The gateway against an independent SMSC: `tests/smsc/smsc.pl` (Perl,
//! Net::SMPP for the PDUs, Perl's Encode for GSM 03.38 and UTF-16), which
//! reassembles and decodes what arrived and records it as JSON lines. A
//! text is right when the SMSC's decoding of the wire equals what was
//! queued; nothing here decodes with our own code.
//!
//! These tests need perl with Net::SMPP (`sh tests/smsc/install-deps.sh`);
//! without it they fail, loudly, rather than skip.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sms_gateway::{BindMode, MemoryOutbox, MemoryStatus, Outbox, Secret, SmppConfig};
use tokio::sync::watch;

const SYSTEM_ID: &str = "postern";
const PASSWORD: &str = "s3cret";
const DESTINATION: &str = "+41791234567";
/// How long any test waits for the gateway to settle every message.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    // At run time, like the other tests: a test binary built from another
    // checkout sharing the target dir must not look for its files there.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../..")
}

/// A running `smsc.pl`; killed when dropped.
struct Smsc {
    child: Child,
    port: u16,
    record: PathBuf,
    _dir: tempfile::TempDir,
}

impl Smsc {
    fn start(extra: &[&str]) -> Smsc {
        let script = repo_root().join("tests/smsc/smsc.pl");
        assert!(
            script.exists(),
            "tests/smsc/smsc.pl missing (expected at {})",
            script.display()
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        let record = dir.path().join("record.jsonl");
        let mut child = Command::new("perl")
            .arg(&script)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--system-id",
                SYSTEM_ID,
                "--password",
                PASSWORD,
            ])
            .arg("--record")
            .arg(&record)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("perl runs (install it and Net::SMPP: sh tests/smsc/install-deps.sh)");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let line = received
            .recv_timeout(Duration::from_secs(20))
            .expect("smsc.pl printed its listening line (is Net::SMPP installed? sh tests/smsc/install-deps.sh)")
            .expect("readable stdout");
        let port = line
            .strip_prefix("smsc: listening ")
            .and_then(|address| address.rsplit_once(':'))
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from smsc.pl: {line:?}"));
        Smsc {
            child,
            port,
            record,
            _dir: dir,
        }
    }

    fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        text.lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("bad record line {line:?}: {e}"))
            })
            .collect()
    }

    fn events_named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|event| event["event"] == name)
            .collect()
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(port: u16) -> SmppConfig {
    SmppConfig {
        smsc: format!("127.0.0.1:{port}"),
        system_id: SYSTEM_ID.to_owned(),
        password: Secret::new(PASSWORD),
        source: "Postern".to_owned(),
        rate_per_second: 0,
        reconnect_min_ms: 50,
        reconnect_max_ms: 500,
        retry_min_ms: 50,
        retry_max_ms: 500,
        response_timeout_secs: 10,
        ..SmppConfig::default()
    }
}

/// The gateway task and its shutdown switch.
struct Gateway {
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    fn start(config: SmppConfig, outbox: &Arc<MemoryOutbox>) -> Gateway {
        // Logs show with --nocapture; RUST_LOG=sms_gateway=debug for more.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "sms_gateway=info".into()),
            )
            .with_test_writer()
            .try_init();
        let (shutdown, receiver) = watch::channel(false);
        let outbox: Arc<dyn Outbox> = outbox.clone();
        let task = tokio::spawn(sms_gateway::run(config, outbox, receiver));
        Gateway { shutdown, task }
    }

    async fn stop(self) {
        let _ = self.shutdown.send(true);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the gateway stops within the response timeout after shutdown")
            .expect("the gateway task did not panic");
    }
}

fn is_final(status: &MemoryStatus) -> bool {
    matches!(
        status,
        MemoryStatus::Sent { .. } | MemoryStatus::Failed { .. }
    )
}

/// Polls until every message is sent or failed, or fails the test.
async fn settle(outbox: &MemoryOutbox) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let entries = outbox.entries();
        if entries.iter().all(|entry| is_final(&entry.status)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not settled within {SETTLE_TIMEOUT:?}: {:?}",
            sms_gateway::count_by_status(&entries)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `condition` until true or the deadline.
async fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn number(text: &str) -> sms::PhoneNumber {
    text.parse().expect("valid test number")
}

/// Every text queued was sent, and the SMSC's reassembled decoding of each
/// (found by the SMSC message ids the gateway reported) equals it.
fn assert_texts_arrived(smsc: &Smsc, outbox: &MemoryOutbox) {
    let messages = smsc.events_named("message");
    for entry in outbox.entries() {
        let MemoryStatus::Sent { smsc_message_ids } = &entry.status else {
            panic!(
                "message {} ({} chars) not sent: {:?}",
                entry.sms.id,
                entry.sms.text.chars().count(),
                entry.status
            );
        };
        let ids: Vec<Value> = smsc_message_ids
            .iter()
            .map(|id| Value::from(id.as_str()))
            .collect();
        let arrived = messages
            .iter()
            .find(|message| message["message_ids"].as_array() == Some(&ids))
            .unwrap_or_else(|| {
                panic!(
                    "no reassembled message with ids {ids:?} for {:?}",
                    entry.sms.text
                )
            });
        assert_eq!(
            arrived["text"].as_str(),
            Some(entry.sms.text.as_str()),
            "message {} arrived differently (SMSC record: {arrived})",
            entry.sms.id
        );
        assert_eq!(
            arrived["destination"].as_str(),
            Some(&entry.sms.to.as_str()[1..])
        );
    }
    assert!(outbox.unexpected().is_empty(), "{:?}", outbox.unexpected());
}

/// Texts in many scripts, and texts exactly at every segment boundary.
fn texts() -> Vec<String> {
    let mut texts: Vec<String> = [
        "Your verification code is 483920. It expires in 10 minutes.",
        "Grüße aus Zürich! Die Bestellung für Jörg ist unterwegs.",
        "Votre rendez-vous est confirmé : à bientôt, Hélène ! Ça coûte 12 €.",
        "¿Dónde está la estación? ¡Mañana a las 9, señor Muñoz!",
        "Καλημέρα κόσμε! ΔΦΓΛΩΠΨΣΘΞ",
        "Привет, мир! Новое письмо от Анны.",
        "مرحبا بالعالم، لديك رسالة جديدة",
        "שלום עולם, יש לך הודעה חדשה",
        "नमस्ते दुनिया, आपके लिए एक नया संदेश है",
        "你好，世界！您有一封新邮件。",
        "こんにちは世界、新しいメッセージがあります。",
        "안녕하세요 세계, 새 메시지가 있습니다.",
        "สวัสดีชาวโลก คุณมีข้อความใหม่",
        "Günaydın! Şifreniz değişti, İstanbul'dan selamlar.",
        "Party time 🎉🎂 see you 👋",
        "Mail from Zoë: «Привет» — 你好 😀 {ok} [1] ~2~ \\ | ^ €5",
        "GSM specials: @£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    // Multi-segment texts in scripts that need UCS-2.
    texts.push("Новое письмо от Анны: ".repeat(9)); // 198 units, 3 segments
    texts.push("您有一封新邮件。".repeat(20)); // 160 units, 3 segments
    texts.extend(boundary_cases().into_iter().map(|(text, _)| text));
    texts
}

/// Texts exactly at every segment boundary, with the segments each must
/// take.
fn boundary_cases() -> Vec<(String, usize)> {
    let mut cases = Vec::new();
    // GSM-7: 160 septets fit one message, 161 need two; 306 fill two
    // segments of 153, 307 need three.
    for (length, segments) in [(160, 1), (161, 2), (306, 2), (307, 3)] {
        cases.push((gsm_text(length), segments));
    }
    // UCS-2: 70 units fit one message, 71 need two; 134 fill two segments
    // of 67, 135 need three.
    for (length, segments) in [(70, 1), (71, 2), (134, 2), (135, 3)] {
        cases.push(("ж".repeat(length - 1) + "я", segments));
    }
    // An escape pair that would take septets 153-154 moves whole to the
    // next segment; so does a surrogate pair that would take units 67-68.
    cases.push(("a".repeat(152) + "€" + &"b".repeat(20), 2));
    cases.push(("ж".repeat(66) + "😀" + &"я".repeat(10), 2));
    // An escape pair that ends the first segment exactly (septets 152-153).
    cases.push(("c".repeat(151) + "{" + &"d".repeat(30), 2));
    // 160 septets ending in an escape pair: still one message.
    cases.push(("e".repeat(158) + "}", 1));
    cases
}

/// A GSM-7 text of exactly `septets` septets that does not end in '@'
/// (a packed SMSC cannot tell a final '@' from padding).
fn gsm_text(septets: usize) -> String {
    let alphabet = "The quick brown fox jumps over the lazy dog 0123456789. ";
    alphabet
        .chars()
        .cycle()
        .take(septets - 1)
        .chain(['!'])
        .collect()
}

async fn send_all_and_compare(extra_smsc_args: &[&str], configure: impl FnOnce(&mut SmppConfig)) {
    let smsc = Smsc::start(extra_smsc_args);
    let outbox = Arc::new(MemoryOutbox::new());
    for text in texts() {
        outbox.queue(number(DESTINATION), text, false);
    }
    let mut config = config(smsc.port);
    configure(&mut config);
    let gateway = Gateway::start(config, &outbox);
    settle(&outbox).await;
    gateway.stop().await;
    assert_texts_arrived(&smsc, &outbox);
    for (text, segments) in boundary_cases() {
        let entry = outbox
            .entries()
            .into_iter()
            .find(|entry| entry.sms.text == text)
            .expect("boundary text queued");
        let MemoryStatus::Sent { smsc_message_ids } = entry.status else {
            panic!("boundary text not sent");
        };
        assert_eq!(
            smsc_message_ids.len(),
            segments,
            "segments of a {}-char text",
            text.chars().count()
        );
    }
    // Every submit_sm of a concatenated message set the UDHI bit.
    for submit in smsc.events_named("submit_sm") {
        let has_udh = !submit["udh"].is_null();
        assert_eq!(
            submit["esm_class"].as_u64() == Some(0x40),
            has_udh,
            "{submit}"
        );
        assert_eq!(submit["dest_addr_ton"], 1);
        assert_eq!(submit["dest_addr_npi"], 1);
        assert_eq!(submit["source_addr_ton"], 5, "alphanumeric sender");
    }
    // The SMSC records the unbind when it handles it, which may be just after
    // the gateway, having sent it, stopped: wait for the record, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while smsc.events_named("unbind").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let unbinds = smsc.events_named("unbind");
    assert_eq!(unbinds.len(), 1, "the gateway unbinds on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_script_and_boundary_arrives_as_sent() {
    send_all_and_compare(&[], |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_septets_arrive_as_sent() {
    send_all_and_compare(&["--packed"], |config| {
        config.seven_bit = sms::SeptetLayout::Packed;
        // A small window and a rate limit exercise the waiting paths too.
        config.window_max = 3;
        config.rate_per_second = 200;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_destination_fails_with_the_status_text() {
    let bad = "+41790000000";
    let smsc = Smsc::start(&["--fail", "41790000000=0x0B"]);
    let outbox = Arc::new(MemoryOutbox::new());
    let refused = outbox.queue(number(bad), "This number does not exist", false);
    let refused_long = outbox.queue(number(bad), "ж".repeat(150), false);
    let fine = outbox.queue(number(DESTINATION), "This one does", false);
    let gateway = Gateway::start(config(smsc.port), &outbox);
    settle(&outbox).await;
    gateway.stop().await;
    for id in [refused, refused_long] {
        let entry = outbox.entry(id).expect("queued");
        let MemoryStatus::Failed { reason } = &entry.status else {
            panic!("expected failed: {:?}", entry.status);
        };
        assert!(reason.contains("Invalid destination address"), "{reason}");
        assert!(reason.contains("0x0000000B"), "{reason}");
        assert_eq!(entry.sms.attempts, 0, "a permanent failure is not retried");
    }
    assert!(matches!(
        outbox.entry(fine).expect("queued").status,
        MemoryStatus::Sent { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_messages_are_retried_until_sent() {
    let smsc = Smsc::start(&["--throttle", "3"]);
    let outbox = Arc::new(MemoryOutbox::new());
    for text in ["one", "two", "three", "four", "Пятое сообщение"] {
        outbox.queue(number(DESTINATION), text, false);
    }
    let gateway = Gateway::start(config(smsc.port), &outbox);
    settle(&outbox).await;
    gateway.stop().await;
    assert_texts_arrived(&smsc, &outbox);
    let throttled = smsc
        .events_named("submit_sm")
        .into_iter()
        .filter(|submit| submit["status"] == 0x58)
        .count();
    assert_eq!(throttled, 3);
    let retried: u32 = outbox
        .entries()
        .iter()
        .map(|entry| entry.sms.attempts)
        .sum();
    assert!(retried >= 1, "throttled messages were retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_sends_nothing_then_fixed_password_loses_nothing() {
    let smsc = Smsc::start(&[]);
    let outbox = Arc::new(MemoryOutbox::new());
    for text in ["first", "second", "third"] {
        outbox.queue(number(DESTINATION), text, false);
    }
    let mut wrong = config(smsc.port);
    wrong.password = Secret::new("wrong");
    let gateway = Gateway::start(wrong, &outbox);
    // Two refused binds show it keeps trying (and has not crashed).
    wait_for("two refused binds", Duration::from_secs(20), || {
        smsc.events_named("bind")
            .iter()
            .filter(|bind| bind["ok"] == false)
            .count()
            >= 2
    })
    .await;
    assert!(!gateway.task.is_finished(), "the gateway keeps retrying");
    assert!(smsc.events_named("submit_sm").is_empty());
    for entry in outbox.entries() {
        assert!(
            matches!(entry.status, MemoryStatus::Queued { .. }),
            "untouched while unbound: {:?}",
            entry.status
        );
        assert_eq!(entry.sms.attempts, 0);
    }
    let refused = &smsc.events_named("bind")[0];
    assert_eq!(refused["status"], 0x0E, "ESME_RINVPASWD: {refused}");
    gateway.stop().await;

    // The operator fixes the password: everything queued goes out.
    let gateway = Gateway::start(config(smsc.port), &outbox);
    settle(&outbox).await;
    gateway.stop().await;
    assert_texts_arrived(&smsc, &outbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transceiver_receives_delivery_receipts() {
    let smsc = Smsc::start(&[]);
    let outbox = Arc::new(MemoryOutbox::new());
    let short = outbox.queue(number(DESTINATION), "Receipt please", true);
    let long = outbox.queue(number(DESTINATION), "ж".repeat(100), true);
    let mut config = config(smsc.port);
    config.bind_mode = BindMode::Transceiver;
    let gateway = Gateway::start(config, &outbox);
    settle(&outbox).await;
    // One receipt per segment: 1 + 2.
    wait_for("three receipts", Duration::from_secs(20), || {
        outbox.receipts().len() >= 3
    })
    .await;
    gateway.stop().await;
    assert_texts_arrived(&smsc, &outbox);
    let mut expected: Vec<String> = [short, long]
        .iter()
        .flat_map(|id| match outbox.entry(*id).expect("queued").status {
            MemoryStatus::Sent { smsc_message_ids } => smsc_message_ids,
            other => panic!("not sent: {other:?}"),
        })
        .collect();
    let mut receipted: Vec<String> = outbox
        .receipts()
        .into_iter()
        .map(|receipt| receipt.smsc_message_id)
        .collect();
    expected.sort();
    receipted.sort();
    assert_eq!(receipted, expected);
    assert!(
        outbox
            .receipts()
            .iter()
            .all(|receipt| receipt.delivered && receipt.detail.starts_with("DELIVRD"))
    );
    // The SMSC records a deliver_sm_resp when it reads it, after the gateway sent it.
    wait_for("three deliver_sm_resp", Duration::from_secs(10), || {
        smsc.events_named("deliver_sm_resp").len() >= 3
    })
    .await;
    let responses = smsc.events_named("deliver_sm_resp");
    assert_eq!(responses.len(), 3);
    assert!(responses.iter().all(|response| response["status"] == 0));
}
