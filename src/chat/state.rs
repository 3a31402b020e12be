//! The chat's state file: which conversation `pricewatch chat` holds with which bot, so that
//! a restarted chat goes on in the same conversation (the bot keeps its watches under the
//! conversation's id) and listens where the bot last saw it (the reference's `serviceUrl`).
//!
//! One JSON object, one entry per bot URL and channel id, so that a chat with a local
//! daemon and one with a staging daemon do not share a conversation. Written whole to a
//! file beside it, then renamed, so a chat killed mid-write leaves the old state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What went wrong with the state file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the chat state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the chat state file {path} is not valid (delete it to start a new conversation)")]
    Invalid {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write the chat state file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One remembered conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub conversation_id: String,
    pub user_id: String,
    /// The loopback port the chat's Connector endpoint last listened on: the bot stored it
    /// as the conversation's `serviceUrl`, so listening there again lets alerts queued while
    /// the chat was away arrive without a new message first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatState {
    #[serde(default)]
    pub conversations: BTreeMap<String, Conversation>,
}

/// The key of one conversation: the bot's URL and the channel id.
pub fn key(bot_url: &str, channel_id: &str) -> String {
    format!("{channel_id} {bot_url}")
}

impl ChatState {
    /// Reads `path`; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<ChatState, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Invalid {
                path: path.to_owned(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ChatState::default()),
            Err(source) => Err(StateError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes the whole state to `path` (its folder created), through a file beside it.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let write = |source| StateError::Write {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let text = serde_json::to_vec_pretty(self).map_err(|e| write(std::io::Error::other(e)))?;
        std::fs::write(&tmp, text).map_err(write)?;
        std::fs::rename(&tmp, path).map_err(write)
    }

    /// The conversation to hold under `key`: `wanted` when the user named one (kept with its
    /// user id when it is the remembered one), else the remembered one, else a new one with
    /// ids from `fresh`. The second value says whether the bot has seen it before.
    pub fn conversation(
        &self,
        key: &str,
        wanted: Option<&str>,
        fresh: impl FnOnce() -> String,
    ) -> (Conversation, bool) {
        let known = self.conversations.get(key);
        match (wanted, known) {
            (Some(id), Some(c)) if c.conversation_id == id => (c.clone(), true),
            (Some(id), _) => {
                let suffix = fresh();
                (
                    Conversation {
                        conversation_id: id.to_owned(),
                        user_id: format!("user-{suffix}"),
                        port: None,
                    },
                    false,
                )
            }
            (None, Some(c)) => (c.clone(), true),
            (None, None) => {
                let suffix = fresh();
                (
                    Conversation {
                        conversation_id: format!("chat-{suffix}"),
                        user_id: format!("user-{suffix}"),
                        port: None,
                    },
                    false,
                )
            }
        }
    }

    pub fn remember(&mut self, key: String, conversation: Conversation) {
        self.conversations.insert(key, conversation);
    }
}

/// Where the state lives unless `--state` says: `$XDG_STATE_HOME/pricewatch/chat.json`,
/// else `~/.local/state/pricewatch/chat.json` (the XDG default), else the working
/// directory's `.pricewatch-chat.json`.
pub fn default_path(xdg_state_home: Option<&str>, home: Option<&str>) -> PathBuf {
    match (xdg_state_home, home) {
        (Some(dir), _) if !dir.is_empty() => Path::new(dir).join("pricewatch/chat.json"),
        (_, Some(home)) if !home.is_empty() => {
            Path::new(home).join(".local/state/pricewatch/chat.json")
        }
        _ => PathBuf::from(".pricewatch-chat.json"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> String {
        "0123abcd".to_owned()
    }

    #[test]
    fn a_missing_file_is_an_empty_state_and_a_saved_one_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/chat.json");
        let mut state = ChatState::load(&path).unwrap();
        assert_eq!(state, ChatState::default());
        let (c, known) = state.conversation("k", None, fresh);
        assert!(!known);
        assert_eq!(c.conversation_id, "chat-0123abcd");
        assert_eq!(c.user_id, "user-0123abcd");
        state.remember(
            "k".into(),
            Conversation {
                port: Some(4000),
                ..c
            },
        );
        state.save(&path).unwrap();
        let again = ChatState::load(&path).unwrap();
        assert_eq!(again, state);
        let (c, known) = again.conversation("k", None, || unreachable!());
        assert!(known);
        assert_eq!(c.port, Some(4000));
        assert!(!path.with_extension("json.tmp").exists());
    }

    #[test]
    fn each_bot_and_channel_has_its_own_conversation() {
        let mut state = ChatState::default();
        let a = key("http://127.0.0.1:3978/api/messages", "emulator");
        let b = key("http://127.0.0.1:3978/api/messages", "webchat");
        let (c, _) = state.conversation(&a, None, fresh);
        state.remember(a.clone(), c);
        let (other, known) = state.conversation(&b, None, || "ffff".into());
        assert!(!known);
        assert_eq!(other.conversation_id, "chat-ffff");
    }

    #[test]
    fn a_named_conversation_replaces_the_remembered_one_unless_it_is_it() {
        let mut state = ChatState::default();
        let (c, _) = state.conversation("k", None, fresh);
        state.remember("k".into(), c.clone());
        let (same, known) = state.conversation("k", Some("chat-0123abcd"), || unreachable!());
        assert!(known);
        assert_eq!(same, c);
        let (named, known) = state.conversation("k", Some("team-room"), || "9".into());
        assert!(!known);
        assert_eq!(named.conversation_id, "team-room");
        assert_eq!(named.user_id, "user-9");
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.json");
        std::fs::write(&path, b"{not json").unwrap();
        let e = ChatState::load(&path).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("chat.json"), "{text}");
        assert!(text.contains("delete it"), "{text}");
        assert_eq!(std::fs::read(&path).unwrap(), b"{not json");
    }

    #[test]
    fn the_default_path_follows_xdg() {
        assert_eq!(
            default_path(Some("/x/state"), Some("/home/a")),
            PathBuf::from("/x/state/pricewatch/chat.json")
        );
        assert_eq!(
            default_path(None, Some("/home/a")),
            PathBuf::from("/home/a/.local/state/pricewatch/chat.json")
        );
        assert_eq!(
            default_path(Some(""), None),
            PathBuf::from(".pricewatch-chat.json")
        );
    }
}
