//! Logging setup: `tracing` with the level from `RUST_LOG` or the config, and the `[log]`
//! section that configures it.
//!
//! # No line from outside
//! Fields that come from outside are wrapped in [`Shown`](crate::shown::Shown), which
//! escapes and shortens them. Under that, every formatted line goes through an escaping
//! writer, so a field someone forgot to wrap (or an error that quotes a request) still
//! cannot start a line of its own or carry a terminal escape.
//!
//! The backstop is a writer rather than a custom `FormatFields` because a writer sees the
//! whole line, whatever produced it: the message, event and span fields, error sources,
//! in both formats, and whatever a later tracing-subscriber adds. It relies on one fact of
//! tracing-subscriber 0.3's fmt layer (`Layer::on_event` in `fmt/fmt_layer.rs`): each
//! event is formatted into a buffer and written with a single `write_all` of the whole
//! line, ending with its one newline. So any other newline in a write is data, and is
//! escaped. `one_write_per_event_and_one_line_per_write` fails if that ever changes.
//! The cost is a scan of the line eight bytes at a time (about 17 ns for a 218-byte line,
//! some 2% of formatting it); a line with something to escape (rare: a wrapped field has
//! nothing left to escape) is copied once.

use std::io;

use serde::{Deserialize, Serialize};
use tracing::Metadata;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::shown::{escape_into, may_need_escaping, Escapes};

/// `[log]`: tracing output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter directive; `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber once; later calls (tests) are ignored.
/// `RUST_LOG` wins over the configured level so an operator can raise it for one run.
pub fn init(config: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(&config.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (subscriber, reload) = subscriber(config.format, filter, std::io::stderr);
    // An error only means a subscriber is already installed, which is fine.
    if subscriber.try_init().is_ok() {
        let _ = LEVEL.set(reload);
    }
}

/// Swaps the installed subscriber's filter (a reload's `log.level`).
type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

static LEVEL: std::sync::OnceLock<Reload> = std::sync::OnceLock::new();

/// Why a new level was not applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LevelError {
    #[error("RUST_LOG is set, and wins over log.level until the daemon restarts without it")]
    Overridden,
    #[error("no log subscriber of this process to change")]
    NotInstalled,
    #[error("log.level {0:?} is not a filter")]
    Invalid(String),
    #[error("the log filter could not be swapped: {0}")]
    Swap(String),
}

/// Applies `level` to the running daemon's logs, unless `RUST_LOG` chose them.
pub fn set_level(level: &str) -> Result<(), LevelError> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Err(LevelError::Overridden);
    }
    let reload = LEVEL.get().ok_or(LevelError::NotInstalled)?;
    let filter = EnvFilter::try_new(level).map_err(|_| LevelError::Invalid(level.to_owned()))?;
    reload(filter).map_err(LevelError::Swap)
}

/// The subscriber `init` installs, writing to `writer` (tests pass a buffer).
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> (Box<dyn tracing::Subscriber + Send + Sync>, Reload)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let escapes = match format {
        LogFormat::Text => Escapes::Rust,
        LogFormat::Json => Escapes::Json,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Escaping {
            inner: writer,
            escapes,
        })
        // No colour, even on a terminal: the escaping writer would show the colour codes
        // as text, and a line that may carry no escape sequence is simpler to trust.
        // (Colour would garble journald and files anyway.)
        .with_ansi(false);
    match format {
        LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let handle = builder.reload_handle();
            (
                Box::new(builder.finish()),
                Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())),
            )
        }
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            (
                Box::new(builder.finish()),
                Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())),
            )
        }
    }
}

/// A `MakeWriter` whose writers escape what a line must not carry (see the module
/// documentation).
struct Escaping<M> {
    inner: M,
    escapes: Escapes,
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Escaping<M> {
    type Writer = EscapingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter {
            inner: self.inner.make_writer(),
            escapes: self.escapes,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        EscapingWriter {
            inner: self.inner.make_writer_for(meta),
            escapes: self.escapes,
        }
    }
}

/// Writes each formatted line with every unsafe character but its final newline escaped,
/// in one `write_all` to the inner writer (so lines from different threads stay whole).
/// In the JSON format the escapes are JSON's: such characters can only stand inside a
/// JSON string there, so the line stays valid JSON with the same value.
struct EscapingWriter<W> {
    inner: W,
    escapes: Escapes,
}

impl<W: io::Write> io::Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, "\n"),
            None => (buf, ""),
        };
        if !may_need_escaping(body) {
            return self.inner.write_all(buf);
        }
        // The fmt layer formats into a `String`, so this is UTF-8; lossy only to be total.
        let text = String::from_utf8_lossy(body);
        if !text.chars().any(crate::shown::is_unsafe) {
            return self.inner.write_all(buf);
        }
        let mut line = String::with_capacity(buf.len() + 32);
        // Writing into a String cannot fail.
        let _ = escape_into(&mut line, &text, self.escapes);
        line.push_str(end);
        self.inner.write_all(line.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::shown::Shown;

    /// Records each write it is given as one entry.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl io::Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Writes {
        fn lines(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|w| String::from_utf8(w.clone()).unwrap())
                .collect()
        }
    }

    /// Runs `f` under the subscriber `init` would install, writing into the returned
    /// record.
    fn logged(format: LogFormat, f: impl FnOnce()) -> Writes {
        let writes = Writes::default();
        let make = {
            let w = writes.clone();
            move || w.clone()
        };
        let (subscriber, _) = subscriber(format, EnvFilter::new("trace"), make);
        tracing::subscriber::with_default(subscriber, f);
        writes
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer\nINFO forged by the outer error")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner\r\n\u{1b}[2J")]
    struct Inner;

    /// Events with newlines in every place one can hide: the message, a Display field, a
    /// Debug field, a str field, an error with sources, the fields of enclosing spans.
    fn hostile_events() -> usize {
        let forged = "c1\n2026-12-03T00:00:00Z  INFO pricewatch: forged";
        let outer = tracing::info_span!("turn", conversation = %forged, kind = "a\u{2028}b");
        let _o = outer.enter();
        let inner = tracing::debug_span!("send", url = ?"x\ny");
        let _i = inner.enter();
        tracing::info!(conversation = %forged, "one");
        tracing::warn!(name = "Ada\n\u{85}Lovelace", "two\nlines {}", forged);
        let error = Outer(Inner);
        tracing::error!(
            error = &error as &(dyn std::error::Error + 'static),
            "three"
        );
        tracing::debug!(id = %Shown::id(forged), "four\u{202e}");
        4
    }

    #[test]
    fn one_write_per_event_and_one_line_per_write() {
        // What the backstop relies on: tracing-subscriber writes each event whole, in one
        // write, so the only newline a write may carry is its last byte.
        for format in [LogFormat::Text, LogFormat::Json] {
            let mut events = 0;
            let writes = logged(format, || events = hostile_events());
            let lines = writes.lines();
            assert_eq!(
                lines.len(),
                events,
                "{format:?}: one write per event: {lines:#?}"
            );
            for line in &lines {
                assert!(line.ends_with('\n'), "{line:?}");
                let body = &line[..line.len() - 1];
                assert!(
                    !body.chars().any(crate::shown::is_unsafe),
                    "{format:?}: {line:?}"
                );
            }
        }
    }

    #[test]
    fn text_lines_show_what_was_escaped() {
        let lines = logged(LogFormat::Text, || {
            hostile_events();
        })
        .lines();
        let all = lines.concat();
        assert!(
            all.contains(r"conversation=c1\n2026-12-03T00:00:00Z  INFO pricewatch: forged"),
            "{all}"
        );
        assert!(all.contains(r#"kind="a\u{2028}b""#), "{all}");
        assert!(
            all.contains(r"error=outer\nINFO forged by the outer error"),
            "{all}"
        );
        assert!(all.contains(r"inner\r\n"), "{all}");
        assert!(all.contains(r"four\u{202e}"), "{all}");
        for line in &lines {
            assert!(!line.starts_with("2026-12-03T00:00:00Z"), "{line}");
        }
    }

    #[test]
    fn json_lines_keep_control_characters_escaped_and_parse() {
        let long = "L".repeat(1000);
        let lines = logged(LogFormat::Json, || {
            tracing::info!(
                conversation = %"c1\n2026\u{7}\u{1b}[2J",
                separator = %"a\u{2028}b\u{85}c\u{202e}d",
                long = %Shown::id(&long),
                "hello"
            );
        })
        .lines();
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        // serde_json escapes C0 itself; the writer adds DEL, C1, separators and bidi.
        assert!(line.contains(r#""c1\n2026\u0007\u001b[2J""#), "{line}");
        assert!(line.contains(r#""a\u2028b\u0085c\u202ed""#), "{line}");
        assert!(!line[..line.len() - 1].chars().any(crate::shown::is_unsafe));
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["fields"]["conversation"], "c1\n2026\u{7}\u{1b}[2J");
        assert_eq!(v["fields"]["separator"], "a\u{2028}b\u{85}c\u{202e}d");
        assert_eq!(
            v["fields"]["long"],
            format!("{}…(+800 chars)", &long[..200])
        );
    }

    #[test]
    fn a_clean_line_is_written_as_it_came() {
        let writes = Writes::default();
        let mut w = EscapingWriter {
            inner: writes.clone(),
            escapes: Escapes::Rust,
        };
        let line = "2026-12-03T00:00:00Z  INFO turn{conversation=c1 price=149,99 €}: hi…\n";
        io::Write::write_all(&mut w, line.as_bytes()).unwrap();
        io::Write::write_all(&mut w, b"no newline\tat the end").unwrap();
        assert_eq!(writes.lines(), [line, r"no newline\tat the end"]);
    }
}
