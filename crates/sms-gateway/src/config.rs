//! What an operator configures under `[sms]`: a plain struct the server
//! crate fills from TOML, with the defaults written down once here.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A credential that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The password itself, for the one place that sends it (the bind PDU).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

/// How the gateway binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Send only; delivery receipts cannot arrive on this session.
    #[default]
    Transmitter,
    /// Send and receive on one session: needed for delivery receipts.
    Transceiver,
}

/// The `[sms]` settings of the SMPP client.
#[derive(Debug, Clone)]
pub struct SmppConfig {
    /// The SMSC as "host:port" (host may be a name, an IPv4 address or a
    /// bracketed IPv6 address).
    pub smsc: String,
    /// `system_id` of the bind (at most 15 characters).
    pub system_id: String,
    /// `password` of the bind (at most 8 characters in SMPP 3.4).
    pub password: Secret,
    /// The sender: digits (optionally with a leading '+') go as an
    /// international number, anything else as an alphanumeric sender ID
    /// (at most 11 characters on the air interface).
    pub source: String,
    /// GSM-7 septets one per octet (usual) or packed.
    pub seven_bit: sms::SeptetLayout,
    /// Wrap the connection in TLS.
    pub tls: bool,
    /// With `tls`: trust the certificates in this PEM file instead of the
    /// built-in web PKI roots (an SMSC with a private CA).
    pub tls_ca_file: Option<PathBuf>,
    /// Transmitter (default) or transceiver (for receipts).
    pub bind_mode: BindMode,
    /// Most submit_sm waiting for their response at once.
    pub window_max: usize,
    /// Most submit_sm per second (a token bucket with one second of
    /// burst); 0 means no limit.
    pub rate_per_second: u32,
    /// Seconds of silence after which the gateway sends enquire_link.
    pub enquire_link_secs: u64,
    /// First delay before reconnecting after a loss or refused bind.
    pub reconnect_min_ms: u64,
    /// Longest delay between reconnects (also used after a bind refused
    /// for bad credentials, which will not fix itself quickly).
    pub reconnect_max_ms: u64,
    /// Most segments one message may become; more is a permanent failure.
    pub segments_max: u8,
    /// Seconds to wait for any response (bind, submit, enquire_link,
    /// unbind) before treating it as lost.
    pub response_timeout_secs: u64,
    /// Ask the SMSC for delivery receipts (registered_delivery 1) unless a
    /// message says otherwise.
    pub request_receipts: bool,
    /// Attempts (the first send included) after which a message that keeps
    /// failing temporarily is given up as failed.
    pub attempts_max: u32,
    /// Delay before the first retry of a message; doubled per attempt.
    pub retry_min_ms: u64,
    /// Longest delay between retries of a message.
    pub retry_max_ms: u64,
}

impl Default for SmppConfig {
    fn default() -> Self {
        SmppConfig {
            smsc: String::new(),
            system_id: String::new(),
            password: Secret::default(),
            source: String::new(),
            seven_bit: sms::SeptetLayout::Unpacked,
            tls: false,
            tls_ca_file: None,
            bind_mode: BindMode::Transmitter,
            window_max: 10,
            rate_per_second: 50,
            enquire_link_secs: 30,
            reconnect_min_ms: 1_000,
            reconnect_max_ms: 60_000,
            segments_max: 4,
            response_timeout_secs: 30,
            request_receipts: false,
            attempts_max: 10,
            retry_min_ms: 30_000,
            retry_max_ms: 3_600_000,
        }
    }
}

impl SmppConfig {
    /// The encoding options for `sms::encode`.
    pub fn encode_options(&self) -> sms::Options {
        sms::Options {
            segments_max: self.segments_max,
            septet_layout: self.seven_bit,
        }
    }

    pub(crate) fn response_timeout(&self) -> Duration {
        Duration::from_secs(self.response_timeout_secs.max(1))
    }

    pub(crate) fn enquire_link_interval(&self) -> Duration {
        Duration::from_secs(self.enquire_link_secs.max(1))
    }

    /// The window, at least one PDU.
    pub(crate) fn window(&self) -> usize {
        self.window_max.max(1)
    }
}

/// Type of number and numbering plan of an SMPP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressKind {
    /// TON: 1 international, 5 alphanumeric.
    pub ton: u8,
    /// NPI: 1 ISDN (E.164), 0 unknown.
    pub npi: u8,
}

/// The source address as sent and its TON/NPI: a number ("+41791234567",
/// "41791234567") goes as digits with TON 1 NPI 1; anything with another
/// character ("Postern", "ACME 24") is an alphanumeric sender, TON 5 NPI 0.
/// An empty source is sent empty with TON 0 NPI 0: the SMSC fills in the
/// account's default sender.
pub fn source_address(source: &str) -> (String, AddressKind) {
    if source.is_empty() {
        return (String::new(), AddressKind { ton: 0, npi: 0 });
    }
    let digits = source.strip_prefix('+').unwrap_or(source);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        (digits.to_owned(), AddressKind { ton: 1, npi: 1 })
    } else {
        (source.to_owned(), AddressKind { ton: 5, npi: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_source_is_international_isdn() {
        assert_eq!(
            source_address("+41791234567"),
            ("41791234567".to_owned(), AddressKind { ton: 1, npi: 1 })
        );
        assert_eq!(source_address("4179").1, AddressKind { ton: 1, npi: 1 });
    }

    #[test]
    fn alphanumeric_source_is_ton_5_npi_0() {
        assert_eq!(
            source_address("Postern"),
            ("Postern".to_owned(), AddressKind { ton: 5, npi: 0 })
        );
        assert_eq!(source_address("+").1, AddressKind { ton: 5, npi: 0 });
        assert_eq!(source_address("12 34").1, AddressKind { ton: 5, npi: 0 });
        assert_eq!(source_address("").1, AddressKind { ton: 0, npi: 0 });
    }

    #[test]
    fn password_stays_out_of_debug() {
        let config = SmppConfig {
            password: Secret::new("hunter2"),
            ..SmppConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Secret(***)"));
    }
}
