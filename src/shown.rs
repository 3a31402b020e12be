//! [`Shown`]: text from outside (a request, a fetched page, a Connector's answer, the
//! configuration) as a log line shows it, with its control characters escaped visibly and
//! its length capped.
//!
//! A conversation id is whatever the channel (or an attacker posing as one) sent: a raw
//! newline in it would start a forged log line, an ESC would drive the operator's
//! terminal, a right-to-left override would make the line read differently from what it
//! says, and a megabyte id would make a megabyte line. Every request-derived field is
//! logged through `Shown`; `ops::telemetry` escapes whole lines with the same rules as a
//! backstop, so a field someone forgets to wrap still cannot inject a line (but is not
//! shortened).
//!
//! A leaf, like `secret`, so that every component can wrap what it logs without depending
//! on the logging setup.

use std::fmt::{self, Write as _};

/// Ids (conversation, user, channel, activity), names, activity types, `serviceUrl`s: real
/// ones are well under this, so only a hostile or broken one is shortened.
pub const ID_CAP: usize = 200;

/// Error chains and product URLs: longer than an id by nature (a chain of four causes, a
/// 2,048-character URL is accepted), still bounded.
pub const TEXT_CAP: usize = 1000;

/// A value as a log line shows it: characters that could break or disguise the line
/// ([`is_unsafe`]) written as escapes (`\n`, `\r`, `\t`, `\0`, `\u{1b}`), and everything
/// after the cap's number of characters replaced by `…(+N chars)`.
///
/// Used as a `%` field: `conversation = %Shown::id(&activity.conversation.id)`. A value
/// with nothing to escape within the cap is written as it is, without a copy.
pub struct Shown<T> {
    value: T,
    cap: usize,
}

impl<T: fmt::Display> Shown<T> {
    /// An id, name, type or `serviceUrl`, cut after [`ID_CAP`] characters.
    pub fn id(value: T) -> Self {
        Self { value, cap: ID_CAP }
    }

    /// An error chain or a product URL, cut after [`TEXT_CAP`] characters.
    pub fn text(value: T) -> Self {
        Self {
            value,
            cap: TEXT_CAP,
        }
    }
}

impl<T: fmt::Display> fmt::Display for Shown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut capped = Capped {
            out: f,
            left: self.cap,
            dropped: 0,
        };
        write!(capped, "{}", self.value)?;
        let dropped = capped.dropped;
        if dropped > 0 {
            write!(f, "…(+{dropped} chars)")?;
        }
        Ok(())
    }
}

/// Streams a value's text through the escaping and the cap, counting in characters (so a
/// multi-byte character is never split) what it drops.
struct Capped<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    /// Characters still allowed.
    left: usize,
    /// Characters dropped after the cap.
    dropped: usize,
}

impl fmt::Write for Capped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.left == 0 {
            self.dropped += s.chars().count();
            return Ok(());
        }
        // The common case: within the cap (bytes bound characters) and nothing to escape,
        // so the text goes out in one piece, as it is.
        if s.len() <= self.left && !may_need_escaping(s.as_bytes()) {
            self.left -= s.chars().count();
            return self.out.write_str(s);
        }
        let mut plain_from = 0;
        for (i, c) in s.char_indices() {
            if self.left == 0 {
                self.dropped += s[i..].chars().count();
                return self.out.write_str(&s[plain_from..i]);
            }
            self.left -= 1;
            if is_unsafe(c) {
                self.out.write_str(&s[plain_from..i])?;
                write_escape(self.out, c, Escapes::Rust)?;
                plain_from = i + c.len_utf8();
            }
        }
        self.out.write_str(&s[plain_from..])
    }
}

/// Whether a character must not reach a log line as itself: the C0 controls (newline, CR,
/// tab, ESC, NUL…), DEL and the C1 controls (NEL among them), the line and paragraph
/// separators U+2028/U+2029 (line breaks to some viewers), and the bidirectional controls
/// (U+061C, U+200E/U+200F, U+202A–U+202E, U+2066–U+2069), which make a line display in an
/// order other than the one it has.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// For each byte, whether it can begin the UTF-8 form of an [`is_unsafe`] character: the
/// C0 controls and DEL themselves, 0xC2 (U+0080–U+00BF, the C1 controls), 0xD8 (U+0600–
/// U+063F, the Arabic letter mark) and 0xE2 (U+2000–U+2FFF, the separators and the other
/// bidi controls). A byte not in it starts nothing that needs escaping.
const SUSPECT: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[0x7f] = true;
    table[0xc2] = true;
    table[0xd8] = true;
    table[0xe2] = true;
    table
};

/// A fast over-approximation of "contains an [`is_unsafe`] character". False means
/// nothing to escape; true means look closer (`€` and `…` start with 0xE2 too).
///
/// Every log line passes here, so eight bytes are tested at once for anything but
/// printable ASCII (a byte under 0x20, DEL, or one with the high bit set), and only such a
/// word is looked up byte by byte: a plain ASCII line costs about a tenth of a byte-wise
/// table scan.
pub(crate) fn may_need_escaping(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let suspect = |chunk: &[u8]| chunk.iter().any(|&b| SUSPECT[usize::from(b)]);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word);
        // The bit-twiddling "has a byte less than n" and "has a zero byte" tests: exact
        // for the word as a whole, which is all this needs.
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let del = (x ^ (ONES * 0x7f)).wrapping_sub(ONES) & !(x ^ (ONES * 0x7f)) & HIGH;
        if (control | del | (x & HIGH)) != 0 && suspect(chunk) {
            return true;
        }
    }
    suspect(chunks.remainder())
}

/// How an unsafe character is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Escapes {
    /// As Rust writes it (`\n`, `\u{1b}`): text logs.
    Rust,
    /// As a JSON string escape (`\n`, `\u001b`), so a JSON line stays valid JSON: every
    /// unsafe character is in the Basic Multilingual Plane, so four digits suffice.
    Json,
}

fn write_escape(out: &mut impl fmt::Write, c: char, escapes: Escapes) -> fmt::Result {
    match (c, escapes) {
        ('\n', _) => out.write_str("\\n"),
        ('\r', _) => out.write_str("\\r"),
        ('\t', _) => out.write_str("\\t"),
        ('\0', Escapes::Rust) => out.write_str("\\0"),
        (c, Escapes::Rust) => write!(out, "\\u{{{:x}}}", u32::from(c)),
        (c, Escapes::Json) => write!(out, "\\u{:04x}", u32::from(c)),
    }
}

/// Writes `s` with every [`is_unsafe`] character escaped, uncapped.
pub(crate) fn escape_into(out: &mut impl fmt::Write, s: &str, escapes: Escapes) -> fmt::Result {
    let mut plain_from = 0;
    for (i, c) in s.char_indices() {
        if is_unsafe(c) {
            out.write_str(&s[plain_from..i])?;
            write_escape(out, c, escapes)?;
            plain_from = i + c.len_utf8();
        }
    }
    out.write_str(&s[plain_from..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> String {
        Shown::id(s).to_string()
    }

    #[test]
    fn control_characters_are_escaped_visibly() {
        for (raw, shown) in [
            ("a\nb", r"a\nb"),
            ("a\rb", r"a\rb"),
            ("a\tb", r"a\tb"),
            ("a\u{1b}[31mb", r"a\u{1b}[31mb"),
            ("a\0b", r"a\0b"),
            ("a\u{7f}b", r"a\u{7f}b"),
            ("a\u{85}b", r"a\u{85}b"),
            ("a\u{2028}b\u{2029}", r"a\u{2028}b\u{2029}"),
            ("\u{202e}gnp.exe", r"\u{202e}gnp.exe"),
            (
                "\u{2066}x\u{2069}\u{200f}\u{61c}",
                r"\u{2066}x\u{2069}\u{200f}\u{61c}",
            ),
        ] {
            assert_eq!(id(raw), shown, "{raw:?}");
            assert!(!id(raw).chars().any(is_unsafe), "{raw:?}");
        }
    }

    #[test]
    fn a_forged_line_stays_on_its_line() {
        let forged = "c1\n2026-12-03T00:00:00Z  INFO pricewatch: forged";
        let shown = id(forged);
        assert!(!shown.contains('\n'));
        assert_eq!(shown, r"c1\n2026-12-03T00:00:00Z  INFO pricewatch: forged");
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        for plain in [
            "19:abc@thread.skype;messageid=1|x",
            "a:1Nq-8Kx_92",
            "Zoë Łukasz 張偉 🙂",
            "prix: 149,99 € … ok",
            "https://smba.trafficmanager.net/amer/",
            r"back\slash stays",
            "",
        ] {
            assert_eq!(id(plain), plain);
        }
    }

    /// Records every piece a formatter hands on, with where its bytes are.
    #[derive(Default)]
    struct Pieces(Vec<(*const u8, String)>);

    impl fmt::Write for Pieces {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.push((s.as_ptr(), s.to_owned()));
            Ok(())
        }
    }

    #[test]
    fn a_plain_id_is_written_as_it_is_without_a_copy() {
        let owned = String::from("a:1Nq-8Kx_92@thread.tacv2");
        let mut pieces = Pieces::default();
        write!(pieces, "{}", Shown::id(&owned)).unwrap();
        assert_eq!(pieces.0.len(), 1, "one piece");
        assert_eq!(pieces.0[0].0, owned.as_ptr(), "the caller's own bytes");
        assert_eq!(pieces.0[0].1, owned);
    }

    #[test]
    fn a_long_id_is_cut_at_the_cap_with_its_length_noted() {
        let long: String = (0..500)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let shown = id(&long);
        assert_eq!(shown, format!("{}…(+300 chars)", &long[..ID_CAP]));
        // Exactly at the cap: nothing to note.
        assert_eq!(id(&long[..ID_CAP]), &long[..ID_CAP]);
        assert_eq!(
            id(&long[..ID_CAP + 1]),
            format!("{}…(+1 chars)", &long[..ID_CAP])
        );
        // Text fields have the larger cap.
        let longer = "x".repeat(TEXT_CAP + 5);
        assert_eq!(
            Shown::text(&longer).to_string(),
            format!("{}…(+5 chars)", &longer[..TEXT_CAP])
        );
    }

    #[test]
    fn the_cut_never_splits_a_character() {
        // 199 ASCII characters, then 3- and 4-byte characters across the cap.
        let long = format!("{}€🙂€{}", "a".repeat(ID_CAP - 1), "b".repeat(10));
        let shown = id(&long);
        assert_eq!(shown, format!("{}€…(+12 chars)", "a".repeat(ID_CAP - 1)));
        let only_wide = "€".repeat(300);
        assert_eq!(
            id(&only_wide),
            format!("{}…(+100 chars)", "€".repeat(ID_CAP))
        );
    }

    #[test]
    fn the_cap_counts_across_pieces_and_escapes_count_once() {
        // A Display that writes in several pieces is capped as one text.
        struct Parts;
        impl fmt::Display for Parts {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for _ in 0..3 {
                    f.write_str(&"x".repeat(100))?;
                }
                Ok(())
            }
        }
        assert_eq!(
            Shown::id(Parts).to_string(),
            format!("{}…(+100 chars)", "x".repeat(200))
        );
        let newlines = "\n".repeat(300);
        assert_eq!(id(&newlines), format!("{}…(+100 chars)", r"\n".repeat(200)));
    }

    #[test]
    fn json_escapes_are_json() {
        let mut out = String::new();
        escape_into(
            &mut out,
            "a\n\u{1b}\u{85}\u{2028}\u{202e}\0z",
            Escapes::Json,
        )
        .unwrap();
        assert_eq!(out, r"a\n\u001b\u0085\u2028\u202e\u0000z");
        let back: String = serde_json::from_str(&format!("\"{out}\"")).unwrap();
        assert_eq!(back, "a\n\u{1b}\u{85}\u{2028}\u{202e}\0z");
    }

    #[test]
    fn the_byte_filter_sees_every_unsafe_character() {
        // The fast path is only sound if every unsafe character starts with a suspect byte.
        for c in (0..=0x10ffff_u32)
            .filter_map(char::from_u32)
            .filter(|&c| is_unsafe(c))
        {
            let mut buf = [0; 4];
            let bytes = c.encode_utf8(&mut buf).as_bytes();
            assert!(may_need_escaping(bytes), "{c:?}");
        }
        // And wherever it stands in a longer text (the word-at-a-time path).
        let plain = "19:abc@thread.skype;messageid=1|x-~ ";
        for c in [
            '\0', '\n', '\u{1f}', '\u{7f}', '\u{85}', '\u{2028}', '\u{202e}', '\u{61c}',
        ] {
            for at in 0..=plain.len() {
                let text = format!("{}{c}{}", &plain[..at], &plain[at..]);
                assert!(may_need_escaping(text.as_bytes()), "{c:?} at {at}");
            }
        }
        assert!(!may_need_escaping(plain.as_bytes()));
        let printable: String = (0x20_u8..0x7f).map(char::from).collect();
        assert!(!may_need_escaping(printable.as_bytes()));
        assert!(!may_need_escaping(
            "Zoë 張偉 🙂, a plain line: all printable".as_bytes()
        ));
    }
}
