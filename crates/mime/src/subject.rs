//! RFC 5256 section 2.1 base subject, for SORT SUBJECT and THREAD.
//!
//! Written by hand: mail-parser's `thread_name` is a multilingual heuristic
//! ("AW:", "SV:", ...) and not the algorithm the RFC fixes, and SORT results
//! must be the same on every server.
//!
//! Every step removes what it has scanned, so the whole is linear in the
//! subject length even for hostile subjects such as a megabyte of `[x]`.

/// The base subject of a decoded subject. Case is kept; comparisons use
/// i;unicode-casemap on the result.
pub(crate) fn base_subject(subject: &str) -> String {
    // (1) Runs of whitespace become one space.
    let mut collapsed = String::with_capacity(subject.len());
    let mut in_space = false;
    for character in subject.chars() {
        if character.is_whitespace() {
            in_space = true;
        } else {
            if in_space && !collapsed.is_empty() {
                collapsed.push(' ');
            }
            in_space = false;
            collapsed.push(character);
        }
    }

    let mut text: &str = &collapsed;
    loop {
        // (2) Trailing "(fwd)" and whitespace.
        loop {
            text = text.trim_end_matches(' ');
            match strip_suffix_ignore_case(text, "(fwd)") {
                Some(rest) => text = rest,
                None => break,
            }
        }
        // (3)-(5) Leading "re:", "fw:", "fwd:" with blobs, and blobs.
        text = strip_leaders(text);
        // (6) "[fwd: ... ]" wraps the subject of a forwarded message.
        match strip_prefix_ignore_case(text, "[fwd:").and_then(|rest| rest.strip_suffix(']')) {
            Some(inner) => text = inner,
            None => return text.to_string(),
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

fn strip_suffix_ignore_case<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let split = text.len().checked_sub(suffix.len())?;
    let tail = text.get(split..)?;
    tail.eq_ignore_ascii_case(suffix)
        .then(|| text.get(..split))
        .flatten()
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP`: the rest after one blob.
fn strip_blob(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('[')?;
    let close = rest.find(['[', ']'])?;
    let rest = rest.strip_prefix(rest.get(..close)?)?.strip_prefix(']')?;
    Some(rest.trim_start_matches(' '))
}

/// `subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"`: the rest.
fn strip_refwd(text: &str) -> Option<&str> {
    let rest = strip_prefix_ignore_case(text, "re")
        .or_else(|| strip_prefix_ignore_case(text, "fwd"))
        .or_else(|| strip_prefix_ignore_case(text, "fw"))?;
    let rest = rest.trim_start_matches(' ');
    let rest = strip_blob(rest).unwrap_or(rest);
    rest.strip_prefix(':')
}

/// Steps 3 to 5: removes `subj-leader`s (`*subj-blob subj-refwd` or WSP),
/// and a leading blob when something follows it, until nothing changes.
fn strip_leaders(mut text: &str) -> &str {
    loop {
        text = text.trim_start_matches(' ');
        // Walk the leading blobs, looking for a subj-refwd after each.
        let mut position = text;
        let mut last_blob = None;
        let mut found_refwd = false;
        loop {
            if let Some(rest) = strip_refwd(position) {
                text = rest;
                found_refwd = true;
                break;
            }
            match strip_blob(position) {
                Some(rest) => {
                    last_blob = Some(position);
                    position = rest;
                }
                None => break,
            }
        }
        if found_refwd {
            continue;
        }
        // No leader: step 4 drops leading blobs one by one while something
        // follows them; rescanning would find no subj-refwd at the same
        // places, so drop them all at once.
        return match last_blob {
            Some(_) if !position.is_empty() => position,
            Some(last) => last,
            None => text,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::base_subject;

    #[test]
    fn rfc_5256_examples() {
        assert_eq!(base_subject("Re: hello"), "hello");
        assert_eq!(base_subject("RE: Re: re: hello"), "hello");
        assert_eq!(base_subject("Fwd: hello (fwd)"), "hello");
        assert_eq!(base_subject("[fwd: Re: hello]"), "hello");
        assert_eq!(base_subject("[list] Re: [list] hello"), "hello");
        assert_eq!(base_subject("Re[2]: hello"), "hello");
        assert_eq!(base_subject("  hello \t world  "), "hello world");
        assert_eq!(base_subject("[only a blob]"), "[only a blob]");
        assert_eq!(base_subject("Re: [a] [b]"), "[b]");
        assert_eq!(base_subject("Reply"), "Reply");
        assert_eq!(base_subject(""), "");
    }

    #[test]
    fn hostile_subject_is_linear() {
        let subject = "[x]".repeat(200_000) + "end";
        assert_eq!(base_subject(&subject), "end");
        let subject = "Re: ".repeat(200_000);
        assert_eq!(base_subject(&subject), "");
    }
}
