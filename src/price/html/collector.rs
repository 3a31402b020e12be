//! The collector: a stack machine that `scan` feeds with start tags, end tags and decoded text,
//! and that builds the `PageFacts`. Separate from `scan` so that what is read from a page does
//! not depend on how `lol_html` delivers it; the microdata and the implied-end-tag rules extend
//! it from their own files.

use super::implied_ends::{kind_of, Kind};
use super::{LolTag, Meta, MetaKind, MicroValue, PageFacts};

/// Deeper elements are not tracked: microdata and `<h1>` inside them are ignored, their text still
/// counts for the enclosing captures. Real pages stay under ~60.
const MAX_DEPTH: usize = 512;
const MAX_METAS: usize = 10_000;
/// Text captures open at once (nested text-valued itemprops); each text node is copied into all of
/// them, so this bounds the per-byte work.
const MAX_CAPTURES: usize = 32;
/// A text value longer than this is cut (at a character boundary); prices and names are far shorter.
const MAX_CAPTURE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextKind {
    /// Ordinary text, entities decoded.
    Data,
    /// `<title>`/`<textarea>` text, entities decoded.
    RcData,
    /// `<script>` content, raw.
    Script,
    /// `<style>`, `<noscript>`, ... content: never part of a text value.
    Raw,
}

pub(super) struct Open {
    serial: u32,
    pub(super) kind: Kind,
    /// This element started an item (or an ignored one): pop `item_stack` when it closes.
    pub(super) item: bool,
    /// How many entries at the top of `captures` this element owns (an element can be an itemprop,
    /// the site rule's match and the `<h1>` at once).
    captures: u8,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    Prop {
        item: usize,
        first: usize,
        count: usize,
    },
    H1,
    /// The n-th site selector's first match.
    Site(usize),
}

struct Capture {
    target: Target,
    text: Text,
}

/// Text being collected with ASCII whitespace runs collapsed to one space, leading whitespace
/// dropped (trailing whitespace is never written). U+00A0 and U+202F are kept: price parsing reads
/// them as group separators.
#[derive(Default)]
struct Text {
    text: String,
    space: bool,
}

impl Text {
    fn push(&mut self, s: &str) {
        for (i, part) in s.split(|c: char| c.is_ascii_whitespace()).enumerate() {
            if i > 0 {
                self.space = true;
            }
            if part.is_empty() {
                continue;
            }
            if self.space && !self.text.is_empty() {
                push_capped(&mut self.text, " ");
            }
            self.space = false;
            push_capped(&mut self.text, part);
        }
    }
}

fn push_capped(out: &mut String, s: &str) {
    let room = MAX_CAPTURE_BYTES.saturating_sub(out.len());
    if s.len() <= room {
        out.push_str(s);
    } else {
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        out.push_str(&s[..end]);
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Builds `PageFacts` from lol_html's events: `start` for each start tag, `end` (by the serial
/// `start` returned) for end tags, and `text` for text.
#[derive(Default)]
pub(super) struct Collector {
    pub(super) facts: PageFacts,
    pub(super) stack: Vec<Open>,
    next_serial: u32,
    /// Innermost open item last; `None` marks an ignored (too deep or over-count) item.
    pub(super) item_stack: Vec<Option<usize>>,
    captures: Vec<Capture>,
    pub(super) prop_count: usize,
    /// The JSON-LD script whose content is being read; script content holds no tags, so the next
    /// tag of any kind ends it and no stack entry is needed (an unclosed script still works).
    open_ld: Option<usize>,
    /// Same for `<title>` (RCDATA).
    title: Option<Text>,
    title_done: bool,
    h1_done: bool,
    /// Site selectors (by index) that matched the element about to start, still unread.
    site_hits: Vec<usize>,
}

impl Collector {
    /// A collector for a scan with `selectors` site selectors: each gets one value slot.
    pub(super) fn with_site_selectors(selectors: usize) -> Collector {
        let mut c = Collector::default();
        c.facts.site_values = vec![None; selectors];
        c
    }

    /// Site selector `n` matches the next element; only its first match is read.
    pub(super) fn site_hit(&mut self, n: usize) {
        if self.facts.site_values.get(n).is_some_and(Option::is_none)
            && !self.site_hits.contains(&n)
        {
            self.site_hits.push(n);
        }
    }

    /// Whether text of this kind would be used now (lets `LolState` skip buffering).
    pub(super) fn wants(&self, kind: TextKind) -> bool {
        match kind {
            TextKind::Data => !self.captures.is_empty(),
            TextKind::RcData => !self.captures.is_empty() || self.title.is_some(),
            TextKind::Script => self.open_ld.is_some(),
            TextKind::Raw => false,
        }
    }

    pub(super) fn text(&mut self, text: &str, kind: TextKind) {
        match kind {
            TextKind::Script => {
                if let Some(i) = self.open_ld {
                    if let Some(s) = self.facts.json_ld.get_mut(i) {
                        s.push_str(text);
                    }
                }
            }
            TextKind::Data | TextKind::RcData => {
                if kind == TextKind::RcData {
                    if let Some(t) = &mut self.title {
                        t.push(text);
                    }
                }
                for c in &mut self.captures {
                    c.text.push(text);
                }
            }
            TextKind::Raw => {}
        }
    }

    fn end_text_runs(&mut self) {
        self.open_ld = None;
        if let Some(t) = self.title.take() {
            self.facts.title = non_empty(t.text);
        }
    }

    /// Handles a start tag. Returns the element's serial when it was pushed on the stack (the
    /// end-tag handler reports it); `None` for void, foreign-self-closing or too-deep
    /// elements.
    pub(super) fn start(
        &mut self,
        tag: &LolTag<'_, '_, '_>,
        can_have_content: bool,
        html_ns: bool,
        site_attrs: &[Option<String>],
    ) -> Option<u32> {
        self.end_text_runs();
        let name = tag.name();
        let kind = if html_ns { kind_of(name) } else { Kind::Other };
        if html_ns {
            self.implied_ends(name, kind);
        }
        let site_hits = std::mem::take(&mut self.site_hits);
        let tracked = can_have_content && self.stack.len() < MAX_DEPTH;
        // Past the depth cap microdata is ignored entirely: without a stack entry its end could
        // not be seen, and properties would leak into the enclosing item.
        let deep = self.stack.len() >= MAX_DEPTH;

        if html_ns && name == "meta" {
            self.meta(tag);
        }
        if html_ns && name == "script" && can_have_content {
            let is_ld = tag.get("type").is_some_and(|t| {
                let media = t.split(';').next().unwrap_or("");
                media
                    .trim_matches(|c: char| c.is_ascii_whitespace())
                    .eq_ignore_ascii_case("application/ld+json")
            });
            if is_ld {
                self.facts.json_ld.push(String::new());
                self.open_ld = Some(self.facts.json_ld.len() - 1);
            }
        }
        if html_ns && name == "title" && can_have_content && !self.title_done {
            self.title_done = true;
            self.title = Some(Text::default());
        }

        let mut open = Open {
            serial: self.next_serial,
            kind,
            item: false,
            captures: 0,
        };

        for n in site_hits {
            // Marks the slot taken at once, so a later match cannot claim it while this
            // element's text is still being captured.
            let value = match site_attrs.get(n).and_then(Option::as_deref) {
                Some(a) => trim_ascii(&tag.get(a).unwrap_or_default()).to_owned(),
                None => {
                    if tracked {
                        self.open_capture(Target::Site(n), &mut open);
                    }
                    String::new()
                }
            };
            if let Some(slot) = self.facts.site_values.get_mut(n) {
                *slot = Some(value);
            }
        }

        if !deep {
            self.microdata(tag, name, tracked, &mut open);
        }

        if tracked && html_ns && name == "h1" && !self.h1_done {
            self.h1_done = true;
            self.open_capture(Target::H1, &mut open);
        }

        if !tracked {
            // Untracked elements have no end: undo what could not be closed.
            if open.item {
                self.item_stack.pop();
            }
            for _ in 0..open.captures {
                self.close_capture();
            }
            return None;
        }
        self.next_serial = self.next_serial.wrapping_add(1);
        self.stack.push(open);
        Some(self.stack.last().map_or(0, |o| o.serial))
    }

    fn meta(&mut self, tag: &LolTag<'_, '_, '_>) {
        let Some(content) = tag.get("content") else {
            return;
        };
        let content = trim_ascii(&content).to_owned();
        let in_item = !self.item_stack.is_empty();
        for (attr, kind) in [
            ("property", MetaKind::Property),
            ("name", MetaKind::Name),
            ("itemprop", MetaKind::Itemprop),
        ] {
            if self.facts.metas.len() >= MAX_METAS {
                return;
            }
            if let Some(key) = tag.get(attr) {
                self.facts.metas.push(Meta {
                    kind,
                    key: trim_ascii(&key).to_ascii_lowercase(),
                    content: content.clone(),
                    in_item,
                });
            }
        }
    }

    pub(super) fn open_capture(&mut self, target: Target, open: &mut Open) {
        if self.captures.len() >= MAX_CAPTURES {
            return;
        }
        self.captures.push(Capture {
            target,
            text: Text::default(),
        });
        open.captures += 1;
    }

    fn close_capture(&mut self) {
        let Some(Capture { target, text }) = self.captures.pop() else {
            return;
        };
        let c = text;
        match target {
            Target::Prop { item, first, count } => {
                if let Some(it) = self.facts.items.get_mut(item) {
                    for (_, v) in it.props.iter_mut().skip(first).take(count) {
                        *v = MicroValue::Text(c.text.clone());
                    }
                }
            }
            Target::H1 => self.facts.h1 = non_empty(c.text),
            Target::Site(n) => {
                if let Some(slot) = self.facts.site_values.get_mut(n) {
                    *slot = Some(c.text);
                }
            }
        }
    }

    /// The end tag of the element `start` returned `serial` for. Elements opened after it and
    /// still open were implicitly closed by it.
    pub(super) fn end(&mut self, serial: u32) {
        self.end_text_runs();
        // Serials grow along the stack, so a binary search finds the element in O(log depth).
        if let Ok(i) = self.stack.binary_search_by_key(&serial, |o| o.serial) {
            if self.stack[i].kind != Kind::Root {
                self.pop_to(i);
            }
        }
    }

    pub(super) fn pop_to(&mut self, index: usize) {
        while self.stack.len() > index {
            let Some(open) = self.stack.pop() else {
                return;
            };
            for _ in 0..open.captures {
                self.close_capture();
            }
            if open.item {
                self.item_stack.pop();
            }
        }
    }

    pub(super) fn finish(mut self) -> PageFacts {
        self.end_text_runs();
        self.pop_to(0);
        self.facts
    }
}

pub(super) fn trim_ascii(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii_whitespace())
}
#[cfg(test)]
mod tests {
    use super::super::microdata::MAX_ITEM_DEPTH;
    use super::super::tests::{facts, prop, text, LIMIT};
    use super::*;
    use crate::price::html::scan;

    #[test]
    fn json_ld_scripts_are_read_raw() {
        let f = facts(concat!(
            "<script type=\"application/ld+json\">{\"name\":\"A &amp; B\"}</script>",
            "<script type=' Application/LD+JSON ; charset=utf-8 '></script>",
            "<script type=\"application/json\">{\"not\":1}</script>",
            "<script>var x = 1;</script>",
            "<script type=application/ld+json><!-- {\"a\":\"</div>\"} --></script>",
        ));
        assert_eq!(
            f.json_ld,
            [
                "{\"name\":\"A &amp; B\"}",
                "",
                "<!-- {\"a\":\"</div>\"} -->"
            ]
        );
    }

    #[test]
    fn unclosed_json_ld_runs_to_the_end() {
        let f = facts("<p>x</p><script type=\"application/ld+json\">{\"price\": 5, <b>");
        assert_eq!(f.json_ld, ["{\"price\": 5, <b>"]);
    }

    #[test]
    fn text_keeps_no_break_spaces() {
        let f =
            facts("<div itemscope><span itemprop=price>1\u{202f}349,99&nbsp;€ \t\n</span></div>");
        assert_eq!(
            text(prop(&f.items[0], "price").unwrap()),
            "1\u{202f}349,99\u{a0}€"
        );
    }

    #[test]
    fn title_and_first_h1() {
        let f = facts(
            "<title>\n  Skillet &ndash; Shop  </title><h1> <span>Cast</span>\n Iron </h1><h1>Second</h1>",
        );
        assert_eq!(f.title.as_deref(), Some("Skillet – Shop"));
        assert_eq!(f.h1.as_deref(), Some("Cast Iron"));
        assert_eq!(facts("<title> </title>").title, None);
    }

    #[test]
    fn void_elements_never_open_a_scope() {
        let f = facts(concat!(
            "<div itemscope itemtype=A><img itemprop=image src=x.jpg><br><input>",
            "<span itemprop=name>n</span></div><span itemprop=name>outside</span>",
            "<div itemscope itemtype=B><meta itemprop=x content=1><span itemprop=name>b</span></div>",
        ));
        assert_eq!(f.items[0].props.len(), 2);
        assert_eq!(f.items[1].props.len(), 2);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let page =
            "<div itemscope itemtype=\"https://schema.org/Thing\"><span itemprop=name>x</span>"
                .repeat(50_000);
        let f = scan(&page, None, LIMIT).unwrap();
        assert!(f.items.len() <= MAX_ITEM_DEPTH, "{}", f.items.len());
        assert!(f.items.iter().all(|i| i.props.len() <= 1));
        let f = scan(&"<div>".repeat(50_000), None, LIMIT).unwrap();
        assert_eq!(f, PageFacts::default());
        let page = format!(
            "{}<div itemscope><span itemprop=name>deep</span></div>",
            "<div>".repeat(50_000)
        );
        let f = scan(&page, None, LIMIT).unwrap();
        assert!(f.items.len() <= 1);
        // Nested text-valued properties: each text node is copied into a bounded number of values.
        let page = format!("<div itemscope>{}", "<span itemprop=a>x".repeat(100_000));
        let f = scan(&page, None, LIMIT).unwrap();
        assert!(f.items[0].props.len() <= MAX_DEPTH);
    }
}
