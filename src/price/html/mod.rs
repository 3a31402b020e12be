//! One pass over a decoded page that collects what the extractor reads: JSON-LD script texts,
//! microdata items, `<meta>` tags, `<title>`, the first `<h1>` and the value a per-site CSS rule
//! points at.
//!
//! The tokenizer is Cloudflare's `lol_html`, chosen by benchmark (see the price-engine issue): it
//! streams, matches real CSS selectors for site rules and caps its own memory.
//! `lol_html` is not a tree builder, so this module keeps its own stack of open elements and applies
//! the few implied-end-tag rules that matter for microdata on real pages (an unclosed `<li>`, `<p>`,
//! `<dd>`, `<option>` or table cell is closed by its next sibling).
//!
//! Every structure grows at most linearly with the input and several are capped (stack depth, item
//! nesting, counts, captured text), so hostile pages cost bounded memory and time; nothing recurses.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use lol_html::html_content::{Element, TextChunk, TextType};
use lol_html::{ElementContentHandlers, HtmlRewriter, MemorySettings, Selector, Settings};

/// Everything the extractor reads from one page, in document order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PageFacts {
    /// Raw text content of every <script> whose `type` is application/ld+json (ASCII case-insensitive, parameters after ';' ignored, surrounding whitespace ignored). Not entity-decoded (script content is raw text in HTML). Empty scripts included as empty strings.
    pub json_ld: Vec<String>,
    /// Microdata items in the order their itemscope element starts.
    pub items: Vec<MicroItem>,
    /// <meta> tags that have `content` and one of property/name/itemprop.
    /// A tag with several of these attributes gives one entry per attribute (property, name, itemprop).
    pub metas: Vec<Meta>,
    /// Text of <title>, whitespace-collapsed, trimmed, entities decoded; `None` when absent or empty.
    pub title: Option<String>,
    /// Text content of the first <h1>, same normalisation; `None` when absent or empty.
    pub h1: Option<String>,
    /// Value read by the site rule, when a SiteSelector was given and matched: the named attribute's value, or the element's text content (normalised). First match only.
    pub site_rule: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MicroItem {
    /// `itemtype` split on whitespace (full URLs as written, e.g. "https://schema.org/Product").
    pub types: Vec<String>,
    /// Index of the enclosing item in `items`, None for a top-level item.
    pub parent: Option<usize>,
    /// The itemprop names under which this item is a property of its parent (empty for top-level).
    pub prop_names: Vec<String>,
    /// Properties in document order: (name, value); an element with `itemprop="a b"` gives two entries.
    pub props: Vec<(String, MicroValue)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MicroValue {
    Text(String),
    Item(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    /// Which attribute named it.
    pub kind: MetaKind,
    /// The property/name/itemprop value, ASCII-lowercased, trimmed.
    pub key: String,
    /// The `content` attribute, entity-decoded, trimmed.
    pub content: String,
    /// True when the meta sits inside an itemscope element (then it is ALSO reported as a prop of that item).
    pub in_item: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    Property,
    Name,
    Itemprop,
}

/// A compiled per-site rule: a CSS selector plus an optional attribute.
///
/// The selector language is `lol_html`'s: type, class, id and attribute selectors, `*`, the
/// descendant and child combinators, `:nth-child`-like pseudo-classes and `:not`; no sibling
/// combinators.
#[derive(Debug, Clone)]
pub struct SiteSelector {
    selector: Selector,
    /// The selector as written, spliced into the scanner's own selector lists.
    source: String,
    attribute: Option<String>,
}

impl SiteSelector {
    /// Errors say what is wrong with the selector (this is shown to operators by `check-config`).
    pub fn new(selector: &str, attribute: Option<&str>) -> Result<SiteSelector, HtmlError> {
        let compiled = selector
            .parse::<Selector>()
            .map_err(|e| HtmlError::BadSelector {
                selector: selector.to_owned(),
                reason: e.to_string().trim_end_matches('.').to_owned(),
            })?;
        let attribute = match attribute.map(str::trim) {
            None => None,
            Some("") => {
                return Err(HtmlError::BadAttribute {
                    attribute: String::new(),
                    reason: "the attribute name is empty".to_owned(),
                })
            }
            Some(a)
                if a.bytes()
                    .any(|b| b.is_ascii_whitespace() || b"\"'<>/=".contains(&b)) =>
            {
                return Err(HtmlError::BadAttribute {
                    attribute: a.to_owned(),
                    reason:
                        "an attribute name cannot contain whitespace, quotes, `<`, `>`, `/` or `=`"
                            .to_owned(),
                })
            }
            Some(a) => Some(a.to_ascii_lowercase()),
        };
        Ok(SiteSelector {
            selector: compiled,
            source: selector.to_owned(),
            attribute,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    #[error("the page is {len} bytes, over the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error("bad site selector `{selector}`: {reason}")]
    BadSelector { selector: String, reason: String },
    #[error("bad site rule attribute `{attribute}`: {reason}")]
    BadAttribute { attribute: String, reason: String },
    /// The parser's own state (mostly its stack of open elements) outgrew its budget.
    #[error("the page is too deeply nested to scan (parser state over {limit} bytes)")]
    TooComplex { limit: usize },
    /// Only pathological markup gets here: a 5 MiB product page scans in well under 100 ms.
    #[error("the page took longer than {limit:?} to scan")]
    TooSlow { limit: Duration },
    #[error("the HTML parser failed: {0}")]
    Parser(String),
}

/// Scans a decoded page. `limit` is the maximum accepted input length in bytes (refuse larger with HtmlError::TooLarge before any work).
pub fn scan(html: &str, site: Option<&SiteSelector>, limit: usize) -> Result<PageFacts, HtmlError> {
    scan_within(html, site, limit, TIME_LIMIT)
}

fn scan_within(
    html: &str,
    site: Option<&SiteSelector>,
    limit: usize,
    time_limit: Duration,
) -> Result<PageFacts, HtmlError> {
    if html.len() > limit {
        return Err(HtmlError::TooLarge {
            len: html.len(),
            limit,
        });
    }
    let state = Rc::new(RefCell::new(LolState::default()));
    // lol_html's open-element stack is the only part of its state that grows with the input
    // (about 100 bytes per open element); 16 MiB allows ~150k-deep nesting, far beyond any real
    // page, and turns a hostile one into an error instead of unbounded growth.
    let parser_budget = 16 << 20;
    // Handlers run only for the elements that matter: a handler on every element (`*`) and on all
    // text halves lol_html's speed (benchmark in the issue). The site rule's element is added to
    // both lists, so its handler always runs before the collector sees the element.
    // Most pages carry only JSON-LD. Without microdata, lol_html need not read the attributes
    // of every tag nor report list, paragraph and table elements, which makes such pages about
    // a third faster to scan (BENCHMARKS.md).
    let (base_tracked, base_text) = if mentions_microdata(html.as_bytes()) {
        (TRACKED, TEXT)
    } else {
        (TRACKED_NO_MICRODATA, TEXT_NO_MICRODATA)
    };
    let (tracked, text) = match site {
        Some(s) => (
            Cow::Owned(format!("{base_tracked}, {}", s.source)),
            Cow::Owned(format!("{base_text}, {}", s.source)),
        ),
        None => (Cow::Borrowed(base_tracked), Cow::Borrowed(base_text)),
    };
    let parse = |sel: &str| {
        sel.parse::<Selector>().map_err(|e| HtmlError::BadSelector {
            selector: sel.to_owned(),
            reason: e.to_string(),
        })
    };
    let mut element_handlers = Vec::with_capacity(3);
    if let Some(site) = site {
        let st = Rc::clone(&state);
        element_handlers.push((
            Cow::Borrowed(&site.selector),
            ElementContentHandlers::default().element(move |_: &mut Element<'_, '_>| {
                if let Ok(mut st) = st.try_borrow_mut() {
                    st.collector.site_hit();
                }
                Ok(())
            }),
        ));
    }
    let st = Rc::clone(&state);
    let attribute = site.and_then(|s| s.attribute.clone());
    element_handlers.push((
        Cow::Owned(parse(&tracked)?),
        ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
            on_element(&st, el, attribute.as_deref());
            Ok(())
        }),
    ));
    let st = Rc::clone(&state);
    element_handlers.push((
        Cow::Owned(parse(&text)?),
        ElementContentHandlers::default().text(move |t: &mut TextChunk<'_>| {
            if let Ok(mut st) = st.try_borrow_mut() {
                st.on_text(t.as_str(), t.text_type(), t.last_in_text_node());
            }
            Ok(())
        }),
    ));
    let settings = Settings {
        element_content_handlers: element_handlers,
        memory_settings: MemorySettings {
            preallocated_parsing_buffer_size: 4096,
            max_allowed_memory_usage: parser_budget,
        },
        // Strict mode refuses pages whose tokenization would need a tree builder to be exact
        // (e.g. `<select><xmp>`); a best-effort reading is what a price watcher wants.
        strict: false,
        ..Settings::new()
    };
    let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
    let to_error = |e: lol_html::errors::RewritingError| match e {
        lol_html::errors::RewritingError::MemoryLimitExceeded(_) => HtmlError::TooComplex {
            limit: parser_budget,
        },
        other => HtmlError::Parser(other.to_string()),
    };
    // lol_html matches an end tag by searching its whole open-element stack, so thousands of open
    // elements followed by many stray end tags cost depth x tags (a crafted 5 MiB page takes about
    // a minute). Feeding the page in slices lets a deadline stop such a page.
    let started = Instant::now();
    for slice in html.as_bytes().chunks(SLICE_BYTES) {
        if started.elapsed() > time_limit {
            return Err(HtmlError::TooSlow { limit: time_limit });
        }
        rewriter.write(slice).map_err(to_error)?;
    }
    rewriter.end().map_err(to_error)?;
    let collector = std::mem::take(&mut state.borrow_mut().collector);
    Ok(collector.finish())
}

fn on_element(state: &Rc<RefCell<LolState>>, el: &mut Element<'_, '_>, site_attr: Option<&str>) {
    let Ok(mut st) = state.try_borrow_mut() else {
        return;
    };
    let view = LolTag {
        el,
        name: el.tag_name(),
    };
    let html_ns = el.namespace_uri() == "http://www.w3.org/1999/xhtml";
    let serial = st
        .collector
        .start(&view, el.can_have_content(), html_ns, site_attr);
    drop(st);
    if let Some(serial) = serial {
        let st = Rc::clone(state);
        // Only fails for elements that cannot have content, which `start` never tracks.
        let _ = el.on_end_tag(Box::new(move |_| {
            if let Ok(mut st) = st.try_borrow_mut() {
                st.collector.end(serial);
            }
            Ok(())
        }));
    }
}

/// What the collector reads from a start tag. Attribute names are lowercase; values come back
/// entity-decoded.
struct LolTag<'a, 'b, 'c> {
    el: &'a Element<'b, 'c>,
    name: String,
}

impl LolTag<'_, '_, '_> {
    /// Lowercase tag name.
    fn name(&self) -> &str {
        &self.name
    }
    fn has(&self, attr: &str) -> bool {
        self.el.has_attribute(attr)
    }
    fn get(&self, attr: &str) -> Option<String> {
        // lol_html hands out attribute values as written, entities included.
        self.el
            .get_attribute(attr)
            .map(|v| match htmlize::unescape_attribute(v.as_str()) {
                Cow::Borrowed(_) => v,
                Cow::Owned(decoded) => decoded,
            })
    }
}

/// The collector plus the text node being assembled: lol_html may split a text node into chunks
/// anywhere (even inside an entity), so entity decoding waits for the node's last chunk.
#[derive(Default)]
struct LolState {
    collector: Collector,
    pending: String,
}

impl LolState {
    fn on_text(&mut self, chunk: &str, kind: TextType, last: bool) {
        let kind = match kind {
            TextType::Data => TextKind::Data,
            TextType::RCData => TextKind::RcData,
            TextType::ScriptData => TextKind::Script,
            _ => TextKind::Raw,
        };
        match kind {
            TextKind::Script => self.collector.text(chunk, kind),
            TextKind::Data | TextKind::RcData => {
                if self.collector.wants(kind) {
                    self.pending.push_str(chunk);
                }
                if last && !self.pending.is_empty() {
                    let decoded = htmlize::unescape(self.pending.as_str());
                    self.collector.text(&decoded, kind);
                    drop(decoded);
                    self.pending.clear();
                }
            }
            TextKind::Raw => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The collector: a stack machine fed start tags, end tags and decoded text.

/// The elements the collector is told about. Others are invisible to it: their text still reaches
/// open captures, but they neither open nor close anything. Leaving out `div` and the other
/// elements that close an open `<p>` means an unclosed `<p>` stays open until an enclosing tracked
/// element ends, which only matters for `<p itemscope>` / `<p itemprop>` left unclosed.
const TRACKED: &str = "[itemscope], [itemprop], meta, script, title, h1, li, ul, ol, p, dd, dt, dl, tr, td, th, table";
/// The elements whose text (including descendants') the collector may need.
const TEXT: &str = "[itemprop], title, h1, script[type*=\"ld+json\" i]";

/// The same, for pages in which no microdata attribute occurs.
const TRACKED_NO_MICRODATA: &str = "meta, script, title, h1";
const TEXT_NO_MICRODATA: &str = "title, h1, script[type*=\"ld+json\" i]";

/// Whether `itemprop` or `itemscope` occurs anywhere, in any letter case (attribute names are
/// case-insensitive). A mention in text or a script only costs the slower selector set.
fn mentions_microdata(html: &[u8]) -> bool {
    memchr::memchr2_iter(b'i', b'I', html).any(|at| {
        let rest = &html[at..];
        let starts =
            |word: &[u8]| rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word);
        starts(b"itemprop") || starts(b"itemscope")
    })
}

/// How much of the page lol_html gets per call; between calls `scan` checks its deadline.
const SLICE_BYTES: usize = 16 * 1024;
/// The deadline for one page. A 5 MiB product page needs under 100 ms in a release build, so
/// only crafted markup reaches it; unoptimised (test) builds are about ten times slower.
const TIME_LIMIT: Duration = if cfg!(debug_assertions) {
    Duration::from_secs(30)
} else {
    Duration::from_secs(3)
};

/// Deeper elements are not tracked: microdata and `<h1>` inside them are ignored, their text still
/// counts for the enclosing captures. Real pages stay under ~60.
const MAX_DEPTH: usize = 512;
/// Items nested deeper than this are ignored together with their properties.
const MAX_ITEM_DEPTH: usize = 64;
const MAX_ITEMS: usize = 20_000;
const MAX_PROPS: usize = 100_000;
const MAX_METAS: usize = 10_000;
/// Text captures open at once (nested text-valued itemprops); each text node is copied into all of
/// them, so this bounds the per-byte work.
const MAX_CAPTURES: usize = 32;
/// A text value longer than this is cut (at a character boundary); prices and names are far shorter.
const MAX_CAPTURE_BYTES: usize = 64 * 1024;
/// How far implied-end-tag searches look down the stack, so hostile nesting
/// cannot make each tag cost O(depth).
const MAX_SCOPE_SEARCH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextKind {
    /// Ordinary text, entities decoded.
    Data,
    /// `<title>`/`<textarea>` text, entities decoded.
    RcData,
    /// `<script>` content, raw.
    Script,
    /// `<style>`, `<noscript>`, ... content: never part of a text value.
    Raw,
}

/// The tag kinds the implied-end-tag rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Li,
    DdDt,
    P,
    Option,
    Optgroup,
    Tr,
    Cell,
    TableSection,
    Heading,
    /// Elements that end the search for an open `<li>`, `<dd>`/`<dt>` or `<p>` (list containers,
    /// tables, buttons, ...): a nested list's items must not close the outer list's item.
    Boundary,
    /// `<body>`/`<html>`: their end tags are ignored, as a tree builder does (content after
    /// `</body>` still belongs to the body).
    Root,
    Other,
}

fn kind_of(name: &str) -> Kind {
    match name {
        "li" => Kind::Li,
        "dd" | "dt" => Kind::DdDt,
        "p" => Kind::P,
        "option" => Kind::Option,
        "optgroup" => Kind::Optgroup,
        "tr" => Kind::Tr,
        "td" | "th" => Kind::Cell,
        "tbody" | "thead" | "tfoot" => Kind::TableSection,
        "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => Kind::Heading,
        "ul" | "ol" | "menu" | "dl" | "table" | "button" | "caption" | "object" | "template"
        | "select" | "applet" | "marquee" => Kind::Boundary,
        "body" | "html" => Kind::Root,
        _ => Kind::Other,
    }
}

/// Start tags that close an open `<p>` (WHATWG "close a p element" callers, abridged).
fn closes_p(name: &str) -> bool {
    matches!(
        name,
        "address"
            | "article"
            | "aside"
            | "blockquote"
            | "details"
            | "dialog"
            | "div"
            | "dl"
            | "fieldset"
            | "figcaption"
            | "figure"
            | "footer"
            | "form"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "header"
            | "hgroup"
            | "hr"
            | "main"
            | "menu"
            | "nav"
            | "ol"
            | "p"
            | "pre"
            | "section"
            | "table"
            | "ul"
            | "li"
            | "dd"
            | "dt"
    )
}

struct Open {
    serial: u32,
    kind: Kind,
    /// This element started an item (or an ignored one): pop `item_stack` when it closes.
    item: bool,
    /// How many entries at the top of `captures` this element owns (an element can be an itemprop,
    /// the site rule's match and the `<h1>` at once).
    captures: u8,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Prop {
        item: usize,
        first: usize,
        count: usize,
    },
    H1,
    Site,
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
struct Collector {
    facts: PageFacts,
    stack: Vec<Open>,
    next_serial: u32,
    /// Innermost open item last; `None` marks an ignored (too deep or over-count) item.
    item_stack: Vec<Option<usize>>,
    captures: Vec<Capture>,
    prop_count: usize,
    /// The JSON-LD script whose content is being read; script content holds no tags, so the next
    /// tag of any kind ends it and no stack entry is needed (an unclosed script still works).
    open_ld: Option<usize>,
    /// Same for `<title>` (RCDATA).
    title: Option<Text>,
    title_done: bool,
    h1_done: bool,
    site_done: bool,
    site_hit: bool,
}

impl Collector {
    fn site_hit(&mut self) {
        if !self.site_done {
            self.site_hit = true;
        }
    }

    /// Whether text of this kind would be used now (lets `LolState` skip buffering).
    fn wants(&self, kind: TextKind) -> bool {
        match kind {
            TextKind::Data => !self.captures.is_empty(),
            TextKind::RcData => !self.captures.is_empty() || self.title.is_some(),
            TextKind::Script => self.open_ld.is_some(),
            TextKind::Raw => false,
        }
    }

    fn text(&mut self, text: &str, kind: TextKind) {
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
    fn start(
        &mut self,
        tag: &LolTag<'_, '_, '_>,
        can_have_content: bool,
        html_ns: bool,
        site_attr: Option<&str>,
    ) -> Option<u32> {
        self.end_text_runs();
        let name = tag.name();
        let kind = if html_ns { kind_of(name) } else { Kind::Other };
        if html_ns {
            self.implied_ends(name, kind);
        }
        let site_hit = std::mem::take(&mut self.site_hit);
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

        if site_hit {
            self.site_done = true;
            match site_attr {
                Some(a) => {
                    self.facts.site_rule =
                        Some(trim_ascii(&tag.get(a).unwrap_or_default()).to_owned());
                }
                None if tracked => self.open_capture(Target::Site, &mut open),
                None => self.facts.site_rule = Some(String::new()),
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

    fn microdata(&mut self, tag: &LolTag<'_, '_, '_>, name: &str, tracked: bool, open: &mut Open) {
        let prop_names: Vec<String> = match tag.get("itemprop") {
            Some(p) => p.split_ascii_whitespace().map(str::to_owned).collect(),
            None => Vec::new(),
        };
        // The item this element's properties belong to; `Some(None)` means an ignored item.
        let current = self.item_stack.last().copied();
        if tag.has("itemscope") {
            let parent = match current {
                Some(Some(p)) if !prop_names.is_empty() => Some(p),
                _ => None,
            };
            let ignored_parent = matches!(current, Some(None)) && !prop_names.is_empty();
            let slot = if self.item_stack.len() < MAX_ITEM_DEPTH
                && self.facts.items.len() < MAX_ITEMS
                && !ignored_parent
                && tracked
            {
                let index = self.facts.items.len();
                let types = tag
                    .get("itemtype")
                    .map(|t| t.split_ascii_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default();
                if let Some(p) = parent {
                    for n in &prop_names {
                        self.add_prop(p, n.clone(), MicroValue::Item(index));
                    }
                }
                self.facts.items.push(MicroItem {
                    types,
                    parent,
                    prop_names: if parent.is_some() {
                        prop_names
                    } else {
                        Vec::new()
                    },
                    props: Vec::new(),
                });
                Some(index)
            } else {
                None
            };
            self.item_stack.push(slot);
            open.item = true;
            return;
        }
        let Some(Some(item)) = current else {
            return;
        };
        if prop_names.is_empty() {
            return;
        }
        let value = if let Some(c) = tag.get("content") {
            Some(c)
        } else {
            let attr = match name {
                "meta" => Some("content"),
                "a" | "area" | "link" => Some("href"),
                "img" | "audio" | "embed" | "iframe" | "source" | "track" | "video" => Some("src"),
                "object" => Some("data"),
                "data" | "meter" => Some("value"),
                "time" if tag.has("datetime") => Some("datetime"),
                _ => None,
            };
            attr.map(|a| tag.get(a).unwrap_or_default())
        };
        match value {
            Some(v) => {
                let v = trim_ascii(&v).to_owned();
                for n in prop_names {
                    self.add_prop(item, n, MicroValue::Text(v.clone()));
                }
            }
            None if tracked => {
                // Reserve the slots now so properties stay in start-tag order; the text arrives
                // before the end tag.
                let Some(props) = self.facts.items.get(item).map(|i| i.props.len()) else {
                    return;
                };
                let mut count = 0;
                for n in prop_names {
                    if self.add_prop(item, n, MicroValue::Text(String::new())) {
                        count += 1;
                    }
                }
                if count > 0 {
                    self.open_capture(
                        Target::Prop {
                            item,
                            first: props,
                            count,
                        },
                        open,
                    );
                }
            }
            None => {
                // A void element has no text.
                for n in prop_names {
                    self.add_prop(item, n, MicroValue::Text(String::new()));
                }
            }
        }
    }

    fn add_prop(&mut self, item: usize, name: String, value: MicroValue) -> bool {
        if self.prop_count >= MAX_PROPS {
            return false;
        }
        match self.facts.items.get_mut(item) {
            Some(it) => {
                it.props.push((name, value));
                self.prop_count += 1;
                true
            }
            None => false,
        }
    }

    fn open_capture(&mut self, target: Target, open: &mut Open) {
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
            Target::Site => self.facts.site_rule = Some(c.text),
        }
    }

    /// Closes what a start tag implicitly ends (abridged WHATWG tree-construction rules).
    fn implied_ends(&mut self, name: &str, kind: Kind) {
        if closes_p(name) {
            self.close_nearest(|k| k == Kind::P, |k| k == Kind::Boundary);
        }
        match kind {
            Kind::Li => self.close_nearest(|k| k == Kind::Li, |k| k == Kind::Boundary),
            Kind::DdDt => self.close_nearest(|k| k == Kind::DdDt, |k| k == Kind::Boundary),
            Kind::Option | Kind::Optgroup => {
                if self.stack.last().is_some_and(|o| o.kind == Kind::Option) {
                    self.pop_to(self.stack.len() - 1);
                }
                if kind == Kind::Optgroup
                    && self.stack.last().is_some_and(|o| o.kind == Kind::Optgroup)
                {
                    self.pop_to(self.stack.len() - 1);
                }
            }
            Kind::Cell => self.close_nearest(
                |k| k == Kind::Cell,
                |k| matches!(k, Kind::Tr | Kind::Boundary | Kind::TableSection),
            ),
            Kind::Tr => self.close_nearest(
                |k| matches!(k, Kind::Tr | Kind::Cell),
                |k| matches!(k, Kind::Boundary | Kind::TableSection),
            ),
            Kind::TableSection => self.close_nearest(
                |k| matches!(k, Kind::Tr | Kind::Cell | Kind::TableSection),
                |k| k == Kind::Boundary,
            ),
            Kind::Heading if self.stack.last().is_some_and(|o| o.kind == Kind::Heading) => {
                self.pop_to(self.stack.len() - 1);
            }
            _ => {}
        }
    }

    /// Pops down to and including the nearest open element `is_target` accepts, unless
    /// `is_boundary` accepts an element above it first (or the bounded search runs out).
    fn close_nearest(
        &mut self,
        is_target: impl Fn(Kind) -> bool,
        is_boundary: impl Fn(Kind) -> bool,
    ) {
        let len = self.stack.len();
        for i in (len.saturating_sub(MAX_SCOPE_SEARCH)..len).rev() {
            let k = self.stack[i].kind;
            if is_target(k) {
                self.pop_to(i);
                return;
            }
            if is_boundary(k) || k == Kind::Root {
                return;
            }
        }
    }

    /// The end tag of the element `start` returned `serial` for. Elements opened after it and
    /// still open were implicitly closed by it.
    fn end(&mut self, serial: u32) {
        self.end_text_runs();
        // Serials grow along the stack, so a binary search finds the element in O(log depth).
        if let Ok(i) = self.stack.binary_search_by_key(&serial, |o| o.serial) {
            if self.stack[i].kind != Kind::Root {
                self.pop_to(i);
            }
        }
    }

    fn pop_to(&mut self, index: usize) {
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

    fn finish(mut self) -> PageFacts {
        self.end_text_runs();
        self.pop_to(0);
        self.facts
    }
}

fn trim_ascii(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::decode::decode_html;

    const LIMIT: usize = 5 << 20;

    fn facts(html: &str) -> PageFacts {
        scan(html, None, LIMIT).expect("scan")
    }

    fn text(v: &MicroValue) -> &str {
        match v {
            MicroValue::Text(t) => t,
            MicroValue::Item(_) => panic!("expected text, got {v:?}"),
        }
    }

    fn prop<'a>(item: &'a MicroItem, name: &str) -> Option<&'a MicroValue> {
        item.props.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    #[test]
    fn microdata_is_noticed_in_any_letter_case() {
        assert!(mentions_microdata(b"<div ITEMSCOPE>"));
        assert!(mentions_microdata(b"<span ItemProp=price>"));
        assert!(!mentions_microdata(b"<div item scope><i>item</i> props"));
        assert!(!mentions_microdata(b"itempro"));
        // A page without microdata reads its metas, scripts, title and h1 all the same.
        let f = scan(
            "<title>T</title><meta property=og:title content=O><h1>H</h1>\
             <script type=application/ld+json>{}</script>",
            None,
            LIMIT,
        )
        .unwrap();
        assert_eq!(
            (
                f.title.as_deref(),
                f.h1.as_deref(),
                f.metas.len(),
                f.json_ld.len()
            ),
            (Some("T"), Some("H"), 1, 1)
        );
    }

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
    fn nested_items_and_property_values() {
        let f = facts(concat!(
            "<div itemscope itemtype=\"https://schema.org/Product  https://example.com/X\">",
            "<h2 itemprop=\"name alternateName\">  Cast &amp; Iron\n <b>Skillet</b> </h2>",
            "<a itemprop=url href=\"/p?a=1&amp;b=2\">link text</a>",
            "<img itemprop=image src=\"/i.jpg\">",
            "<div itemprop=\"offers\" itemscope itemtype=\"https://schema.org/Offer\">",
            "<span itemprop=\"price\" content=\"1249.90\">1.249,90 €</span>",
            "<meta itemprop=\"priceCurrency\" content=\" EUR \">",
            "<link itemprop=\"availability\" href=\"https://schema.org/InStock\">",
            "<time itemprop=validFrom datetime=\"2024-01-01\">Jan 1</time>",
            "<time itemprop=validThrough>soon</time>",
            "<data itemprop=sku value=\"SKU-1\">ignored</data>",
            "</div>",
            "<span itemprop=description>a<script>var no;</script><style>.no{}</style>b</span>",
            "</div>",
        ));
        assert_eq!(f.items.len(), 2);
        let p = &f.items[0];
        assert_eq!(
            p.types,
            ["https://schema.org/Product", "https://example.com/X"]
        );
        assert_eq!((p.parent, p.prop_names.is_empty()), (None, true));
        let names: Vec<&str> = p.props.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "name",
                "alternateName",
                "url",
                "image",
                "offers",
                "description"
            ]
        );
        assert_eq!(text(prop(p, "name").unwrap()), "Cast & Iron Skillet");
        assert_eq!(
            text(prop(p, "alternateName").unwrap()),
            "Cast & Iron Skillet"
        );
        assert_eq!(text(prop(p, "url").unwrap()), "/p?a=1&b=2");
        assert_eq!(text(prop(p, "image").unwrap()), "/i.jpg");
        assert_eq!(prop(p, "offers"), Some(&MicroValue::Item(1)));
        assert_eq!(text(prop(p, "description").unwrap()), "ab");
        let o = &f.items[1];
        assert_eq!(
            (o.parent, o.prop_names.as_slice()),
            (Some(0), &["offers".to_owned()][..])
        );
        assert_eq!(
            text(prop(o, "price").unwrap()),
            "1249.90",
            "content wins over text"
        );
        assert_eq!(text(prop(o, "priceCurrency").unwrap()), "EUR");
        assert_eq!(
            text(prop(o, "availability").unwrap()),
            "https://schema.org/InStock"
        );
        assert_eq!(text(prop(o, "validFrom").unwrap()), "2024-01-01");
        assert_eq!(text(prop(o, "validThrough").unwrap()), "soon");
        assert_eq!(text(prop(o, "sku").unwrap()), "SKU-1");
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
    fn nested_itemscope_without_itemprop_is_top_level() {
        let f = facts(
            "<body itemscope itemtype=WebPage><div itemscope itemtype=Product><span itemprop=name>P</span></div><span itemprop=name>Page</span></body>",
        );
        assert_eq!(f.items[1].parent, None);
        assert_eq!(text(prop(&f.items[1], "name").unwrap()), "P");
        assert_eq!(f.items[0].props.len(), 1);
        assert_eq!(text(prop(&f.items[0], "name").unwrap()), "Page");
    }

    #[test]
    fn itemprops_outside_items_and_metas() {
        let f = facts(concat!(
            "<span itemprop=price>9</span>",
            "<meta itemprop=\"price\" content=\"1.049,95\">",
            "<META PROPERTY=\" OG:Price:Amount \" CONTENT=\" 34.50 \">",
            "<meta name=\"twitter:data1\" content=\"&euro;34,99\">",
            "<meta name=description>",
            "<div itemscope><meta itemprop=priceCurrency content=EUR></div>",
        ));
        assert!(f.items[0].props.len() == 1);
        let metas: Vec<(MetaKind, &str, &str, bool)> = f
            .metas
            .iter()
            .map(|m| (m.kind, m.key.as_str(), m.content.as_str(), m.in_item))
            .collect();
        assert_eq!(
            metas,
            [
                (MetaKind::Itemprop, "price", "1.049,95", false),
                (MetaKind::Property, "og:price:amount", "34.50", false),
                (MetaKind::Name, "twitter:data1", "€34,99", false),
                (MetaKind::Itemprop, "pricecurrency", "EUR", true),
            ]
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
    fn unclosed_list_items_and_paragraphs_do_not_nest() {
        let f = facts(concat!(
            "<ul>",
            "<li itemscope itemtype=A><span itemprop=name>a</span>",
            "<li itemscope itemtype=B><span itemprop=name>b</span>",
            "<ul><li>inner</ul>",
            "<span itemprop=price>2</span>",
            "</ul>",
            "<p itemscope itemtype=C><b itemprop=name>c</b>",
            "<p itemscope itemtype=D><b itemprop=name>d</b>",
            "<dl><dt itemprop=x>1<dd itemscope itemtype=E><i itemprop=n>e</i><dt>2</dl>",
        ));
        let types: Vec<(&str, Option<usize>)> = f
            .items
            .iter()
            .map(|i| (i.types[0].as_str(), i.parent))
            .collect();
        assert_eq!(
            types,
            [
                ("A", None),
                ("B", None),
                ("C", None),
                ("D", None),
                ("E", None)
            ]
        );
        assert_eq!(f.items[0].props.len(), 1);
        assert_eq!(
            f.items[1].props.len(),
            2,
            "the nested list's li does not close B"
        );
        assert_eq!(f.items[2].props.len(), 1);
        assert_eq!(f.items[4].props.len(), 1);
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
    fn site_rule_text_or_attribute_first_match() {
        let page = "<div class=\"price-box\"><span class=\"price price--current\"> 4&nbsp;299,99\n zł</span></div>\
                    <div class=price-box><span class=\"price price--current\">1</span></div>\
                    <meta name=\"twitter:data1\" content=\" &euro;34,99 \">";
        let rule = SiteSelector::new("div.price-box span.price--current", None).unwrap();
        assert_eq!(
            scan(page, Some(&rule), LIMIT).unwrap().site_rule.as_deref(),
            Some("4\u{a0}299,99 zł")
        );
        let rule = SiteSelector::new("meta[name=\"twitter:data1\"]", Some("content")).unwrap();
        assert_eq!(
            scan(page, Some(&rule), LIMIT).unwrap().site_rule.as_deref(),
            Some("€34,99")
        );
        let rule = SiteSelector::new("#nothing", None).unwrap();
        assert_eq!(scan(page, Some(&rule), LIMIT).unwrap().site_rule, None);
        // The site rule's element can also be an itemprop.
        let page = "<div itemscope><span class=p itemprop=price>5 €</span></div>";
        let rule = SiteSelector::new("span.p", None).unwrap();
        let f = scan(page, Some(&rule), LIMIT).unwrap();
        assert_eq!(f.site_rule.as_deref(), Some("5 €"));
        assert_eq!(text(prop(&f.items[0], "price").unwrap()), "5 €");
    }

    #[test]
    fn bad_site_rules_say_why() {
        for bad in ["", "div[", "div + p", "a:hover", "p >"] {
            let err = SiteSelector::new(bad, None).unwrap_err();
            assert!(
                matches!(&err, HtmlError::BadSelector { selector, reason } if selector == bad && !reason.is_empty()),
                "{bad}: {err}"
            );
        }
        assert!(matches!(
            SiteSelector::new("span", Some("data price")),
            Err(HtmlError::BadAttribute { .. })
        ));
        assert!(SiteSelector::new("span", Some(" ")).is_err());
    }

    #[test]
    fn limit_is_checked_before_any_work() {
        let page = "<p>".repeat(40_000_000); // 120 MB
        let err = scan(&page, None, LIMIT).unwrap_err();
        assert!(matches!(
            err,
            HtmlError::TooLarge {
                len: 120_000_000,
                limit: LIMIT
            }
        ));
    }

    fn big_page(size: usize) -> String {
        let mut page = String::from("<html><head><title>Big</title><script type=\"application/ld+json\">{\"@type\":\"Product\"}</script></head><body><ul>");
        let mut i = 0;
        while page.len() < size - 200 {
            page.push_str(&format!(
                "<li itemscope itemtype=\"https://schema.org/Product\"><a itemprop=url href=\"/p/{i}\">\
                 <span itemprop=name>Thing {i}</span></a><div itemprop=offers itemscope \
                 itemtype=\"https://schema.org/Offer\"><span itemprop=price content=\"{i}.95\">${i}.95</span></div></li>\n"
            ));
            i += 1;
        }
        page.push_str("</ul></body></html>");
        page
    }

    #[test]
    fn a_5_mib_page_is_scanned() {
        let page = big_page(LIMIT);
        assert!(page.len() <= LIMIT && page.len() > LIMIT - 1000);
        let f = scan(&page, None, LIMIT).unwrap();
        assert_eq!(f.json_ld.len(), 1);
        assert!(f.items.len() > 20_000 - 1, "{}", f.items.len());
        assert!(f.items.len() <= MAX_ITEMS);
        assert_eq!(f.items[1].parent, Some(0));
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

    #[test]
    fn stray_end_tags_under_deep_nesting_hit_the_deadline() {
        let mut page = "<div>".repeat(30_000);
        while page.len() < LIMIT - 10 {
            page.push_str("</span>");
        }
        let result = scan_within(&page, None, LIMIT, Duration::from_millis(200));
        assert!(
            matches!(result, Err(HtmlError::TooSlow { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn truncated_and_broken_html_never_panics() {
        let page = concat!(
            "<!DOCTYPE html><html><head><title>T &amp; t</title>",
            "<script type=\"application/ld+json\">{\"a\":1}</script>",
            "<meta property=og:title content=\"x &amp; y\"></head><body>",
            "<div itemscope itemtype=https://schema.org/Product><h1 itemprop=name>N</h1>",
            "<!-- comment --><span itemprop=price content=1>1 €</span>",
            "<a itemprop=url href='/x'>x</a><p>&#x20AC;&notanentity;&#1114112;</div></body></html>",
        );
        let mut end = 0;
        while end <= page.len() {
            let _ = scan(&page[..end], None, LIMIT).unwrap();
            end += 1;
            while !page.is_char_boundary(end) && end < page.len() {
                end += 1;
            }
        }
        for broken in [
            "<div itemscope><!-- never closed <span itemprop=price>1</span>",
            "<<<>>></></ itemscope itemprop=x <a href=\"",
            "<svg><title>svg</title><script type=application/ld+json>{}</script></svg><title>Page</title>",
            "<table><tr itemscope><td itemprop=a>1<td itemprop=b>2<tr><td>3</table>",
            "<select><option itemprop=x>a<option>b</select><xmp><div itemscope></xmp>",
            "</body></html><div itemscope><b itemprop=x>after the end</b></div>",
        ] {
            let _ = scan(broken, None, LIMIT).unwrap();
        }
    }

    #[test]
    fn garbage_bytes_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet: &[u8] = b"<>/=\"' !-itemscopepropcontent&#;amp\x80\xff\xfe\x00\n";
        for round in 0..100 {
            let mut bytes = Vec::with_capacity(8192);
            for _ in 0..8192 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(alphabet[(x as usize) % alphabet.len()]);
            }
            let ct = if round % 2 == 0 {
                Some("text/html; charset=shift_jis")
            } else {
                None
            };
            let (text, _) = decode_html(&bytes, ct);
            let _ = scan(&text, None, LIMIT).unwrap();
        }
    }

    #[test]
    fn fixture_pages_give_what_their_method_needs() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pages");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("html") {
                continue;
            }
            let side: serde_json::Value = serde_json::from_slice(
                &std::fs::read(path.with_extension("expected.json")).unwrap(),
            )
            .unwrap();
            let body = std::fs::read(&path).unwrap();
            let ct = side["content_type"]
                .as_str()
                .unwrap_or("text/html; charset=utf-8");
            let (page, _) = decode_html(&body, Some(ct));
            let rule = side.get("site_rule").filter(|r| !r.is_null()).map(|r| {
                SiteSelector::new(r["selector"].as_str().unwrap(), r["attribute"].as_str()).unwrap()
            });
            let f = scan(&page, rule.as_ref(), LIMIT).unwrap();
            let name = path.display();
            let digits = |s: &str| -> String { s.chars().filter(char::is_ascii_digit).collect() };
            let amount = side["expected"]["amount"]
                .as_str()
                .map(|a| digits(a).trim_end_matches('0').to_owned());
            match (side["expected"]["method"].as_str(), amount) {
                (Some("json-ld"), _) => assert!(!f.json_ld.is_empty(), "{name}"),
                (Some("microdata"), Some(a)) => assert!(
                    f.items.iter().flat_map(|i| &i.props).any(|(n, v)| n == "price"
                        && matches!(v, MicroValue::Text(t) if digits(t).trim_end_matches('0') == a)),
                    "{name}: {:#?}",
                    f.items
                ),
                (Some("meta"), Some(a)) => assert!(
                    f.metas.iter().any(|m| m.key.contains("price")
                        && digits(&m.content).trim_end_matches('0') == a),
                    "{name}: {:#?}",
                    f.metas
                ),
                (Some("site-rule"), Some(a)) => assert_eq!(
                    f.site_rule.as_deref().map(|s| digits(s).trim_end_matches('0').to_owned()),
                    Some(a),
                    "{name}"
                ),
                _ => {}
            }
            checked += 1;
        }
        assert!(checked >= 50, "{checked}");
    }
}
