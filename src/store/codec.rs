//! Key layout and value encoding of the sled backend.
//!
//! Keys are length-prefixed so that no byte of a channel or conversation id (Teams and
//! Emulator ids contain `:`, `@`, `;`, `|`) can make two conversations share a prefix.
//! Values are JSON wrapped in a version envelope so a later schema can read old records.

use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use super::StoreError;
use crate::inbound::activity::ConversationKey;

/// `u16 len ‖ channelId ‖ u32 len ‖ conversation.id`.
pub fn conversation_key(key: &ConversationKey) -> Vec<u8> {
    let c = key.channel_id.as_bytes();
    let v = key.conversation_id.as_bytes();
    let mut out = Vec::with_capacity(6 + c.len() + v.len() + 8);
    // Channel ids are short names; a longer one is truncated in the length, never the bytes,
    // so clamp rather than silently wrap.
    out.extend_from_slice(&(c.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(&c[..c.len().min(u16::MAX as usize)]);
    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
    out.extend_from_slice(v);
    out
}

/// The conversation a [`conversation_key`] was made from; `None` when the bytes are not
/// one (a channel id clamped at 65,535 bytes, or not UTF-8): the caller reads the record.
pub fn conversation_from_key(key: &[u8]) -> Option<ConversationKey> {
    let (len, rest) = key.split_first_chunk::<2>()?;
    let (channel, rest) = rest.split_at_checked(u16::from_be_bytes(*len) as usize)?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    if rest.len() != u32::from_be_bytes(*len) as usize {
        return None;
    }
    Some(ConversationKey {
        channel_id: std::str::from_utf8(channel).ok()?.to_owned(),
        conversation_id: std::str::from_utf8(rest).ok()?.to_owned(),
    })
}

/// `conversation_key ‖ u64 BE watch id`: a prefix scan lists a conversation's watches in
/// creation order.
pub fn watch_key(conversation: &ConversationKey, id: u64) -> Vec<u8> {
    let mut k = conversation_key(conversation);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// `u32 len ‖ url`: the product's key, and the prefix of its index and history keys.
pub fn url_key(url: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + url.len() + 8);
    out.extend_from_slice(&(url.len() as u32).to_be_bytes());
    out.extend_from_slice(url.as_bytes());
    out
}

/// `url_key ‖ u64 BE`: a product's watches (by id) or history points (by time), in order.
pub fn url_key_with(url: &str, n: u64) -> Vec<u8> {
    let mut k = url_key(url);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// The `u64` at the end of a `url_key_with` key.
pub fn trailing_u64(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

#[derive(Serialize)]
struct EnvelopeRef<'a, T> {
    v: u32,
    #[serde(flatten)]
    body: &'a T,
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&EnvelopeRef {
        v: super::RECORD_VERSION,
        body: value,
    })
    .map_err(|e| StoreError::Encode(Arc::new(e)))
}

/// Reads a record written by [`encode`]. Every stored type is a struct, which skips the
/// envelope's `v` as an unknown field, so the body is read straight from the bytes: a
/// `#[serde(flatten)]` envelope made serde buffer each record into a map first, which cost
/// about a tenth of a poll cycle's CPU (BENCHMARKS.md). A later schema that has to tell
/// record versions apart can still read `v` on its own.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice::<T>(bytes).map_err(|e| StoreError::Corrupt {
        what,
        source: Arc::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str, v: &str) -> ConversationKey {
        ConversationKey {
            channel_id: c.into(),
            conversation_id: v.into(),
        }
    }

    #[test]
    fn a_conversation_key_reads_back() {
        for (c, v) in [
            ("emulator", "c1"),
            ("msteams", "a:1|é"),
            ("", ""),
            ("x", ""),
        ] {
            let k = key(c, v);
            assert_eq!(conversation_from_key(&conversation_key(&k)), Some(k));
        }
        let mut watch = watch_key(&key("slack", "c"), 7);
        assert_eq!(conversation_from_key(&watch), None, "longer than a key");
        watch.truncate(watch.len() - 9);
        assert_eq!(
            conversation_from_key(&watch),
            None,
            "shorter than its length"
        );
        assert_eq!(conversation_from_key(&[0, 9, b'a']), None);
    }

    #[test]
    fn keys_of_different_conversations_never_share_a_prefix() {
        let a = conversation_key(&key("msteams", "19:a"));
        let b = conversation_key(&key("msteams", "19:a@thread"));
        assert!(!b.starts_with(&a));
        let c = conversation_key(&key("ms", "teams19:a"));
        assert_ne!(a, c);
    }

    #[test]
    fn watch_keys_sort_by_id() {
        let k = key("slack", "C1");
        assert!(watch_key(&k, 2) < watch_key(&k, 10));
        assert!(watch_key(&k, 2).starts_with(&conversation_key(&k)));
    }

    #[test]
    fn url_keys_never_share_a_prefix_and_sort_by_number() {
        assert!(!url_key("https://a.example/p1").starts_with(&url_key("https://a.example/p")));
        let k = url_key_with("https://a.example/p", 7);
        assert!(k.starts_with(&url_key("https://a.example/p")));
        assert_eq!(trailing_u64(&k), Some(7));
        assert!(url_key_with("u", 9) < url_key_with("u", 10));
        assert_eq!(trailing_u64(b"short"), None);
    }

    #[test]
    fn outbox_entries_written_before_replies_were_queued_still_decode() {
        use crate::domain::{OutboxEntry, OutboxMessage};
        let old = br#"{"v":1,"id":7,"alert_id":"announcement:1:emulator:c1","conversation":{"channelId":"emulator","conversationId":"c1"},"watch_id":null,"message":{"kind":"announcement","text":"maintenance"},"created_ms":1,"attempts":0,"next_attempt_ms":1,"last_error":null}"#;
        let entry: OutboxEntry = decode("outbox entry", old).unwrap();
        assert_eq!(
            entry.message,
            OutboxMessage::Announcement {
                text: "maintenance".into()
            }
        );
        let mut reply = entry.clone();
        reply.message = OutboxMessage::Reply {
            text: "Watching #1".into(),
            reply_to_id: Some("a1".into()),
        };
        let back: OutboxEntry = decode("outbox entry", &encode(&reply).unwrap()).unwrap();
        assert_eq!(back, reply);
        // A reply to an activity without an id has no `reply_to_id` at all.
        reply.message = OutboxMessage::Reply {
            text: "Watching #1".into(),
            reply_to_id: None,
        };
        let bytes = encode(&reply).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("reply_to_id"));
        assert_eq!(
            decode::<OutboxEntry>("outbox entry", &bytes).unwrap(),
            reply
        );
    }

    #[test]
    fn watches_written_before_restock_still_decode_and_restock_watches_round_trip() {
        use crate::domain::{Rule, Stock, Watch};
        let old = br#"{"v":1,"id":3,"conversation":{"channelId":"emulator","conversationId":"c1"},"user":null,"url":"https://shop.example/p/1","rule":{"kind":"drop","percent":"20"},"created_at_ms":5,"trigger":{"reference":{"amount":"100","currency":"EUR","at_ms":5},"fired":false,"below_count":0,"mismatch_reported":false,"last":null}}"#;
        let watch: Watch = decode("watch", old).unwrap();
        assert_eq!(watch.trigger.stock, None);
        assert!(!watch.is_pending());
        // A price watch is written as before: no `stock` key.
        let bytes = encode(&watch).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(r#""stock""#));

        let mut restock = watch.clone();
        restock.rule = Rule::Restock;
        restock.trigger = Default::default();
        assert!(restock.is_pending());
        restock.trigger.stock = Some(Stock::OutOfStock);
        assert!(!restock.is_pending());
        let bytes = encode(&restock).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(
            text.contains(r#""rule":{"kind":"restock"}"#)
                && text.contains(r#""stock":"out_of_stock""#),
            "{text}"
        );
        assert_eq!(decode::<Watch>("watch", &bytes).unwrap(), restock);
    }

    #[test]
    fn envelope_round_trip() {
        let bytes = encode(&key("a", "b")).unwrap();
        assert!(std::str::from_utf8(&bytes).unwrap().contains("\"v\":1"));
        let back: ConversationKey = decode("key", &bytes).unwrap();
        assert_eq!(back, key("a", "b"));
        assert!(decode::<ConversationKey>("key", b"garbage").is_err());
    }
}
