//! The chat's side of `POST /api/messages`: the activities a user's client sends (as the
//! Emulator shapes them), and the bot's answer read back, or refused in one sentence.

use std::time::Duration;

use serde_json::{json, Value};

use crate::secret::Secret;

/// Why an activity did not reach the bot, each said in one sentence a person can act on
/// (the chat prints it as it is, without the transport's error chain).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("cannot reach the bot at {url}: is `pricewatch serve` running there?")]
    Unreachable { url: String },
    #[error("the bot at {url} did not answer within {} s", .after.as_secs())]
    TimedOut { url: String, after: Duration },
    #[error(
        "the bot at {url} refused the token from --token-file (401 Unauthorized): get a new one"
    )]
    TokenRefused { url: String },
    #[error("the bot at {url} asks for a token (401 Unauthorized): it runs in production mode; pass one with --token-file")]
    TokenNeeded { url: String },
    #[error("the bot at {url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("the bot at {url} answered 200 with a body that is not the expected replies")]
    BadReplies { url: String },
}

/// Who is talking in which conversation, and how the bot should answer.
#[derive(Debug, Clone)]
pub struct Addressing {
    pub channel_id: String,
    /// The chat's own Connector endpoint, where the bot posts what it says.
    pub service_url: String,
    pub conversation_id: String,
    pub user_id: String,
    pub user_name: String,
    pub locale: Option<String>,
    /// Ask for the replies in the HTTP answer (`deliveryMode: expectReplies`), for a
    /// production daemon that never posts to a terminal.
    pub expect_replies: bool,
}

/// The bot's account as the chat addresses it; the bot answers from whatever id it is
/// sent to.
const BOT_ID: &str = "pricewatch-bot";

impl Addressing {
    fn base(&self, kind: &str, id: u64, now: &str) -> Value {
        let mut activity = json!({
            "type": kind,
            "id": format!("{}-{id}", self.conversation_id),
            "timestamp": now,
            "channelId": self.channel_id,
            "serviceUrl": self.service_url,
            "from": {"id": self.user_id, "name": self.user_name, "role": "user"},
            "recipient": {"id": BOT_ID, "name": "pricewatch", "role": "bot"},
            "conversation": {"id": self.conversation_id},
        });
        if let Some(locale) = &self.locale {
            activity["locale"] = json!(locale);
        }
        if self.expect_replies {
            activity["deliveryMode"] = json!("expectReplies");
        }
        activity
    }

    /// A line the user typed.
    pub fn message(&self, id: u64, now: &str, text: &str) -> Value {
        let mut a = self.base("message", id, now);
        a["text"] = json!(text);
        a["textFormat"] = json!("plain");
        a
    }

    /// A card button pressed: its text and/or its value, as Web Chat sends them.
    pub fn submit(&self, id: u64, now: &str, text: Option<&str>, value: Option<&Value>) -> Value {
        let mut a = self.base("message", id, now);
        if let Some(text) = text {
            a["text"] = json!(text);
        }
        if let Some(value) = value {
            a["value"] = value.clone();
        }
        a
    }

    /// A new conversation: the bot and the user added, as the Emulator opens one.
    pub fn conversation_started(&self, id: u64, now: &str) -> Value {
        let mut a = self.base("conversationUpdate", id, now);
        a["membersAdded"] = json!([
            {"id": BOT_ID, "name": "pricewatch"},
            {"id": self.user_id, "name": self.user_name},
        ]);
        a
    }

    /// A conversation taken up again: tells the bot where the chat listens now (every
    /// activity updates the conversation's reference) without asking for an answer.
    pub fn resumed(&self, id: u64, now: &str) -> Value {
        let mut a = self.base("event", id, now);
        a["name"] = json!("pricewatch.chat.resumed");
        a
    }
}

/// Posts activities to the bot's endpoint.
#[derive(Clone)]
pub struct BotClient {
    http: reqwest::Client,
    url: String,
    token: Option<Secret>,
    timeout: Duration,
}

impl BotClient {
    /// `timeout` bounds one turn: a bot answers once it has sent its replies.
    pub fn new(url: String, token: Option<Secret>, timeout: Duration) -> BotClient {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            // Building a client without TLS settings only fails when the system has no
            // usable TLS backend at all; the default client then fails on its first use
            // with the same cause, reported as unreachable.
            .unwrap_or_default();
        BotClient {
            http,
            url,
            token,
            timeout,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one activity; returns the replies that came back in the answer (only with
    /// `expectReplies`).
    pub async fn send(&self, activity: &Value) -> Result<Vec<Value>, SendError> {
        let mut request = self.http.post(&self.url).json(activity);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| self.transport(&e))?;
        answer(&self.url, status, &body, self.token.is_some())
    }

    fn transport(&self, e: &reqwest::Error) -> SendError {
        if e.is_timeout() {
            SendError::TimedOut {
                url: self.url.clone(),
                after: self.timeout,
            }
        } else {
            SendError::Unreachable {
                url: self.url.clone(),
            }
        }
    }
}

/// The bot's HTTP answer read: 200/201/202 with no body or `{"activities": [...]}`, or a
/// refusal put in one sentence (the `ErrorResponse` message when there is one).
pub fn answer(
    url: &str,
    status: u16,
    body: &[u8],
    had_token: bool,
) -> Result<Vec<Value>, SendError> {
    let url = url.to_owned();
    match status {
        200..=299 => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Vec::new());
            }
            let value: Value = serde_json::from_slice(body)
                .map_err(|_| SendError::BadReplies { url: url.clone() })?;
            match value.get("activities") {
                Some(Value::Array(list)) => Ok(list.clone()),
                _ => Err(SendError::BadReplies { url }),
            }
        }
        401 if had_token => Err(SendError::TokenRefused { url }),
        401 => Err(SendError::TokenNeeded { url }),
        _ => {
            let message = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| {
                    let text = String::from_utf8_lossy(body);
                    let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
                    if text.trim().is_empty() {
                        "no explanation".to_owned()
                    } else {
                        text.trim().to_owned()
                    }
                });
            Err(SendError::Refused {
                url,
                status,
                message,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:3978/api/messages";

    fn addressing(expect_replies: bool) -> Addressing {
        Addressing {
            channel_id: "emulator".into(),
            service_url: "http://127.0.0.1:4000/".into(),
            conversation_id: "chat-1".into(),
            user_id: "user-1".into(),
            user_name: "ana".into(),
            locale: Some("fr-FR".into()),
            expect_replies,
        }
    }

    #[test]
    fn a_message_carries_what_the_bot_needs_to_answer_and_remember() {
        let a = addressing(false).message(7, "2026-12-04T10:00:00Z", "watch https://x.test/p");
        assert_eq!(a["type"], "message");
        assert_eq!(a["id"], "chat-1-7");
        assert_eq!(a["text"], "watch https://x.test/p");
        assert_eq!(a["serviceUrl"], "http://127.0.0.1:4000/");
        assert_eq!(a["conversation"]["id"], "chat-1");
        assert_eq!(a["from"]["id"], "user-1");
        assert_eq!(a["locale"], "fr-FR");
        assert!(a.get("deliveryMode").is_none());
        let a = addressing(true).message(8, "t", "list");
        assert_eq!(a["deliveryMode"], "expectReplies");
    }

    #[test]
    fn a_new_conversation_adds_the_bot_and_the_user() {
        let a = addressing(false).conversation_started(1, "t");
        assert_eq!(a["type"], "conversationUpdate");
        let added: Vec<&str> = a["membersAdded"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(added, ["pricewatch-bot", "user-1"]);
        assert_eq!(addressing(false).resumed(2, "t")["type"], "event");
    }

    #[test]
    fn a_pressed_button_sends_its_value() {
        let v = json!({"command": "unwatch 3"});
        let a = addressing(false).submit(3, "t", None, Some(&v));
        assert_eq!(a["value"]["command"], "unwatch 3");
        assert!(a.get("text").is_none());
    }

    #[test]
    fn answers_are_read_back() {
        assert_eq!(answer(URL, 200, b"", false), Ok(vec![]));
        let replies = answer(
            URL,
            200,
            br#"{"activities":[{"type":"message","text":"hi"}]}"#,
            false,
        )
        .unwrap();
        assert_eq!(replies[0]["text"], "hi");
        assert_eq!(
            answer(URL, 200, b"<html>", false),
            Err(SendError::BadReplies { url: URL.into() })
        );
    }

    #[test]
    fn refusals_are_one_sentence_naming_the_bot() {
        let e = answer(URL, 401, b"", false).unwrap_err().to_string();
        assert_eq!(
            e,
            "the bot at http://127.0.0.1:3978/api/messages asks for a token (401 Unauthorized): \
             it runs in production mode; pass one with --token-file"
        );
        let e = answer(URL, 401, b"", true).unwrap_err().to_string();
        assert!(e.contains("refused the token from --token-file"), "{e}");
        let body = br#"{"error":{"code":"StorageUnavailable","message":"the store cannot save right now"}}"#;
        let e = answer(URL, 503, body, false).unwrap_err().to_string();
        assert_eq!(
            e,
            "the bot at http://127.0.0.1:3978/api/messages answered 503: the store cannot save right now"
        );
        let e = answer(URL, 502, b"\x1b[2Jbad gateway\n", false)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("answered 502: [2Jbad gateway"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[tokio::test]
    async fn an_unreachable_bot_is_one_sentence() {
        // A port just released: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/messages", listener.local_addr().unwrap());
        drop(listener);
        let client = BotClient::new(url.clone(), None, Duration::from_secs(5));
        let e = client
            .send(&addressing(false).message(1, "t", "help"))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("cannot reach the bot at {url}: is `pricewatch serve` running there?")
        );
    }
}
