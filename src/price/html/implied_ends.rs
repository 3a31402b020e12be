//! The implied-end-tag rules: which open elements a start tag closes (an unclosed `<li>` by the
//! next `<li>`, a `<p>` by a block, a table cell by the next cell, ...). Separate because they
//! are an abridged copy of the WHATWG tree-construction rules, kept together to be read against
//! them.

use super::collector::Collector;

/// How far implied-end-tag searches look down the stack, so hostile nesting
/// cannot make each tag cost O(depth).
const MAX_SCOPE_SEARCH: usize = 64;

/// The tag kinds the implied-end-tag rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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

pub(super) fn kind_of(name: &str) -> Kind {
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

impl Collector {
    /// Closes what a start tag implicitly ends (abridged WHATWG tree-construction rules).
    pub(super) fn implied_ends(&mut self, name: &str, kind: Kind) {
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
}
#[cfg(test)]
mod tests {
    use super::super::tests::facts;

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
}
