//! Unit tests of the grammar pieces; whole-command transcripts live in
//! `tests/transcripts.rs`.

use super::*;
use crate::types::*;

fn body(line: &str) -> CommandBody {
    match parse_command(line.as_bytes()) {
        Ok(command) => command.body,
        Err(error) => panic!("{line:?}: {error}"),
    }
}

fn error(line: &[u8]) -> ParseError {
    match parse_command(line) {
        Ok(command) => panic!("{line:?} parsed as {command:?}"),
        Err(error) => error,
    }
}

fn set(ranges: &[(u32, u32)]) -> Sequence {
    Sequence::Set(
        ranges
            .iter()
            .map(|&(a, b)| SeqRange {
                start: SeqNumber::Value(a),
                end: SeqNumber::Value(b),
            })
            .collect(),
    )
}

#[test]
fn tags_and_names() {
    assert_eq!(
        parse_command(b"A001 noop\r\n"),
        Ok(Command {
            tag: "A001".into(),
            body: CommandBody::Noop
        })
    );
    assert_eq!(body("x CaPaBiLiTy"), CommandBody::Capability);
    assert_eq!(body("x.1] unselect\n"), CommandBody::Unselect);
    let e = error(b"t1 FROB x\r\n");
    assert_eq!(
        (e.tag.as_deref(), e.message.as_str()),
        (Some("t1"), "Unknown command")
    );
    assert_eq!(error(b"\r\n").tag, None);
    assert_eq!(error(b"").tag, None);
    assert_eq!(error(b"+tag NOOP\r\n").tag, None);
    assert_eq!(error(b"tag\r\n").message, "Missing command");
    assert_eq!(error(b"tag \r\n").tag.as_deref(), Some("tag"));
    assert_eq!(error(b"a NOOP extra\r\n").tag.as_deref(), Some("a"));
    assert_eq!(error(b"a  NOOP\r\n").tag.as_deref(), Some("a"));
}

#[test]
fn strings() {
    let CommandBody::Login { username, password } = body(r#"a LOGIN "fr\"ed" "a\\b c""#) else {
        panic!()
    };
    assert_eq!(username, "fr\"ed");
    assert_eq!(password.expose(), "a\\b c");
    let CommandBody::Login { username, .. } = body("a LOGIN {4+}\r\nfr d {1}\r\nx\r\n") else {
        panic!()
    };
    assert_eq!(username, "fr d");
    assert!(error(br#"a LOGIN "a\x" b"#).message.contains("escape"));
    assert!(error(b"a LOGIN \"a\0\" b").message.contains("NUL"));
    assert!(error(b"a LOGIN {3}\r\na\0b x").message.contains("NUL"));
    assert!(error(b"a LOGIN \"abc b").message.contains("Unterminated"));
    assert!(error(b"a LOGIN {9}\r\nabc").message.contains("shorter"));
    assert!(error(b"a LOGIN \xff b").message.contains("Expected"));
    assert!(error(b"a LOGIN \"\xff\" b").message.contains("UTF-8"));
    // `~` is an atom char, so `~{1}` is the atom `~` followed by junk.
    assert!(error(b"a LOGIN ~{1}\r\na b").message.contains("space"));
}

#[test]
fn mailbox_names() {
    assert_eq!(
        body("a SELECT inBox"),
        CommandBody::Select {
            mailbox: "INBOX".into(),
            params: SelectParams::default()
        }
    );
    assert_eq!(
        body("a DELETE \"inbox.sub\""),
        CommandBody::Delete {
            mailbox: "inbox.sub".into()
        }
    );
    assert_eq!(
        body("a RENAME a]b \"c d\""),
        CommandBody::Rename {
            from: "a]b".into(),
            to: "c d".into()
        }
    );
    assert!(error(b"a SELECT a*b").message.contains("end of command"));
}

#[test]
fn sequences() {
    let CommandBody::Copy { sequence, .. } = body("a COPY 1:*,3,*:4 x") else {
        panic!()
    };
    assert_eq!(
        sequence,
        Sequence::Set(vec![
            SeqRange {
                start: SeqNumber::Value(1),
                end: SeqNumber::Star
            },
            SeqRange {
                start: SeqNumber::Value(3),
                end: SeqNumber::Value(3)
            },
            SeqRange {
                start: SeqNumber::Star,
                end: SeqNumber::Value(4)
            },
        ])
    );
    assert_eq!(
        body("a UID MOVE $ x"),
        CommandBody::Move {
            uid: true,
            sequence: Sequence::Saved,
            mailbox: "x".into()
        }
    );
    assert_eq!(
        body("a COPY 4294967295 x"),
        CommandBody::Copy {
            uid: false,
            sequence: set(&[(u32::MAX, u32::MAX)]),
            mailbox: "x".into()
        }
    );
    assert!(error(b"a COPY 4294967296 x").message.contains("range"));
    assert!(error(b"a COPY 0 x").message.contains("Zero"));
    assert!(error(b"a COPY 1, x").message.contains("number"));
    assert!(error(b"a COPY $,1 x").message.contains("space"));
    assert!(
        error(b"a COPY 99999999999999999999999999 x")
            .message
            .contains("range")
    );
}

#[test]
fn store_forms() {
    assert_eq!(
        body("a STORE 2:4 +FLAGS (\\deleted \\SEEN $Junk)"),
        CommandBody::Store {
            uid: false,
            sequence: set(&[(2, 4)]),
            mode: StoreMode::Add,
            silent: false,
            flags: vec!["\\Deleted".into(), "\\Seen".into(), "$Junk".into()],
            unchanged_since: None
        }
    );
    assert_eq!(
        body("a UID STORE 1 (UNCHANGEDSINCE 0) -flags.silent \\Draft \\X"),
        CommandBody::Store {
            uid: true,
            sequence: set(&[(1, 1)]),
            mode: StoreMode::Remove,
            silent: true,
            flags: vec!["\\Draft".into(), "\\X".into()],
            unchanged_since: Some(0)
        }
    );
    let CommandBody::Store { mode, flags, .. } = body("a STORE 1 FLAGS ()") else {
        panic!()
    };
    assert_eq!((mode, flags), (StoreMode::Replace, vec![]));
    assert!(error(b"a STORE 1 +FLAGS (\\*)").message.contains("\\*"));
    assert!(
        error(b"a STORE 1 +FLAGS.LOUD (x)")
            .message
            .contains("FLAGS")
    );
    assert!(
        error(b"a STORE 1 (UNCHANGEDSINCE 9223372036854775808) FLAGS x")
            .message
            .contains("range")
    );
}

#[test]
fn fetch_items() {
    let attrs = |line: &str| match body(line) {
        CommandBody::Fetch { attrs, .. } => attrs,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        attrs("a FETCH 1 fast"),
        vec![
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822Size
        ]
    );
    assert_eq!(attrs("a FETCH 1 FULL").len(), 5);
    assert_eq!(
        attrs("a FETCH 1 body.peek[1.2.mime]<0.100>"),
        vec![FetchAttr::BodySection {
            peek: true,
            section: Section {
                part: vec![1, 2],
                text: Some(SectionText::Mime)
            },
            partial: Some(Partial {
                origin: 0,
                count: 100
            })
        }]
    );
    assert_eq!(
        attrs("a FETCH 1 (BODY[HEADER.FIELDS.NOT (From \"X-A\")] BINARY.SIZE[] BINARY[3]<5.6>)"),
        vec![
            FetchAttr::BodySection {
                peek: false,
                section: Section {
                    part: vec![],
                    text: Some(SectionText::HeaderFieldsNot(vec![
                        "From".into(),
                        "X-A".into()
                    ]))
                },
                partial: None
            },
            FetchAttr::BinarySize { part: vec![] },
            FetchAttr::Binary {
                peek: false,
                part: vec![3],
                partial: Some(Partial {
                    origin: 5,
                    count: 6
                })
            },
        ]
    );
    assert_eq!(
        attrs("a FETCH 1 (BODY PREVIEW (LAZY) MODSEQ)"),
        vec![
            FetchAttr::Body,
            FetchAttr::Preview { lazy: true },
            FetchAttr::ModSeq
        ]
    );
    assert_eq!(
        body("a UID FETCH 1 PREVIEW (CHANGEDSINCE 5 VANISHED)"),
        CommandBody::Fetch {
            uid: true,
            sequence: set(&[(1, 1)]),
            attrs: vec![FetchAttr::Preview { lazy: false }],
            modifiers: FetchModifiers {
                changed_since: Some(5),
                vanished: true,
                partial: None,
            }
        }
    );
    assert!(
        error(b"a FETCH 1 (CHANGEDSINCE 5 VANISHED)")
            .message
            .contains("FETCH item")
    );
    assert!(
        error(b"a FETCH 1 FLAGS (CHANGEDSINCE 5 VANISHED)")
            .message
            .contains("VANISHED")
    );
    assert!(error(b"a FETCH 1 BODY[MIME]").message.contains("section"));
    assert!(error(b"a FETCH 1 BODY[0]").message.contains("Zero"));
    assert!(error(b"a FETCH 1 BODY[]<1.0>").message.contains("Zero"));
    assert!(error(b"a FETCH 1 ALLX").message.contains("FETCH item"));
    assert!(error(b"a FETCH 1 (ALL)").message.contains("FETCH item"));
    assert!(error(b"a FETCH 1 ()").message.contains("Empty"));
    assert!(error(b"a FETCH 1 (FLAGS").message.contains("Missing ')'"));
}

#[test]
fn search_keys() {
    let criteria = |line: &str| match body(line) {
        CommandBody::Search { criteria, .. } => criteria,
        other => panic!("{other:?}"),
    };
    assert_eq!(criteria("a SEARCH all"), SearchKey::All);
    assert_eq!(
        criteria("a SEARCH OR (SEEN 1:2) NOT before \"1-Feb-1994\""),
        SearchKey::Or(
            Box::new(SearchKey::And(vec![
                SearchKey::Seen,
                SearchKey::SequenceSet(set(&[(1, 2)]))
            ])),
            Box::new(SearchKey::Not(Box::new(SearchKey::Before(Date {
                year: 1994,
                month: 2,
                day: 1
            }))))
        )
    );
    assert_eq!(
        criteria(
            "a SEARCH header X-Foo \"\" larger 18446744 modseq \"/flags/\\\\draft\" all 620162338 uid $ emailid M6d99ac3275bb4e"
        ),
        SearchKey::And(vec![
            SearchKey::Header("X-Foo".into(), String::new()),
            SearchKey::Larger(18_446_744),
            SearchKey::ModSeq(620_162_338),
            SearchKey::Uid(Sequence::Saved),
            SearchKey::EmailId("M6d99ac3275bb4e".into()),
        ])
    );
    assert_eq!(
        criteria("a SEARCH KEYWORD $Junk SAVEDATESUPPORTED OLDER 3600 ((DRAFT))"),
        SearchKey::And(vec![
            SearchKey::Keyword("$Junk".into()),
            SearchKey::SaveDateSupported,
            SearchKey::Older(3600),
            SearchKey::Draft,
        ])
    );
    assert_eq!(
        body("a UID SEARCH RETURN () CHARSET UTF-8 TEXT {3}\r\nfoo"),
        CommandBody::Search {
            uid: true,
            charset: Some("UTF-8".into()),
            returns: Some(vec![]),
            criteria: SearchKey::Text("foo".into())
        }
    );
    assert!(error(b"a SEARCH").message.contains("Missing"));
    assert!(error(b"a SEARCH (SEEN").message.contains("')'"));
    assert!(error(b"a SEARCH SEEN)").message.contains("space"));
    assert!(error(b"a SEARCH ()").message.contains("Expected"));
    assert!(error(b"a SEARCH SINCE 30-Feb-2020").message.contains("day"));
    assert!(
        error(b"a SEARCH SINCE 1-Foo-2020")
            .message
            .contains("month")
    );
    assert!(error(b"a SEARCH OLDER 0").message.contains("Zero"));
    assert!(error(b"a SEARCH EMAILID a.b").message.contains("object id"));
    assert!(
        error(b"a SEARCH RETURN (PARTIAL 0:5) ALL")
            .message
            .contains("Zero")
    );
    assert!(
        error(b"a SEARCH RETURN (PARTIAL -1:5) ALL")
            .message
            .contains("PARTIAL")
    );
    assert!(
        error(b"a SEARCH RETURN (FOO) ALL")
            .message
            .contains("return option")
    );
    assert!(error(b"a SEARCH FOO").message.contains("search key"));
    let deep = format!("a SEARCH {}ALL{}", "(".repeat(1000), ")".repeat(1000));
    assert!(error(deep.as_bytes()).message.contains("deeply"));
    let deep = format!("a SEARCH {}ALL", "NOT ".repeat(100_000));
    assert!(error(deep.as_bytes()).message.contains("deeply"));
}

#[test]
fn append_forms() {
    assert_eq!(
        body("a APPEND saved (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {3}\r\nabc ~{2}\r\n\0x"),
        CommandBody::Append {
            mailbox: "saved".into(),
            messages: vec![
                AppendMessage {
                    flags: vec!["\\Seen".into()],
                    date: Some(DateTime {
                        date: Date {
                            year: 1994,
                            month: 2,
                            day: 7
                        },
                        hour: 21,
                        minute: 52,
                        second: 25,
                        zone_minutes: -480
                    }),
                    data: b"abc".to_vec(),
                    binary: false,
                    catenate: None
                },
                AppendMessage {
                    flags: vec![],
                    date: None,
                    data: b"\0x".to_vec(),
                    binary: true,
                    catenate: None
                },
            ]
        }
    );
    assert!(error(b"a APPEND x").message.contains("literal"));
    assert!(error(b"a APPEND x \"abc\"").message.contains("date-time"));
    assert!(
        error(b"a APPEND x \"7-Feb-1994 24:00:00 +0000\" {0}\r\n")
            .message
            .contains("date-time")
    );
    assert!(
        error(b"a APPEND x (\\Seen {0}\r\n")
            .message
            .contains("atom")
    );
}

#[test]
fn select_and_create() {
    assert_eq!(
        body(
            "a EXAMINE x (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1,3:4 5,7:9)) CONDSTORE)"
        ),
        CommandBody::Examine {
            mailbox: "x".into(),
            params: SelectParams {
                condstore: true,
                qresync: Some(QresyncParams {
                    uid_validity: 67_890_007,
                    mod_seq: 20_050_715_194_045_000,
                    known_uids: match set(&[(41, 41), (43, 211), (214, 541)]) {
                        Sequence::Set(r) => Some(r),
                        Sequence::Saved => None,
                    },
                    seq_match: match (set(&[(1, 1), (3, 4)]), set(&[(5, 5), (7, 9)])) {
                        (Sequence::Set(a), Sequence::Set(b)) => Some((a, b)),
                        _ => None,
                    },
                })
            }
        }
    );
    assert!(
        error(b"a SELECT x (QRESYNC (1 2 1:*))")
            .message
            .contains("'*'")
    );
    assert!(
        error(b"a SELECT x (QRESYNC (0 2))")
            .message
            .contains("Zero")
    );
    assert!(error(b"a SELECT x (FOO)").message.contains("parameter"));
    assert_eq!(
        body("a CREATE Drafts (USE (\\Drafts \\Sent))"),
        CommandBody::Create {
            mailbox: "Drafts".into(),
            special_use: vec!["\\Drafts".into(), "\\Sent".into()]
        }
    );
}

#[test]
fn misc_commands() {
    assert_eq!(
        body("a AUTHENTICATE plain AGZyZWQAc2VjcmV0"),
        CommandBody::Authenticate {
            mechanism: "PLAIN".into(),
            initial_response: Some(Secret::new("AGZyZWQAc2VjcmV0".into()))
        }
    );
    assert_eq!(
        body("a AUTHENTICATE PLAIN ="),
        CommandBody::Authenticate {
            mechanism: "PLAIN".into(),
            initial_response: Some(Secret::new("=".into()))
        }
    );
    assert!(
        error(b"a AUTHENTICATE PLAIN a.b")
            .message
            .contains("base64")
    );
    assert_eq!(
        body("a ENABLE CONDSTORE utf8=accept"),
        CommandBody::Enable {
            capabilities: vec!["CONDSTORE".into(), "utf8=accept".into()]
        }
    );
    assert!(error(b"a ENABLE").message.contains("Missing"));
    assert_eq!(body("a ID nil"), CommandBody::Id { parameters: None });
    assert_eq!(
        body("a ID ()"),
        CommandBody::Id {
            parameters: Some(vec![])
        }
    );
    assert_eq!(
        body("a ID (\"name\" \"x\" \"os\" NIL)"),
        CommandBody::Id {
            parameters: Some(vec![("name".into(), Some("x".into())), ("os".into(), None)])
        }
    );
    assert!(error(b"a ID (\"name\")").message.contains("Expected space"));
    assert_eq!(
        body("a UID EXPUNGE 3:5"),
        CommandBody::Expunge {
            uids: Some(set(&[(3, 5)]))
        }
    );
    assert!(error(b"a UID FROB 1").message.contains("UID"));
    assert_eq!(
        body("a STATUS blurdybloop (UIDNEXT MESSAGES highestmodseq)"),
        CommandBody::Status {
            mailbox: "blurdybloop".into(),
            items: vec![
                StatusItem::UidNext,
                StatusItem::Messages,
                StatusItem::HighestModSeq
            ]
        }
    );
    assert!(error(b"a STATUS x ()").message.contains("Empty"));
    assert!(error(b"a STATUS x (FOO)").message.contains("STATUS item"));
}

#[test]
fn list_forms() {
    assert_eq!(
        body("a LIST \"\" %/*]"),
        CommandBody::List {
            lsub: false,
            reference: String::new(),
            patterns: vec!["%/*]".into()],
            select: ListSelect::default(),
            returns: ListReturn::default()
        }
    );
    assert_eq!(
        body(
            "a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"a\" b*) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))"
        ),
        CommandBody::List {
            lsub: false,
            reference: String::new(),
            patterns: vec!["a".into(), "b*".into()],
            select: ListSelect {
                subscribed: true,
                recursive_match: true,
                ..ListSelect::default()
            },
            returns: ListReturn {
                children: true,
                status: Some(vec![StatusItem::Messages, StatusItem::Unseen]),
                ..ListReturn::default()
            }
        }
    );
    assert!(
        error(b"a LIST (RECURSIVEMATCH) \"\" *")
            .message
            .contains("RECURSIVEMATCH")
    );
    assert!(
        error(b"a LIST \"\" * RETURN (FOO)")
            .message
            .contains("return option")
    );
    assert!(error(b"a LIST \"\" * FOO").message.contains("RETURN"));
    assert!(error(b"a LIST \"\"").message.contains("Missing"));
}

#[test]
fn sort_commands() {
    assert_eq!(
        body("a UID SORT (REVERSE DATE subject DISPLAYFROM) UTF-8 UNSEEN SINCE 1-Feb-1994"),
        CommandBody::Sort {
            uid: true,
            returns: None,
            criteria: vec![
                SortCriterion {
                    reverse: true,
                    key: SortKey::Date
                },
                SortCriterion {
                    reverse: false,
                    key: SortKey::Subject
                },
                SortCriterion {
                    reverse: false,
                    key: SortKey::DisplayFrom
                },
            ],
            charset: "UTF-8".into(),
            search: SearchKey::And(vec![
                SearchKey::Unseen,
                SearchKey::Since(Date {
                    year: 1994,
                    month: 2,
                    day: 1
                }),
            ]),
        }
    );
    assert!(matches!(
        body("a SORT RETURN (MIN COUNT) (DATE) UTF-8 ALL"),
        CommandBody::Sort { returns: Some(r), .. } if r == vec![SearchReturn::Min, SearchReturn::Count]
    ));
    for bad in [
        &b"a SORT () UTF-8 ALL"[..],
        b"a SORT RETURN (SAVE) (DATE) UTF-8 ALL",
        b"a SORT (REVERSE) UTF-8 ALL",
        b"a SORT (REVERSE REVERSE DATE) UTF-8 ALL",
        b"a SORT (COLOUR) UTF-8 ALL",
        b"a SORT (DATE) UTF-8",
        b"a SORT DATE UTF-8 ALL",
    ] {
        let _ = error(bad);
    }
}

#[test]
fn thread_commands() {
    assert_eq!(
        body("a UID THREAD references UTF-8 SINCE 1-Feb-1994"),
        CommandBody::Thread {
            uid: true,
            algorithm: ThreadAlgorithm::References,
            charset: "UTF-8".into(),
            search: SearchKey::Since(Date {
                year: 1994,
                month: 2,
                day: 1
            }),
        }
    );
    for bad in [
        &b"a THREAD KNITTING UTF-8 ALL"[..],
        b"a THREAD REFERENCES UTF-8",
        b"a THREAD",
    ] {
        let _ = error(bad);
    }
}

#[test]
fn quota_commands() {
    assert_eq!(
        body("a GETQUOTA \"\""),
        CommandBody::GetQuota {
            root: String::new()
        }
    );
    assert_eq!(
        body("a GETQUOTAROOT INBOX"),
        CommandBody::GetQuotaRoot {
            mailbox: "INBOX".into()
        }
    );
    assert_eq!(
        body("a SETQUOTA \"\" (STORAGE 512 MESSAGE 100)"),
        CommandBody::SetQuota {
            root: String::new(),
            limits: vec![("STORAGE".into(), 512), ("MESSAGE".into(), 100)],
        }
    );
    let _ = error(b"a SETQUOTA \"\" (STORAGE lots)");
    let _ = error(b"a GETQUOTAROOT");
}

/// RFC 5267: UPDATE, CONTEXT and PARTIAL return options, CANCELUPDATE.
#[test]
fn context_commands() {
    let partial = |first, last, from_end| {
        SearchReturn::Partial(PartialRange {
            first,
            last,
            from_end,
        })
    };
    assert!(matches!(
        body("a UID SEARCH RETURN (UPDATE COUNT) FLAGGED"),
        CommandBody::Search { uid: true, returns: Some(r), .. }
            if r == vec![SearchReturn::Update, SearchReturn::Count]
    ));
    assert!(matches!(
        body("a SEARCH RETURN (CONTEXT PARTIAL 100:1) ALL"),
        CommandBody::Search { returns: Some(r), .. }
            if r == vec![SearchReturn::Context, partial(1, 100, false)]
    ));
    assert!(matches!(
        body("a SEARCH RETURN (PARTIAL -1:-10) ALL"),
        CommandBody::Search { returns: Some(r), .. } if r == vec![partial(1, 10, true)]
    ));
    assert!(matches!(
        body("a UID SORT RETURN (UPDATE PARTIAL 1:5) (REVERSE DATE) UTF-8 ALL"),
        CommandBody::Sort { uid: true, returns: Some(r), .. }
            if r == vec![SearchReturn::Update, partial(1, 5, false)]
    ));
    assert_eq!(
        body("a CANCELUPDATE \"B01\" \"x y\""),
        CommandBody::CancelUpdate {
            tags: vec!["B01".into(), "x y".into()]
        }
    );
    assert!(error(b"a CANCELUPDATE").message.contains("Missing"));
    for bad in [
        &b"a SEARCH RETURN (PARTIAL) ALL"[..],
        b"a SEARCH RETURN (PARTIAL 1) ALL",
        b"a SEARCH RETURN (PARTIAL 1:-2) ALL",
        b"a SORT RETURN (SAVE UPDATE) (DATE) UTF-8 ALL",
        b"a CANCELUPDATE B01 (",
    ] {
        let _ = error(bad);
    }
    // Positions from the start and the end, in a result of 5.
    let range = |first, last, from_end| PartialRange {
        first,
        last,
        from_end,
    };
    assert_eq!(range(2, 3, false).indexes(5), 1..3);
    assert_eq!(range(4, 100, false).indexes(5), 3..5);
    assert_eq!(range(6, 9, false).indexes(5), 5..5);
    assert_eq!(range(1, 2, true).indexes(5), 3..5);
    assert_eq!(range(1, 100, true).indexes(5), 0..5);
    assert_eq!(range(7, 9, true).indexes(5), 0..0);
    assert_eq!(range(1, 10, true).to_string(), "-1:-10");
    assert_eq!(range(3, 10, false).to_string(), "3:10");
    // RFC 9394: PARTIAL as a FETCH modifier too.
    assert!(matches!(
        body("a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 9 PARTIAL -1:-30)"),
        CommandBody::Fetch { modifiers: FetchModifiers { changed_since: Some(9), partial: Some(r), .. }, .. }
            if r == range(1, 30, true)
    ));
    let _ = error(b"a UID FETCH 1:* FLAGS (PARTIAL 0:1)");
}

/// RFC 5465 NOTIFY.
#[test]
fn notify_commands() {
    assert_eq!(
        body("a NOTIFY NONE"),
        CommandBody::Notify {
            status: false,
            groups: None
        }
    );
    assert_eq!(
        body(
            "a NOTIFY SET STATUS (SELECTED-DELAYED (MessageNew (UID FLAGS) MessageExpunge)) (MAILBOXES inbox (Foo))"
        ),
        CommandBody::Notify {
            status: true,
            groups: Some(vec![
                NotifyGroup {
                    filter: NotifyFilter::SelectedDelayed,
                    events: vec![
                        NotifyEvent::MessageNew(vec![FetchAttr::Uid, FetchAttr::Flags]),
                        NotifyEvent::MessageExpunge
                    ],
                },
                NotifyGroup {
                    filter: NotifyFilter::Mailboxes(vec!["INBOX".into()]),
                    events: vec![NotifyEvent::Other("FOO".into())],
                },
            ])
        }
    );
    assert_eq!(
        body("a NOTIFY SET (SUBTREE (a b) NONE)"),
        CommandBody::Notify {
            status: false,
            groups: Some(vec![NotifyGroup {
                filter: NotifyFilter::Subtree(vec!["a".into(), "b".into()]),
                events: vec![],
            }])
        }
    );
    for bad in [
        &b"a NOTIFY"[..],
        b"a NOTIFY SET",
        b"a NOTIFY SET STATUS",
        b"a NOTIFY SET (SELECTED)",
        b"a NOTIFY SET (SELECTED ())",
        b"a NOTIFY SET (NOWHERE (MessageNew))",
        b"a NOTIFY SET (PERSONAL (MessageNew (FOO)))",
        b"a NOTIFY SET (PERSONAL (MessageNew)",
        b"a NOTIFY ALL",
    ] {
        let _ = error(bad);
    }
    let many = vec!["m"; 1001].join(" ");
    assert!(
        error(format!("a NOTIFY SET (MAILBOXES ({many}) NONE)").as_bytes())
            .message
            .contains("Too many")
    );
}

#[test]
fn acl_commands() {
    assert_eq!(
        body("a SETACL \"Other Users/bob/Projects\" alice +lr"),
        CommandBody::SetAcl {
            mailbox: "Other Users/bob/Projects".into(),
            identifier: "alice".into(),
            rights: "+lr".into(),
        }
    );
    assert_eq!(
        body("a SETACL inbox anyone \"\""),
        CommandBody::SetAcl {
            mailbox: "INBOX".into(),
            identifier: "anyone".into(),
            rights: String::new(),
        }
    );
    assert_eq!(
        body("a DELETEACL Work -bob"),
        CommandBody::DeleteAcl {
            mailbox: "Work".into(),
            identifier: "-bob".into(),
        }
    );
    assert_eq!(
        body("a GETACL Work"),
        CommandBody::GetAcl {
            mailbox: "Work".into()
        }
    );
    assert_eq!(
        body("a LISTRIGHTS Work bob"),
        CommandBody::ListRights {
            mailbox: "Work".into(),
            identifier: "bob".into(),
        }
    );
    assert_eq!(
        body("a MYRIGHTS Work"),
        CommandBody::MyRights {
            mailbox: "Work".into()
        }
    );
    let _ = error(b"a SETACL Work bob");
    let _ = error(b"a GETACL");
    let _ = error(b"a LISTRIGHTS Work");
}
