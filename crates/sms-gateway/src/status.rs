//! SMPP 3.4 `command_status` codes (§5.1.3): one table with the name, an
//! operator-readable text and whether trying again later can help.

/// What a non-zero status means for the message that got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// The SMSC is busy or had a passing fault: send again later.
    Temporary,
    /// The message itself (number, content, account) was refused: sending
    /// it again gives the same answer.
    Permanent,
}

/// (code, name, text, class). Codes not listed are treated as permanent:
/// retrying something nobody understands only bills the same failure again.
const STATUSES: &[(u32, &str, &str, StatusClass)] = {
    use StatusClass::{Permanent as P, Temporary as T};
    &[
        (0x00, "ESME_ROK", "No error", P),
        (0x01, "ESME_RINVMSGLEN", "Message length is invalid", P),
        (0x02, "ESME_RINVCMDLEN", "Command length is invalid", P),
        (0x03, "ESME_RINVCMDID", "Invalid command ID", P),
        (
            0x04,
            "ESME_RINVBNDSTS",
            "Incorrect bind status for the given command",
            T,
        ),
        (0x05, "ESME_RALYBND", "ESME already in bound state", T),
        (0x06, "ESME_RINVPRTFLG", "Invalid priority flag", P),
        (
            0x07,
            "ESME_RINVREGDLVFLG",
            "Invalid registered delivery flag",
            P,
        ),
        (0x08, "ESME_RSYSERR", "System error", T),
        (0x0A, "ESME_RINVSRCADR", "Invalid source address", P),
        (0x0B, "ESME_RINVDSTADR", "Invalid destination address", P),
        (0x0C, "ESME_RINVMSGID", "Message ID is invalid", P),
        (0x0D, "ESME_RBINDFAIL", "Bind failed", T),
        (0x0E, "ESME_RINVPASWD", "Invalid password", T),
        (0x0F, "ESME_RINVSYSID", "Invalid system ID", T),
        (0x11, "ESME_RCANCELFAIL", "Cancel SM failed", P),
        (0x13, "ESME_RREPLACEFAIL", "Replace SM failed", P),
        (0x14, "ESME_RMSGQFUL", "Message queue full", T),
        (0x15, "ESME_RINVSERTYP", "Invalid service type", P),
        (
            0x33,
            "ESME_RINVNUMDESTS",
            "Invalid number of destinations",
            P,
        ),
        (0x34, "ESME_RINVDLNAME", "Invalid distribution list name", P),
        (0x40, "ESME_RINVDESTFLAG", "Invalid destination flag", P),
        (
            0x42,
            "ESME_RINVSUBREP",
            "Invalid submit with replace request",
            P,
        ),
        (0x43, "ESME_RINVESMCLASS", "Invalid esm_class field data", P),
        (
            0x44,
            "ESME_RCNTSUBDL",
            "Cannot submit to distribution list",
            P,
        ),
        (0x45, "ESME_RSUBMITFAIL", "Submit failed", P),
        (0x48, "ESME_RINVSRCTON", "Invalid source address TON", P),
        (0x49, "ESME_RINVSRCNPI", "Invalid source address NPI", P),
        (
            0x50,
            "ESME_RINVDSTTON",
            "Invalid destination address TON",
            P,
        ),
        (
            0x51,
            "ESME_RINVDSTNPI",
            "Invalid destination address NPI",
            P,
        ),
        (0x53, "ESME_RINVSYSTYP", "Invalid system_type field", P),
        (
            0x54,
            "ESME_RINVREPFLAG",
            "Invalid replace_if_present flag",
            P,
        ),
        (0x55, "ESME_RINVNUMMSGS", "Invalid number of messages", P),
        (
            0x58,
            "ESME_RTHROTTLED",
            "Throttling error (ESME has exceeded allowed message limits)",
            T,
        ),
        (0x61, "ESME_RINVSCHED", "Invalid scheduled delivery time", P),
        (
            0x62,
            "ESME_RINVEXPIRY",
            "Invalid message validity period (expiry time)",
            P,
        ),
        (
            0x63,
            "ESME_RINVDFTMSGID",
            "Predefined message invalid or not found",
            P,
        ),
        (
            0x64,
            "ESME_RX_T_APPN",
            "ESME receiver temporary app error code",
            T,
        ),
        (
            0x65,
            "ESME_RX_P_APPN",
            "ESME receiver permanent app error code",
            P,
        ),
        (
            0x66,
            "ESME_RX_R_APPN",
            "ESME receiver reject message error code",
            P,
        ),
        (0x67, "ESME_RQUERYFAIL", "query_sm request failed", P),
        (
            0xC0,
            "ESME_RINVOPTPARSTREAM",
            "Error in the optional part of the PDU body",
            P,
        ),
        (
            0xC1,
            "ESME_ROPTPARNOTALLWD",
            "Optional parameter not allowed",
            P,
        ),
        (0xC2, "ESME_RINVPARLEN", "Invalid parameter length", P),
        (
            0xC3,
            "ESME_RMISSINGOPTPARAM",
            "Expected optional parameter missing",
            P,
        ),
        (
            0xC4,
            "ESME_RINVOPTPARAMVAL",
            "Invalid optional parameter value",
            P,
        ),
        (
            0xFE,
            "ESME_RDELIVERYFAILURE",
            "Delivery failure (used for data_sm_resp)",
            T,
        ),
        (0xFF, "ESME_RUNKNOWNERR", "Unknown error", T),
        // SMPP 5.0 codes some 3.4 SMSCs send anyway.
        (
            0x100,
            "ESME_RSERTYPUNAUTH",
            "ESME not authorised to use specified service_type",
            P,
        ),
        (
            0x101,
            "ESME_RPROHIBITED",
            "ESME prohibited from using specified operation",
            P,
        ),
        (
            0x102,
            "ESME_RSERTYPUNAVAIL",
            "Specified service_type is unavailable",
            T,
        ),
        (
            0x103,
            "ESME_RSERTYPDENIED",
            "Specified service_type is denied",
            P,
        ),
        (0x104, "ESME_RINVDCS", "Invalid data coding scheme", P),
        (
            0x105,
            "ESME_RINVSRCADDRSUBUNIT",
            "Source address subunit is invalid",
            P,
        ),
        (
            0x106,
            "ESME_RINVDSTADDRSUBUNIT",
            "Destination address subunit is invalid",
            P,
        ),
        (
            0x107,
            "ESME_RINVBCASTFREQINT",
            "Broadcast frequency interval is invalid",
            P,
        ),
        (
            0x108,
            "ESME_RINVBCASTALIAS_NAME",
            "Broadcast alias name is invalid",
            P,
        ),
        (
            0x109,
            "ESME_RINVBCASTAREAFMT",
            "Broadcast area format is invalid",
            P,
        ),
        (
            0x10A,
            "ESME_RINVNUMBCAST_AREAS",
            "Number of broadcast areas is invalid",
            P,
        ),
        (
            0x10B,
            "ESME_RINVBCASTCNTTYPE",
            "Broadcast content type is invalid",
            P,
        ),
        (
            0x10C,
            "ESME_RINVBCASTMSGCLASS",
            "Broadcast message class is invalid",
            P,
        ),
        (0x10D, "ESME_RBCASTFAIL", "broadcast_sm operation failed", P),
        (
            0x10E,
            "ESME_RBCASTQUERYFAIL",
            "query_broadcast_sm operation failed",
            P,
        ),
        (
            0x10F,
            "ESME_RBCASTCANCELFAIL",
            "cancel_broadcast_sm operation failed",
            P,
        ),
        (
            0x110,
            "ESME_RINVBCAST_REP",
            "Number of repeated broadcasts is invalid",
            P,
        ),
        (
            0x111,
            "ESME_RINVBCASTSRVGRP",
            "Broadcast service group is invalid",
            P,
        ),
        (
            0x112,
            "ESME_RINVBCASTCHANIND",
            "Broadcast channel indicator is invalid",
            P,
        ),
    ]
};

fn find(status: u32) -> Option<&'static (u32, &'static str, &'static str, StatusClass)> {
    STATUSES.iter().find(|entry| entry.0 == status)
}

/// The SMPP name and meaning of a `command_status`, e.g. 0x0B is
/// "ESME_RINVDSTADR: Invalid destination address". Codes 0x400–0x4FF are
/// reserved for SMSC vendors and others are unknown; both get a generic
/// text.
pub fn describe_status(status: u32) -> &'static str {
    match find(status) {
        Some((_, _, text, _)) => text,
        None if (0x400..=0x4FF).contains(&status) => "SMSC vendor-specific error",
        None => "Unknown SMPP status",
    }
}

/// The SMPP name of a status ("ESME_RTHROTTLED"), or "" when unknown.
pub fn status_name(status: u32) -> &'static str {
    find(status).map_or("", |entry| entry.1)
}

/// Whether a message refused with this status may succeed later.
pub fn classify_status(status: u32) -> StatusClass {
    find(status).map_or(StatusClass::Permanent, |entry| entry.3)
}

/// "ESME_RINVDSTADR (0x0000000B): Invalid destination address": what goes
/// into the outbox's failure reason and the logs.
pub fn status_reason(status: u32) -> String {
    let name = status_name(status);
    let text = describe_status(status);
    if name.is_empty() {
        format!("SMPP status 0x{status:08X}: {text}")
    } else {
        format!("{name} (0x{status:08X}): {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_have_names_and_texts() {
        assert_eq!(describe_status(0x0B), "Invalid destination address");
        assert_eq!(
            describe_status(0x58),
            "Throttling error (ESME has exceeded allowed message limits)"
        );
        assert_eq!(describe_status(0x01), "Message length is invalid");
        assert_eq!(status_name(0x45), "ESME_RSUBMITFAIL");
        assert_eq!(
            status_reason(0x0B),
            "ESME_RINVDSTADR (0x0000000B): Invalid destination address"
        );
    }

    #[test]
    fn unknown_and_vendor_codes_are_described() {
        assert_eq!(describe_status(0x0400), "SMSC vendor-specific error");
        assert_eq!(describe_status(0x9999), "Unknown SMPP status");
        assert_eq!(
            status_reason(0x401),
            "SMPP status 0x00000401: SMSC vendor-specific error"
        );
        assert_eq!(classify_status(0x401), StatusClass::Permanent);
    }

    #[test]
    fn temporary_and_permanent() {
        for status in [0x58, 0x14, 0x08] {
            assert_eq!(
                classify_status(status),
                StatusClass::Temporary,
                "{status:#x}"
            );
        }
        for status in [0x0B, 0x01, 0x45, 0x104, 0x0A] {
            assert_eq!(
                classify_status(status),
                StatusClass::Permanent,
                "{status:#x}"
            );
        }
    }

    #[test]
    fn table_has_no_duplicate_codes_and_is_sorted() {
        for pair in STATUSES.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "{:#x} then {:#x}",
                pair[0].0,
                pair[1].0
            );
        }
    }
}
