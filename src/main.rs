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
    /// Read a price the way the price engine does (today: from a price string).
    Probe {
        /// Parse this price text alone, e.g. "1.234,56 €", to check a site rule's output.
        #[arg(long, required = true)]
        price_text: String,
        /// What the page says about the currency: an ISO code (EUR), a locale (de-DE) or a
        /// host or top-level domain (.com.au).
        #[arg(long)]
        currency_hint: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a configuration file and report every error at once.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::CheckConfig { file } => match pricewatch::config::load(Some(&file), env_vars()) {
            Ok(_) => {
                println!("{}: OK", file.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(2)
            }
        },
        Cmd::Probe {
            price_text,
            currency_hint,
            json,
        } => probe(&price_text, currency_hint.as_deref(), json),
        Cmd::Serve { config } => match serve(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pricewatch: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn probe(text: &str, hint: Option<&str>, json: bool) -> ExitCode {
    let report = pricewatch::price::TextProbe::run(text, hint);
    if json {
        match serde_json::to_string(&report) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("pricewatch: cannot print the report: {e}"),
        }
    } else {
        println!("amount: {}", report.amount.as_deref().unwrap_or("none"));
        match (&report.currency, report.currency_candidates.is_empty()) {
            (Some(c), _) => println!("currency: {c}"),
            (None, false) => println!("currency: one of {}", report.currency_candidates.join(", ")),
            (None, true) => println!("currency: unknown"),
        }
        if let Some(p) = &report.problem {
            eprintln!("note: {p}");
        }
    }
    if report.found() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn serve(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = pricewatch::config::load(config_path.as_deref(), env_vars())?;
    pricewatch::telemetry::init(&config.log);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        if config.bot.is_local_development() {
            tracing::warn!(
                "LOCAL-DEVELOPMENT MODE: no bot.app_id, so activities are NOT authenticated; \
                 listening on loopback only (connect the Bot Framework Emulator with no app id)"
            );
        }
        let app = pricewatch::app::App::start(&config).await?;
        pricewatch::shutdown::listen(app.shutdown_token())
            .context("cannot install the signal handlers")?;
        app.run_until_stopped().await?;
        anyhow::Ok(())
    })
}

/// The environment as UTF-8 pairs. `std::env::vars` panics on a non-UTF-8 variable;
/// such a variable cannot be a `PRICEWATCH__` override anyway, so it is skipped.
fn env_vars() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}
