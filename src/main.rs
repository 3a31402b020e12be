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
        Cmd::Serve { config } => match serve(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pricewatch: {e:#}");
                ExitCode::FAILURE
            }
        },
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
