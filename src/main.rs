//! The `pricewatch` command: thin on purpose; everything lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

// glibc malloc took about a sixth of the daemon's CPU per turn in the turn benchmark
// (BENCHMARKS.md); mimalloc's thread-local free lists suit tokio's many short allocations.
#[global_allocator]
static GLOBAL: pricewatch::alloc::Allocator = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "pricewatch",
    version,
    about = "Price-watch alert daemon for Bot Framework channels"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon (embedded defaults without --config: ./pricewatch-data, 127.0.0.1:3978,
    /// local-development mode).
    Serve {
        /// TOML configuration file; see config/pricewatch.toml.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Read a product's price the way the daemon does: from its URL, from a saved page, or
    /// from one price string. Exit status 0 when a price with its currency was found, 1 when
    /// not (the reason is printed), 2 on bad input.
    Probe(ProbeArgs),
    /// List the messages waiting in the outbox and the dead letters, or re-queue dead
    /// letters (`outbox retry`). Works on a stopped daemon's data directory.
    Outbox {
        #[command(subcommand)]
        action: Option<OutboxCmd>,
        /// TOML configuration naming the data directory (storage.path).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Write all the stored data (conversations, watches, products with their price
    /// history, the outbox) as JSON Lines, for a backup or a move. Works on a stopped
    /// daemon's data directory.
    Export {
        /// TOML configuration naming the data directory (storage.path).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write to this file (whole or not at all) instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Read an export into an empty data directory; nothing is imported unless every
    /// line is valid (exit status 2 names the first bad one). The daemon must be stopped.
    Import {
        /// TOML configuration naming the data directory (storage.path).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The file `pricewatch export` wrote.
        file: PathBuf,
    },
    /// Check a stopped daemon's data directory without changing it: exit status 0 and what
    /// it holds when it holds what it recorded, 1 and what is missing when it is damaged.
    Verify {
        /// TOML configuration naming the data directory (storage.path).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Talk to the bot from this terminal: a Connector endpoint on loopback for what the
    /// bot sends (replies and proactive alerts), each line typed sent as a message.
    /// Scriptable: lines from a file or a pipe, `--wait-for` to exit 0 on a message.
    Chat(ChatArgs),
    /// See an alert fire within about two minutes, on this machine alone: a demo shop, a
    /// daemon on a temporary data directory reading it, and the chat in this terminal.
    /// Ctrl-C stops it all and removes the directory.
    Demo(DemoArgs),
    /// Bring the PostgreSQL schema (storage.backend = "postgres") to this build's version;
    /// `serve` does it at start-up too. With --check, report its state without changing
    /// anything: exit status 0 when current, 1 when migrations are pending or a newer
    /// build migrated it.
    Migrate {
        /// TOML configuration naming the database (storage.postgres_url_file).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Report only.
        #[arg(long)]
        check: bool,
    },
    /// Check a configuration file and report every error at once.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct ChatArgs {
    /// The bot's messaging endpoint.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:3978/api/messages"
    )]
    bot: String,
    /// The channel the chat says it is (cards render on emulator, webchat, msteams).
    #[arg(long, value_name = "ID", default_value = "emulator")]
    channel_id: String,
    /// The name the bot sees (default: $USER).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// The conversation's locale, e.g. fr-FR (the bot answers in French).
    #[arg(long, value_name = "TAG")]
    locale: Option<String>,
    /// Hold this conversation instead of the remembered (or a new) one.
    #[arg(long, value_name = "ID")]
    conversation: Option<String>,
    /// Send the lines of FILE one by one (each after the bot answered the previous one)
    /// instead of reading the terminal; `-` is standard input. A standard input that is not
    /// a terminal is read this way too.
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    /// Exit 0 as soon as a message from the bot matches REGEX; exit 1 if none does within
    /// --timeout.
    #[arg(long, value_name = "REGEX")]
    wait_for: Option<String>,
    /// How long --wait-for and a script's `/wait` lines wait, from the start (e.g. 2m).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// Print each activity the bot sends as one JSON line.
    #[arg(long)]
    json: bool,
    /// Send `Authorization: Bearer` with the token in FILE, and ask for the replies in each
    /// answer (deliveryMode expectReplies), for a daemon in production mode.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The state file remembering the conversation (default:
    /// $XDG_STATE_HOME/pricewatch/chat.json).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// The loopback port for the bot's messages (default: the one used last time, or any).
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Play the lines of FILE (`-`: standard input) instead of reading the terminal; the
    /// shop's commands and `/watch N` work there too.
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    /// Exit 0 as soon as a message from the bot matches REGEX; exit 1 if none does within
    /// --timeout.
    #[arg(long, value_name = "REGEX")]
    wait_for: Option<String>,
    /// How long --wait-for and a script's `/wait` lines wait, from the start.
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// Print each activity the bot sends as one JSON line.
    #[arg(long)]
    json: bool,
    /// Run only the demo shop (until Ctrl-C), for a daemon and a chat started apart; its
    /// `POST /control` takes the shop's commands.
    #[arg(long)]
    shop_only: bool,
    /// With --shop-only: the loopback port (0: any; the address is printed).
    #[arg(long, value_name = "PORT", default_value_t = 0, requires = "shop_only")]
    shop_port: u16,
}

#[derive(Subcommand)]
enum OutboxCmd {
    /// Put dead letters back in the outbox, due now with their attempts reset.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["ids", "all_dead"])))]
    Retry {
        /// Outbox ids, as `pricewatch outbox` lists them.
        ids: Vec<u64>,
        /// Every dead letter.
        #[arg(long)]
        all_dead: bool,
    },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["target", "html", "price_text"])))]
struct ProbeArgs {
    /// The product page to fetch (through the same SSRF guard and limits as the daemon).
    #[arg(value_name = "URL")]
    target: Option<String>,
    /// Read a saved page instead of fetching one.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// With --html: the URL the page came from (for site rules, `?variant=` and the
    /// currency hint of its domain).
    #[arg(long = "url", value_name = "URL", requires = "html")]
    page_url: Option<String>,
    /// Parse this price text alone, e.g. "1.234,56 €", to check a site rule's output.
    #[arg(long)]
    price_text: Option<String>,
    /// With --price-text: what the page says about the currency: an ISO code (EUR), a
    /// locale (de-DE) or a host or top-level domain (.com.au).
    #[arg(long, requires = "price_text")]
    currency_hint: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// TOML configuration whose [fetch] settings and site rules to use.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// Exit status for bad input: a configuration that does not load, a missing file, a bad URL.
const BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    pricewatch::alloc::return_freed_memory_promptly();
    match Cli::parse().command {
        Cmd::CheckConfig { file } => match pricewatch::ops::config::load(Some(&file), env_vars()) {
            // The same rules `serve` applies before it opens anything.
            Ok(config) => match pricewatch::app::preflight(&config) {
                Ok(checked) => {
                    let mode = checked.mode;
                    println!("{}: OK ({mode})", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {}", file.display(), pricewatch::error::Chain(&e));
                    ExitCode::from(BAD_INPUT)
                }
            },
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(BAD_INPUT)
            }
        },
        Cmd::Probe(args) => probe(&args),
        Cmd::Outbox { action, config } => match outbox(config, action) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("pricewatch: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::Export { config, output } => transfer(config, |c| {
            pricewatch::ops::transfer::export_command(c, output.as_deref())
        }),
        Cmd::Import { config, file } => transfer(config, |c| {
            pricewatch::ops::transfer::import_command(c, &file)
        }),
        Cmd::Verify { config } => match verify(config) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("pricewatch: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::Migrate { config, check } => match migrate(config, check) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("pricewatch: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::Chat(args) => chat(args),
        Cmd::Demo(args) => demo(args),
        Cmd::Serve { config } => match serve(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pricewatch: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn probe(args: &ProbeArgs) -> ExitCode {
    use pricewatch::ops::probe::{self, Page};
    let outcome = match &args.price_text {
        Some(text) => probe::text(text, args.currency_hint.as_deref(), args.json),
        None => {
            let config = match pricewatch::ops::config::load(args.config.as_deref(), env_vars()) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(BAD_INPUT);
                }
            };
            let page = match &args.html {
                Some(file) => Page::Saved {
                    file,
                    url: args.page_url.as_deref(),
                },
                None => Page::Fetch {
                    url: args.target.as_deref().unwrap_or_default(),
                },
            };
            match probe::page(page, &config, args.json) {
                Ok(outcome) => outcome,
                Err(e) => {
                    eprintln!("pricewatch: {}", pricewatch::error::Chain(&e));
                    return ExitCode::from(BAD_INPUT);
                }
            }
        }
    };
    print(outcome)
}

fn print(output: pricewatch::ops::CommandOutput) -> ExitCode {
    print!("{}", output.stdout);
    eprint!("{}", output.stderr);
    ExitCode::from(output.status())
}

fn serve(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = pricewatch::ops::config::load(config_path.as_deref(), env_vars())?;
    pricewatch::ops::telemetry::init(&config.log);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let served = runtime.block_on(pricewatch::app::serve(&config, config_path.as_deref()));
    // Not a plain drop: that waits for every blocking task, and a store call stuck on a
    // full disk never ends. The drain is over; whatever still runs is abandoned.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    Ok(served?)
}

fn chat(args: ChatArgs) -> ExitCode {
    use pricewatch::chat::{self, ChatOptions, Source};
    use std::io::IsTerminal;
    let wait_for = match pattern("chat", args.wait_for.as_deref()) {
        Ok(re) => re,
        Err(code) => return code,
    };
    let token = match &args.token_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() => Some(pricewatch::secret::Secret::new(t.trim())),
            Ok(_) => {
                eprintln!(
                    "pricewatch chat: the token file {} is empty",
                    path.display()
                );
                return ExitCode::from(BAD_INPUT);
            }
            Err(e) => {
                eprintln!(
                    "pricewatch chat: cannot read the token file {}: {e}",
                    path.display()
                );
                return ExitCode::from(BAD_INPUT);
            }
        },
        None => None,
    };
    let var = |k: &str| std::env::var(k).ok();
    let state_path = args.state.unwrap_or_else(|| {
        chat::state::default_path(var("XDG_STATE_HOME").as_deref(), var("HOME").as_deref())
    });
    let source = match script_source("chat", args.script.as_deref()) {
        Ok(Some(lines)) => lines,
        Ok(None) => Source::Terminal {
            history: Some(state_path.with_file_name("chat_history")),
        },
        Err(code) => return code,
    };
    let options = ChatOptions {
        bot_url: args.bot,
        channel_id: args.channel_id,
        user: args
            .user
            .or_else(|| var("USER"))
            .unwrap_or_else(|| "you".to_owned()),
        locale: args.locale,
        conversation: args.conversation,
        wait_for,
        timeout: args.timeout,
        json: args.json,
        token,
        state_path,
        port: args.port,
        ansi: std::io::stdout().is_terminal() && var("NO_COLOR").is_none(),
    };
    run_outcome("chat", async {
        Ok::<_, std::convert::Infallible>(chat::run(options, source, None, None).await)
    })
}

fn demo(args: DemoArgs) -> ExitCode {
    use pricewatch::chat::Source;
    use pricewatch::demo::run::{self as demo, DemoOptions};
    use std::io::IsTerminal;
    if args.shop_only {
        return match tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| Ok(rt.block_on(demo::shop_only(args.shop_port))?))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pricewatch demo: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let wait_for = match pattern("demo", args.wait_for.as_deref()) {
        Ok(re) => re,
        Err(code) => return code,
    };
    let source = match script_source("demo", args.script.as_deref()) {
        Ok(Some(lines)) => lines,
        Ok(None) => Source::Terminal { history: None },
        Err(code) => return code,
    };
    let options = DemoOptions {
        source,
        wait_for,
        timeout: args.timeout,
        json: args.json,
        ansi: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        user: std::env::var("USER").unwrap_or_else(|_| "you".to_owned()),
    };
    run_outcome("demo", demo::run(options))
}

/// `--wait-for`'s pattern, or exit status 2 with the reason.
fn pattern(command: &str, text: Option<&str>) -> Result<Option<regex::Regex>, ExitCode> {
    text.map(regex::Regex::new).transpose().map_err(|e| {
        eprintln!("pricewatch {command}: --wait-for is not a regular expression: {e}");
        ExitCode::from(BAD_INPUT)
    })
}

/// The lines of `--script` (`-`: standard input), or of a standard input that is not a
/// terminal; `None`: the terminal.
fn script_source(
    command: &str,
    script: Option<&std::path::Path>,
) -> Result<Option<pricewatch::chat::Source>, ExitCode> {
    use pricewatch::chat::Source;
    use std::io::IsTerminal;
    Ok(match script {
        Some(path) if path.as_os_str() == "-" => Some(Source::Lines(Box::new(
            std::io::BufReader::new(std::io::stdin()),
        ))),
        Some(path) => match std::fs::File::open(path) {
            Ok(f) => Some(Source::Lines(Box::new(std::io::BufReader::new(f)))),
            Err(e) => {
                eprintln!(
                    "pricewatch {command}: cannot read the script {}: {e}",
                    path.display()
                );
                return Err(ExitCode::from(BAD_INPUT));
            }
        },
        None if !std::io::stdin().is_terminal() => Some(Source::Lines(Box::new(
            std::io::BufReader::new(std::io::stdin()),
        ))),
        None => None,
    })
}

/// Runs a chat or the demo to its outcome's exit status.
fn run_outcome<E: std::error::Error>(
    command: &str,
    work: impl std::future::Future<Output = Result<pricewatch::chat::Outcome, E>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pricewatch {command}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(work);
    // The terminal's reading thread may still wait for a line; it is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match outcome {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(e) => {
            eprintln!("pricewatch {command}: {}", pricewatch::error::Chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn outbox(config_path: Option<PathBuf>, action: Option<OutboxCmd>) -> anyhow::Result<ExitCode> {
    use pricewatch::ops::admin::{outbox_command, Requeue};
    let config = pricewatch::ops::config::load(config_path.as_deref(), env_vars())?;
    let action = action.map(|OutboxCmd::Retry { ids, all_dead }| {
        if all_dead {
            Requeue::AllDead
        } else {
            Requeue::Ids(ids)
        }
    });
    Ok(print(outbox_command(&config, action)?))
}

fn verify(config_path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = pricewatch::ops::config::load(config_path.as_deref(), env_vars())?;
    Ok(print(pricewatch::ops::verify::verify_command(&config)?))
}

fn migrate(config_path: Option<PathBuf>, check: bool) -> anyhow::Result<ExitCode> {
    let config = pricewatch::ops::config::load(config_path.as_deref(), env_vars())?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let output = runtime.block_on(pricewatch::ops::migrate::migrate_command(&config, check))?;
    Ok(print(output))
}

/// Runs `export` or `import` with the loaded configuration; a damaged or unreadable file
/// exits 2, a store that cannot take it 1.
fn transfer(
    config_path: Option<PathBuf>,
    run: impl FnOnce(
        &pricewatch::ops::config::Config,
    )
        -> Result<pricewatch::ops::CommandOutput, pricewatch::ops::transfer::TransferError>,
) -> ExitCode {
    let config = match pricewatch::ops::config::load(config_path.as_deref(), env_vars()) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    match run(&config) {
        Ok(output) => print(output),
        Err(e) => {
            eprintln!("pricewatch: {}", pricewatch::error::Chain(&e));
            ExitCode::from(e.status())
        }
    }
}

/// The environment as UTF-8 pairs. `std::env::vars` panics on a non-UTF-8 variable;
/// such a variable cannot be a `PRICEWATCH__` override anyway, so it is skipped.
fn env_vars() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}
