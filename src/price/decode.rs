//! Response bodies to UTF-8 text, with the encoding chosen as browsers do (abridged WHATWG
//! "encoding sniffing"): a byte order mark, then the `Content-Type` charset, then the page's own
//! `<meta>` declaration in its first 1024 bytes, then UTF-8.
//!
//! The BOM comes first although the issue listed the header first: WHATWG lets a BOM override the
//! header, and a page that starts with one is in that encoding whatever the server says.
//! A label that names the "replacement" encoding (ISO-2022-KR and friends) is ignored rather than
//! turning the whole page into one U+FFFD: a price watcher prefers a best-effort reading.

use std::borrow::Cow;

use encoding_rs::{Encoding, REPLACEMENT, UTF_16BE, UTF_16LE, UTF_8, WINDOWS_1252, X_USER_DEFINED};

/// How much of the body the `<meta>` prescan reads, as in WHATWG.
const PRESCAN_BYTES: usize = 1024;

/// Decodes a body to UTF-8: a BOM first, then the charset from the Content-Type header value (if it names an encoding encoding_rs knows), then the HTML <meta charset> / <meta http-equiv="Content-Type" content="...charset=..."> prescan over the first 1024 bytes, then UTF-8. Invalid sequences are replaced (lossy), never an error. Returns the text and the encoding used.
pub fn decode_html<'a>(
    body: &'a [u8],
    content_type: Option<&str>,
) -> (Cow<'a, str>, &'static Encoding) {
    if let Some((encoding, bom_len)) = Encoding::for_bom(body) {
        let (text, _) = encoding.decode_without_bom_handling(body.get(bom_len..).unwrap_or(&[]));
        return (text, encoding);
    }
    let encoding = content_type
        .and_then(charset_from_content_type)
        .or_else(|| prescan(body.get(..PRESCAN_BYTES).unwrap_or(body)))
        .unwrap_or(UTF_8);
    let (text, _) = encoding.decode_without_bom_handling(body);
    (text, encoding)
}

/// The encoding a `Content-Type` value's `charset` parameter names, if encoding_rs knows it.
pub fn charset_from_content_type(content_type: &str) -> Option<&'static Encoding> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        usable(Encoding::for_label(value.as_bytes())?)
    })
}

fn usable(encoding: &'static Encoding) -> Option<&'static Encoding> {
    (encoding != REPLACEMENT).then_some(encoding)
}

/// WHATWG "prescan a byte stream to determine its encoding", without the parts that only matter
/// for streaming (the prescan runs on a complete prefix).
fn prescan(bytes: &[u8]) -> Option<&'static Encoding> {
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.starts_with(b"<!--") {
            // The `--` of `<!--` may also end the comment (`<!-->`), as the spec says.
            pos += 2 + find(&rest[2..], b"-->").map_or(rest.len(), |i| i + 3);
        } else if starts_with_ignore_case(rest, b"<meta")
            && rest.get(5).is_some_and(|&b| is_space(b) || b == b'/')
        {
            pos += 5;
            if let Some(found) = meta_charset(bytes, &mut pos) {
                return Some(found);
            }
        } else if rest.len() >= 2
            && rest[0] == b'<'
            && (rest[1].is_ascii_alphabetic()
                || (rest[1] == b'/' && rest.get(2).is_some_and(u8::is_ascii_alphabetic)))
        {
            // Another tag: skip its name and attributes, so a `>` or `<meta` inside a quoted
            // attribute value is not taken for markup.
            pos += 1;
            while pos < bytes.len() && !is_space(bytes[pos]) && bytes[pos] != b'>' {
                pos += 1;
            }
            while attribute(bytes, &mut pos).is_some() {}
        } else if rest.starts_with(b"<!") || rest.starts_with(b"</") || rest.starts_with(b"<?") {
            pos += find(rest, b">").map_or(rest.len(), |i| i + 1);
        } else {
            pos += 1;
        }
    }
    None
}

/// Reads a `<meta>` tag's attributes (from just after `<meta`) and returns the encoding it declares.
fn meta_charset(bytes: &[u8], pos: &mut usize) -> Option<&'static Encoding> {
    let mut got_pragma = false;
    // None: no charset seen; Some(false): from `charset`; Some(true): from `content`.
    let mut need_pragma = None;
    let mut charset = None;
    let mut seen: Vec<Vec<u8>> = Vec::new();
    while let Some((name, value)) = attribute(bytes, pos) {
        if seen.contains(&name) {
            continue;
        }
        match name.as_slice() {
            b"http-equiv" => got_pragma |= value.eq_ignore_ascii_case(b"content-type"),
            b"content" if charset.is_none() => {
                if let Some(label) = charset_in_content(&value) {
                    charset = Encoding::for_label(label);
                    need_pragma = Some(true);
                }
            }
            b"charset" => {
                charset = Encoding::for_label(&value);
                need_pragma = Some(false);
            }
            _ => {}
        }
        seen.push(name);
    }
    match need_pragma {
        None => return None,
        Some(true) if !got_pragma => return None,
        _ => {}
    }
    let charset = charset?;
    // A page cannot declare itself UTF-16 in ASCII bytes; WHATWG reads that as UTF-8.
    let charset = if charset == UTF_16BE || charset == UTF_16LE {
        UTF_8
    } else if charset == X_USER_DEFINED {
        WINDOWS_1252
    } else {
        charset
    };
    usable(charset)
}

/// WHATWG "get an attribute": returns the lowercased name and the raw value, advancing `pos`;
/// `None` at the end of the tag.
fn attribute(bytes: &[u8], pos: &mut usize) -> Option<(Vec<u8>, Vec<u8>)> {
    while *pos < bytes.len() && (is_space(bytes[*pos]) || bytes[*pos] == b'/') {
        *pos += 1;
    }
    let first = *bytes.get(*pos)?;
    if first == b'>' {
        *pos += 1;
        return None;
    }
    let mut name = Vec::new();
    while let Some(&b) = bytes.get(*pos) {
        if (b == b'=' && !name.is_empty()) || is_space(b) || b == b'/' || b == b'>' {
            break;
        }
        name.push(b.to_ascii_lowercase());
        *pos += 1;
    }
    while bytes.get(*pos).is_some_and(|&b| is_space(b)) {
        *pos += 1;
    }
    if bytes.get(*pos) != Some(&b'=') {
        return Some((name, Vec::new()));
    }
    *pos += 1;
    while bytes.get(*pos).is_some_and(|&b| is_space(b)) {
        *pos += 1;
    }
    let mut value = Vec::new();
    match bytes.get(*pos) {
        Some(&q) if q == b'"' || q == b'\'' => {
            *pos += 1;
            while let Some(&b) = bytes.get(*pos) {
                *pos += 1;
                if b == q {
                    return Some((name, value));
                }
                value.push(b.to_ascii_lowercase());
            }
            Some((name, value))
        }
        _ => {
            while let Some(&b) = bytes.get(*pos) {
                if is_space(b) || b == b'>' {
                    break;
                }
                value.push(b.to_ascii_lowercase());
                *pos += 1;
            }
            Some((name, value))
        }
    }
}

/// WHATWG "extract a character encoding from a meta element" on a `content` value such as
/// `text/html; charset=Shift_JIS`.
fn charset_in_content(content: &[u8]) -> Option<&[u8]> {
    let mut from = 0;
    loop {
        let at = from + find_ignore_case(content.get(from..)?, b"charset")?;
        let mut i = at + 7;
        while content.get(i).is_some_and(|&b| is_space(b)) {
            i += 1;
        }
        if content.get(i) != Some(&b'=') {
            from = at + 7;
            continue;
        }
        i += 1;
        while content.get(i).is_some_and(|&b| is_space(b)) {
            i += 1;
        }
        let rest = content.get(i..)?;
        return match rest.first() {
            Some(&q) if q == b'"' || q == b'\'' => {
                let end = rest.iter().skip(1).position(|&b| b == q)?;
                rest.get(1..1 + end)
            }
            Some(_) => {
                let end = rest
                    .iter()
                    .position(|&b| is_space(b) || b == b';')
                    .unwrap_or(rest.len());
                rest.get(..end)
            }
            None => None,
        };
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r')
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

fn starts_with_ignore_case(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack
        .get(..prefix.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::{ISO_8859_2, SHIFT_JIS};

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/pages/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn header_charset_decides() {
        let (text, enc) = decode_html(b"caf\xe9 \x80", Some("text/html; Charset=\"ISO-8859-1\""));
        assert_eq!(enc, WINDOWS_1252, "iso-8859-1 is windows-1252 per WHATWG");
        assert_eq!(text, "café €");
        let (text, enc) = decode_html(b"z\xb3", Some("text/html;charset=iso-8859-2"));
        assert_eq!((text.as_ref(), enc), ("zł", ISO_8859_2));
    }

    #[test]
    fn header_beats_meta_and_bom_beats_header() {
        let page = b"<meta charset=\"shift_jis\"><p>\xe9</p>";
        assert_eq!(
            decode_html(page, Some("text/html; charset=windows-1252")).1,
            WINDOWS_1252
        );
        let (text, enc) = decode_html(
            b"\xef\xbb\xbfcaf\xc3\xa9",
            Some("text/html; charset=windows-1252"),
        );
        assert_eq!((text.as_ref(), enc), ("café", UTF_8));
        let (text, enc) = decode_html(b"\xff\xfeh\x00i\x00", None);
        assert_eq!((text.as_ref(), enc), ("hi", UTF_16LE));
    }

    #[test]
    fn unknown_or_missing_header_charset_falls_through_to_meta() {
        let page = b"<html><head><meta charset='windows-1252'></head>\x80";
        for ct in [
            None,
            Some("text/html"),
            Some("text/html; charset=klingon"),
            Some("text/html; charset=iso-2022-kr"),
        ] {
            assert_eq!(decode_html(page, ct).1, WINDOWS_1252, "{ct:?}");
        }
    }

    #[test]
    fn meta_http_equiv_content_type() {
        let page = b"<!DOCTYPE html><html><head>\n<META HTTP-EQUIV=\"Content-Type\" CONTENT=\"text/html; charset=Shift_JIS\">";
        assert_eq!(decode_html(page, None).1, SHIFT_JIS);
        // `content` without the pragma does not count.
        let page = b"<meta content=\"text/html; charset=Shift_JIS\">";
        assert_eq!(decode_html(page, None).1, UTF_8);
        // Attribute order does not matter.
        let page = b"<meta content='text/html;charset = \"euc-jp\"' http-equiv=content-type>";
        assert_eq!(decode_html(page, None).1, encoding_rs::EUC_JP);
    }

    #[test]
    fn prescan_skips_comments_and_attribute_values() {
        let page = b"<!-- <meta charset=shift_jis> --><meta charset=windows-1252>";
        assert_eq!(decode_html(page, None).1, WINDOWS_1252);
        let page = b"<div title='<meta charset=shift_jis>'></div><meta charset=iso-8859-2>";
        assert_eq!(decode_html(page, None).1, ISO_8859_2);
        let page = b"<!--> <meta charset=iso-8859-2>";
        assert_eq!(
            decode_html(page, None).1,
            ISO_8859_2,
            "<!--> is a whole comment"
        );
    }

    #[test]
    fn meta_after_1024_bytes_is_not_seen() {
        let mut page = b"<html><head><title>".to_vec();
        page.extend(std::iter::repeat_n(b'x', 1100));
        page.extend(b"</title><meta charset=windows-1252>");
        assert_eq!(decode_html(&page, None).1, UTF_8);
    }

    #[test]
    fn utf16_meta_means_utf8() {
        assert_eq!(decode_html(b"<meta charset=utf-16>", None).1, UTF_8);
        assert_eq!(
            decode_html(b"<meta charset=x-user-defined>", None).1,
            WINDOWS_1252
        );
    }

    /// The scan (and the fast path) read a UTF-8 page where the fetcher put it: decoding a
    /// valid UTF-8 body, with or without a BOM, allocates nothing.
    #[test]
    fn a_utf8_page_is_borrowed_not_copied() {
        let page = "<meta charset=utf-8><p>19,90\u{a0}€</p>".as_bytes();
        let mut with_bom = b"\xEF\xBB\xBF".to_vec();
        with_bom.extend_from_slice(page);
        for (body, ct) in [
            (page, None),
            (page, Some("text/html; charset=UTF-8")),
            (&with_bom[..], Some("text/html")),
        ] {
            let (text, encoding) = decode_html(body, ct);
            assert_eq!(encoding, UTF_8);
            assert!(matches!(text, Cow::Borrowed(_)), "{ct:?}");
        }
        // An invalid byte forces a copy, with U+FFFD in its place.
        let (text, _) = decode_html(b"a\xFFb", None);
        assert!(matches!(text, Cow::Owned(_)));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let (text, enc) = decode_html(b"ok \xff\xfe\xfd end", Some("text/html; charset=utf-8"));
        assert_eq!(enc, UTF_8);
        assert_eq!(text, "ok \u{fffd}\u{fffd}\u{fffd} end");
    }

    #[test]
    fn garbage_and_truncated_prescan_input_never_panics() {
        let inputs: [&[u8]; 10] = [
            b"",
            b"<",
            b"<!--",
            b"<meta",
            b"<meta ",
            b"<meta charset",
            b"<meta charset=\"",
            b"<meta http-equiv=content-type content=\"charset=",
            b"<meta content='charset='>",
            b"</",
        ];
        for input in inputs {
            let _ = decode_html(input, None);
        }
        // A simple deterministic generator: no extra dependency for random bytes.
        let mut x: u32 = 0x1234_5678;
        let mut bytes = Vec::with_capacity(4096);
        for _ in 0..200 {
            bytes.clear();
            for _ in 0..2048 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let pick = b"<!-->meta charset=\"'/ \x80\xff";
                bytes.push(pick[(x as usize) % pick.len()]);
            }
            let _ = decode_html(&bytes, None);
        }
    }

    #[test]
    fn fixtures_decode_with_their_declared_charsets() {
        let body = fixture("windows-1252-de-microdata-euro-byte.html");
        let (text, enc) = decode_html(&body, Some("text/html"));
        assert_eq!(enc, WINDOWS_1252, "from <meta http-equiv>");
        assert!(text.contains('€'));
        let body = fixture("windows-1252-fr-header-charset-only.html");
        let (text, enc) = decode_html(&body, Some("text/html; charset=windows-1252"));
        assert_eq!(enc, WINDOWS_1252);
        assert!(!text.contains('\u{fffd}'));
        let body = fixture("jp-shift-jis-microdata.html");
        let (text, enc) = decode_html(&body, Some("text/html"));
        assert_eq!(enc, SHIFT_JIS);
        assert!(!text.contains('\u{fffd}'));
    }
}
