//! Lenient JSON for what shops put in `<script type="application/ld+json">` and in
//! product APIs. Pure: no I/O.
//!
//! Written by hand because no JSON crate accepts what real pages contain: HTML comment
//! wrappers, `<!-- -->` and `//` comments between tokens, trailing commas, raw control
//! characters inside strings, and whole scripts entity-encoded (`&quot;`). One pass
//! rewrites the text into strict JSON that `serde_json` then parses with its own
//! recursion limit, so a hostile nesting depth is an error, never a stack overflow.
//!
//! The same pass writes every non-integer number literal as a string (`89.90` becomes
//! `"89.90"`), so prices keep the exact decimal the page wrote and never pass through a
//! float.

use serde_json::Value;

/// Parses one script or API body; `None` when it is not JSON even after repairs.
pub fn parse_lenient(text: &str) -> Option<Value> {
    let trimmed = unwrap_markers(text);
    if trimmed.is_empty() {
        return None;
    }
    if let Some(v) = repair(trimmed).and_then(|s| serde_json::from_str(&s).ok()) {
        return Some(v);
    }
    // A script escaped once more than it should be: decode entities, then try again.
    if trimmed.contains("&quot;") || trimmed.contains("&#34;") || trimmed.contains("&#x22;") {
        let decoded = decode_entities(trimmed);
        return repair(unwrap_markers(&decoded)).and_then(|s| serde_json::from_str(&s).ok());
    }
    None
}

/// Strips the wrappers old templates put around scripts: `<!-- … -->`, `//<![CDATA[ … //]]>`.
fn unwrap_markers(text: &str) -> &str {
    let mut t = text.trim();
    loop {
        let before = t.len();
        for prefix in ["<!--", "//<![CDATA[", "<![CDATA["] {
            if let Some(rest) = t.strip_prefix(prefix) {
                t = rest.trim_start();
            }
        }
        for suffix in ["//-->", "// -->", "-->", "//]]>", "]]>"] {
            if let Some(rest) = t.strip_suffix(suffix) {
                t = rest.trim_end();
            }
        }
        if t.len() == before {
            return t;
        }
    }
}

/// Rewrites near-JSON into strict JSON; `None` when the result is not UTF-8 (it always is
/// for UTF-8 input, since only ASCII is inserted or removed at ASCII positions).
fn repair(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len() + b.len() / 16);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' => {
                out.push(b'"');
                i += 1;
                let mut closed = false;
                while i < b.len() {
                    let c = b[i];
                    match c {
                        b'\\' if i + 1 < b.len() => {
                            out.extend_from_slice(&b[i..i + 2]);
                            i += 2;
                            continue;
                        }
                        b'"' => {
                            closed = true;
                            break;
                        }
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        0..=0x1f => {
                            out.extend_from_slice(format!("\\u{c:04x}").as_bytes());
                        }
                        _ => out.push(c),
                    }
                    i += 1;
                }
                if !closed {
                    // Truncated inside a string: leave it broken rather than guess.
                    return None;
                }
                out.push(b'"');
                i += 1;
            }
            b'<' if b[i..].starts_with(b"<!--") => {
                i = find(b, i + 4, b"-->").map_or(b.len(), |end| end + 3);
            }
            b'/' if b[i..].starts_with(b"//") => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |n| i + n + 1);
            }
            b'/' if b[i..].starts_with(b"/*") => {
                i = find(b, i + 2, b"*/").map_or(b.len(), |end| end + 2);
            }
            b'}' | b']' => {
                while out.last().is_some_and(|c| c.is_ascii_whitespace()) {
                    out.pop();
                }
                if out.last() == Some(&b',') {
                    out.pop();
                }
                out.push(c);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let literal = &b[start..i];
                if literal.iter().any(|c| matches!(c, b'.' | b'e' | b'E')) {
                    out.push(b'"');
                    out.extend_from_slice(literal);
                    out.push(b'"');
                } else {
                    out.extend_from_slice(literal);
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// Decodes the character references a template's escaping produces. Scripts are raw
/// text in HTML, so this runs only on scripts that do not parse as they are.
pub fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .map(|n| n + 1);
        let decoded = end
            .filter(|&e| rest[e..].starts_with(';'))
            .and_then(|e| entity(&rest[1..e]).map(|c| (c, e + 1)));
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code).filter(|&c| c != '\0');
    }
    Some(match name {
        "quot" => '"',
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strict_json_parses_and_decimals_stay_exact() {
        let v = parse_lenient(r#"{"price": 1299.90, "n": 3, "neg": -0.5, "e": 1e3}"#).unwrap();
        assert_eq!(
            v,
            json!({"price": "1299.90", "n": 3, "neg": "-0.5", "e": "1e3"})
        );
    }

    #[test]
    fn repairs_what_templates_break() {
        let cases = [
            (r#"<!-- {"a": 1} -->"#, json!({"a": 1})),
            (
                r#"//<![CDATA[
{"a": 1}
//]]>"#,
                json!({"a": 1}),
            ),
            (
                r#"{"a": [1, 2,], "b": {"c": 1,},}"#,
                json!({"a": [1, 2], "b": {"c": 1}}),
            ),
            (r#"{"a": 1, <!-- old --> "b": 2}"#, json!({"a": 1, "b": 2})),
            (
                r#"{"a": 1, // note
 "b": 2 /* x */}"#,
                json!({"a": 1, "b": 2}),
            ),
            (
                "{\"name\": \"two\nlines\ttab\u{1}\"}",
                json!({"name": "two\nlines\ttab\u{1}"}),
            ),
            (
                "{&quot;name&quot;: &quot;Tom &amp; Jerry&quot;, &quot;price&quot;: 5.00}",
                json!({"name": "Tom & Jerry", "price": "5.00"}),
            ),
            (
                r#"{"url": "https://x.example/a//b", "s": "say \"hi\" // not a comment"}"#,
                json!({"url": "https://x.example/a//b", "s": "say \"hi\" // not a comment"}),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_lenient(text), Some(want), "{text}");
        }
    }

    #[test]
    fn hopeless_input_is_none_not_a_panic() {
        for text in [
            "",
            "   ",
            r#"{"a": "#,
            r#"{"a": 1"#,
            "not json at all",
            "\"unterminated",
            "{\"a\": \"\\",
            "<!--",
            "&quot;",
        ] {
            assert_eq!(parse_lenient(text), None, "{text:?}");
        }
        // Nesting far beyond serde_json's recursion limit is an error, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_lenient(&deep), None);
    }

    #[test]
    fn entities_decode_once() {
        assert_eq!(decode_entities("a &amp;quot; b"), "a &quot; b");
        assert_eq!(
            decode_entities("&#8364;&#x20AC;&euro; &unknown; & ;"),
            "€€€ &unknown; & ;"
        );
        assert_eq!(decode_entities("&#0; &#xD800;"), "&#0; &#xD800;");
    }
}
