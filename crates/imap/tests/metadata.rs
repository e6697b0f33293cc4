//! METADATA and METADATA-SERVER (RFC 5464) on the wire: `serve()` over
//! loopback TCP against a store in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

fn small_limits() -> ImapConfig {
    ImapConfig {
        metadata_value_bytes_max: 32,
        metadata_entries_max: 5,
        ..ImapConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn both_capabilities_are_advertised_after_login() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    let caps = client.ok("c", "CAPABILITY").await;
    let words: Vec<&str> = caps.lines().next().unwrap().split(' ').collect();
    assert!(words.contains(&"METADATA"), "{caps}");
    assert!(words.contains(&"METADATA-SERVER"), "{caps}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn set_get_and_remove_mailbox_annotations() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    client
        .ok(
            "s1",
            "SETMETADATA INBOX (/private/comment \"My comment\" /Shared/Comment \"For all\")",
        )
        .await;
    // Names are case-insensitive and answered in lower case; a missing entry is NIL.
    let got = client
        .ok(
            "g1",
            "GETMETADATA INBOX (/shared/comment /PRIVATE/COMMENT /private/none)",
        )
        .await;
    assert!(
        got.starts_with(
            "* METADATA INBOX (/shared/comment \"For all\" /private/comment \"My comment\" /private/none NIL)\r\n"
        ),
        "{got}"
    );
    client
        .ok("s2", "SETMETADATA INBOX (/private/comment NIL)")
        .await;
    let got = client.ok("g2", "GETMETADATA INBOX /private/comment").await;
    assert!(
        got.starts_with("* METADATA INBOX (/private/comment NIL)\r\n"),
        "{got}"
    );
    // A literal value, and a literal8 with NUL comes back as a literal8.
    client
        .send(b"s3 SETMETADATA INBOX (/private/multi {12+}\r\nline1\r\nline2 /private/bin ~{3+}\r\na\0b)\r\n")
        .await;
    let set = client.until_tagged("s3").await;
    assert!(set.starts_with("s3 OK"), "{set}");
    let got = client
        .ok("g3", "GETMETADATA INBOX (/private/multi /private/bin)")
        .await;
    assert!(
        got.starts_with(
            "* METADATA INBOX (/private/multi {12}\r\nline1\r\nline2 /private/bin ~{3}\r\na\0b)\r\n"
        ),
        "{got:?}"
    );
    // A mailbox that does not exist.
    let got = client
        .command("g4", "GETMETADATA Nowhere /private/comment")
        .await;
    assert!(got.starts_with("g4 NO [NONEXISTENT]"), "{got}");
    let got = client
        .command("s4", "SETMETADATA Nowhere (/private/comment \"x\")")
        .await;
    assert!(got.starts_with("s4 NO [NONEXISTENT]"), "{got}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn depth_and_maxsize() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    client
        .ok(
            "s",
            "SETMETADATA INBOX (/private/a \"1\" /private/a/b \"22\" /private/a/b/c \"333\" /private/ab \"4444\")",
        )
        .await;
    let got = client.ok("d0", "GETMETADATA INBOX /private/a").await;
    assert!(
        got.starts_with("* METADATA INBOX (/private/a \"1\")\r\n"),
        "{got}"
    );
    let got = client
        .ok("d1", "GETMETADATA (DEPTH 1) INBOX /private/a")
        .await;
    assert!(
        got.starts_with("* METADATA INBOX (/private/a \"1\" /private/a/b \"22\")\r\n"),
        "{got}"
    );
    let got = client
        .ok("di", "GETMETADATA (DEPTH infinity) INBOX /private")
        .await;
    assert!(
        got.starts_with(
            "* METADATA INBOX (/private NIL /private/a \"1\" /private/a/b \"22\" /private/a/b/c \"333\" /private/ab \"4444\")\r\n"
        ),
        "{got}"
    );
    // MAXSIZE leaves longer values out and names the longest one left out.
    let got = client
        .ok(
            "m",
            "GETMETADATA (MAXSIZE 2 DEPTH infinity) INBOX /private/a",
        )
        .await;
    assert!(
        got.starts_with("* METADATA INBOX (/private/a \"1\" /private/a/b \"22\")\r\n"),
        "{got}"
    );
    assert!(got.contains("m OK [METADATA LONGENTRIES 3]"), "{got}");
    let got = client
        .ok("m0", "GETMETADATA (MAXSIZE 0) INBOX /private/ab")
        .await;
    assert!(got.starts_with("m0 OK [METADATA LONGENTRIES 4]"), "{got}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_names_and_limits_are_refused_and_nothing_is_set() {
    let server = Server::start_with(small_limits()).await;
    let mut client = server.logged_in().await;
    for (i, bad) in [
        "/comment",
        "/private/",
        "/private//a",
        "\"/private/a*\"",
        "/private/%",
        "/privately/a",
        "/private",
    ]
    .iter()
    .enumerate()
    {
        let got = client
            .command(
                &format!("b{i}"),
                &format!("SETMETADATA INBOX ({bad} \"x\")"),
            )
            .await;
        assert!(got.starts_with(&format!("b{i} BAD ")), "{bad}: {got}");
    }
    let got = client.command("g", "GETMETADATA INBOX /nope").await;
    assert!(got.starts_with("g BAD "), "{got}");
    // Over the value bound: MAXSIZE with the bound, and the good entry beside it is not set.
    let got = client
        .command(
            "big",
            &format!(
                "SETMETADATA INBOX (/private/ok \"x\" /private/big \"{}\")",
                "v".repeat(33)
            ),
        )
        .await;
    assert!(got.starts_with("big NO [METADATA MAXSIZE 32]"), "{got}");
    let got = client.ok("g1", "GETMETADATA INBOX /private/ok").await;
    assert!(got.contains("/private/ok NIL"), "{got}");
    // Five entries per user, over every mailbox and the server.
    client
        .ok(
            "f",
            "SETMETADATA INBOX (/private/1 \"1\" /private/2 \"2\" /shared/3 \"3\")",
        )
        .await;
    client.ok("f2", "SETMETADATA \"\" (/private/4 \"4\")").await;
    let got = client
        .command("t", "SETMETADATA Sent (/private/5 \"5\" /private/6 \"6\")")
        .await;
    assert!(got.starts_with("t NO [METADATA TOOMANY]"), "{got}");
    let got = client.ok("g2", "GETMETADATA Sent /private/5").await;
    assert!(got.contains("/private/5 NIL"), "{got}");
    client.ok("t2", "SETMETADATA Sent (/private/5 \"5\")").await;
    // At the bound, replacing and removing still work.
    client
        .ok(
            "t3",
            "SETMETADATA INBOX (/private/1 \"one\" /private/2 NIL)",
        )
        .await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn server_annotations() {
    let server = Server::start().await;
    server
        .store
        .submit_one(Intent::SetMetadata {
            user: None,
            mailbox: None,
            entries: vec![(
                "/shared/admin".into(),
                Some(store::MetadataValue(b"mailto:admin@example.org".to_vec())),
            )],
            limits: store::MetadataLimits {
                value_bytes_max: 1024,
                entries_max: 10,
            },
        })
        .await
        .unwrap();
    let mut client = server.logged_in().await;
    let got = client
        .ok("g", "GETMETADATA \"\" (/shared/admin /shared/comment)")
        .await;
    assert!(
        got.starts_with(
            "* METADATA \"\" (/shared/admin \"mailto:admin@example.org\" /shared/comment NIL)\r\n"
        ),
        "{got}"
    );
    // The shared server entries are the administrator's; private ones the user's.
    let got = client
        .command("s", "SETMETADATA \"\" (/shared/comment \"mine\")")
        .await;
    assert!(got.starts_with("s NO [NOPERM]"), "{got}");
    client
        .ok("p", "SETMETADATA \"\" (/private/vendor/x/theme \"dark\")")
        .await;
    let got = client
        .ok("g2", "GETMETADATA (DEPTH infinity) \"\" /private")
        .await;
    assert!(
        got.starts_with("* METADATA \"\" (/private NIL /private/vendor/x/theme \"dark\")\r\n"),
        "{got}"
    );
    let got = client.ok("g3", "GETMETADATA (DEPTH 1) \"\" /shared").await;
    assert!(
        got.starts_with(
            "* METADATA \"\" (/shared NIL /shared/admin \"mailto:admin@example.org\")\r\n"
        ),
        "{got}"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_keeps_and_delete_drops_annotations() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    client.ok("c", "CREATE Projects").await;
    client
        .ok("s", "SETMETADATA Projects (/private/color \"red\")")
        .await;
    client.ok("r", "RENAME Projects Work").await;
    let got = client.ok("g", "GETMETADATA Work /private/color").await;
    assert!(got.contains("/private/color \"red\""), "{got}");
    client.ok("d", "DELETE Work").await;
    client.ok("c2", "CREATE Work").await;
    let got = client.ok("g2", "GETMETADATA Work /private/color").await;
    assert!(got.contains("/private/color NIL"), "{got}");
    server.stop();
}
