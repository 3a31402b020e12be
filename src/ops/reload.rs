//! What a reload (SIGHUP) may change while the daemon runs, and what needs a restart.
//!
//! Pure: it compares two configurations key by key. The daemon applies the live keys
//! (`app::Reloader`) and logs the others, which keep their running values until a
//! restart: the listener's address and limits, the bot's identity and authentication,
//! the data directory, the notify token, the log format.

use serde_json::Value;

use crate::ops::config::Config;

/// The keys a new configuration changes, split by what happens to them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Applied at once.
    pub live: Vec<String>,
    /// Changed in the file but kept at their running values until a restart.
    pub restart: Vec<String>,
}

/// Sections that only a restart changes.
const RESTART_SECTIONS: [&str; 5] = ["server", "bot", "auth", "storage", "notify"];
/// Keys of live sections that only a restart changes.
const RESTART_KEYS: [&str; 1] = ["log.format"];

/// Compares `running` with `new`, key by key (`section.key`; whole lists for
/// `site_rule` and `json_api`, channels for `rate_limits`).
pub fn plan(running: &Config, new: &Config) -> ReloadPlan {
    let (Ok(Value::Object(old)), Ok(Value::Object(new))) =
        (serde_json::to_value(running), serde_json::to_value(new))
    else {
        // Serialising a configuration cannot fail (plain data); if it ever did, nothing
        // is applied.
        return ReloadPlan::default();
    };
    let mut out = ReloadPlan::default();
    for (section, value) in &new {
        let before = old.get(section).unwrap_or(&Value::Null);
        if before == value {
            continue;
        }
        let changed: Vec<String> = match (before, value) {
            (Value::Object(a), Value::Object(b)) => b
                .iter()
                .filter(|(k, v)| a.get(*k) != Some(*v))
                .map(|(k, _)| format!("{section}.{k}"))
                .chain(
                    a.keys()
                        .filter(|k| !b.contains_key(*k))
                        .map(|k| format!("{section}.{k}")),
                )
                .collect(),
            _ => vec![section.clone()],
        };
        for key in changed {
            if RESTART_SECTIONS.contains(&section.as_str()) || RESTART_KEYS.contains(&key.as_str())
            {
                out.restart.push(key);
            } else {
                out.live.push(key);
            }
        }
    }
    out.live.sort();
    out.restart.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::config::load_str;

    fn config(text: &str) -> Config {
        load_str("t.toml", text, Vec::new()).unwrap()
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let c = config("");
        assert_eq!(plan(&c, &c.clone()), ReloadPlan::default());
    }

    #[test]
    fn live_and_restart_keys_are_told_apart() {
        let old = config("");
        let new = config(
            "[server]\nbind = \"127.0.0.1:4000\"\n\
             [schedule]\ninterval = \"2h\"\ntick = \"0 */5 * * * *\"\n\
             [alerts]\ndefault_drop = 30\n\
             [log]\nlevel = \"debug\"\nformat = \"json\"\n\
             [rate_limits.msteams]\nper_conversation = [\"1/1s\"]\n\
             [[site_rule]]\nhost = \"shop.example\"\nselector = \".price\"\n",
        );
        let p = plan(&old, &new);
        assert_eq!(
            p.live,
            [
                "alerts.default_drop",
                "log.level",
                "rate_limits.msteams",
                "schedule.interval",
                "schedule.tick",
                "site_rule",
            ]
        );
        assert_eq!(p.restart, ["log.format", "server.bind"]);
    }
}
