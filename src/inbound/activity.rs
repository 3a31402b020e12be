//! Bot Framework Activity JSON, as much of it as pricewatch reads or writes.
//!
//! Inbound activities are parsed leniently: unknown fields and types are ignored, as the
//! Activity spec requires of receivers (A2005/A2006). Outbound activities follow the SDK's
//! shape for replies (`from` = bot, `recipient` = user, `replyToId`, locale copied).

use serde::{Deserialize, Serialize};

/// A channel account (`from`, `recipient`, members).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ChannelAccount {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aad_object_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// The conversation an activity belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConversationAccount {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    // Kept because group conversations get different reply wording later; bots must not
    // send it back (A2083), so outbound activities use `OutboundConversation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_group: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

/// An inbound activity. Every field is optional at this layer so that a missing field
/// becomes a precise 400 from `Activity::validate` instead of a serde message.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub id: Option<String>,
    pub channel_id: Option<String>,
    pub service_url: Option<String>,
    pub from: Option<ChannelAccount>,
    pub recipient: Option<ChannelAccount>,
    pub conversation: Option<ConversationAccount>,
    pub text: Option<String>,
    pub locale: Option<String>,
    pub members_added: Option<Vec<ChannelAccount>>,
    pub delivery_mode: Option<String>,
    pub channel_data: Option<serde_json::Value>,
    /// Card buttons can send their command in `value` instead of `text`.
    pub value: Option<serde_json::Value>,
}

/// Why an inbound body is not an activity pricewatch can handle.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivityError {
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("the body is not a JSON object")]
    NotAnObject,
    #[error("the activity has a field of the wrong type: {0}")]
    WrongType(String),
    #[error("the activity has no `{0}`")]
    Missing(&'static str),
    #[error("`serviceUrl` is not an http(s) URL")]
    BadServiceUrl,
}

impl ActivityError {
    /// A stable machine-readable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            ActivityError::MalformedJson(_) => "MalformedJson",
            ActivityError::NotAnObject => "NotAnObject",
            ActivityError::WrongType(_) => "InvalidActivity",
            ActivityError::Missing(_) => "MissingField",
            ActivityError::BadServiceUrl => "BadServiceUrl",
        }
    }
}

/// The parts of an activity every turn needs, proven present.
#[derive(Debug, Clone)]
pub struct ValidActivity {
    pub kind: String,
    pub channel_id: String,
    pub service_url: String,
    pub conversation: ConversationAccount,
    pub activity: Activity,
}

impl Activity {
    /// Parses a request body the way the SDKs accept it: JSON, an object, with `type`,
    /// `channelId`, `conversation.id` and `serviceUrl`.
    pub fn parse(body: &[u8]) -> Result<ValidActivity, ActivityError> {
        Self::read(body)?.validate()
    }

    /// The JSON alone, before the fields are checked: what authentication looks at, so
    /// that an unauthenticated caller learns nothing about which fields are missing.
    pub fn read(body: &[u8]) -> Result<Activity, ActivityError> {
        serde_json::from_slice(body).map_err(|e| classify(body, e))
    }

    /// Proves the fields every turn needs present.
    pub fn validate(self) -> Result<ValidActivity, ActivityError> {
        let kind = non_empty(self.kind.as_deref()).ok_or(ActivityError::Missing("type"))?;
        let channel_id =
            non_empty(self.channel_id.as_deref()).ok_or(ActivityError::Missing("channelId"))?;
        let service_url =
            non_empty(self.service_url.as_deref()).ok_or(ActivityError::Missing("serviceUrl"))?;
        let conversation = self
            .conversation
            .clone()
            .filter(|c| !c.id.is_empty())
            .ok_or(ActivityError::Missing("conversation.id"))?;
        match url::Url::parse(service_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(ActivityError::BadServiceUrl),
        }
        Ok(ValidActivity {
            kind: kind.to_owned(),
            channel_id: channel_id.to_owned(),
            service_url: service_url.to_owned(),
            conversation,
            activity: self,
        })
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.trim().is_empty())
}

fn classify(body: &[u8], e: serde_json::Error) -> ActivityError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ActivityError::MalformedJson(e.to_string())
        }
        Category::Data => {
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            if first == Some(&b'{') {
                ActivityError::WrongType(e.to_string())
            } else {
                ActivityError::NotAnObject
            }
        }
    }
}

impl ValidActivity {
    pub fn from(&self) -> Option<&ChannelAccount> {
        self.activity.from.as_ref()
    }

    pub fn recipient(&self) -> Option<&ChannelAccount> {
        self.activity.recipient.as_ref()
    }

    /// `expectReplies` means the replies go back in the HTTP response body.
    pub fn expects_replies(&self) -> bool {
        self.activity.delivery_mode.as_deref() == Some("expectReplies")
    }

    /// The Teams tenant, from `conversation.tenantId` or `channelData.tenant.id`, as the
    /// legacy SDK adapter fills it in.
    pub fn tenant_id(&self) -> Option<String> {
        self.conversation.tenant_id.clone().or_else(|| {
            self.activity
                .channel_data
                .as_ref()?
                .pointer("/tenant/id")?
                .as_str()
                .map(str::to_owned)
        })
    }

    /// The conversation reference to store, as the SDK derives it (user = `from`,
    /// bot = `recipient`). The per-turn `activityId` is not kept: proactive messages go to
    /// the send endpoint, so storing it would only rewrite the record on every message.
    pub fn reference(&self) -> ConversationReference {
        let mut conversation = self.conversation.clone();
        if conversation.tenant_id.is_none() {
            conversation.tenant_id = self.tenant_id();
        }
        ConversationReference {
            channel_id: self.channel_id.clone(),
            service_url: self.service_url.clone(),
            conversation,
            user: self.from().cloned(),
            bot: self.recipient().cloned().unwrap_or_default(),
            locale: self.activity.locale.clone(),
        }
    }

    /// The conversation's identity, without building the whole reference.
    pub fn key(&self) -> ConversationKey {
        ConversationKey {
            channel_id: self.channel_id.clone(),
            conversation_id: self.conversation.id.clone(),
        }
    }

    /// Members added other than the bot itself, for the welcome message.
    pub fn humans_added(&self) -> impl Iterator<Item = &ChannelAccount> {
        let bot_id = self.recipient().map(|r| r.id.as_str()).unwrap_or("");
        self.activity
            .members_added
            .iter()
            .flatten()
            .filter(move |m| m.id != bot_id)
    }

    /// The command text: `text`, or a card button's `value` when the text is empty.
    pub fn command_text(&self) -> Option<&str> {
        match self.activity.text.as_deref() {
            Some(t) if !t.trim().is_empty() => Some(t),
            _ => self
                .activity
                .value
                .as_ref()
                .and_then(|v| v.get("command").or(Some(v)))
                .and_then(|v| v.as_str()),
        }
    }
}

/// Where proactive messages go: everything needed to write into a conversation
/// without the user writing first. Keyed in the store by (channelId, conversation.id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationReference {
    pub channel_id: String,
    pub service_url: String,
    pub conversation: ConversationAccount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<ChannelAccount>,
    pub bot: ChannelAccount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

impl ConversationReference {
    pub fn key(&self) -> ConversationKey {
        ConversationKey {
            channel_id: self.channel_id.clone(),
            conversation_id: self.conversation.id.clone(),
        }
    }
}

/// The identity of a conversation across channels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationKey {
    pub channel_id: String,
    pub conversation_id: String,
}

impl std::fmt::Display for ConversationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.channel_id, self.conversation_id)
    }
}

/// The conversation as a bot sends it: without `isGroup`/`conversationType` (A2083).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundConversation {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

impl From<&ConversationAccount> for OutboundConversation {
    fn from(c: &ConversationAccount) -> Self {
        OutboundConversation {
            id: c.id.clone(),
            name: c.name.clone(),
            tenant_id: c.tenant_id.clone(),
        }
    }
}

/// A card or other attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub content_type: String,
    pub content: serde_json::Value,
}

/// An activity the bot sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundActivity {
    #[serde(rename = "type")]
    pub kind: String,
    pub channel_id: String,
    pub service_url: String,
    pub conversation: OutboundConversation,
    pub from: ChannelAccount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<ChannelAccount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_hint: Option<String>,
}

impl OutboundActivity {
    /// A text message into the conversation of `reference`.
    pub fn message(reference: &ConversationReference, text: String) -> Self {
        OutboundActivity {
            kind: "message".to_owned(),
            channel_id: reference.channel_id.clone(),
            service_url: reference.service_url.clone(),
            conversation: OutboundConversation::from(&reference.conversation),
            from: reference.bot.clone(),
            recipient: reference.user.clone(),
            reply_to_id: None,
            text: Some(text),
            text_format: Some("markdown".to_owned()),
            locale: reference.locale.clone(),
            attachments: Vec::new(),
            input_hint: Some("acceptingInput".to_owned()),
        }
    }

    /// A reply to `activity`, addressed as the SDK's `applyConversationReference` does.
    pub fn reply(activity: &ValidActivity, text: String) -> Self {
        let mut out = OutboundActivity::message(&activity.reference(), text);
        out.reply_to_id = activity.activity.id.clone().filter(|id| !id.is_empty());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "type": "message", "id": "a1", "channelId": "emulator",
            "serviceUrl": "http://127.0.0.1:1/",
            "conversation": {"id": "c|livechat"},
            "from": {"id": "u1", "name": "User"},
            "recipient": {"id": "b1", "name": "Bot", "role": "bot"},
            "text": "help", "unknownField": {"nested": [1, 2]}
        })
    }

    #[test]
    fn parses_minimal_and_ignores_unknown_fields() {
        let a = Activity::parse(&body(minimal())).unwrap();
        assert_eq!(a.kind, "message");
        assert_eq!(a.conversation.id, "c|livechat");
        assert_eq!(a.command_text(), Some("help"));
    }

    #[test]
    fn classifies_bad_bodies() {
        assert!(matches!(
            Activity::parse(b"{not json"),
            Err(ActivityError::MalformedJson(_))
        ));
        assert!(matches!(
            Activity::parse(b""),
            Err(ActivityError::MalformedJson(_))
        ));
        assert_eq!(
            Activity::parse(b"[1,2]").unwrap_err(),
            ActivityError::NotAnObject
        );
        assert_eq!(
            Activity::parse(b"\"x\"").unwrap_err(),
            ActivityError::NotAnObject
        );
        assert!(matches!(
            Activity::parse(br#"{"type": 5}"#),
            Err(ActivityError::WrongType(_))
        ));
        for (field, name) in [
            ("type", "type"),
            ("channelId", "channelId"),
            ("serviceUrl", "serviceUrl"),
            ("conversation", "conversation.id"),
        ] {
            let mut v = minimal();
            v.as_object_mut().unwrap().remove(field);
            assert_eq!(
                Activity::parse(&body(v)).unwrap_err(),
                ActivityError::Missing(name)
            );
        }
        let mut v = minimal();
        v["serviceUrl"] = "ftp://x/".into();
        assert_eq!(
            Activity::parse(&body(v)).unwrap_err(),
            ActivityError::BadServiceUrl
        );
    }

    #[test]
    fn reference_takes_tenant_from_channel_data() {
        let mut v = minimal();
        v["channelData"] = serde_json::json!({"tenant": {"id": "t-1"}});
        let a = Activity::parse(&body(v)).unwrap();
        let r = a.reference();
        assert_eq!(r.conversation.tenant_id.as_deref(), Some("t-1"));
        assert_eq!(r.bot.id, "b1");
        assert_eq!(r.user.unwrap().id, "u1");
    }

    #[test]
    fn reply_is_addressed_like_the_sdk() {
        let mut v = minimal();
        v["locale"] = "fr-FR".into();
        v["conversation"]["isGroup"] = true.into();
        let a = Activity::parse(&body(v)).unwrap();
        let r = OutboundActivity::reply(&a, "hi".into());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["from"]["id"], "b1");
        assert_eq!(json["recipient"]["id"], "u1");
        assert_eq!(json["replyToId"], "a1");
        assert_eq!(json["locale"], "fr-FR");
        assert!(json["conversation"].get("isGroup").is_none());
    }

    #[test]
    fn humans_added_skips_the_bot() {
        let mut v = minimal();
        v["type"] = "conversationUpdate".into();
        v["membersAdded"] = serde_json::json!([{"id": "b1"}, {"id": "u1"}]);
        let a = Activity::parse(&body(v)).unwrap();
        let ids: Vec<_> = a.humans_added().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["u1"]);
    }
}
