//! `pricewatch chat` and `pricewatch demo` as a user runs them: the real binaries as child
//! processes (`serve`, `chat --script`, `demo --shop-only` as the shop, `demo --script`), on
//! free loopback ports with temporary directories, read through their output.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::daemon::RunningDaemon;

/// A child process whose standard output and error are collected as they come.
struct Collected {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

impl Collected {
    fn start(args: &[&str], env: &[(&str, &Path)]) -> Collected {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pricewatch"));
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("the pricewatch binary starts");
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), out.clone());
        collect(child.stderr.take().unwrap(), err.clone());
        Collected { child, out, err }
    }

    fn out(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn err(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Waits until standard output holds `what`; the output so far on a timeout.
    async fn wait_for_output(&mut self, what: &str, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let out = self.out();
            if out.contains(what) {
                return Ok(out);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "exited ({status}) before printing {what:?}:\n{out}\nstderr:\n{}",
                    self.err()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no {what:?} within {within:?}:\n{out}\nstderr:\n{}",
                    self.err()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn exit(&mut self, within: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "still running after {within:?}:\n{}\nstderr:\n{}",
                    self.out(),
                    self.err()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Collected {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's configuration for the shop at `shop_port`: loopback allowed, a product
/// checked every minute, a tick every second.
fn config(dir: &Path, bind: &str, shop_port: u16) -> std::path::PathBuf {
    let file = dir.join("pricewatch.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nbind = \"{bind}\"\n\n[storage]\npath = {:?}\n\n\
             [schedule]\ntick = \"* * * * * *\"\ninterval = \"1m\"\njitter = 0\n\n\
             [fetch]\nallow_networks = [\"127.0.0.0/8\"]\nports = [{shop_port}]\nhost_gap = \"0s\"\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    file
}

/// The shop's address and its first product's link, from `demo --shop-only`'s output.
fn shop_address(out: &str) -> (String, String) {
    let base = out
        .lines()
        .find_map(|l| l.strip_prefix("demo shop at "))
        .expect("the shop's address line")
        .trim()
        .trim_end_matches('/')
        .to_owned();
    let first = out
        .lines()
        .find_map(|l| l.strip_prefix("1 "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the first product's line")
        .to_owned();
    (base, first)
}

/// `demo --shop-only` as the shop: the process, its address, its first product's link and
/// its port.
async fn start_shop() -> (Collected, String, String, u16) {
    let mut shop = Collected::start(&["demo", "--shop-only"], &[]);
    let out = shop
        .wait_for_output("/control", Duration::from_secs(30))
        .await
        .unwrap();
    let (shop_url, product) = shop_address(&out);
    let port = shop_url.rsplit(':').next().unwrap().parse().unwrap();
    (shop, shop_url, product, port)
}

#[tokio::test]
async fn chat_shows_the_first_price_then_after_a_restart_the_alert_for_a_drop() {
    let dir = tempfile::tempdir().unwrap();
    let (_shop, shop_url, product, shop_port) = start_shop().await;

    let daemon = RunningDaemon::start(&config(dir.path(), "127.0.0.1:0", shop_port))
        .await
        .unwrap();
    let addr = daemon.addr.clone();
    let script = dir.path().join("script.txt");
    std::fs::write(
        &script,
        format!("# a comment line\nhelp\nwatch {product}\n/wait tell you when it is\n"),
    )
    .unwrap();
    let bot = format!("http://{addr}/api/messages");
    let state = dir.path().join("chat.json");
    let mut chat = Collected::start(
        &[
            "chat",
            "--bot",
            &bot,
            "--script",
            script.to_str().unwrap(),
            "--wait-for",
            "Price alert",
            "--timeout",
            "4m",
            "--state",
            state.to_str().unwrap(),
        ],
        &[],
    );
    let out = chat
        .wait_for_output("tell you when it is", Duration::from_secs(60))
        .await
        .unwrap();
    // The welcome to a new conversation, the help, the watch confirmed, then the first
    // price, in that order.
    let at = |what: &str| {
        out.find(what)
            .unwrap_or_else(|| panic!("no {what:?} in:\n{out}"))
    };
    assert!(at("New conversation") < at("Hello! I am"), "{out}");
    assert!(at("Hello! I am") < at("you: help"), "{out}");
    assert!(at("you: help") < at("you: watch"), "{out}");
    assert!(at("you: watch") < at("Watch #1 stored"), "{out}");
    assert!(at("Watch #1 stored") < at("tell you when it is"), "{out}");
    assert!(!out.contains("a comment line"), "{out}");
    assert!(state.exists());

    // The daemon restarts between the watch and the drop, on the same port and data.
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "{log}");
    let daemon = RunningDaemon::start(&config(dir.path(), &addr, shop_port))
        .await
        .unwrap();
    assert_eq!(daemon.addr, addr);

    let answer = reqwest::Client::new()
        .post(format!("{shop_url}/control"))
        .body("/price 1 -25%")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());

    let status = chat.exit(Duration::from_secs(150)).await.unwrap();
    let out = chat.out();
    assert!(
        status.success(),
        "{status}:\n{out}\nstderr:\n{}",
        chat.err()
    );
    let alert = out.find("Price alert").expect("the alert in the output");
    assert!(alert > out.find("tell you when it is").unwrap(), "{out}");
    // The alert's card, its buttons numbered.
    assert!(out[alert..].contains("[2] Stop watching"), "{out}");
    drop(daemon);
}

#[tokio::test]
async fn the_demo_goes_from_watch_to_alert_and_a_button_stops_the_watch() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("demo.txt");
    std::fs::write(
        &script,
        "/products\n/watch 1\n/wait tell you when it is\n/price 1 -25%\n/wait Price alert\n2\n",
    )
    .unwrap();
    // The demo's temporary directory goes here, to be seen removed.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut demo = Collected::start(
        &[
            "demo",
            "--script",
            script.to_str().unwrap(),
            "--wait-for",
            "Stopped watching #1",
            "--timeout",
            "4m",
        ],
        &[("TMPDIR", &tmp)],
    );
    let status = demo.exit(Duration::from_secs(240)).await.unwrap();
    let out = demo.out();
    assert!(
        status.success(),
        "{status}:\n{out}\nstderr:\n{}",
        demo.err()
    );
    let order = [
        "Try:",
        "you: /watch 1",
        "tell you when it is",
        "you: /price 1 -25%",
        "Price alert",
        "you: 2",
        "Stopped watching #1",
    ];
    let mut from = 0;
    for what in order {
        let at = out[from..]
            .find(what)
            .unwrap_or_else(|| panic!("no {what:?} after byte {from} in:\n{out}"));
        from += at + what.len();
    }
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "the demo left {left:?}");
}

#[tokio::test]
async fn an_unreachable_bot_is_one_sentence_and_exit_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bot = format!("http://{}/api/messages", closed.local_addr().unwrap());
    drop(closed);
    let script = dir.path().join("s.txt");
    std::fs::write(&script, "help\n").unwrap();
    let state = dir.path().join("chat.json");
    let mut chat = Collected::start(
        &[
            "chat",
            "--bot",
            &bot,
            "--script",
            script.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ],
        &[],
    );
    let status = chat.exit(Duration::from_secs(30)).await.unwrap();
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        chat.err(),
        format!("cannot reach the bot at {bot}: is `pricewatch serve` running there?\n")
    );
}

#[tokio::test]
async fn with_a_token_the_replies_come_back_in_the_answer_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = RunningDaemon::start(&config(dir.path(), "127.0.0.1:0", 80))
        .await
        .unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "a-token-from-elsewhere\n").unwrap();
    let bot = format!("http://{}/api/messages", daemon.addr);
    let state = dir.path().join("chat.json");
    let mut chat = Collected::start(
        &[
            "chat",
            "--bot",
            &bot,
            "--script",
            "-",
            "--json",
            "--token-file",
            token.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--wait-for",
            "Hello! I am",
            "--timeout",
            "30s",
        ],
        &[],
    );
    // No script lines (stdin is empty): the welcome alone, in the answer to the
    // conversation's start, matches.
    let status = chat.exit(Duration::from_secs(40)).await.unwrap();
    let out = chat.out();
    assert!(
        status.success(),
        "{status}:\n{out}\nstderr:\n{}",
        chat.err()
    );
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|a| a["type"] == "message"), "{out}");
    assert!(
        chat.err().contains("cannot reach this terminal"),
        "{}",
        chat.err()
    );
    drop(daemon);
}

/// The demo as a person runs it: in a terminal (a pseudo-terminal here), typing into the
/// line editor while the bot's messages are printed above it, and leaving with Ctrl-C.
#[tokio::test]
async fn the_demo_in_a_terminal_goes_from_watch_to_alert_and_ctrl_c_cleans_up() {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    use std::io::Write;

    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    rustix::termios::tcsetwinsize(
        &master,
        rustix::termios::Winsize {
            ws_row: 50,
            ws_col: 160,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pricewatch"))
        .arg("demo")
        .env("TMPDIR", &tmp)
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let mut terminal = std::fs::File::from(master);
    let screen = Arc::new(Mutex::new(String::new()));
    collect(terminal.try_clone().unwrap(), screen.clone());
    let seen = |what: &'static str, within: Duration| {
        let screen = screen.clone();
        async move {
            let deadline = Instant::now() + within;
            loop {
                let text = screen.lock().unwrap().clone();
                if text.contains(what) {
                    return text;
                }
                assert!(
                    Instant::now() < deadline,
                    "no {what:?} on the screen:\n{text}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    seen("Ctrl-C or /quit", Duration::from_secs(30)).await;
    terminal.write_all(b"/watch 1\r").unwrap();
    seen("tell you when it is", Duration::from_secs(30)).await;
    terminal.write_all(b"/price 1 -25%\r").unwrap();
    let text = seen("Stop watching", Duration::from_secs(120)).await;
    assert!(text.contains("Price alert"), "{text}");
    // Styled for a terminal: the card's heading in bold.
    assert!(text.contains("\u{1b}[1m"), "{text}");
    terminal.write_all(b"\x03").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!(
                "the demo did not stop on Ctrl-C:\n{}",
                screen.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "the demo left {left:?}");
}

#[tokio::test]
async fn a_restarted_chat_goes_on_in_the_same_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let (_shop, _, product, shop_port) = start_shop().await;
    let daemon = RunningDaemon::start(&config(dir.path(), "127.0.0.1:0", shop_port))
        .await
        .unwrap();
    let bot = format!("http://{}/api/messages", daemon.addr);
    let state = dir.path().join("chat.json");
    let run = |script: String| {
        let file = dir.path().join("script.txt");
        std::fs::write(&file, script).unwrap();
        let args = [
            "chat",
            "--bot",
            &bot,
            "--script",
            file.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ]
        .map(str::to_owned);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut chat = Collected::start(&args, &[]);
            let status = chat.exit(Duration::from_secs(60)).await.unwrap();
            assert!(
                status.success(),
                "{status}:\n{}\n{}",
                chat.out(),
                chat.err()
            );
            chat.out()
        }
    };
    let first = run(format!("watch {product}\n/wait tell you when it is\n")).await;
    let id = first
        .lines()
        .find_map(|l| l.strip_prefix("New conversation "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the new conversation's id")
        .to_owned();
    let second = run("list\n".to_owned()).await;
    assert!(
        second.contains(&format!("Back in conversation {id} ")),
        "{second}"
    );
    assert!(second.contains("Your watches (1)"), "{second}");
    // Taken up, not opened again: no second welcome.
    assert!(!second.contains("Hello! I am"), "{second}");
    drop(daemon);
}
