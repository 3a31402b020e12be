//! One chat: the Connector endpoint, the conversation opened or taken up, then each line
//! typed or read from a script sent as an activity, and everything the bot sends shown as
//! it arrives.
//!
//! Lines go one at a time: a line is sent once the bot has answered the previous one (a
//! bot answers a turn after it has sent the turn's replies), so a script reads like a
//! conversation. A few lines never reach the bot: `/quit`, `/help`, `/wait REGEX` (a
//! script waits for a message the bot sends on its own, such as the first price), the
//! number of a card's button (which sends that button's value), and whatever the host
//! of the chat takes (the demo's shop commands).

use std::io::{BufRead, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use regex::Regex;
use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::client::{Addressing, BotClient};
use super::connector::{Arrival, ConnectorEndpoint};
use super::render::{self, Buttons, Choice, Style};
use super::state::{self, ChatState};
use crate::random::{RandomSource, SplitMix64};
use crate::secret::Secret;
use crate::speech::format::visible;

/// What `pricewatch chat` was asked to do.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    pub bot_url: String,
    pub channel_id: String,
    pub user: String,
    pub locale: Option<String>,
    pub conversation: Option<String>,
    pub wait_for: Option<Regex>,
    /// How long `--wait-for` waits, from the start.
    pub timeout: Duration,
    pub json: bool,
    pub token: Option<Secret>,
    pub state_path: PathBuf,
    /// The Connector endpoint's port; `None`: the remembered one, or any.
    pub port: Option<u16>,
    /// Bold and other styling as terminal escapes.
    pub ansi: bool,
}

/// Where the lines come from.
pub enum Source {
    /// A person at a terminal: line editing and history.
    Terminal { history: Option<PathBuf> },
    /// A script file or a pipe: one line at a time.
    Lines(Box<dyn BufRead + Send>),
}

/// What the chat's host makes of a line it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// Shown, not sent.
    Answer(String),
    /// Sent to the bot in place of the line typed (a shorthand expanded).
    Send(String),
}

/// Lines the chat's host handles itself (the demo's shop).
pub trait LocalCommands: Send + Sync {
    /// What to do with `line` when it is one of the host's commands.
    fn handle(&self, line: &str) -> Option<Local>;
    /// What `/help` adds.
    fn help(&self) -> String;
}

/// How a chat ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The input ended or the user left.
    Done,
    /// A message matched `--wait-for`.
    Matched,
    /// `--wait-for` (or a script's `/wait`) saw no match in time.
    NotMatched,
    /// The bot could not be reached or refused the chat, or the chat could not start.
    Failed,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Done | Outcome::Matched => 0,
            Outcome::NotMatched | Outcome::Failed => 1,
        }
    }
}

/// Where the chat writes: the terminal's line editor (so arrivals do not break the line
/// being typed), or plain standard output.
enum Sink {
    Stdout { json: bool },
    Editor(Mutex<Box<dyn rustyline::ExternalPrinter + Send>>),
}

impl Sink {
    /// Something the bot sent.
    fn show(&self, text: &str) {
        match self {
            // A closed pipe (`chat | head`) must not panic the chat: what cannot be shown
            // is dropped.
            Sink::Stdout { .. } => {
                let _ = writeln!(std::io::stdout().lock(), "{text}");
            }
            Sink::Editor(p) => {
                let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
                if p.print(format!("{text}\n")).is_err() {
                    let _ = writeln!(std::io::stdout().lock(), "{text}");
                }
            }
        }
    }

    /// What the chat itself says; kept off standard output in JSON mode, which carries
    /// only activities.
    fn note(&self, text: &str) {
        match self {
            Sink::Stdout { json: true } => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
            _ => self.show(text),
        }
    }

    fn error(&self, text: &str) {
        match self {
            Sink::Stdout { .. } => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
            Sink::Editor(_) => self.show(text),
        }
    }
}

/// Everything shown so far, as plain text, for `--wait-for` and `/wait`.
#[derive(Default)]
struct Transcript {
    seen: Mutex<Vec<String>>,
    changed: Notify,
}

impl Transcript {
    fn push(&self, text: String) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(text);
        self.changed.notify_waiters();
    }

    fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether a message from index `from` on matches `re` before `deadline`.
    async fn wait_match(&self, re: &Regex, from: usize, deadline: Instant) -> bool {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let found = self
                .seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .skip(from)
                .any(|t| re.is_match(t));
            if found {
                return true;
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }
}

/// The parts of a running chat the arrival task and the line loop share.
struct Shared {
    sink: Sink,
    transcript: Transcript,
    buttons: Mutex<Buttons>,
    style: Style,
    json: bool,
}

impl Shared {
    fn show_activity(&self, activity: &Value, update: bool) {
        let rendered = {
            let mut buttons = self.buttons.lock().unwrap_or_else(|e| e.into_inner());
            render::activity(self.style, &mut buttons, activity)
        };
        let Some(text) = rendered.map(|r| r.text) else {
            return;
        };
        let plain = strip_sgr(&text);
        if self.json {
            self.sink.show(&activity.to_string());
        } else {
            let who = activity["from"]["name"]
                .as_str()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or("bot");
            let who = visible(who);
            let edited = if update { " (edited)" } else { "" };
            self.sink.show(&prefixed(
                &format!("[{}] {who}{edited}:", clock_time()),
                &text,
            ));
        }
        self.transcript.push(plain);
    }
}

/// `head` then the text, its later lines indented under the first.
fn prefixed(head: &str, text: &str) -> String {
    let mut out = String::with_capacity(head.len() + text.len() + 8);
    out.push_str(head);
    let mut lines = text.lines();
    if let Some(first) = lines.next() {
        out.push(' ');
        out.push_str(first);
    }
    for line in lines {
        out.push_str("\n    ");
        out.push_str(line);
    }
    out
}

/// The text without the SGR escapes the renderer adds (`ESC [ … m`): the renderer
/// removes every control character from what it is given, so these are the only ones.
fn strip_sgr(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The local wall-clock time of day, as the chat prefixes messages.
fn clock_time() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

const HELP: &str = "Type a message for the bot (try `help`), or:
  /wait REGEX   wait until the bot says something matching REGEX (for scripts)
  /quit         leave (Ctrl-D and Ctrl-C too)
  N             press button [N] of a card";

/// What the line loop does next.
enum Flow {
    Next,
    End(Outcome),
}

/// A line from the input thread.
enum Input {
    Line(String),
    End,
}

/// Runs one chat until the input ends, the user leaves, `--wait-for` decides, or Ctrl-C.
pub async fn run(
    options: ChatOptions,
    source: Source,
    local: Option<Arc<dyn LocalCommands>>,
    intro: Option<String>,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + options.timeout;
    let scripted = matches!(source, Source::Lines(_));
    // The line editor puts the terminal in raw mode while it waits for a line; a chat
    // ending meanwhile (`--wait-for`, SIGTERM) must not leave it so.
    let _terminal = TerminalSettings(
        (!scripted)
            .then(|| rustix::termios::tcgetattr(std::io::stdin()).ok())
            .flatten(),
    );
    let (lines, sink) = match start_input(source, options.json) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("pricewatch chat: cannot read the terminal: {e}");
            return Outcome::Failed;
        }
    };
    let shared = Arc::new(Shared {
        sink,
        transcript: Transcript::default(),
        buttons: Mutex::new(Buttons::default()),
        style: Style {
            ansi: options.ansi && !options.json,
        },
        json: options.json,
    });
    if let Some(intro) = intro {
        shared.sink.note(&intro);
    }
    let chat = match Chat::open(&options, shared.clone()).await {
        Ok(chat) => chat,
        Err(message) => {
            shared.sink.error(&message);
            return Outcome::Failed;
        }
    };
    let conversation = chat.converse(lines, local, scripted, deadline);
    let waited = async {
        match &options.wait_for {
            Some(re) => {
                if shared.transcript.wait_match(re, 0, deadline).await {
                    Outcome::Matched
                } else {
                    Outcome::NotMatched
                }
            }
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        o = conversation => match (o, &options.wait_for) {
            // The input is over; `--wait-for` still waits for its message.
            (Outcome::Done, Some(re)) => {
                if shared.transcript.wait_match(re, 0, deadline).await {
                    Outcome::Matched
                } else {
                    Outcome::NotMatched
                }
            }
            (o, _) => o,
        },
        o = waited => o,
        _ = interrupted() => Outcome::Done,
    };
    if let (Outcome::NotMatched, Some(re)) = (outcome, &options.wait_for) {
        shared.sink.error(&format!(
            "no message matching /{re}/ arrived within {}",
            humantime::format_duration(options.timeout)
        ));
    }
    outcome
}

/// The terminal's settings as the chat found them, put back when it ends.
struct TerminalSettings(Option<rustix::termios::Termios>);

impl Drop for TerminalSettings {
    fn drop(&mut self) {
        if let Some(settings) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                settings,
            );
        }
    }
}

/// Ctrl-C or SIGTERM (a script run by another program is stopped that way); in a
/// terminal the line editor takes Ctrl-C as the end of input first.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        // Without handlers the default action stops the process.
        _ => std::future::pending().await,
    }
}

/// A chat whose conversation is open.
struct Chat {
    shared: Arc<Shared>,
    client: BotClient,
    addressing: Addressing,
    next_id: std::sync::atomic::AtomicU64,
    /// The display queue, for marks behind the bot's replies.
    arrivals: mpsc::UnboundedSender<Arrival>,
    _endpoint: ConnectorEndpoint,
}

impl Chat {
    /// Starts the endpoint and opens the conversation (or takes up the remembered one);
    /// an error is the one sentence to show.
    async fn open(options: &ChatOptions, shared: Arc<Shared>) -> Result<Chat, String> {
        let key = state::key(&options.bot_url, &options.channel_id);
        let mut saved = ChatState::load(&options.state_path).map_err(|e| e.to_string())?;
        let (mut conversation, known) =
            saved.conversation(&key, options.conversation.as_deref(), || {
                let mut random = SplitMix64::for_process(now_ms(), 7);
                format!("{:08x}", random.next_u64() as u32)
            });
        let (arrivals, mut arrived) = mpsc::unbounded_channel::<Arrival>();
        let port = options.port.or(conversation.port).unwrap_or(0);
        let endpoint = ConnectorEndpoint::start(port, options.port.is_none(), arrivals.clone())
            .await
            .map_err(|e| {
                format!("cannot listen on 127.0.0.1:{port} for the bot's messages: {e}")
            })?;
        let shown = shared.clone();
        tokio::spawn(async move {
            while let Some(a) = arrived.recv().await {
                match a {
                    Arrival::Activity { activity, update } => {
                        shown.show_activity(&activity, update)
                    }
                    Arrival::Shown(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        conversation.port = Some(endpoint.addr().port());
        saved.remember(key, conversation.clone());
        saved.save(&options.state_path).map_err(|e| e.to_string())?;
        let addressing = Addressing {
            channel_id: options.channel_id.clone(),
            service_url: endpoint.service_url(),
            conversation_id: conversation.conversation_id.clone(),
            user_id: conversation.user_id.clone(),
            user_name: options.user.clone(),
            locale: options.locale.clone(),
            expect_replies: options.token.is_some(),
        };
        let client = BotClient::new(
            options.bot_url.clone(),
            options.token.clone(),
            Duration::from_secs(30),
        );
        let chat = Chat {
            shared,
            client,
            addressing,
            next_id: std::sync::atomic::AtomicU64::new(now_ms().saturating_mul(1000)),
            arrivals,
            _endpoint: endpoint,
        };
        let sink = &chat.shared.sink;
        sink.note(&format!(
            "{} conversation {} with {} as {} (channel {}); /help for help",
            if known { "Back in" } else { "New" },
            chat.addressing.conversation_id,
            options.bot_url,
            options.user,
            options.channel_id,
        ));
        if options.token.is_some() {
            sink.note(
                "Replies come back in each answer (expectReplies). Proactive messages such as \
                 price alerts cannot reach this terminal: a production daemon sends them only \
                 to its allowlisted channel hosts.",
            );
        }
        let now = now_rfc3339();
        let first = if known {
            chat.addressing.resumed(chat.id(), &now)
        } else {
            chat.addressing.conversation_started(chat.id(), &now)
        };
        chat.send(&first).await?;
        Ok(chat)
    }

    fn id(&self) -> u64 {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends one activity, and returns once the replies the bot posted during the turn
    /// have been shown, then shows those that came back with the answer.
    async fn send(&self, activity: &Value) -> Result<(), String> {
        let replies = self
            .client
            .send(activity)
            .await
            .map_err(|e| e.to_string())?;
        let (done, shown) = tokio::sync::oneshot::channel();
        if self.arrivals.send(Arrival::Shown(done)).is_ok() {
            let _ = shown.await;
        }
        for reply in &replies {
            self.shared.show_activity(reply, false);
        }
        Ok(())
    }

    /// The line loop.
    async fn converse(
        &self,
        mut lines: mpsc::Receiver<Input>,
        local: Option<Arc<dyn LocalCommands>>,
        scripted: bool,
        deadline: Instant,
    ) -> Outcome {
        // Where `/wait` starts looking: what arrived since the last line was sent.
        let mut mark = self.shared.transcript.len();
        while let Some(Input::Line(line)) = lines.recv().await {
            match self
                .line(&line, local.as_deref(), scripted, deadline, &mut mark)
                .await
            {
                Flow::Next => {}
                Flow::End(outcome) => return outcome,
            }
        }
        Outcome::Done
    }

    async fn line(
        &self,
        line: &str,
        local: Option<&dyn LocalCommands>,
        scripted: bool,
        deadline: Instant,
        mark: &mut usize,
    ) -> Flow {
        let sink = &self.shared.sink;
        let trimmed = line.trim();
        if trimmed.is_empty() || (scripted && trimmed.starts_with('#')) {
            return Flow::Next;
        }
        if scripted && !self.shared.json {
            // A script's lines are shown as a person's would be, so the output reads
            // as the conversation.
            sink.show(&format!("[{}] you: {}", clock_time(), visible(trimmed)));
        }
        match trimmed {
            "/quit" | "/exit" => return Flow::End(Outcome::Done),
            "/help" => {
                let mut help = HELP.to_owned();
                if let Some(local) = local {
                    help.push('\n');
                    help.push_str(&local.help());
                }
                sink.note(&help);
                return Flow::Next;
            }
            _ => {}
        }
        if let Some(pattern) = trimmed.strip_prefix("/wait ") {
            let re = match Regex::new(pattern.trim()) {
                Ok(re) => re,
                Err(e) => {
                    sink.error(&format!("/wait: not a regular expression: {e}"));
                    return if scripted {
                        Flow::End(Outcome::Failed)
                    } else {
                        Flow::Next
                    };
                }
            };
            if self
                .shared
                .transcript
                .wait_match(&re, *mark, deadline)
                .await
            {
                *mark = self.shared.transcript.len();
                return Flow::Next;
            }
            sink.error(&format!(
                "/wait: no message matching /{re}/ arrived in time"
            ));
            return Flow::End(Outcome::NotMatched);
        }
        let mut expanded = None;
        match local.and_then(|l| l.handle(trimmed)) {
            Some(Local::Answer(answer)) => {
                sink.note(&answer);
                return Flow::Next;
            }
            Some(Local::Send(text)) => expanded = Some(text),
            None => {}
        }
        let choice = if expanded.is_some() {
            Choice::Text(String::new())
        } else {
            let buttons = self
                .shared
                .buttons
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            render::choose(&buttons, trimmed)
        };
        let now = now_rfc3339();
        let activity = match choice {
            Choice::Open(url) => {
                sink.note(&format!("Open {url} in a browser."));
                return Flow::Next;
            }
            Choice::Send { text, value } => {
                self.addressing
                    .submit(self.id(), &now, text.as_deref(), value.as_ref())
            }
            Choice::Text(_) => {
                let text = expanded.as_deref().unwrap_or(line.trim_end());
                self.addressing.message(self.id(), &now, text)
            }
        };
        *mark = self.shared.transcript.len();
        match self.send(&activity).await {
            Ok(()) => Flow::Next,
            Err(message) => {
                sink.error(&message);
                if scripted {
                    Flow::End(Outcome::Failed)
                } else {
                    Flow::Next
                }
            }
        }
    }
}

/// Starts the thread that reads lines (a plain thread: a line editor blocks, and the
/// runtime must not wait for it when the chat ends).
fn start_input(source: Source, json: bool) -> std::io::Result<(mpsc::Receiver<Input>, Sink)> {
    let (tx, rx) = mpsc::channel::<Input>(64);
    match source {
        Source::Lines(mut reader) => {
            std::thread::spawn(move || {
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let text = line.trim_end_matches(['\n', '\r']).to_owned();
                            if tx.blocking_send(Input::Line(text)).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = tx.blocking_send(Input::End);
            });
            Ok((rx, Sink::Stdout { json }))
        }
        Source::Terminal { history } => {
            let mut editor = rustyline::DefaultEditor::new()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if let Some(path) = &history {
                // No history yet is the normal first run.
                let _ = editor.load_history(path);
            }
            let printer = editor
                .create_external_printer()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            std::thread::spawn(move || {
                // Ctrl-C, Ctrl-D and a terminal gone all end the input.
                while let Ok(line) = editor.readline("> ") {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                        if let Some(path) = &history {
                            let _ = editor.save_history(path);
                        }
                    }
                    if tx.blocking_send(Input::Line(line)).is_err() {
                        return;
                    }
                }
                let _ = tx.blocking_send(Input::End);
            });
            Ok((rx, Sink::Editor(Mutex::new(Box::new(printer)))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_lines_are_indented_under_the_first() {
        assert_eq!(
            prefixed("[10:00:00] pricewatch:", "one\ntwo\n\nthree"),
            "[10:00:00] pricewatch: one\n    two\n    \n    three"
        );
        assert_eq!(prefixed("[t] bot:", ""), "[t] bot:");
    }

    #[test]
    fn styling_is_removed_for_matching() {
        assert_eq!(strip_sgr("a \u{1b}[1mbold\u{1b}[22m b"), "a bold b");
        assert_eq!(strip_sgr("plain"), "plain");
    }

    #[tokio::test]
    async fn a_wait_sees_what_arrives_later_and_gives_up_at_the_deadline() {
        let t = Arc::new(Transcript::default());
        t.push("Now watching 1".into());
        let re = Regex::new("first price").unwrap();
        let later = t.clone();
        let waiter = tokio::spawn(async move {
            later
                .wait_match(&re, 1, Instant::now() + Duration::from_secs(30))
                .await
        });
        tokio::task::yield_now().await;
        t.push("The first price is $10".into());
        assert!(waiter.await.unwrap());
        let re = Regex::new("Now watching").unwrap();
        // From index 1 on, the earlier message does not count.
        assert!(
            !t.wait_match(&re, 1, Instant::now() + Duration::from_millis(50))
                .await
        );
        assert!(t.wait_match(&re, 0, Instant::now()).await);
    }

    #[test]
    fn only_a_failure_or_no_match_exits_non_zero() {
        assert_eq!(Outcome::Done.exit_code(), 0);
        assert_eq!(Outcome::Matched.exit_code(), 0);
        assert_eq!(Outcome::NotMatched.exit_code(), 1);
        assert_eq!(Outcome::Failed.exit_code(), 1);
    }
}
