//! The admin commands of replication (`postern replication status|promote|check`),
//! answered by the running server.

use crate::admin::{AdminCommand, AdminContext, AdminOutput, EX_SOFTWARE, EX_TEMPFAIL};

/// Runs a replication command; blocking (the check waits on the link).
pub fn execute(context: &AdminContext, command: AdminCommand) -> AdminOutput {
    let Some(replication) = &context.replication else {
        return AdminOutput::fail(
            EX_TEMPFAIL,
            "error: replication commands need the running server, with [replication] in its config\n",
        );
    };
    match command {
        AdminCommand::ReplicationStatus { json } => {
            let status = replication.status();
            if json {
                return AdminOutput::ok(serde_json::to_string(&status).unwrap_or_default() + "\n");
            }
            let mut out = format!(
                "role: {:?} (epoch {})\nstore id: {}\npeer: {} ({})\nsync: {}\ndurable LSN: {}\nlag: {} records, {} s\nshipped: {} records, {} bytes, {} contents\nreceived: {} records, {} bytes\n",
                status.role,
                status.epoch,
                status.store_id,
                status.peer,
                if status.connected { "connected" } else { "not connected" },
                status.sync,
                status.durable_lsn,
                status.lag_records,
                status.lag_seconds,
                status.shipped_records,
                status.shipped_bytes,
                status.shipped_blobs,
                status.received_records,
                status.received_bytes,
            )
            .to_lowercase();
            if let Some(p) = &status.position {
                out.push_str(&format!(
                    "holds the records of {} up to LSN {}\n",
                    p.source, p.upto
                ));
            }
            if let Some(s) = &status.stepped_down {
                out.push_str(&format!(
                    "STEPPED DOWN: another server is primary at epoch {}; run `postern replication rejoin` with this server stopped\n",
                    s.epoch
                ));
            }
            if let Some(e) = &status.last_error {
                out.push_str(&format!("last error: {e}\n"));
            }
            AdminOutput::ok(out)
        }
        AdminCommand::ReplicationPromote { force, json } => match replication.promote(force) {
            Ok(text) => {
                if json {
                    AdminOutput::ok(
                        serde_json::json!({ "promoted": true, "epoch": replication.epoch(), "message": text.trim() })
                            .to_string()
                            + "\n",
                    )
                } else {
                    AdminOutput::ok(text)
                }
            }
            Err(why) => AdminOutput::fail(EX_TEMPFAIL, format!("error: {why}\n")),
        },
        AdminCommand::ReplicationCheck { user, json, repair } => {
            let replication = std::sync::Arc::clone(replication);
            let run = tokio::runtime::Handle::try_current()
                .map_err(|e| anyhow::anyhow!("no runtime: {e}"))
                .and_then(|handle| handle.block_on(super::check::run(&replication, user, repair)));
            match run {
                Ok(report) => {
                    let exit = if report.remaining.unwrap_or(report.differences) > 0 {
                        1
                    } else {
                        0
                    };
                    let stdout = if json {
                        serde_json::to_string(&report).unwrap_or_default() + "\n"
                    } else {
                        let mut out = format!(
                            "checked from the {}: {} users, {} mailboxes, {} differences\n",
                            report.here, report.users, report.mailboxes, report.differences
                        );
                        for d in &report.details {
                            out.push_str(&format!(
                                "  {} {} {} {}: {}\n",
                                d.user,
                                d.mailbox.as_deref().unwrap_or("-"),
                                d.uid.map_or("-".to_string(), |u| u.to_string()),
                                d.kind,
                                d.detail
                            ));
                        }
                        if let (Some(repaired), Some(remaining)) =
                            (report.repaired, report.remaining)
                        {
                            out.push_str(&format!(
                                "repaired: {repaired}; differences left: {remaining}\n"
                            ));
                            for d in &report.remaining_details {
                                out.push_str(&format!(
                                    "  left: {} {} {}: {}\n",
                                    d.user,
                                    d.mailbox.as_deref().unwrap_or("-"),
                                    d.kind,
                                    d.detail
                                ));
                            }
                        }
                        out
                    };
                    AdminOutput {
                        exit,
                        stdout,
                        stderr: String::new(),
                    }
                }
                Err(e) => AdminOutput::fail(EX_SOFTWARE.min(EX_TEMPFAIL), format!("error: {e}\n")),
            }
        }
        AdminCommand::ReplicationSync { mode } => {
            let sync = match mode.as_str() {
                "async" => crate::config::ReplicationSync::Async,
                "before-ack" => crate::config::ReplicationSync::BeforeAck,
                other => {
                    return AdminOutput::fail(
                        crate::admin::EX_USAGE,
                        format!(
                            "error: {other:?} is not a sync mode: \"async\" or \"before-ack\"\n"
                        ),
                    );
                }
            };
            match replication.set_sync(sync) {
                Ok(()) => AdminOutput::ok(format!(
                    "changes are acknowledged {} from now on (kept across restarts; the config's sync no longer applies)\n",
                    if sync == crate::config::ReplicationSync::Async {
                        "once durable here"
                    } else {
                        "once the replica has them durably too"
                    }
                )),
                Err(e) => AdminOutput::fail(EX_SOFTWARE, format!("error: {e}\n")),
            }
        }
        _ => AdminOutput::fail(EX_SOFTWARE, "error: not a replication command\n"),
    }
}
