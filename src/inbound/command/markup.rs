//! Chat markup removal: turns text as a channel formatted it (Teams `<at>`
//! mentions and HTML, Slack's `<url|label>` and `<@U…>`, markdown links,
//! entities) into plain text the command grammar can split into words.
//!
//! Kept apart from the grammar because it knows channels, not commands. Chat
//! messages are short and their markup comes from a few known channel formats,
//! so a small scanner is enough; it never fails, it only leaves what it does
//! not recognise as text.

use std::borrow::Cow;

use super::{words, MAX_INPUT_BYTES};
use crate::domain::product_url::is_separator;

/// The text with mentions, markup and entities removed, whitespace collapsed:
/// used by the bot for logs and for `Unknown` replies.
///
/// Text over [`MAX_INPUT_BYTES`] is cut there first (at a character boundary);
/// for logs a prefix is more useful than nothing.
pub fn clean_text(text: &str) -> String {
    let mut end = text.len().min(MAX_INPUT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let stripped = strip_markup(&text[..end]);
    let unwrapped = unwrap_markdown_links(&stripped);
    words(&unwrapped).join(" ")
}

/// HTML elements that sit inside a line; other tags become a space so that
/// `<p>watch</p><p>https://…</p>` does not glue the words together.
const INLINE_TAGS: &[&str] = &[
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "del", "dfn", "em", "font", "i", "ins", "kbd",
    "mark", "o:p", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "tt", "u",
    "var",
];

enum Angle {
    /// Not markup: keep the `<`.
    Literal,
    /// Drop everything up to `end`, leaving a space if `space`.
    Skip { end: usize, space: bool },
    /// Replace everything up to `end` by the (entity-encoded) link in `link`.
    Link {
        link: std::ops::Range<usize>,
        end: usize,
    },
}

/// Removes tags and mentions, replaces links by their target and decodes
/// entities, each piece of text exactly once (so `&amp;lt;` stays `&lt;`).
pub(super) fn strip_markup(text: &str) -> String {
    let mut closers = Closers::new(text);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(offset) = text[at..].find('<') {
        let lt = at + offset;
        decode_entities_into(&text[at..lt], &mut out);
        match classify_angle(text, &mut closers, lt) {
            Angle::Literal => {
                out.push('<');
                at = lt + 1;
            }
            Angle::Skip { end, space } => {
                if space {
                    out.push(' ');
                }
                at = end;
            }
            Angle::Link { link, end } => {
                decode_entities_into(&text[link], &mut out);
                at = end;
            }
        }
    }
    decode_entities_into(&text[at..], &mut out);
    out
}

/// Finds the next occurrence of a closing marker at or after a position,
/// remembering the last answer. The scanners only move forward, so this keeps
/// text such as `<at>` repeated thousands of times linear instead of searching
/// the rest of the message again for every opening.
struct Closer {
    needle: &'static str,
    /// Where the last search started and what it found.
    last: Option<(usize, Option<usize>)>,
}

impl Closer {
    fn new(needle: &'static str) -> Self {
        Self { needle, last: None }
    }

    /// Absolute position of the needle in `haystack` at or after `from`.
    fn find(&mut self, haystack: &str, from: usize) -> Option<usize> {
        if let Some((searched_from, found)) = self.last {
            if from >= searched_from {
                match found {
                    None => return None,
                    Some(p) if p >= from => return Some(p),
                    Some(_) => {}
                }
            }
        }
        let found = haystack
            .get(from..)
            .and_then(|rest| rest.find(self.needle))
            .map(|p| from + p);
        self.last = Some((from, found));
        found
    }
}

struct Closers {
    /// ASCII lower-casing keeps byte offsets, so positions found here are
    /// valid in the original text.
    lower: String,
    mention: Closer,
    anchor: Closer,
    comment: Closer,
}

impl Closers {
    fn new(text: &str) -> Self {
        Self {
            lower: text.to_ascii_lowercase(),
            mention: Closer::new("</at>"),
            anchor: Closer::new("</a>"),
            comment: Closer::new("-->"),
        }
    }
}

/// What the `<` at byte `lt` starts. All returned positions are just after
/// ASCII bytes, hence character boundaries.
fn classify_angle(text: &str, closers: &mut Closers, lt: usize) -> Angle {
    let start = lt + 1;
    let rest = &text[start..];
    let Some(&next) = rest.as_bytes().first() else {
        return Angle::Literal;
    };
    if rest.starts_with("!--") {
        return match closers.comment.find(&closers.lower, start + 3) {
            Some(p) => Angle::Skip {
                end: p + "-->".len(),
                space: true,
            },
            None => Angle::Literal,
        };
    }
    // Slack: <@U123> user mention, <!here> broadcast, <#C123|general> channel.
    if matches!(next, b'@' | b'!' | b'#') {
        return match close_before_next_open(rest) {
            Some(gt) if gt > 1 => Angle::Skip {
                end: start + gt + 1,
                space: true,
            },
            _ => Angle::Literal,
        };
    }
    // Slack <url|label> and <url>, markdown autolinks <url>.
    if let Some(gt) = close_before_next_open(rest) {
        let inside = &rest[..gt];
        let target = inside.split_once('|').map_or(inside, |(t, _)| t);
        let lowered = target.to_ascii_lowercase();
        let is_link = !target.is_empty()
            && !target.chars().any(is_separator)
            && (target.contains("://") || lowered.starts_with("mailto:"));
        if is_link {
            return Angle::Link {
                link: start..start + target.len(),
                end: start + gt + 1,
            };
        }
    }
    match parse_tag(rest) {
        Some(tag) => tag_action(closers, start, tag),
        None => Angle::Literal,
    }
}

/// Position of the first `>` in `s` when no `<` comes before it.
fn close_before_next_open(s: &str) -> Option<usize> {
    let p = s.find(['<', '>'])?;
    (s.as_bytes()[p] == b'>').then_some(p)
}

struct Tag<'a> {
    name: String,
    closing: bool,
    attributes: &'a str,
    /// Offset of the attributes within the text after `<`.
    attributes_at: usize,
    /// Offset just after the closing `>`, within the text after `<`.
    end: usize,
}

/// An HTML tag at the start of `rest` (the text after `<`), `None` when the
/// text does not have a tag's shape, e.g. `< 149.99` or `<shop.example>`.
fn parse_tag(rest: &str) -> Option<Tag<'_>> {
    let (closing, body, body_at) = match rest.strip_prefix('/') {
        Some(body) => (true, body, 1),
        None => (false, rest, 0),
    };
    let bytes = body.as_bytes();
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    let name_len = bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-'))
        .count();
    if bytes[name_len - 1] == b':' {
        return None;
    }
    match bytes.get(name_len) {
        Some(b) if b.is_ascii_whitespace() || matches!(b, b'/' | b'>') => {}
        _ => return None,
    }
    // Find the `>` that ends the tag, skipping quoted attribute values.
    let mut quote = None;
    let mut gt = None;
    for (i, &b) in bytes.iter().enumerate().skip(name_len) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'"' | b'\'' => quote = Some(b),
                b'<' => return None,
                b'>' => {
                    gt = Some(i);
                    break;
                }
                _ => {}
            },
        }
    }
    let gt = gt?;
    Some(Tag {
        name: body[..name_len].to_ascii_lowercase(),
        closing,
        attributes: &body[name_len..gt],
        attributes_at: body_at + name_len,
        end: body_at + gt + 1,
    })
}

fn tag_action(closers: &mut Closers, start: usize, tag: Tag<'_>) -> Angle {
    let end = start + tag.end;
    if tag.closing {
        return Angle::Skip {
            end,
            space: !INLINE_TAGS.contains(&tag.name.as_str()),
        };
    }
    match tag.name.as_str() {
        // Teams mention: drop the mentioned name with the tags. An unclosed
        // `<at>` loses only the tag, since the rest may be the command.
        "at" => match closers.mention.find(&closers.lower, end) {
            Some(p) => Angle::Skip {
                end: p + "</at>".len(),
                space: true,
            },
            None => Angle::Skip { end, space: true },
        },
        // The href is what the user linked to; the label may be shortened or
        // be any text, so it is dropped up to `</a>`.
        "a" => match find_href(tag.attributes) {
            Some(href) => {
                let href_at = start + tag.attributes_at;
                let link = href_at + href.start..href_at + href.end;
                let end = match closers.anchor.find(&closers.lower, end) {
                    Some(p) => p + "</a>".len(),
                    None => end,
                };
                Angle::Link { link, end }
            }
            None => Angle::Skip { end, space: false },
        },
        name => Angle::Skip {
            end,
            space: !INLINE_TAGS.contains(&name),
        },
    }
}

/// Byte range of the `href` value within an attribute list.
fn find_href(attributes: &str) -> Option<std::ops::Range<usize>> {
    let bytes = attributes.as_bytes();
    let len = bytes.len();
    let mut i = 0;
    while i < len {
        let before = i;
        while i < len && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        let name_start = i;
        while i < len && !bytes[i].is_ascii_whitespace() && !matches!(bytes[i], b'=' | b'/') {
            i += 1;
        }
        let name = &attributes[name_start..i];
        while i < len && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < len && bytes[i] == b'=' {
            i += 1;
            while i < len && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let value = if i < len && matches!(bytes[i], b'"' | b'\'') {
                let quote = bytes[i];
                i += 1;
                let value_start = i;
                while i < len && bytes[i] != quote {
                    i += 1;
                }
                let value = value_start..i;
                i = (i + 1).min(len);
                value
            } else {
                let value_start = i;
                while i < len && !bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                value_start..i
            };
            if name.eq_ignore_ascii_case("href") {
                return Some(value);
            }
        }
        if i == before {
            // Only reachable on a stray ASCII byte such as `/=`; step over it.
            i += 1;
        }
    }
    None
}

fn decode_entities_into(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match decode_entity(after) {
            Some((c, used)) => {
                out.push(c);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

/// The entity at the start of `s` (the text after `&`) and how many bytes it
/// used, including the `;`. Unknown names are left as text.
fn decode_entity(s: &str) -> Option<(char, usize)> {
    // The longest form accepted, `#x10FFFF`, has 8 bytes before the `;`.
    let semi = s.bytes().take(10).position(|b| b == b';')?;
    let name = &s[..semi];
    let c = if let Some(number) = name.strip_prefix('#') {
        let (digits, radix) = match number.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16),
            None => (number, 10),
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        let code = u32::from_str_radix(digits, radix).ok()?;
        // As browsers do: NUL and invalid code points become U+FFFD.
        char::from_u32(code)
            .filter(|c| *c != '\0')
            .unwrap_or('\u{FFFD}')
    } else {
        match name.to_ascii_lowercase().as_str() {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            "nbsp" => '\u{A0}',
            _ => return None,
        }
    };
    Some((c, semi + 1))
}

/// Replaces markdown links `[label](target)` by their target. Parentheses in
/// the target are kept when balanced (`/wiki/Foo_(bar)`).
pub(super) fn unwrap_markdown_links(text: &str) -> Cow<'_, str> {
    if !text.contains("](") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut label_end = Closer::new("]");
    let mut at = 0;
    while let Some(offset) = text[at..].find('[') {
        let open = at + offset;
        match markdown_link_at(text, open, &mut label_end) {
            Some((target, end)) => {
                out.push_str(&text[at..open]);
                out.push_str(&text[target]);
                at = end;
            }
            None => {
                out.push_str(&text[at..=open]);
                at = open + 1;
            }
        }
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// For a `[` at `open`, the target's byte range and the end of the link.
fn markdown_link_at(
    text: &str,
    open: usize,
    label_end: &mut Closer,
) -> Option<(std::ops::Range<usize>, usize)> {
    let label_start = open + 1;
    let close = label_end.find(text, label_start)?;
    if text[label_start..close].contains('[') {
        return None;
    }
    let target_start = close + 2;
    if text.as_bytes().get(close + 1) != Some(&b'(') {
        return None;
    }
    let mut depth = 0usize;
    for (i, c) in text[target_start..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => {
                let target = target_start..target_start + i;
                return (!target.is_empty()).then_some((target.clone(), target.end + 1));
            }
            ')' => depth -= 1,
            c if is_separator(c) => return None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, watch, U};
    use super::*;

    #[test]
    fn channel_mentions() {
        let w = || watch(U, None);
        check(&[
            ("<at>pricewatch</at> watch https://shop.example/p/123", w()),
            (
                "<at>pricewatch</at>&nbsp;watch https://shop.example/p/123",
                w(),
            ),
            ("<AT>Price Watch</AT> watch https://shop.example/p/123", w()),
            (
                "<at>pricewatch</at> <at>Alice</at> watch https://shop.example/p/123",
                w(),
            ),
            (
                "<at>pricewatch</at><at>Alice</at>watch https://shop.example/p/123",
                w(),
            ),
            ("<@U024BE7LH> watch https://shop.example/p/123", w()),
            ("<!here> watch https://shop.example/p/123", w()),
            // Unclosed mention tag: only the tag goes.
            ("<at>watch https://shop.example/p/123", w()),
        ]);
    }

    #[test]
    fn channel_links() {
        let w = || watch(U, None);
        check(&[
            (
                "watch <https://shop.example/p/123|shop.example/p/123>",
                w(),
            ),
            ("watch <https://shop.example/p/123>", w()),
            ("watch [shop.example/p/123](https://shop.example/p/123)", w()),
            ("watch [the lamp](https://shop.example/p/123)", w()),
            (
                "watch <a href=\"https://shop.example/p/123\">https://shop.example/p/123</a>",
                w(),
            ),
            (
                "<p>watch <a href=\"https://shop.example/p/123\" title=\"a > b\">the <b>lamp</b></a></p>",
                w(),
            ),
            ("<p>watch</p><p>https://shop.example/p/123</p>", w()),
            ("watch<br/>https://shop.example/p/123", w()),
            ("<div><span>watch</span> https://shop.example/p/123<o:p></o:p></div>", w()),
            ("watch <a href='https://shop.example/p/123'>x</a>", w()),
            ("watch <A HREF=https://shop.example/p/123>x</A>", w()),
            ("<!-- note --> watch https://shop.example/p/123", w()),
        ]);
        let amp = || watch("https://shop.example/p?a=1&b=2", None);
        check(&[
            (
                "<p>watch <a href=\"https://shop.example/p?a=1&amp;b=2\">shop.example/p?a=1&amp;b=2</a></p>",
                amp(),
            ),
            ("watch <https://shop.example/p?a=1&amp;b=2|link>", amp()),
            ("watch https://shop.example/p?a=1&#38;b=2", amp()),
            ("watch https://shop.example/p?a=1&#x26;b=2", amp()),
        ]);
        check(&[(
            "watch [x](https://en.wikipedia.example/wiki/Lamp_(light))",
            watch("https://en.wikipedia.example/wiki/Lamp_(light)", None),
        )]);
    }

    #[test]
    fn cleaning() {
        let cases: &[(&str, &str)] = &[
            ("<at>pricewatch</at> watch  <b>this</b>\n", "watch this"),
            ("@pricewatch  hello\u{A0}there", "hello there"),
            ("hello @pricewatch", "hello @pricewatch"),
            (
                "<p>a &amp; b &lt;c&gt; &quot;d&quot; &#39;e&#39; &#x41;&#66;</p>",
                "a & b <c> \"d\" 'e' AB",
            ),
            ("&amp;lt;", "&lt;"),
            ("&lt;p&gt;kept&lt;/p&gt;", "<p>kept</p>"),
            ("&unknown; &amp &#xZZ; &#;", "&unknown; &amp &#xZZ; &#;"),
            ("&#0; &#xD800; &#x110000;", "\u{FFFD} \u{FFFD} \u{FFFD}"),
            ("a < b > c", "a < b > c"),
            ("1 <2 and 3> 2", "1 <2 and 3> 2"),
            ("<unclosed", "<unclosed"),
            ("<at>unclosed mention", "unclosed mention"),
            (
                "x <a href=\"https://e.example/?a=1&amp;b=2\">label</a> y",
                "x https://e.example/?a=1&b=2 y",
            ),
            ("<a name=x>label</a>", "label"),
            (
                "<https://e.example|E> <mailto:a@e.example|a>",
                "https://e.example mailto:a@e.example",
            ),
            ("<#C024BE7LR|general> hi <!channel>", "hi"),
            (
                "see [docs](https://e.example/d) and [x] (y)",
                "see https://e.example/d and [x] (y)",
            ),
            ("[a](b c)", "[a](b c)"),
            ("[[a](https://e.example)", "[https://e.example"),
            ("<script>alert(1)</script>", "alert(1)"),
            ("a\u{200B}b\u{FEFF}c", "a b c"),
        ];
        for (input, expected) in cases {
            assert_eq!(clean_text(input), *expected, "clean_text({input:?})");
        }
        let huge = "é".repeat(MAX_INPUT_BYTES);
        assert_eq!(clean_text(&huge).len(), MAX_INPUT_BYTES);
    }
}
