use super::*;

fn key(text: &str) -> BlockKey {
    text.parse()
        .unwrap_or_else(|error| panic!("{text}: {error}"))
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn list(keys: &[&str]) -> Blocklist {
    let mut blocks = Blocklist::default();
    for text in keys {
        assert!(blocks.insert(key(text)), "{text}");
    }
    blocks
}

#[test]
fn keys_parse_canonically_and_round_trip() {
    let cases = [
        ("ip:192.0.2.7", "ip:192.0.2.7"),
        ("IP:2001:DB8::1", "ip:2001:db8::1"),
        ("ip:::ffff:192.0.2.7", "ip:192.0.2.7"),
        ("net:192.0.2.7/24", "net:192.0.2.0/24"),
        ("net:2001:db8::/32", "net:2001:db8::/32"),
        ("  sender:Alice@Example.COM.  ", "sender:alice@example.com"),
        ("sender:<Bob@b.example>", "sender:bob@b.example"),
        (
            "sender:\"odd:local\"@b.example",
            "sender:\"odd:local\"@b.example",
        ),
        ("domain:Example.COM.", "domain:example.com"),
        ("domain:bücher.example", "domain:bücher.example"),
        (
            "fingerprint:0123456789ABCDEF",
            "fingerprint:0123456789abcdef",
        ),
    ];
    for (input, expected) in cases {
        let parsed = key(input);
        assert_eq!(parsed.to_string(), expected, "{input}");
        assert_eq!(key(expected), parsed, "{expected} round trip");
    }
}

#[test]
fn bad_keys_name_the_accepted_forms() {
    let cases = [
        ("", BlockKeyError::UnknownKind),
        ("192.0.2.7", BlockKeyError::UnknownKind),
        ("host:192.0.2.7", BlockKeyError::UnknownKind),
        (":x", BlockKeyError::UnknownKind),
        ("ip:", BlockKeyError::BadIp),
        ("ip:192.0.2.0/24", BlockKeyError::BadIp),
        ("ip: 192.0.2.7", BlockKeyError::BadIp),
        ("ip:300.1.1.1", BlockKeyError::BadIp),
        (
            "net:192.0.2.7",
            BlockKeyError::BadNet(NetError::MissingPrefix),
        ),
        (
            "net:192.0.2.0/33",
            BlockKeyError::BadNet(NetError::BadPrefix { max: 32 }),
        ),
        (
            "net:nonsense/8",
            BlockKeyError::BadNet(NetError::BadAddress),
        ),
        ("sender:", BlockKeyError::BadSender),
        ("sender:<>", BlockKeyError::BadSender),
        ("sender:nobody", BlockKeyError::BadSender),
        ("sender:@b.example", BlockKeyError::BadSender),
        ("sender:a@", BlockKeyError::BadSender),
        ("sender:a@b..example", BlockKeyError::BadSender),
        ("sender:a b@c.example", BlockKeyError::BadSender),
        ("sender:a@b.example\r\nX: y", BlockKeyError::BadSender),
        ("domain:", BlockKeyError::BadDomain),
        ("domain:.", BlockKeyError::BadDomain),
        ("domain:.example", BlockKeyError::BadDomain),
        ("domain:a..example", BlockKeyError::BadDomain),
        ("domain:example.com..", BlockKeyError::BadDomain),
        ("domain:a@b.example", BlockKeyError::BadDomain),
        ("domain:a b.example", BlockKeyError::BadDomain),
        ("domain:a\u{0}.example", BlockKeyError::BadDomain),
        ("fingerprint:", BlockKeyError::BadFingerprint),
        ("fingerprint:0123", BlockKeyError::BadFingerprint),
        (
            "fingerprint:0123456789abcdefg",
            BlockKeyError::BadFingerprint,
        ),
        (
            "fingerprint:+123456789abcdef",
            BlockKeyError::BadFingerprint,
        ),
    ];
    for (input, expected) in cases {
        let error = input.parse::<BlockKey>().expect_err(input);
        assert_eq!(error, expected, "{input:?}");
    }
    let too_long_domain = format!("domain:{}.example", "a".repeat(DOMAIN_BYTES_MAX));
    assert_eq!(
        too_long_domain.parse::<BlockKey>(),
        Err(BlockKeyError::BadDomain)
    );
    let too_long_sender = format!("sender:{}@b.example", "a".repeat(SENDER_BYTES_MAX));
    assert_eq!(
        too_long_sender.parse::<BlockKey>(),
        Err(BlockKeyError::BadSender)
    );
    let unknown = BlockKeyError::UnknownKind.to_string();
    for form in ["ip:", "net:", "sender:", "domain:", "fingerprint:"] {
        assert!(unknown.contains(form), "{unknown}");
    }
    assert!(
        BlockKeyError::BadNet(NetError::MissingPrefix)
            .to_string()
            .contains("192.0.2.0/24")
    );
}

#[test]
fn client_matches_the_address_then_the_most_specific_network() {
    let blocks = list(&[
        "ip:192.0.2.7",
        "net:192.0.2.0/24",
        "net:192.0.0.0/16",
        "net:2001:db8::/32",
    ]);
    assert_eq!(blocks.client(ip("192.0.2.7")), Some(&key("ip:192.0.2.7")));
    assert_eq!(
        blocks.client(ip("::ffff:192.0.2.7")),
        Some(&key("ip:192.0.2.7"))
    );
    assert_eq!(
        blocks.client(ip("192.0.2.8")),
        Some(&key("net:192.0.2.0/24"))
    );
    assert_eq!(
        blocks.client(ip("::ffff:192.0.9.1")),
        Some(&key("net:192.0.0.0/16"))
    );
    assert_eq!(
        blocks.client(ip("2001:db8:5::1")),
        Some(&key("net:2001:db8::/32"))
    );
    assert_eq!(blocks.client(ip("198.51.100.1")), None);
    assert_eq!(blocks.client(ip("2001:db9::1")), None);
    // An IPv4 /0 blocks every IPv4 client and no IPv6 one.
    let everything = list(&["net:0.0.0.0/0"]);
    assert!(everything.client(ip("203.0.113.9")).is_some());
    assert!(everything.client(ip("::ffff:203.0.113.9")).is_some());
    assert!(everything.client(ip("2001:db8::1")).is_none());
}

#[test]
fn keys_built_by_hand_are_canonicalised_on_insert_and_remove() {
    let mut blocks = Blocklist::default();
    assert!(blocks.insert(BlockKey::Ip(ip("::ffff:198.51.100.4"))));
    assert!(!blocks.insert(key("ip:198.51.100.4")), "the same block");
    assert_eq!(
        blocks.client(ip("198.51.100.4")),
        Some(&key("ip:198.51.100.4"))
    );
    assert!(blocks.insert(BlockKey::Net(Net {
        addr: ip("203.0.113.77"),
        prefix: 24,
    })));
    assert_eq!(
        blocks.client(ip("203.0.113.1")),
        Some(&key("net:203.0.113.0/24"))
    );
    assert!(blocks.insert(BlockKey::Sender("Eve@Evil.Example.".into())));
    assert_eq!(
        blocks.sender("eve@evil.example"),
        Some(&key("sender:eve@evil.example"))
    );
    assert!(blocks.remove(&key("net:203.0.113.0/24")));
    assert!(blocks.client(ip("203.0.113.1")).is_none());
    assert!(blocks.net_prefixes.is_empty());
    assert!(!blocks.remove(&BlockKey::Domain("X.example.".into())));
    assert!(blocks.remove(&BlockKey::Sender("EVE@evil.example".into())));
    assert_eq!(blocks.len(), 1);
}

#[test]
fn sender_matches_the_address_its_domain_and_parent_domains() {
    let blocks = list(&[
        "sender:spammer@mail.example.net",
        "domain:example.com",
        "domain:bad.example.org",
    ]);
    assert_eq!(
        blocks.sender("Spammer@Mail.Example.NET"),
        Some(&key("sender:spammer@mail.example.net"))
    );
    assert_eq!(blocks.sender("other@mail.example.net"), None);
    for sender in [
        "a@example.com",
        "a@mail.example.com",
        "<A@Deep.Mail.EXAMPLE.com.>",
        " a@example.com ",
    ] {
        assert_eq!(
            blocks.sender(sender),
            Some(&key("domain:example.com")),
            "{sender}"
        );
    }
    assert_eq!(
        blocks.sender("x@y.bad.example.org"),
        Some(&key("domain:bad.example.org"))
    );
    for sender in [
        "a@notexample.com",
        "a@example.com.evil",
        "a@example.org",
        "",
        "<>",
        "postmaster",
        "@",
        "a@",
        "a@.",
    ] {
        assert_eq!(blocks.sender(sender), None, "{sender:?}");
    }
    // Odd addresses still end in the blocked domain.
    for sender in ["a@..example.com", "a@b@example.com", "@example.com"] {
        assert_eq!(
            blocks.sender(sender),
            Some(&key("domain:example.com")),
            "{sender:?}"
        );
    }
}

#[test]
fn fingerprint_matches_the_nearest_within_the_distance() {
    let blocks = list(&[
        "fingerprint:00000000000000ff",
        "fingerprint:00000000000000f0",
        "ip:192.0.2.1",
        "domain:example.com",
    ]);
    let near_both = Fingerprint(0x00f8);
    assert_eq!(
        blocks.fingerprint(near_both, 3),
        Some(&key("fingerprint:00000000000000f0")),
        "distance 1 beats distance 3"
    );
    assert_eq!(
        blocks.fingerprint(Fingerprint(0xff), 0),
        Some(&key("fingerprint:00000000000000ff"))
    );
    assert_eq!(blocks.fingerprint(Fingerprint(0xff00), 3), None);
    assert_eq!(
        blocks.fingerprint(Fingerprint(0), 64),
        Some(&key("fingerprint:00000000000000f0")),
        "ties and wide distances never panic"
    );
    assert_eq!(Blocklist::default().fingerprint(Fingerprint(0), 64), None);
}

#[test]
fn keys_are_listed_in_order_and_counted() {
    let mut blocks = list(&[
        "fingerprint:0000000000000001",
        "domain:b.example",
        "sender:a@b.example",
        "net:192.0.2.0/24",
        "ip:192.0.2.1",
    ]);
    let texts: Vec<String> = blocks.keys().iter().map(ToString::to_string).collect();
    assert_eq!(
        texts,
        [
            "ip:192.0.2.1",
            "net:192.0.2.0/24",
            "sender:a@b.example",
            "domain:b.example",
            "fingerprint:0000000000000001"
        ]
    );
    assert_eq!(blocks.len(), 5);
    for key in blocks.keys() {
        assert!(blocks.remove(&key));
        assert!(!blocks.remove(&key));
    }
    assert!(blocks.is_empty());
    assert!(blocks.net_prefixes.is_empty());
}
