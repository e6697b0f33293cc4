use super::*;

fn rule(name: &str, header: Option<&str>, contains: &str, score: f64) -> Rule {
    Rule {
        name: name.to_string(),
        header: header.map(str::to_string),
        contains: contains.to_string(),
        score,
    }
}

fn part(name: &str, score: f64) -> Contribution {
    Contribution {
        name: name.to_string(),
        score,
    }
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

const THRESHOLDS: Thresholds = Thresholds {
    junk: 5.0,
    reject: 15.0,
};

#[test]
fn rules_match_case_insensitively_in_their_header_or_the_body() {
    let rules = [
        rule("subject_viagra", Some("Subject"), "ViAgRa", 4.0),
        rule("from_lottery", Some("from"), "lottery", 3.0),
        rule("body_wire", None, "WIRE TRANSFER", 2.5),
        rule("body_absent", None, "not in there", 9.0),
        rule("has_list_id", Some("List-Id"), "", -1.0),
        rule("unicode", None, "ГРУЗ", 0.5),
    ];
    let message_headers = headers(&[
        ("SUBJECT", "Cheap VIAGRA today"),
        ("From", "Lottery Board <win@lottery.example>"),
        ("List-Id", "<news.example.org>"),
    ]);
    let body = "Please arrange a Wire Transfer of the груз fee.";
    let contributions = apply_rules(&rules, &message_headers, body);
    assert_eq!(
        contributions,
        [
            part("subject_viagra", 4.0),
            part("from_lottery", 3.0),
            part("body_wire", 2.5),
            part("has_list_id", -1.0),
            part("unicode", 0.5),
        ]
    );
}

#[test]
fn a_rule_counts_once_and_only_in_its_own_header() {
    let rules = [
        rule("subject", Some("Subject"), "prize", 1.0),
        rule("missing_header", Some("X-Mailer"), "", 1.0),
    ];
    let message_headers = headers(&[
        ("Subject", "prize"),
        ("Subject", "another prize"),
        ("Subject-Extra", "prize"),
        ("Comments", "prize"),
    ]);
    assert_eq!(
        apply_rules(&rules, &message_headers, "prize prize prize"),
        [part("subject", 1.0)]
    );
    let only_elsewhere = headers(&[("Comments", "prize")]);
    assert!(apply_rules(&rules, &only_elsewhere, "prize").is_empty());
    assert!(apply_rules(&[], &only_elsewhere, "prize").is_empty());
    assert!(apply_rules(&rules, &[], "").is_empty());
}

#[test]
fn the_body_is_searched_up_to_its_bound() {
    let rules = [rule("late", None, "needle", 1.0)];
    let mut body = "é".repeat(BODY_TEXT_BYTES_MAX / 2 - 1);
    body.push_str("x needle");
    assert!(apply_rules(&rules, &[], &body).is_empty());
    let early = format!("needle {body}");
    assert_eq!(apply_rules(&rules, &[], &early).len(), 1);
}

#[test]
fn verdicts_follow_the_thresholds() {
    let cases = [
        (vec![], 0.0, Action::Inbox),
        (vec![part("a", 4.9)], 4.9, Action::Inbox),
        (vec![part("a", 2.5), part("b", 2.5)], 5.0, Action::Junk),
        (vec![part("a", 20.0), part("b", -5.0)], 15.0, Action::Reject),
        (vec![part("a", -3.0)], -3.0, Action::Inbox),
        (
            vec![
                part("nan", f64::NAN),
                part("inf", f64::INFINITY),
                part("a", 6.0),
            ],
            6.0,
            Action::Junk,
        ),
    ];
    for (contributions, score, action) in cases {
        let result = verdict(contributions.clone(), THRESHOLDS);
        assert_eq!(result.score, score, "{contributions:?}");
        assert_eq!(result.action, action, "{contributions:?}");
        assert_eq!(result.contributions.len(), contributions.len());
    }
}

#[test]
fn thresholds_of_zero_or_less_never_apply() {
    let parts = vec![part("run", 1_000.0)];
    for off in [0.0, -1.0, f64::NAN] {
        let junk_only = Thresholds {
            junk: 5.0,
            reject: off,
        };
        assert_eq!(verdict(parts.clone(), junk_only).action, Action::Junk);
        let neither = Thresholds {
            junk: off,
            reject: off,
        };
        assert_eq!(verdict(parts.clone(), neither).action, Action::Inbox);
    }
}

#[test]
fn the_header_value_explains_the_verdict() {
    let result = verdict(vec![part("run", 10.0), part("spf_fail", 2.5)], THRESHOLDS);
    assert_eq!(
        header_value(&result),
        "score=12.5; action=junk; rules=run(10.0) spf_fail(2.5)"
    );
    let clean = verdict(vec![], THRESHOLDS);
    assert_eq!(header_value(&clean), "score=0.0; action=inbox; rules=none");
    let odd = Verdict {
        score: -0.04,
        action: Action::Reject,
        contributions: vec![
            part("dkim pass; x=(1)", -1.25),
            part("", f64::NAN),
            part("ünïcode.rule-1", 0.05),
            part(&"long".repeat(100), 1.0),
        ],
    };
    let value = header_value(&odd);
    assert_eq!(
        value,
        format!(
            "score=0.0; action=reject; rules=dkim_pass__x__1_(-1.2) _(0.0) _n_code.rule-1(0.1) {}(1.0)",
            "long".repeat(16)
        )
    );
    // One field, folded, nothing that could start another.
    let folded = crate::headers::field(crate::headers::SPAM_FIELD, &value);
    assert!(folded.starts_with("X-Postern-Spam: score=0.0;"));
    assert_eq!(
        folded.matches("\r\n").count(),
        folded.matches("\r\n ").count() + 1
    );
}
