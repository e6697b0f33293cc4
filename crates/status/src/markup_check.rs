//! A strict well-formedness checker for the crate's own output, used by the
//! tests: XML 1.0 for the Atom feed, and for the pages the subset of HTML
//! they are written in (XML rules plus a doctype, void elements and a raw
//! `<style>`). Stricter than the standards in one way on purpose: a `>` in
//! text or in an attribute value is refused, since the escaper never writes
//! one, so finding one means something was not escaped.

/// A node of the parsed tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Element(Element),
    Text(String),
}

/// An element with its attributes (values decoded) and children.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Node>,
}

impl Element {
    /// The value of an attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The child elements named `name`.
    pub fn children_named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a Element> + use<'a, 'n> {
        self.children.iter().filter_map(move |node| match node {
            Node::Element(element) if element.name == name => Some(element),
            _ => None,
        })
    }

    /// The one child element named `name`; panics if there is not exactly one.
    pub fn only(&self, name: &str) -> &Element {
        let found: Vec<&Element> = self.children_named(name).collect();
        assert_eq!(found.len(), 1, "<{}> should have one <{name}>", self.name);
        found[0]
    }

    /// Every element named `name` below this one, in document order.
    pub fn descendants<'a>(&'a self, name: &str) -> Vec<&'a Element> {
        let mut found = Vec::new();
        self.collect(name, &mut found);
        found
    }

    fn collect<'a>(&'a self, name: &str, found: &mut Vec<&'a Element>) {
        for node in &self.children {
            if let Node::Element(element) = node {
                if element.name == name {
                    found.push(element);
                }
                element.collect(name, found);
            }
        }
    }

    /// The text of the element and its descendants, decoded.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for node in &self.children {
            match node {
                Node::Text(part) => text.push_str(part),
                Node::Element(element) => text.push_str(&element.text()),
            }
        }
        text
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Xml,
    Html,
}

const VOID_ELEMENTS: [&str; 6] = ["meta", "link", "br", "hr", "img", "input"];

/// Parses `input` as one document; the error says what and where.
pub(crate) fn parse(input: &str, mode: Mode) -> Result<Element, String> {
    if let Some(c) = input.chars().find(|&c| {
        (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{fffe}' || c == '\u{ffff}'
    }) {
        return Err(format!("forbidden character {c:?}"));
    }
    let mut parser = Parser {
        input,
        position: 0,
        mode,
    };
    match mode {
        Mode::Xml => {
            if parser.rest().starts_with("<?xml") {
                parser.skip_past("?>")?;
            }
        }
        Mode::Html => {
            if !parser.rest().starts_with("<!DOCTYPE html>") {
                return Err("no <!DOCTYPE html>".into());
            }
            parser.position += "<!DOCTYPE html>".len();
        }
    }
    parser.skip_whitespace();
    let root = parser.element()?;
    parser.skip_whitespace();
    if parser.position != input.len() {
        return Err(parser.error("content after the root element"));
    }
    Ok(root)
}

struct Parser<'a> {
    input: &'a str,
    position: usize,
    mode: Mode,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.input[self.position..]
    }

    fn error(&self, what: &str) -> String {
        let context: String = self.rest().chars().take(60).collect();
        format!("{what} at byte {}: {context:?}", self.position)
    }

    fn skip_whitespace(&mut self) -> bool {
        let before = self.position;
        let rest = self.rest();
        self.position += rest.len() - rest.trim_start().len();
        self.position > before
    }

    fn skip_past(&mut self, end: &str) -> Result<(), String> {
        match self.rest().find(end) {
            Some(index) => {
                self.position += index + end.len();
                Ok(())
            }
            None => Err(self.error(&format!("no {end}"))),
        }
    }

    fn expect(&mut self, text: &str) -> Result<(), String> {
        if self.rest().starts_with(text) {
            self.position += text.len();
            Ok(())
        } else {
            Err(self.error(&format!("expected {text:?}")))
        }
    }

    fn name(&mut self) -> Result<String, String> {
        let rest = self.rest();
        let length = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.')))
            .unwrap_or(rest.len());
        if length == 0 || !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(self.error("expected a name"));
        }
        let name = rest[..length].to_owned();
        self.position += length;
        Ok(name)
    }

    fn element(&mut self) -> Result<Element, String> {
        self.expect("<")?;
        let name = self.name()?;
        let mut attributes: Vec<(String, String)> = Vec::new();
        loop {
            let spaced = self.skip_whitespace();
            if self.rest().starts_with("/>") {
                self.position += 2;
                return Ok(Element {
                    name,
                    attributes,
                    children: Vec::new(),
                });
            }
            if self.rest().starts_with('>') {
                self.position += 1;
                break;
            }
            if !spaced {
                return Err(self.error("expected whitespace before an attribute"));
            }
            let key = self.name()?;
            self.expect("=\"")?;
            let end = self
                .rest()
                .find('"')
                .ok_or_else(|| self.error("unterminated attribute value"))?;
            let raw = &self.rest()[..end];
            if raw.contains(['<', '>']) {
                return Err(self.error("'<' or '>' in an attribute value"));
            }
            let value = decode(raw).map_err(|why| self.error(&why))?;
            self.position += end + 1;
            if attributes.iter().any(|(other, _)| *other == key) {
                return Err(self.error(&format!("attribute {key} twice")));
            }
            attributes.push((key, value));
        }
        let mut element = Element {
            name,
            attributes,
            children: Vec::new(),
        };
        if self.mode == Mode::Html && VOID_ELEMENTS.contains(&element.name.as_str()) {
            return Ok(element);
        }
        if self.mode == Mode::Html && element.name == "style" {
            let end = format!("</{}>", element.name);
            let index = self
                .rest()
                .find(&end)
                .ok_or_else(|| self.error("unclosed style"))?;
            element
                .children
                .push(Node::Text(self.rest()[..index].to_owned()));
            self.position += index + end.len();
            return Ok(element);
        }
        loop {
            if self.rest().starts_with("</") {
                self.position += 2;
                let closing = self.name()?;
                self.skip_whitespace();
                self.expect(">")?;
                if closing != element.name {
                    return Err(self.error(&format!("</{closing}> closes <{}>", element.name)));
                }
                return Ok(element);
            }
            if self.rest().starts_with("<!--") {
                self.skip_past("-->")?;
                continue;
            }
            if self.rest().starts_with('<') {
                let child = self.element()?;
                element.children.push(Node::Element(child));
                continue;
            }
            let end = self
                .rest()
                .find('<')
                .ok_or_else(|| self.error(&format!("unclosed <{}>", element.name)))?;
            let raw = &self.rest()[..end];
            if raw.contains('>') {
                return Err(self.error("'>' in text"));
            }
            let text = decode(raw).map_err(|why| self.error(&why))?;
            self.position += end;
            element.children.push(Node::Text(text));
        }
    }
}

/// Decodes character references; an unknown or malformed one is an error.
fn decode(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(index) = rest.find('&') {
        out.push_str(&rest[..index]);
        rest = &rest[index + 1..];
        let end = rest.find(';').ok_or("'&' without ';'")?;
        let name = &rest[..end];
        let decoded = match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let number = if let Some(hex) = name.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(decimal) = name.strip_prefix('#') {
                    decimal.parse().ok()
                } else {
                    None
                };
                number
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("bad reference &{name};"))?
            }
        };
        out.push(decoded);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_well_formed_documents() {
        let root = parse(
            "<?xml version=\"1.0\"?>\n<a x=\"1 &amp; 2\"><b>t&lt;&#39;&#x41;</b><c/></a>\n",
            Mode::Xml,
        )
        .unwrap();
        assert_eq!(root.attribute("x"), Some("1 & 2"));
        assert_eq!(root.only("b").text(), "t<'A");
        let page = parse(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><style>a>b{}</style></head><body>x<br>y</body></html>",
            Mode::Html,
        )
        .unwrap();
        assert_eq!(page.descendants("br").len(), 1);
    }

    #[test]
    fn refuses_what_is_not() {
        for (bad, mode) in [
            ("<a><b></a></b>", Mode::Xml),
            ("<a>", Mode::Xml),
            ("<a>x</a><b/>", Mode::Xml),
            ("<a>&nbsp;</a>", Mode::Xml),
            ("<a>&amp</a>", Mode::Xml),
            ("<a>1 > 0</a>", Mode::Xml),
            ("<a x=\"<\"/>", Mode::Xml),
            ("<a x=\"1\"y=\"2\"/>", Mode::Xml),
            ("<a x=\"1\" x=\"2\"/>", Mode::Xml),
            ("<a>\u{1}</a>", Mode::Xml),
            ("<br>", Mode::Xml),
            ("<html></html>", Mode::Html),
        ] {
            assert!(parse(bad, mode).is_err(), "{bad:?}");
        }
    }
}
