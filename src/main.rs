//! The `pricewatch` command: thin on purpose; everything lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

// glibc malloc took about a sixth of the daemon's CPU per turn in the turn benchmark
// (BENCHMARKS.md); mimalloc's thread-local free lists suit tokio's many short allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Check a configuration file and report every error at once.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
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
