use super::*;

/// About 100 words of advance-fee spam; `{name}`, `{url}` and `{number}`
/// vary per copy, as they do in a real run.
const TEMPLATE: &str = "Dear {name}, I am writing to inform you that a sum of {number} US dollars \
    has been approved in your favour by the international compensation committee. Our records show \
    that you were a victim of fraud in the last five years, and the board has decided to settle all \
    outstanding claims before the end of this quarter. To receive your payment please confirm your \
    full name, home address and telephone number at {url} within three working days. Failure to \
    respond will result in the funds being returned to the treasury. Kindly treat this matter as \
    strictly confidential. Yours faithfully, Barrister James Okon, Director of Payments.";

fn copy(name: &str, url: &str, number: &str) -> String {
    TEMPLATE
        .replace("{name}", name)
        .replace("{url}", url)
        .replace("{number}", number)
}

/// Texts about different things, each long enough to fingerprint.
const UNRELATED: [&str; 6] = [
    TEMPLATE,
    "Hi team, the quarterly planning meeting moves to Thursday at ten in the large room on the \
     third floor. Please bring your estimates for the storage migration and the list of open \
     incidents so we can decide what to drop from the roadmap before the holidays.",
    "Your order has shipped. The parcel with the blue running shoes and the two pairs of socks left \
     our warehouse this morning and should reach you by Friday. You can follow it from the orders \
     page of your account; reply to this message if anything is missing.",
    "The choir rehearsal this week is cancelled because the church hall is being repainted. We \
     will meet again next Tuesday evening as usual, and the conductor asks everyone to practise \
     the second movement of the Mozart mass at home in the meantime.",
    "Limited time offer: upgrade to premium hosting today and get unlimited bandwidth, free SSL \
     certificates, daily backups and priority support from our award winning engineers. Plans \
     start at a low monthly price with no setup fee and a thirty day money back guarantee.",
    "Grandma says the apple trees gave more fruit than ever this autumn, so she made forty jars of \
     jam and wants to know whether you can take some home after the birthday dinner. Uncle Peter \
     will bring the folding chairs and the big table from his garage.",
];

const NAMES: [&str; 20] = [
    "John", "Mary", "Peter", "Susan", "Alex", "Maria", "Li", "Ahmed", "Olga", "Tom", "Anna",
    "Paul", "Sara", "Kim", "Jose", "Ian", "Eva", "Max", "Zoe", "Ben",
];

fn fingerprint(text: &str) -> Fingerprint {
    Fingerprint::of_text(text).expect("long enough to fingerprint")
}

#[test]
fn copies_differing_in_name_url_and_number_are_within_three_bits() {
    let first = fingerprint(&copy(
        "John",
        "https://claims.example.net/r/8812?u=john",
        "4,500,000",
    ));
    let second = fingerprint(&copy("Maria", "http://bit.example.org/x7Qz", "3200000.00"));
    assert!(
        first.distance(second) <= 3,
        "distance {}",
        first.distance(second)
    );
    // The URL and the number normalise away entirely.
    let same_name = fingerprint(&copy("John", "www.other.example/pay", "17"));
    assert_eq!(first, same_name);
}

#[test]
fn most_pairs_of_personalised_copies_are_within_three_bits() {
    // A property of the design rather than of one lucky pair: over all 190
    // pairs of names, nearly all copies are within the run detector's exact
    // lookup distance (the expected distance is about 2).
    let fingerprints: Vec<Fingerprint> = NAMES
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let url = format!("https://pay{index}.example.com/c/{index}");
            fingerprint(&copy(name, &url, &format!("{}", 1000 + index * 37)))
        })
        .collect();
    let mut pairs = 0;
    let mut close = 0;
    for (index, a) in fingerprints.iter().enumerate() {
        for b in fingerprints.iter().skip(index + 1) {
            pairs += 1;
            assert!(a.distance(*b) <= 8, "{a} {b}");
            if a.distance(*b) <= 3 {
                close += 1;
            }
        }
    }
    assert_eq!(pairs, 190);
    assert!(
        close * 100 >= pairs * 90,
        "{close} of {pairs} within 3 bits"
    );
}

#[test]
fn unrelated_texts_are_more_than_ten_bits_apart() {
    let fingerprints: Vec<Fingerprint> = UNRELATED.iter().map(|text| fingerprint(text)).collect();
    for (index, a) in fingerprints.iter().enumerate() {
        for (other, b) in fingerprints.iter().enumerate().skip(index + 1) {
            assert!(
                a.distance(*b) > 10,
                "texts {index} and {other}: distance {}",
                a.distance(*b)
            );
        }
    }
}

#[test]
fn the_fingerprint_of_a_fixed_text_never_changes() {
    // Fingerprints are stored in blocklists. If this fails, the hash or the
    // normalisation changed, and stored fingerprints no longer match: that
    // is a format change, not a test to update casually.
    let text =
        "The quick brown fox jumps over the lazy dog while 12 cats watch from www.example.com";
    assert_eq!(fingerprint(text).to_hex(), "4b7d35a3667d8b70");
}

#[test]
fn short_or_empty_texts_have_no_fingerprint() {
    for text in [
        "",
        "   \r\n\t ",
        "!!! ??? ... --- *** ### @@@ %%%",
        "one two three four five six seven",
        "\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}",
    ] {
        assert_eq!(Fingerprint::of_text(text), None, "{text:?}");
    }
    assert!(Fingerprint::of_text("one two three four five six seven eight").is_some());
    // Eight copies of one word is eight words, one shingle.
    assert!(Fingerprint::of_text("spam spam spam spam spam spam spam spam").is_some());
}

#[test]
fn normalise_replaces_what_spammers_vary() {
    let cases = [
        ("Hello   World", "hello world"),
        ("Visit https://a.example/x?y=1 now", "visit url now"),
        ("Visit <HTTPS://A.EXAMPLE/X>.", "visit url"),
        ("see www.example.com, or bit.ly/abc!", "see url or url"),
        ("and/or 1.5/2 e.g.", "andor 0 eg"),
        (
            "write to John.Doe@example.com or mailto:x@y.example",
            "write to addr or addr",
        ),
        ("@handle and a@ alone", "handle and a alone"),
        ("Pay $1,000.00 by 31/12/2024", "pay 0 by 0"),
        ("order12345 a1b2", "order0 a0b0"),
        ("don't -- stop!!!", "dont stop"),
        ("fr\u{200b}ee m\u{301}oney", "free money"),
        ("ÉCOLE Straße ΣΟΦΙΑ", "école straße σοφια"),
        ("İSTANBUL", "istanbul"),
        ("\u{0663}\u{0664} apples", "0 apples"),
        ("", ""),
        ("...", ""),
        ("Ⅻ chapters", "0 chapters"),
        ("\u{fffd}\u{fffd} ok \u{0}", "ok"),
    ];
    for (input, expected) in cases {
        assert_eq!(normalise(input), expected, "{input:?}");
        assert_eq!(
            normalise(expected),
            expected,
            "normalising twice: {input:?}"
        );
    }
}

#[test]
fn normalise_looks_at_the_first_64_kib_only() {
    let mut text = "word ".repeat(TEXT_BYTES_MAX / 5);
    while text.len() < TEXT_BYTES_MAX {
        text.push(' ');
    }
    let normalised_head = normalise(&text);
    text.push_str(&"different ".repeat(100_000));
    assert!(
        normalise(&text) == normalised_head,
        "text past 64 KiB was read"
    );
    // A multi-byte character across the cut is not split.
    let mut text = "a".repeat(TEXT_BYTES_MAX - 1);
    text.push('é');
    assert_eq!(normalise(&text).len(), TEXT_BYTES_MAX - 1);
    assert_eq!(
        Fingerprint::of_text(&text.repeat(3)),
        None,
        "one long word is one word"
    );
}

#[test]
fn huge_hostile_text_is_bounded() {
    let text: String = (0..2_000_000u32)
        .map(|i| char::from_u32(i % 0x3000 + 1).unwrap_or('x'))
        .collect();
    let normalised = normalise(&text);
    assert!(normalised.len() <= 3 * TEXT_BYTES_MAX);
    let _ = Fingerprint::of_text(&text);
    let lossy = String::from_utf8_lossy(&[0xff, 0xfe, b'a', 0xc3, b' ', 0x80, b'b']).into_owned();
    assert_eq!(normalise(&lossy), "a b");
}

#[test]
fn hex_round_trips_and_refuses_anything_else() {
    for value in [0, 1, u64::MAX, 0x0123_4567_89ab_cdef] {
        let fingerprint = Fingerprint(value);
        let hex = fingerprint.to_hex();
        assert_eq!(hex.len(), 16);
        assert_eq!(hex, hex.to_lowercase());
        assert_eq!(hex, fingerprint.to_string());
        assert_eq!(Fingerprint::from_hex(&hex), Some(fingerprint));
    }
    assert_eq!(
        Fingerprint::from_hex("0123456789ABCDEF"),
        Some(Fingerprint(0x0123_4567_89ab_cdef))
    );
    for bad in [
        "",
        "0",
        "0123456789abcde",
        "0123456789abcdef0",
        "+123456789abcdef",
        "-123456789abcdef",
        "0123456789abcdeg",
        " 123456789abcdef",
        "0x23456789abcdef",
        "0123456789abcdé",
        "０１２３４５６７８９ａｂｃｄｅｆ",
    ] {
        assert_eq!(Fingerprint::from_hex(bad), None, "{bad:?}");
    }
}

#[test]
fn distance_is_hamming() {
    assert_eq!(Fingerprint(0).distance(Fingerprint(0)), 0);
    assert_eq!(Fingerprint(0).distance(Fingerprint(u64::MAX)), 64);
    assert_eq!(Fingerprint(0b1011).distance(Fingerprint(0b0110)), 3);
}
