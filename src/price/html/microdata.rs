//! Microdata: the stack of open items and the properties each start tag adds to them. Separate
//! because it is the most intricate part of the collector (nested items, values read from
//! attributes or from text, per-page caps), and most pages have none.

use super::collector::{trim_ascii, Collector, Open, Target};
use super::{LolTag, MicroItem, MicroValue};

/// Items nested deeper than this are ignored together with their properties.
pub(super) const MAX_ITEM_DEPTH: usize = 64;
pub(super) const MAX_ITEMS: usize = 20_000;
const MAX_PROPS: usize = 100_000;

impl Collector {
    pub(super) fn microdata(
        &mut self,
        tag: &LolTag<'_, '_, '_>,
        name: &str,
        tracked: bool,
        open: &mut Open,
    ) {
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
}
#[cfg(test)]
mod tests {
    use super::super::tests::{facts, prop, text};
    use crate::price::html::{MetaKind, MicroValue};

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
}
