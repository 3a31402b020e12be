//! Bot Framework activities as a terminal shows them, and the numbered buttons a person
//! answers by typing a number. Pure: JSON in, text out; `pricewatch chat` owns the I/O.
//!
//! # What is shown
//! - A `message`'s text is Markdown (unless its `textFormat` is `plain` or `xml`), drawn as
//!   [`markdown`] describes; then each attachment (Adaptive Cards, hero and thumbnail
//!   cards, other files as a one-line note); then the suggested actions.
//! - A `typing` activity shows nothing; any other type is a one-line note,
//!   `(event: <name or type>)`.
//! - Every button (an Adaptive Card action, a hero card's or a suggested `CardAction`) gets
//!   the next number of the session's [`Buttons`], so two cards never share a number, and is
//!   shown as `[3] Stop watching` or `[2] Open product <url>`. [`choose`] turns a typed line
//!   back into what to send or open.
//!
//! # Safety
//! The text comes from the bot, and through it from shops (a product title). Every string
//! read from the activity loses its control characters (ESC, CR, NUL, …, but `\n` and `\t`)
//! and its bidi controls before it is styled (through [`crate::speech::format::visible`],
//! the same filter the bot's own text passes), so the only escape sequences in the output
//! are the bold ones added here, and only with [`Style::ansi`]. The URLs a [`Choice::Open`]
//! carries are cleaned the same way, since the client prints them.

use std::collections::VecDeque;

use serde_json::{Map, Value};

use crate::speech::card::ADAPTIVE_CARD;
use crate::speech::format::visible;

/// How many buttons [`Buttons`] keeps: older numbers are forgotten, and typing one is
/// then sent as text.
pub const BUTTONS_KEPT: usize = 200;

const BOLD_ON: &str = "\u{1b}[1m";
const BOLD_OFF: &str = "\u{1b}[22m";

/// Emphasis nested deeper than this is left as typed: it bounds the recursion on hostile
/// input such as thousands of `**a` in a row.
const MAX_EMPHASIS_DEPTH: usize = 16;
/// Cards nested deeper than this are not drawn (containers in containers, cards shown by
/// buttons in cards).
const MAX_CARD_DEPTH: usize = 32;
/// How far a `[` looks for its `]`, a link for its `)` and an emphasis for its closer:
/// bounds the work per character, so long unbalanced input stays linear.
const LABEL_SCAN: usize = 1_000;
const DEST_SCAN: usize = 2_048;
const CLOSER_SCAN: usize = 4_000;
/// The longest event name a note shows.
const NOTE_MAX_CHARS: usize = 100;

/// How the output is styled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    /// Bold as `ESC[1m`…`ESC[22m`, for a terminal; without it the output is plain text.
    pub ansi: bool,
}

impl Style {
    pub const PLAIN: Style = Style { ansi: false };
    pub const ANSI: Style = Style { ansi: true };
}

/// What a typed line asks for ([`choose`]); [`Buttons`] holds the first two kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// Send a message activity with this `text` and/or `value` (a submitted card's `data`,
    /// which the bot reads as `value.command`).
    Send {
        text: Option<String>,
        value: Option<Value>,
    },
    /// Open this URL: the terminal prints it.
    Open(String),
    /// Not a button: send the line as typed.
    Text(String),
}

/// The buttons shown so far in the session, numbered from 1 across all messages; the last
/// [`BUTTONS_KEPT`] are kept.
#[derive(Debug, Default)]
pub struct Buttons {
    last: u64,
    kept: VecDeque<(u64, Choice)>,
}

impl Buttons {
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&mut self, choice: Choice) -> u64 {
        self.last = self.last.saturating_add(1);
        self.kept.push_back((self.last, choice));
        while self.kept.len() > BUTTONS_KEPT {
            self.kept.pop_front();
        }
        self.last
    }

    fn get(&self, number: u64) -> Option<&Choice> {
        self.kept
            .binary_search_by_key(&number, |(n, _)| *n)
            .ok()
            .and_then(|i| self.kept.get(i))
            .map(|(_, c)| c)
    }
}

/// What a typed line means: a line that is only the number of a kept button (surrounding
/// whitespace ignored) is that button; anything else is text to send as typed.
pub fn choose(buttons: &Buttons, input: &str) -> Choice {
    let t = input.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        if let Some(choice) = t.parse::<u64>().ok().and_then(|n| buttons.get(n)) {
            return choice.clone();
        }
    }
    Choice::Text(input.to_owned())
}

/// An activity drawn for the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Lines joined with `\n`, without a final newline.
    pub text: String,
    /// The button numbers this activity was given, in the order shown.
    pub buttons: Vec<u64>,
}

/// An activity as received (the JSON a bot posts to a Connector). `None` when there is
/// nothing to show: a `typing` activity, or a message without text, attachments or
/// suggested actions. Buttons are numbered in `buttons`.
pub fn activity(style: Style, buttons: &mut Buttons, activity: &Value) -> Option<Rendered> {
    let kind = str_field(activity, "type").unwrap_or("");
    match kind {
        "typing" => None,
        "message" => message(style, buttons, activity),
        _ => {
            let name = str_field(activity, "name")
                .filter(|n| !n.trim().is_empty())
                .unwrap_or(kind);
            let mut name = one_line(name);
            if name.is_empty() {
                name = "unknown".to_owned();
            }
            if name.chars().count() > NOTE_MAX_CHARS {
                name = name.chars().take(NOTE_MAX_CHARS - 1).collect();
                name.push('…');
            }
            Some(Rendered {
                text: format!("(event: {name})"),
                buttons: Vec::new(),
            })
        }
    }
}

fn message(style: Style, buttons: &mut Buttons, activity: &Value) -> Option<Rendered> {
    let mut out = Out::new(style, buttons);
    if let Some(text) = str_field(activity, "text").filter(|t| !t.trim().is_empty()) {
        match str_field(activity, "textFormat") {
            Some(f) if f.eq_ignore_ascii_case("plain") || f.eq_ignore_ascii_case("xml") => {
                out.plain(text, false)
            }
            _ => out.markdown(text, false),
        }
    }
    for attachment in array_field(activity, "attachments") {
        out.gap();
        out.attachment(attachment);
    }
    let suggested = activity
        .get("suggestedActions")
        .map(|s| array_field(s, "actions"))
        .unwrap_or_default();
    if !suggested.is_empty() {
        out.gap();
        for action in suggested {
            out.card_action(action);
        }
    }
    while out.lines.last().is_some_and(|l| l.trim().is_empty()) {
        out.lines.pop();
    }
    let blank = out.lines.iter().take_while(|l| l.trim().is_empty()).count();
    out.lines.drain(..blank);
    if out.lines.is_empty() {
        return None;
    }
    Some(Rendered {
        text: out.lines.join("\n"),
        buttons: out.assigned,
    })
}

fn str_field<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn array_field<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Outside text on one line: cleaned, runs of whitespace as one space.
fn one_line(s: &str) -> String {
    visible(s).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A URL as it is printed: cleaned, and without whitespace, which would cut it in two.
fn clean_url(s: &str) -> String {
    visible(s).chars().filter(|c| !c.is_whitespace()).collect()
}

fn bold_line(style: Style, bold: bool, line: &str) -> String {
    if style.ansi && bold && !line.is_empty() {
        format!("{BOLD_ON}{line}{BOLD_OFF}")
    } else {
        line.to_owned()
    }
}

/// The lines being drawn for one activity, and the buttons it numbered.
struct Out<'b> {
    style: Style,
    buttons: &'b mut Buttons,
    lines: Vec<String>,
    indent: String,
    assigned: Vec<u64>,
}

impl<'b> Out<'b> {
    fn new(style: Style, buttons: &'b mut Buttons) -> Self {
        Out {
            style,
            buttons,
            lines: Vec::new(),
            indent: String::new(),
            assigned: Vec::new(),
        }
    }

    fn push(&mut self, line: String) {
        if line.is_empty() {
            self.lines.push(line);
        } else {
            self.lines.push(format!("{}{line}", self.indent));
        }
    }

    /// A blank line between blocks, unless there is nothing yet or one already.
    fn gap(&mut self) {
        if self.lines.last().is_some_and(|l| !l.trim().is_empty()) {
            self.lines.push(String::new());
        }
    }

    fn markdown(&mut self, md: &str, bold: bool) {
        let mut lines = Vec::new();
        render_markdown(self.style, md, bold, &mut lines);
        for line in lines {
            self.push(line);
        }
    }

    fn plain(&mut self, text: &str, bold: bool) {
        for line in visible(text).split('\n') {
            self.push(bold_line(self.style, bold, line));
        }
    }

    fn button(&mut self, title: &str, choice: Choice) {
        let title = one_line(title);
        let line = match &choice {
            Choice::Open(url) if title.is_empty() || title == *url => format!("<{url}>"),
            Choice::Open(url) => format!("{title} <{url}>"),
            _ if title.is_empty() => "(button)".to_owned(),
            _ => title,
        };
        let n = self.buttons.add(choice);
        self.assigned.push(n);
        self.push(format!("[{n}] {line}"));
    }

    fn attachment(&mut self, attachment: &Value) {
        let content_type = str_field(attachment, "contentType").unwrap_or("");
        let content = attachment.get("content").unwrap_or(&Value::Null);
        if content_type.eq_ignore_ascii_case(ADAPTIVE_CARD) {
            self.adaptive_card(content, 0);
        } else if content_type.starts_with("application/vnd.microsoft.card.") {
            self.hero_card(content);
        } else {
            let name = str_field(attachment, "name")
                .map(one_line)
                .filter(|n| !n.is_empty())
                .or_else(|| Some(one_line(content_type)).filter(|t| !t.is_empty()))
                .unwrap_or_else(|| "file".to_owned());
            let line = match str_field(attachment, "contentUrl").map(clean_url) {
                Some(url) if !url.is_empty() => format!("(attachment: {name} <{url}>)"),
                _ => format!("(attachment: {name})"),
            };
            self.push(line);
        }
    }

    /// An Adaptive Card: its body, then its actions; its `fallbackText` when neither shows
    /// anything.
    fn adaptive_card(&mut self, card: &Value, depth: usize) {
        let before = self.lines.len();
        if depth <= MAX_CARD_DEPTH {
            for element in array_field(card, "body") {
                self.element(element, depth + 1);
            }
            self.actions(array_field(card, "actions"), depth + 1);
        }
        let shown = self
            .lines
            .get(before..)
            .is_some_and(|added| added.iter().any(|l| !l.trim().is_empty()));
        if !shown {
            self.lines.truncate(before);
            if let Some(fallback) = str_field(card, "fallbackText") {
                self.markdown(fallback, false);
            }
        }
    }

    fn element(&mut self, element: &Value, depth: usize) {
        if depth > MAX_CARD_DEPTH || element.get("isVisible") == Some(&Value::Bool(false)) {
            return;
        }
        if element.get("separator") == Some(&Value::Bool(true)) {
            self.gap();
        }
        let bolder = str_field(element, "weight").is_some_and(|w| w.eq_ignore_ascii_case("bolder"));
        match str_field(element, "type").unwrap_or("") {
            "TextBlock" => {
                if let Some(text) = str_field(element, "text") {
                    self.markdown(text, bolder);
                }
            }
            "RichTextBlock" => self.rich_text(array_field(element, "inlines")),
            "FactSet" => {
                for fact in array_field(element, "facts") {
                    let title = str_field(fact, "title").map(one_line).unwrap_or_default();
                    let value = str_field(fact, "value").unwrap_or("");
                    let line = if title.is_empty() {
                        value.to_owned()
                    } else {
                        format!("{title}: {value}")
                    };
                    self.plain(&line, false);
                }
            }
            "Image" => self.image(element),
            "ImageSet" => {
                for image in array_field(element, "images") {
                    self.image(image);
                }
            }
            "ActionSet" => self.actions(array_field(element, "actions"), depth),
            _ => match element.get("fallback").filter(|f| f.is_object()) {
                // An element this client does not know, with the element its author
                // chose for such clients.
                Some(fallback) => self.element(fallback, depth + 1),
                // Containers, columns, tables and unknown containers: their children.
                None => {
                    for key in ["items", "columns", "rows", "cells"] {
                        for child in array_field(element, key) {
                            self.element(child, depth + 1);
                        }
                    }
                }
            },
        }
    }

    /// `TextRun`s (and bare strings) on one line; a run's text is plain, never Markdown.
    fn rich_text(&mut self, inlines: &[Value]) {
        let mut line = String::new();
        for inline in inlines {
            let (text, bold) = match inline {
                Value::String(s) => (s.as_str(), false),
                run => (
                    str_field(run, "text").unwrap_or(""),
                    str_field(run, "weight").is_some_and(|w| w.eq_ignore_ascii_case("bolder")),
                ),
            };
            for (i, part) in visible(text).split('\n').enumerate() {
                if i > 0 {
                    let done = std::mem::take(&mut line);
                    self.push(done);
                }
                line.push_str(&bold_line(self.style, bold, part));
            }
        }
        if !line.is_empty() {
            self.push(line);
        }
    }

    fn image(&mut self, image: &Value) {
        let alt = str_field(image, "altText")
            .or_else(|| str_field(image, "alt"))
            .map(one_line)
            .filter(|a| !a.is_empty())
            .or_else(|| str_field(image, "url").map(clean_url))
            .filter(|a| !a.is_empty());
        if let Some(alt) = alt {
            self.push(format!("(image: {alt})"));
        }
    }

    /// Adaptive Card actions: numbered buttons, and a `ShowCard`'s card drawn indented.
    fn actions(&mut self, actions: &[Value], depth: usize) {
        for action in actions {
            let title = str_field(action, "title").unwrap_or("");
            match str_field(action, "type").unwrap_or("") {
                "Action.OpenUrl" => {
                    if let Some(url) = str_field(action, "url").map(clean_url) {
                        if !url.is_empty() {
                            self.button(title, Choice::Open(url));
                        }
                    }
                }
                // Execute (Universal Actions) posts an invoke on Teams; elsewhere hosts
                // fall back to a Submit, which is what a terminal can do.
                "Action.Submit" | "Action.Execute" => {
                    let data = action
                        .get("data")
                        .cloned()
                        .unwrap_or_else(|| Value::Object(Map::new()));
                    self.button(
                        title,
                        Choice::Send {
                            text: None,
                            value: Some(data),
                        },
                    );
                }
                "Action.ShowCard" => {
                    let title = one_line(title);
                    self.push(if title.is_empty() {
                        "▸".to_owned()
                    } else {
                        format!("▸ {title}")
                    });
                    let outer = std::mem::take(&mut self.indent);
                    self.indent = format!("{outer}    ");
                    if let Some(card) = action.get("card") {
                        self.adaptive_card(card, depth + 1);
                    }
                    self.indent = outer;
                }
                _ => {}
            }
        }
    }

    /// A hero or thumbnail card (and the other Bot Framework cards, drawn by the fields
    /// they share): title, subtitle, text, images, media and buttons.
    fn hero_card(&mut self, card: &Value) {
        if let Some(title) = str_field(card, "title") {
            self.plain(&one_line(title), true);
        }
        if let Some(subtitle) = str_field(card, "subtitle") {
            self.plain(&one_line(subtitle), false);
        }
        if let Some(text) = str_field(card, "text") {
            self.markdown(text, false);
        }
        for image in array_field(card, "images") {
            self.image(image);
        }
        for media in array_field(card, "media") {
            let url = str_field(media, "url").map(clean_url).unwrap_or_default();
            if !url.is_empty() {
                self.push(format!("(media: <{url}>)"));
            }
        }
        for button in array_field(card, "buttons") {
            self.card_action(button);
        }
    }

    /// A Bot Framework `CardAction` (hero card buttons, suggested actions).
    fn card_action(&mut self, action: &Value) {
        let value = action.get("value").filter(|v| !v.is_null());
        let text = str_field(action, "text").map(str::to_owned);
        let title = str_field(action, "title")
            .or_else(|| str_field(action, "displayText"))
            .or_else(|| value.and_then(Value::as_str))
            .unwrap_or("");
        // The types are camelCase, but some bots write them in lower case, which the
        // channels accept.
        let kind = str_field(action, "type").unwrap_or("").to_ascii_lowercase();
        let choice = match kind.as_str() {
            "imback" => match value.and_then(Value::as_str) {
                Some(v) => Choice::Send {
                    text: Some(v.to_owned()),
                    value: None,
                },
                None => return,
            },
            // As Web Chat sends it: a string value as the (hidden) text, anything else as
            // the activity's value.
            "postback" => match value {
                Some(Value::String(s)) => Choice::Send {
                    text: text.or_else(|| Some(s.clone())),
                    value: None,
                },
                other => Choice::Send {
                    text,
                    value: other.cloned(),
                },
            },
            "messageback" => Choice::Send {
                text,
                value: value.cloned(),
            },
            "openurl" | "signin" | "downloadfile" | "showimage" | "playaudio" | "playvideo"
            | "call" => match value.and_then(Value::as_str).map(clean_url) {
                Some(url) if !url.is_empty() => Choice::Open(url),
                _ => return,
            },
            _ => return,
        };
        self.button(title, choice);
    }
}

/// Markdown as terminal text, line by line: `**bold**` / `__bold__` and `# headings` in
/// bold (with [`Style::ansi`]; plain text otherwise), `*italic*`, `_italic_`, `~~struck~~`
/// and `` `code` `` as their text, `[text](url)` as `text <url>` (`<url>` when the text is
/// the URL), `<https://…>` as `<url>`, backslash escapes as the character, `- x` / `* x` as
/// `  • x`, `1. x` indented, `> x` as `│ x`, lines and blank lines kept as they are. A
/// marker without its partner is shown as typed, so no text is lost. Control characters
/// are removed first (see the module documentation).
pub fn markdown(style: Style, md: &str) -> String {
    let mut lines = Vec::new();
    render_markdown(style, md, false, &mut lines);
    lines.join("\n")
}

/// [`markdown`] into `lines`, every line in bold when `bold`.
fn render_markdown(style: Style, md: &str, bold: bool, lines: &mut Vec<String>) {
    let text = visible(md);
    let mut fence: Option<char> = None;
    let mut in_list = false;
    for raw in text.split('\n') {
        let body = raw.trim_start();
        let indent = raw.get(..raw.len() - body.len()).unwrap_or("");
        let fence_mark = fence_char(body);
        if let Some(open) = fence {
            // Code is shown as written; the closing fence too, so nothing is lost.
            if fence_mark == Some(open) {
                fence = None;
            }
            lines.push(bold_line(style, bold, raw));
            continue;
        }
        if fence_mark.is_some() {
            fence = fence_mark;
            in_list = false;
            lines.push(bold_line(style, bold, raw));
            continue;
        }
        if body.is_empty() {
            in_list = false;
            lines.push(String::new());
            continue;
        }
        let styled = |s: &str, bold: bool| bold_line(style, bold, &inline(style, s, bold));
        let line = if let Some(title) = heading(body) {
            in_list = false;
            styled(title, true)
        } else if is_rule(body) {
            in_list = false;
            bold_line(style, bold, &"─".repeat(20))
        } else if let Some(item) = bullet(body) {
            in_list = true;
            format!("{indent}  • {}", styled(item, bold))
        } else if let Some((number, item)) = ordered(body) {
            in_list = true;
            format!("{indent}  {number} {}", styled(item, bold))
        } else if let Some(quoted) = quote(body) {
            in_list = false;
            format!("{indent}│ {}", styled(quoted, bold))
        } else if in_list && !indent.is_empty() {
            // A list item's next line: aligned under the item's text, which moved right.
            format!("  {indent}{}", styled(body, bold))
        } else {
            in_list = false;
            format!("{indent}{}", styled(body, bold))
        };
        lines.push(line);
    }
}

fn fence_char(line: &str) -> Option<char> {
    ['`', '~']
        .into_iter()
        .find(|c| line.chars().take_while(|x| x == c).count() >= 3)
}

/// `# Title` (up to six `#`), without an optional closing run of `#`.
fn heading(line: &str) -> Option<&str> {
    let hashes = line.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = line.get(hashes..)?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let rest = rest.trim();
    let unclosed = rest.trim_end_matches('#');
    Some(if unclosed.is_empty() {
        ""
    } else if unclosed.ends_with([' ', '\t']) {
        unclosed.trim_end()
    } else {
        rest
    })
}

/// `---`, `***` or `___` alone on a line (spaces allowed between).
fn is_rule(line: &str) -> bool {
    let marks: Vec<char> = line.chars().filter(|c| !c.is_whitespace()).collect();
    marks.len() >= 3
        && matches!(marks.first(), Some('-' | '*' | '_'))
        && marks.iter().all(|c| Some(c) == marks.first())
}

fn bullet(line: &str) -> Option<&str> {
    ["- ", "* ", "+ ", "-\t", "*\t", "+\t"]
        .iter()
        .find_map(|p| line.strip_prefix(p))
        .map(str::trim_start)
}

/// `12. item` or `12) item`: the number with its delimiter, and the item.
fn ordered(line: &str) -> Option<(&str, &str)> {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if !(1..=9).contains(&digits) {
        return None;
    }
    let after = line.get(digits..)?;
    let rest = after
        .strip_prefix(". ")
        .or_else(|| after.strip_prefix(") "))?;
    Some((line.get(..=digits)?, rest.trim_start()))
}

fn quote(line: &str) -> Option<&str> {
    line.strip_prefix('>').map(str::trim_start)
}

/// One line's inline Markdown, already cleaned of control characters.
fn inline(style: Style, line: &str, bold: bool) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    Inline { c: &chars, style }.render(0, chars.len(), bold, 0, true, &mut out);
    out
}

/// What [`Inline::atom`] recognises at a position: spans whose inside is not emphasis.
enum Atom {
    /// A backslash escape: the character.
    Escaped(char),
    /// Characters shown as they are (a backtick run without its partner, a bare URL).
    Literal(usize, usize),
    /// A code span's content.
    Code(usize, usize),
    /// `[label](dest)`: the label's range and the destination, unescaped.
    Link(usize, usize, String),
    /// `<scheme:…>`.
    Autolink(usize, usize),
}

struct Inline<'a> {
    c: &'a [char],
    style: Style,
}

impl Inline<'_> {
    /// Renders `c[from..to]` into `out`; `bold` when the text around is bold already, so
    /// no nested bold ends it early.
    fn render(
        &self,
        from: usize,
        to: usize,
        bold: bool,
        depth: usize,
        links: bool,
        out: &mut String,
    ) {
        let mut i = from;
        while i < to {
            if let Some((atom, end)) = self.atom(i, to, links) {
                self.emit(atom, bold, depth, out);
                i = end.max(i + 1);
                continue;
            }
            let ch = self.c[i];
            if matches!(ch, '*' | '_' | '~') {
                let n = self.run(i, to, ch);
                if depth < MAX_EMPHASIS_DEPTH && self.can_open(i, n, to, ch) {
                    if let Some(close) = self.closer(i + n, to, ch, n, links) {
                        let strong = ch != '~' && n >= 2;
                        if strong && self.style.ansi && !bold {
                            out.push_str(BOLD_ON);
                            self.render(i + n, close, true, depth + 1, links, out);
                            out.push_str(BOLD_OFF);
                        } else {
                            self.render(i + n, close, bold, depth + 1, links, out);
                        }
                        i = close + n;
                        continue;
                    }
                }
                out.extend(&self.c[i..i + n]);
                i += n;
                continue;
            }
            out.push(ch);
            i += 1;
        }
    }

    fn emit(&self, atom: Atom, bold: bool, depth: usize, out: &mut String) {
        match atom {
            Atom::Escaped(ch) => out.push(ch),
            Atom::Literal(s, e) => out.extend(&self.c[s..e]),
            Atom::Code(s, e) => {
                let code = &self.c[s..e];
                let padded = code.len() >= 2
                    && code.first() == Some(&' ')
                    && code.last() == Some(&' ')
                    && code.iter().any(|c| *c != ' ');
                out.extend(if padded {
                    &code[1..code.len() - 1]
                } else {
                    code
                });
            }
            Atom::Autolink(s, e) => {
                out.push('<');
                out.extend(&self.c[s..e]);
                out.push('>');
            }
            Atom::Link(s, e, dest) => {
                let mut plain = String::new();
                Inline {
                    c: self.c,
                    style: Style::PLAIN,
                }
                .render(s, e, false, depth + 1, false, &mut plain);
                let label = plain.trim();
                if dest.is_empty() {
                    self.render(s, e, bold, depth + 1, false, out);
                } else if label.is_empty() || label == dest {
                    out.push('<');
                    out.push_str(&dest);
                    out.push('>');
                } else {
                    self.render(s, e, bold, depth + 1, false, out);
                    out.push_str(" <");
                    out.push_str(&dest);
                    out.push('>');
                }
            }
        }
    }

    /// The span that starts at `i`, if any, and where it ends.
    fn atom(&self, i: usize, to: usize, links: bool) -> Option<(Atom, usize)> {
        match self.c[i] {
            '\\' => {
                let next = *self.c.get(i + 1).filter(|_| i + 1 < to)?;
                next.is_ascii_punctuation()
                    .then_some((Atom::Escaped(next), i + 2))
            }
            '`' => {
                let n = self.run(i, to, '`');
                Some(match self.code_end(i + n, to, n) {
                    Some(close) => (Atom::Code(i + n, close), close + n),
                    None => (Atom::Literal(i, i + n), i + n),
                })
            }
            '[' if links => self.link(i, to),
            '<' => self.autolink(i, to),
            'h' | 'H' => self.bare_url(i, to),
            _ => None,
        }
    }

    fn run(&self, i: usize, to: usize, ch: char) -> usize {
        self.c[i..to].iter().take_while(|c| **c == ch).count()
    }

    /// The start of the next run of exactly `n` backticks from `from`.
    fn code_end(&self, from: usize, to: usize, n: usize) -> Option<usize> {
        let mut j = from;
        let limit = to.min(from.saturating_add(CLOSER_SCAN));
        while j < limit {
            if self.c[j] == '`' {
                let m = self.run(j, to, '`');
                if m == n {
                    return Some(j);
                }
                j += m;
            } else {
                j += 1;
            }
        }
        None
    }

    fn can_open(&self, i: usize, n: usize, to: usize, ch: char) -> bool {
        let valid = match ch {
            '~' => n == 2,
            _ => (1..=3).contains(&n),
        };
        let next = self.c.get(i + n).filter(|_| i + n < to);
        let prev = i.checked_sub(1).and_then(|p| self.c.get(p));
        valid
            && next.is_some_and(|c| !c.is_whitespace())
            // `snake_case` is a word, not emphasis.
            && !(ch == '_' && prev.is_some_and(|c| c.is_alphanumeric()))
    }

    fn can_close(&self, j: usize, m: usize, to: usize, ch: char) -> bool {
        let prev = j.checked_sub(1).and_then(|p| self.c.get(p));
        let next = self.c.get(j + m).filter(|_| j + m < to);
        prev.is_some_and(|c| !c.is_whitespace())
            && !(ch == '_' && next.is_some_and(|c| c.is_alphanumeric()))
    }

    /// Where the emphasis opened by `n` × `ch` before `from` closes: the next run of the
    /// same length that can close, outside code spans, links and URLs.
    fn closer(&self, from: usize, to: usize, ch: char, n: usize, links: bool) -> Option<usize> {
        let mut j = from;
        let limit = to.min(from.saturating_add(CLOSER_SCAN));
        while j < limit {
            if let Some((_, end)) = self.atom(j, to, links) {
                j = end.max(j + 1);
                continue;
            }
            if self.c[j] == ch {
                let m = self.run(j, to, ch);
                if m == n && j > from && self.can_close(j, m, to, ch) {
                    return Some(j);
                }
                j += m;
                continue;
            }
            j += 1;
        }
        None
    }

    /// `[label](dest)` or `[label](dest "title")` starting at `i`.
    fn link(&self, i: usize, to: usize) -> Option<(Atom, usize)> {
        let c = self.c;
        let limit = to.min(i.saturating_add(LABEL_SCAN));
        let mut j = i + 1;
        let mut depth = 0usize;
        let close = loop {
            if j >= limit {
                return None;
            }
            match c[j] {
                '\\' => j += 2,
                '`' => {
                    let n = self.run(j, to, '`');
                    j = self.code_end(j + n, to, n).map_or(j + n, |e| e + n);
                }
                '[' => {
                    depth += 1;
                    j += 1;
                }
                ']' if depth == 0 => break j,
                ']' => {
                    depth -= 1;
                    j += 1;
                }
                _ => j += 1,
            }
        };
        if c.get(close + 1) != Some(&'(') || close + 1 >= to {
            return None;
        }
        let limit = to.min((close + 2).saturating_add(DEST_SCAN));
        let mut k = close + 2;
        let skip_space = |mut k: usize| {
            while k < limit && matches!(c[k], ' ' | '\t') {
                k += 1;
            }
            k
        };
        k = skip_space(k);
        let mut dest = String::new();
        if c.get(k) == Some(&'<') {
            k += 1;
            loop {
                match c.get(k).filter(|_| k < limit)? {
                    '>' => {
                        k += 1;
                        break;
                    }
                    '<' => return None,
                    '\\' if k + 1 < limit && c[k + 1].is_ascii_punctuation() => {
                        dest.push(c[k + 1]);
                        k += 2;
                    }
                    ch => {
                        dest.push(*ch);
                        k += 1;
                    }
                }
            }
        } else {
            let mut parens = 0usize;
            while k < limit {
                let ch = c[k];
                if ch.is_whitespace() {
                    break;
                }
                if ch == '\\' && k + 1 < limit && c[k + 1].is_ascii_punctuation() {
                    dest.push(c[k + 1]);
                    k += 2;
                    continue;
                }
                if ch == '(' {
                    parens += 1;
                } else if ch == ')' {
                    if parens == 0 {
                        break;
                    }
                    parens -= 1;
                }
                dest.push(ch);
                k += 1;
            }
        }
        let after_dest = k;
        k = skip_space(k);
        if k > after_dest {
            if let Some(quote @ ('"' | '\'')) = c.get(k).copied() {
                k += 1;
                loop {
                    match c.get(k).filter(|_| k < limit)? {
                        '\\' => k += 2,
                        ch if *ch == quote => {
                            k += 1;
                            break;
                        }
                        _ => k += 1,
                    }
                }
                k = skip_space(k);
            }
        }
        if k < limit && c[k] == ')' {
            Some((Atom::Link(i + 1, close, dest), k + 1))
        } else {
            None
        }
    }

    /// `<scheme:…>` (a scheme of 2 to 32 letters, digits, `+`, `.`, `-`).
    fn autolink(&self, i: usize, to: usize) -> Option<(Atom, usize)> {
        let c = self.c;
        let start = i + 1;
        let mut k = start;
        while k < to && (c[k].is_ascii_alphanumeric() || matches!(c[k], '+' | '.' | '-')) {
            k += 1;
        }
        let scheme = k - start;
        if !(2..=32).contains(&scheme)
            || !c.get(start).is_some_and(char::is_ascii_alphabetic)
            || c.get(k) != Some(&':')
        {
            return None;
        }
        while k < to && !c[k].is_whitespace() && !matches!(c[k], '<' | '>') {
            k += 1;
        }
        (k < to && c[k] == '>').then_some((Atom::Autolink(start, k), k + 1))
    }

    /// A bare `http(s)://` URL, shown as it is (its `_` and `*` are not emphasis), without
    /// the punctuation that ends a sentence after it.
    fn bare_url(&self, i: usize, to: usize) -> Option<(Atom, usize)> {
        let c = self.c;
        if i > 0 && c[i - 1].is_alphanumeric() {
            return None;
        }
        let head: String = c[i..to.min(i + 8)]
            .iter()
            .collect::<String>()
            .to_ascii_lowercase();
        let scheme = if head.starts_with("https://") {
            8
        } else if head.starts_with("http://") {
            7
        } else {
            return None;
        };
        let mut end = i + scheme;
        while end < to && !c[end].is_whitespace() && c[end] != '<' {
            end += 1;
        }
        let url = &c[i..end];
        let open = url.iter().filter(|x| **x == '(').count();
        let mut shut = url.iter().filter(|x| **x == ')').count();
        while let Some(last) = c.get(end - 1).copied().filter(|_| end > i + scheme) {
            let trailing = match last {
                ')' => shut > open,
                '?' | '!' | '.' | ',' | ':' | ';' | '*' | '_' | '~' | '\'' | '"' => true,
                _ => false,
            };
            if !trailing {
                break;
            }
            if last == ')' {
                shut -= 1;
            }
            end -= 1;
        }
        (end > i + scheme).then_some((Atom::Literal(i, end), end))
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use serde_json::json;

    use super::*;
    use crate::domain::Reference;
    use crate::inbound::activity::{ChannelAccount, ConversationAccount, ConversationReference};
    use crate::price::Currency;
    use crate::speech::notices::{alerts, cannot_read, first_fetch_failed, into_activity};
    use crate::speech::notices::{AlertItem, ProductView};
    use crate::speech::replies::{help, Lang};

    const NOV_1: u64 = 1_793_491_200_000;
    const ESC: char = '\u{1b}';

    fn plain(md: &str) -> String {
        markdown(Style::PLAIN, md)
    }

    fn ansi(md: &str) -> String {
        markdown(Style::ANSI, md)
    }

    fn bold(s: &str) -> String {
        format!("{BOLD_ON}{s}{BOLD_OFF}")
    }

    /// The characters of `s` that would drive a terminal, once the bold sequences this
    /// module writes are taken out.
    fn foreign_controls(s: &str) -> Vec<char> {
        s.replace(BOLD_ON, "")
            .replace(BOLD_OFF, "")
            .chars()
            .filter(|c| visible(&c.to_string()).is_empty())
            .collect()
    }

    /// Every line opens bold before it closes it and closes what it opens.
    fn bold_balanced(s: &str) -> bool {
        s.split('\n').all(|line| {
            let mut open = false;
            let mut rest = line;
            while let Some(at) = rest.find('\u{1b}') {
                let tail = &rest[at..];
                if tail.starts_with(BOLD_ON) && !open {
                    open = true;
                    rest = &tail[BOLD_ON.len()..];
                } else if tail.starts_with(BOLD_OFF) && open {
                    open = false;
                    rest = &tail[BOLD_OFF.len()..];
                } else {
                    return false;
                }
            }
            !open
        })
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn alert(number: usize, title: &'static str, url: &'static str) -> AlertItem<'static> {
        let eur = Currency::parse("EUR").unwrap();
        AlertItem {
            number,
            product: ProductView {
                url,
                title: Some(title),
            },
            reference: Reference {
                amount: dec("199"),
                currency: eur,
                at_ms: NOV_1,
            },
            price: dec("149.25"),
            currency: eur,
            line: dec("159.20"),
            drop_percent: dec("25.0"),
            at_ms: NOV_1 + 24 * 86_400_000,
        }
    }

    /// The activity the daemon posts for `items` to a Web Chat conversation, as JSON.
    fn alert_activity(items: &[AlertItem<'_>]) -> Value {
        let reference = ConversationReference {
            channel_id: "webchat".to_owned(),
            service_url: "https://webchat.example/".to_owned(),
            conversation: ConversationAccount {
                id: "c1".to_owned(),
                ..Default::default()
            },
            user: Some(ChannelAccount {
                id: "u1".to_owned(),
                ..Default::default()
            }),
            bot: ChannelAccount {
                id: "b1".to_owned(),
                ..Default::default()
            },
            locale: None,
        };
        let message = alerts(Lang::En, items).unwrap();
        serde_json::to_value(into_activity(message, &reference, Lang::En)).unwrap()
    }

    fn message(text: &str) -> Value {
        json!({"type": "message", "text": text})
    }

    fn with_card(content_type: &str, content: Value) -> Value {
        json!({
            "type": "message",
            "attachments": [{"contentType": content_type, "content": content}],
        })
    }

    fn adaptive(body: Value, actions: Value) -> Value {
        with_card(
            ADAPTIVE_CARD,
            json!({"type": "AdaptiveCard", "version": "1.4", "body": body, "actions": actions}),
        )
    }

    fn text_of(buttons: &mut Buttons, a: &Value) -> String {
        activity(Style::PLAIN, buttons, a).unwrap().text
    }

    #[test]
    fn emphasis_code_and_headings() {
        assert_eq!(plain("**bold** and __bold__"), "bold and bold");
        assert_eq!(
            ansi("**bold** and __bold__"),
            format!("{} and {}", bold("bold"), bold("bold"))
        );
        assert_eq!(plain("*it* _it_ ~~gone~~ `code`"), "it it gone code");
        assert_eq!(ansi("*it* _it_ `co*de*`"), "it it co*de*");
        assert_eq!(plain("`` a ` b ``"), "a ` b");
        assert_eq!(plain("# Title"), "Title");
        assert_eq!(ansi("## Title ##"), bold("Title"));
        // Bold inside bold does not end the outer bold early.
        assert_eq!(ansi("# A **b** c"), bold("A b c"));
        assert_eq!(ansi("**a *b* c**"), bold("a b c"));
        assert_eq!(ansi("***both***"), bold("both"));
        assert_eq!(plain("#3 is not a heading"), "#3 is not a heading");
    }

    #[test]
    fn links_autolinks_and_bare_urls() {
        assert_eq!(
            plain("see [Kettle](https://x.example/a) now"),
            "see Kettle <https://x.example/a> now"
        );
        assert_eq!(
            ansi("[**Kettle**](https://x.example/a)"),
            format!("{} <https://x.example/a>", bold("Kettle"))
        );
        assert_eq!(
            plain("[https://x.example/a](https://x.example/a)"),
            "<https://x.example/a>"
        );
        assert_eq!(
            plain("[a](<https://x.example/a b> \"title\")"),
            "a <https://x.example/a b>"
        );
        assert_eq!(
            plain("[a](https://x.example/(1))"),
            "a <https://x.example/(1)>"
        );
        assert_eq!(
            plain("<https://x.example/a_b_c>"),
            "<https://x.example/a_b_c>"
        );
        // A bare URL keeps its underscores and stars; the sentence's full stop is not in it.
        assert_eq!(
            plain("at https://x.example/_a_/*b*. Then (https://y.example/c)."),
            "at https://x.example/_a_/*b*. Then (https://y.example/c)."
        );
        assert_eq!(
            plain("[x](https://a.example/*y*) *z*"),
            "x <https://a.example/*y*> z"
        );
    }

    #[test]
    fn bare_urls_end_before_the_markers_around_them() {
        assert_eq!(
            ansi("**see https://x.example/a_b_(c)** and (https://y.example/d_)."),
            format!(
                "{} and (https://y.example/d_).",
                bold("see https://x.example/a_b_(c)")
            )
        );
        assert_eq!(plain("_https://x.example/a_"), "https://x.example/a");
        // A closing parenthesis the URL did not open ends it, and so can the marker before.
        assert_eq!(
            plain("(_see https://x.example/a_(b)_)"),
            "(see https://x.example/a_(b))"
        );
    }

    #[test]
    fn escapes_give_the_character() {
        assert_eq!(
            plain(r"\*not\* \_this\_ \[x\] \\ \<b\> \` \~ \# \a"),
            r"*not* _this_ [x] \ <b> ` ~ # \a"
        );
        assert_eq!(plain(r"\# not a heading"), r"# not a heading");
        assert_eq!(plain(r"\- not a list"), r"- not a list");
    }

    #[test]
    fn lists_quotes_and_lines() {
        assert_eq!(plain("- a\n* b\n+ c"), "  • a\n  • b\n  • c");
        assert_eq!(plain("- a\n  - nested"), "  • a\n    • nested");
        assert_eq!(plain("1. one\n2) two"), "  1. one\n  2) two");
        assert_eq!(plain("> quoted *x*"), "│ quoted x");
        assert_eq!(plain("a\n\nb\nc"), "a\n\nb\nc");
        assert_eq!(plain("---"), "─".repeat(20));
        assert_eq!(plain("```\n*x*\n```"), "```\n*x*\n```");
        // A list item's next line stays under its text.
        assert_eq!(
            plain("3. item\n   more\nafter"),
            "  3. item\n     more\nafter"
        );
    }

    #[test]
    fn unbalanced_markers_are_kept_as_typed() {
        for s in [
            "**open",
            "close**",
            "`tick",
            "``two` ticks",
            "[label](no close",
            "[label] (space)",
            "[a]",
            "snake_case_name and __init__",
            "a * b * c",
            "_a",
            "~~x",
            "~x~",
            "a ****",
            "<not a link>",
            "<a:b c>",
            "trailing \\",
            "price *2* ... no: 2 * 3",
        ] {
            let out = plain(s);
            if s.starts_with("snake") {
                assert_eq!(out, "snake_case_name and init");
            } else if s.starts_with("price") {
                assert_eq!(out, "price 2 ... no: 2 * 3");
            } else {
                assert_eq!(out, s);
            }
            assert!(bold_balanced(&ansi(s)), "{s}");
        }
    }

    #[test]
    fn control_and_bidi_characters_never_reach_the_terminal() {
        let hostile = "a\u{1b}[31mred\u{1b}]0;title\u{7}\r\u{0}\u{7f}\u{9b}2J \u{202E}evil\u{2066}\u{200F}\u{61C} **b\u{1b}[0m**\tz";
        assert_eq!(plain(hostile), "a[31mred]0;title2J evil b[0m\tz");
        assert_eq!(
            ansi(hostile),
            format!("a[31mred]0;title2J evil {}\tz", bold("b[0m"))
        );
        // An escaped ESC is not resurrected by the escape rule.
        assert_eq!(plain("\\\u{1b}[2J"), "[2J");

        let mut buttons = Buttons::new();
        let a = json!({
            "type": "message",
            "text": hostile,
            "attachments": [{
                "contentType": ADAPTIVE_CARD,
                "content": {
                    "type": "AdaptiveCard",
                    "body": [
                        {"type": "TextBlock", "text": hostile, "weight": "Bolder"},
                        {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": hostile}]},
                        {"type": "FactSet", "facts": [{"title": hostile, "value": hostile}]},
                        {"type": "Image", "altText": hostile},
                    ],
                    "actions": [
                        {"type": "Action.OpenUrl", "title": hostile, "url": "https://x.example/\u{1b}[2J\u{202E}"},
                        {"type": "Action.Submit", "title": hostile},
                    ],
                },
            }, {
                "contentType": "application/vnd.microsoft.card.hero",
                "content": {"title": hostile, "subtitle": hostile, "text": hostile},
            }],
            "suggestedActions": {"actions": [{"type": "imBack", "title": hostile, "value": "x"}]},
        });
        for style in [Style::PLAIN, Style::ANSI] {
            let r = activity(style, &mut buttons, &a).unwrap();
            assert!(foreign_controls(&r.text).is_empty(), "{:?}", r.text);
            assert!(bold_balanced(&r.text), "{:?}", r.text);
            assert_eq!(style.ansi, r.text.contains('\u{1b}'));
        }
        // The URL a button opens is printed by the client: it is cleaned too.
        assert_eq!(
            choose(&buttons, "1"),
            Choice::Open("https://x.example/[2J".to_owned())
        );
        let event = json!({"type": "event", "name": "a\u{1b}[2J\u{202E}b\nc"});
        assert_eq!(text_of(&mut buttons, &event), "(event: a[2Jb c)");
    }

    #[test]
    fn the_bots_replies_render_well() {
        let h = plain(&help(Lang::En));
        assert!(
            h.starts_with("Here is what I can do:\n\n  • watch <link>: watch a product"),
            "{h}"
        );
        assert!(
            h.contains("\n  • unwatch 2, unwatch <link> or unwatch all: stop watching\n"),
            "{h}"
        );
        assert!(
            h.ends_with("\n\nExample: watch https://shop.example/p/123 15%"),
            "{h}"
        );

        let failed = first_fetch_failed(Lang::En, "https://shop.example/p/1", "no_price here");
        assert_eq!(
            plain(&failed.text),
            "I could not read a price from https://shop.example/p/1: no_price here. \
             I am not keeping this watch. Check that the link opens the product's own page \
             (not a search, a cart or a login page), then send watch <link> again."
        );

        let product = ProductView {
            url: "https://shop.example/p/1",
            title: Some("Kettle"),
        };
        let m = cannot_read(
            Lang::Fr,
            3,
            product,
            NOV_1,
            "no price found: ambiguous_currency",
        );
        assert_eq!(
            plain(&m.text),
            "Je n'arrive plus à lire le prix de Kettle <https://shop.example/p/1> (n°3) \
             depuis le 1 nov. 2026 : no price found: ambiguous_currency. Je continue d'essayer \
             et vous préviendrai quand cela remarchera. Pour ne plus le surveiller, tapez arrêter 3."
        );

        // `list` and `history`, as their own tests show them.
        let list = "Your watches (1):\n\n3. [Kettle](https://shop.example/p/1)\n   now €179.00 · \
                    first price €199.00 (1 Nov 2026) · alert at €159.20 or less · watching";
        assert_eq!(
            plain(list),
            "Your watches (1):\n\n  3. Kettle <https://shop.example/p/1>\n     now €179.00 · \
             first price €199.00 (1 Nov 2026) · alert at €159.20 or less · watching"
        );
        let history = "Price history of [Kettle](https://shop.example/p/1) (#3) since 1 Nov 2026 (24 days):\n\n\
                       `█▁▂`\n\n\
                       - Lowest: €149.00 on 20 Nov 2026\n\
                       - Highest: €199.00 on 1 Nov 2026";
        assert_eq!(
            plain(history),
            "Price history of Kettle <https://shop.example/p/1> (#3) since 1 Nov 2026 (24 days):\n\n\
             █▁▂\n\n\
             \x20 • Lowest: €149.00 on 20 Nov 2026\n\
             \x20 • Highest: €199.00 on 1 Nov 2026"
        );
    }

    #[test]
    fn a_hostile_title_reads_as_written() {
        let hostile = alert(
            1,
            "*Super* _deal_ [2 for 1]](https://evil.example) `x` <b>\\\n  now",
            "https://shop.example/p/(1)",
        );
        let mut buttons = Buttons::new();
        let r = activity(Style::ANSI, &mut buttons, &alert_activity(&[hostile])).unwrap();
        let title = "*Super* _deal_ [2 for 1]](https://evil.example) `x` <b>\\ now";
        assert!(
            r.text.starts_with(&format!(
                "Price alert: {title} <https://shop.example/p/%281%29> (#1) is now"
            )),
            "{}",
            r.text
        );
        assert!(
            r.text.contains(&bold(&format!("{title} (#1)"))),
            "{}",
            r.text
        );
        assert!(!r.text.contains("<https://evil.example>"), "{}", r.text);
    }

    #[test]
    fn the_real_alert_card_has_its_facts_and_both_buttons() {
        let activity_json = alert_activity(&[alert(3, "Kettle", "https://shop.example/p/1")]);
        let mut buttons = Buttons::new();
        let r = activity(Style::PLAIN, &mut buttons, &activity_json).unwrap();
        assert_eq!(
            r.text,
            "Price alert: Kettle <https://shop.example/p/1> (#3) is now €149.25, down 25.0% \
             from €199.00 on 1 Nov 2026. To stop watching it, type unwatch 3.\n\
             \n\
             Price alert\n\
             \n\
             Kettle (#3)\n\
             Now: €149.25\n\
             First price: €199.00 (1 Nov 2026)\n\
             Drop: 25.0%\n\
             [1] Open product <https://shop.example/p/1>\n\
             [2] Stop watching"
        );
        assert_eq!(r.buttons, vec![1, 2]);
        assert_eq!(
            choose(&buttons, "1"),
            Choice::Open("https://shop.example/p/1".to_owned())
        );
        assert_eq!(
            choose(&buttons, " 2\n"),
            Choice::Send {
                text: None,
                value: Some(json!({
                    "msteams": {"type": "imBack", "value": "unwatch 3"},
                    "command": "unwatch 3",
                })),
            }
        );
        let r = activity(Style::ANSI, &mut buttons, &activity_json).unwrap();
        assert!(
            r.text.contains(&format!("\n{}\n", bold("Price alert"))),
            "{}",
            r.text
        );
        assert!(
            r.text.contains(&format!("\n{}\n", bold("Kettle (#3)"))),
            "{}",
            r.text
        );
        assert!(r
            .text
            .ends_with("[3] Open product <https://shop.example/p/1>\n[4] Stop watching"));
    }

    #[test]
    fn buttons_are_numbered_across_messages() {
        let digest = alert_activity(&[
            alert(2, "Kettle", "https://a.example/1"),
            alert(5, "Toaster", "https://b.example/2"),
        ]);
        let mut buttons = Buttons::new();
        let first = activity(Style::PLAIN, &mut buttons, &digest).unwrap();
        assert!(
            first.text.starts_with(
                "2 price alerts:\n\n  • Kettle <https://a.example/1> (#2) is now €149.25"
            ),
            "{}",
            first.text
        );
        assert!(
            first.text.contains("\n[2] Stop watching\n\nToaster (#5)\n"),
            "{}",
            first.text
        );
        assert_eq!(first.buttons, vec![1, 2, 3, 4]);
        let second = activity(Style::PLAIN, &mut buttons, &digest).unwrap();
        assert_eq!(second.buttons, vec![5, 6, 7, 8]);
        assert!(second.text.contains("[8] Stop watching"));
        assert_eq!(
            choose(&buttons, "3"),
            Choice::Open("https://b.example/2".to_owned())
        );
        let unwatch = |n: &str| {
            Some(
                json!({"msteams": {"type": "imBack", "value": format!("unwatch {n}")}, "command": format!("unwatch {n}")}),
            )
        };
        assert_eq!(
            choose(&buttons, "8"),
            Choice::Send {
                text: None,
                value: unwatch("5")
            }
        );
        assert_eq!(
            choose(&buttons, "6"),
            Choice::Send {
                text: None,
                value: unwatch("2")
            }
        );
    }

    #[test]
    fn choose_reads_numbers_only() {
        let mut buttons = Buttons::new();
        let a = json!({
            "type": "message",
            "suggestedActions": {"actions": [
                {"type": "imBack", "title": "List", "value": "list"},
                {"type": "openurl", "title": "Docs", "value": "https://docs.example/"},
            ]},
        });
        assert_eq!(
            text_of(&mut buttons, &a),
            "[1] List\n[2] Docs <https://docs.example/>"
        );
        assert_eq!(
            choose(&buttons, "1"),
            Choice::Send {
                text: Some("list".to_owned()),
                value: None
            }
        );
        assert_eq!(
            choose(&buttons, "\t2 "),
            Choice::Open("https://docs.example/".to_owned())
        );
        for typed in [
            "3",
            "0",
            "1 2",
            "1.",
            "+1",
            "-1",
            "one",
            "",
            " ",
            "[1]",
            "99999999999999999999999",
        ] {
            assert_eq!(
                choose(&buttons, typed),
                Choice::Text(typed.to_owned()),
                "{typed:?}"
            );
        }
    }

    #[test]
    fn only_the_last_buttons_are_kept() {
        let mut buttons = Buttons::new();
        for i in 0..BUTTONS_KEPT + 5 {
            buttons.add(Choice::Open(format!("https://x.example/{}", i + 1)));
        }
        assert_eq!(choose(&buttons, "5"), Choice::Text("5".to_owned()));
        assert_eq!(
            choose(&buttons, "6"),
            Choice::Open("https://x.example/6".to_owned())
        );
        let last = (BUTTONS_KEPT + 5).to_string();
        assert_eq!(
            choose(&buttons, &last),
            Choice::Open(format!("https://x.example/{last}"))
        );
    }

    #[test]
    fn hero_cards_and_their_buttons() {
        let mut buttons = Buttons::new();
        let hero = with_card(
            "application/vnd.microsoft.card.hero",
            json!({
                "title": "Kettle",
                "subtitle": "Steel, 1.7 l",
                "text": "Now **€149**",
                "images": [{"url": "https://img.example/k.png", "alt": "A kettle"}, {"url": "https://img.example/2.png"}],
                "buttons": [
                    {"type": "imBack", "title": "Watch it", "value": "watch https://shop.example/p/1"},
                    {"type": "openUrl", "title": "Open", "value": "https://shop.example/p/1"},
                    {"type": "messageBack", "title": "Stop", "text": "unwatch 1", "displayText": "Stop", "value": {"n": 1}},
                    {"type": "postBack", "title": "Hidden", "value": "list"},
                    {"type": "postBack", "title": "Object", "value": {"command": "list"}},
                    {"type": "imBack", "title": "No value"},
                    {"type": "unknownKind", "title": "Ignored", "value": "x"},
                ],
            }),
        );
        assert_eq!(
            text_of(&mut buttons, &hero),
            "Kettle\nSteel, 1.7 l\nNow €149\n(image: A kettle)\n(image: https://img.example/2.png)\n\
             [1] Watch it\n[2] Open <https://shop.example/p/1>\n[3] Stop\n[4] Hidden\n[5] Object"
        );
        let send = |text: Option<&str>, value: Option<Value>| Choice::Send {
            text: text.map(str::to_owned),
            value,
        };
        assert_eq!(
            choose(&buttons, "1"),
            send(Some("watch https://shop.example/p/1"), None)
        );
        assert_eq!(
            choose(&buttons, "3"),
            send(Some("unwatch 1"), Some(json!({"n": 1})))
        );
        assert_eq!(choose(&buttons, "4"), send(Some("list"), None));
        assert_eq!(
            choose(&buttons, "5"),
            send(None, Some(json!({"command": "list"})))
        );
        let r = activity(Style::ANSI, &mut buttons, &hero).unwrap();
        assert!(
            r.text.starts_with(&format!("{}\nSteel", bold("Kettle"))),
            "{}",
            r.text
        );
        let thumb = with_card(
            "application/vnd.microsoft.card.thumbnail",
            json!({"title": "T", "buttons": [{"type": "openUrl", "value": "https://t.example/"}]}),
        );
        assert_eq!(
            text_of(&mut buttons, &thumb),
            "T\n[11] <https://t.example/>"
        );
    }

    #[test]
    fn adaptive_card_elements() {
        let mut buttons = Buttons::new();
        let card = adaptive(
            json!([
                {"type": "TextBlock", "text": "- one\n- **two**"},
                {"type": "TextBlock", "text": "hidden", "isVisible": false},
                {"type": "ColumnSet", "columns": [
                    {"type": "Column", "items": [{"type": "TextBlock", "text": "left"}]},
                    {"type": "Column", "items": [{"type": "Image", "url": "https://i.example/a.png"}]},
                ]},
                {"type": "RichTextBlock", "inlines": ["plain ", {"type": "TextRun", "text": "**run**", "weight": "Bolder"}]},
                {"type": "Table", "rows": [{"type": "TableRow", "cells": [{"type": "TableCell", "items": [{"type": "TextBlock", "text": "cell"}]}]}]},
                {"type": "FutureThing", "fallback": {"type": "TextBlock", "text": "fallback element"}},
                {"type": "FutureContainer", "items": [{"type": "TextBlock", "text": "kept child"}]},
                {"type": "Input.Text", "id": "x"},
                {"type": "ActionSet", "separator": true, "actions": [
                    {"type": "Action.Execute", "title": "Run", "verb": "go", "data": {"k": "v"}},
                    {"type": "Action.ToggleVisibility", "title": "Toggle"},
                ]},
            ]),
            json!([
                {"type": "Action.Submit", "title": "Send"},
                {"type": "Action.ShowCard", "title": "More", "card": {
                    "type": "AdaptiveCard",
                    "body": [{"type": "TextBlock", "text": "inner\ntwo lines"}],
                    "actions": [{"type": "Action.Submit", "title": "Deep", "data": "deep"}],
                }},
                {"type": "Action.OpenUrl", "title": "No url"},
            ]),
        );
        assert_eq!(
            text_of(&mut buttons, &card),
            "  • one\n  • two\nleft\n(image: https://i.example/a.png)\nplain **run**\ncell\n\
             fallback element\nkept child\n\n[1] Run\n[2] Send\n▸ More\n    inner\n    two lines\n    [3] Deep"
        );
        assert_eq!(
            choose(&buttons, "1"),
            Choice::Send {
                text: None,
                value: Some(json!({"k": "v"}))
            }
        );
        assert_eq!(
            choose(&buttons, "2"),
            Choice::Send {
                text: None,
                value: Some(json!({}))
            }
        );
        assert_eq!(
            choose(&buttons, "3"),
            Choice::Send {
                text: None,
                value: Some(json!("deep"))
            }
        );
    }

    #[test]
    fn a_card_without_text_shows_its_fallback() {
        let mut buttons = Buttons::new();
        let card = with_card(
            ADAPTIVE_CARD,
            json!({"type": "AdaptiveCard", "body": [{"type": "Unknown"}], "fallbackText": "Use **the** text"}),
        );
        assert_eq!(text_of(&mut buttons, &card), "Use the text");
        let empty = with_card(ADAPTIVE_CARD, json!({"type": "AdaptiveCard", "body": []}));
        assert_eq!(activity(Style::PLAIN, &mut buttons, &empty), None);
        let broken = with_card(ADAPTIVE_CARD, json!("not a card"));
        assert_eq!(activity(Style::PLAIN, &mut buttons, &broken), None);
        // Cards nested past the limit are not drawn, and do not overflow the stack.
        let mut deep = json!({"type": "TextBlock", "text": "bottom"});
        for _ in 0..200 {
            deep = json!({"type": "Container", "items": [deep]});
        }
        let nested = adaptive(json!([deep]), json!([]));
        assert_eq!(activity(Style::PLAIN, &mut buttons, &nested), None);
    }

    #[test]
    fn activity_kinds() {
        let mut buttons = Buttons::new();
        assert_eq!(
            activity(Style::PLAIN, &mut buttons, &json!({"type": "typing"})),
            None
        );
        assert_eq!(
            activity(Style::PLAIN, &mut buttons, &message("  \n ")),
            None
        );
        assert_eq!(text_of(&mut buttons, &message("\n\n  \nhi\n\n")), "hi");
        assert_eq!(
            text_of(
                &mut buttons,
                &json!({"type": "event", "name": "pricewatch/ping"})
            ),
            "(event: pricewatch/ping)"
        );
        assert_eq!(
            text_of(&mut buttons, &json!({"type": "endOfConversation"})),
            "(event: endOfConversation)"
        );
        assert_eq!(text_of(&mut buttons, &json!([1, 2])), "(event: unknown)");
        let long = "n".repeat(500);
        let note = text_of(&mut buttons, &json!({"type": "event", "name": long}));
        assert_eq!(note.chars().count(), "(event: )".len() + NOTE_MAX_CHARS);
        assert_eq!(
            text_of(
                &mut buttons,
                &json!({"type": "message", "text": "**as typed**", "textFormat": "plain"})
            ),
            "**as typed**"
        );
        let file = json!({"type": "message", "text": "Here", "attachments": [
            {"contentType": "image/png", "contentUrl": "https://f.example/a.png", "name": "a.png"},
            {"contentType": "", "content": {}},
        ]});
        assert_eq!(
            text_of(&mut buttons, &file),
            "Here\n\n(attachment: a.png <https://f.example/a.png>)\n\n(attachment: file)"
        );
    }

    /// Pieces that make Markdown: markers, brackets, escapes, URLs, line starts.
    fn markup() -> impl Strategy<Value = String> {
        let pieces = vec![
            "a",
            "b",
            "7",
            "c8",
            " ",
            "  ",
            "*",
            "**",
            "_",
            "__",
            "`",
            "~~",
            "[",
            "]",
            "(",
            ")",
            "<",
            ">",
            "\\",
            "#",
            "# ",
            "- ",
            "1. ",
            "> ",
            "\n",
            "\n\n",
            "http://x.y/",
            "https://a_b*c/",
            "<https://q.r>",
            ":",
            ".",
            "\u{1b}[1m",
            "\u{202E}",
            "\t",
            "[a](",
            "](b7)",
            "](<b 7>)",
            "[x](https://x.y/a_b)",
        ];
        proptest::collection::vec(proptest::sample::select(pieces), 0..40).prop_map(|v| v.concat())
    }

    fn alphanumerics(s: &str) -> Vec<char> {
        s.chars().filter(|c| c.is_alphanumeric()).collect()
    }

    proptest! {
        /// Whatever the text, rendering ends, and the output carries no control character
        /// but `\n`, `\t` and balanced bold sequences (none without ANSI).
        #[test]
        fn any_text_renders_safely(text in any::<String>(), md in markup()) {
            for input in [text.as_str(), md.as_str()] {
                let p = plain(input);
                prop_assert!(foreign_controls(&p).is_empty(), "{:?} → {:?}", input, p);
                prop_assert!(!p.contains(ESC), "{:?}", p);
                let a = ansi(input);
                prop_assert!(foreign_controls(&a).is_empty(), "{:?} → {:?}", input, a);
                prop_assert!(bold_balanced(&a), "{:?} → {:?}", input, a);
            }
        }

        /// Markup is dropped, never the text it marks: every letter and digit comes out,
        /// in order. A link's destination is left out of what must come out: a link whose
        /// label is its destination (`[a](a)`) is shown once, as `<a>`, by design.
        #[test]
        fn markup_never_loses_text(md in markup()) {
            let out = plain(&md);
            let destinations = regex::Regex::new(r"\]\([^)]*\)").unwrap();
            let text = destinations.replace_all(&md, "]");
            let mut want = alphanumerics(&visible(&text)).into_iter();
            let mut next = want.next();
            for c in alphanumerics(&out) {
                if Some(c) == next {
                    next = want.next();
                }
            }
            prop_assert!(next.is_none(), "{:?} → {:?}", md, out);
        }

        /// Any text in any field of a card, a hero card or a note renders safely.
        #[test]
        fn any_activity_renders_safely(t in any::<String>(), md in markup()) {
            let a = json!({
                "type": "message",
                "text": md,
                "attachments": [
                    {"contentType": ADAPTIVE_CARD, "content": {"type": "AdaptiveCard", "body": [
                        {"type": "TextBlock", "text": t, "weight": "Bolder"},
                        {"type": "RichTextBlock", "inlines": [t, {"type": "TextRun", "text": md, "weight": "Bolder"}]},
                        {"type": "FactSet", "facts": [{"title": t, "value": md}]},
                        {"type": "Image", "altText": t},
                    ], "actions": [
                        {"type": "Action.OpenUrl", "title": md, "url": t},
                        {"type": "Action.ShowCard", "title": t, "card": {"fallbackText": md}},
                    ]}},
                    {"contentType": "application/vnd.microsoft.card.hero",
                     "content": {"title": t, "subtitle": md, "text": t, "buttons": [{"type": "openUrl", "title": t, "value": md}]}},
                    {"contentType": t, "name": md, "contentUrl": t},
                ],
                "suggestedActions": {"actions": [{"type": "imBack", "title": t, "value": md}]},
            });
            let mut buttons = Buttons::new();
            for style in [Style::PLAIN, Style::ANSI] {
                let r = activity(style, &mut buttons, &a);
                prop_assert!(r.is_some());
                let text = r.map(|r| r.text).unwrap_or_default();
                prop_assert!(foreign_controls(&text).is_empty(), "{:?}", text);
                prop_assert!(bold_balanced(&text), "{:?}", text);
                prop_assert!(style.ansi || !text.contains(ESC), "{:?}", text);
            }
            for n in 1..=8u64 {
                if let Choice::Open(url) = choose(&buttons, &n.to_string()) {
                    prop_assert!(foreign_controls(&url).is_empty() && !url.contains(char::is_whitespace));
                }
            }
            let note = json!({"type": t, "name": md});
            let r = activity(Style::ANSI, &mut buttons, &note);
            if let Some(r) = r {
                prop_assert!(foreign_controls(&r.text).is_empty(), "{:?}", r.text);
            }
        }
    }
}
