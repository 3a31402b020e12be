//! Builds the daemon from its configuration, runs it, and stops it cleanly.
//!
//! The only module that knows every other one. It owns the cancellation token that
//! every task watches and the deadline within which in-flight turns must finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::delivery::connector::{Connector, ConnectorConfig, ServiceUrlPolicy};
use crate::delivery::ratelimit::SendLimits;
use crate::delivery::token::{TokenClient, TokenConfig};
use crate::delivery::{Delivery, PassReport};
use crate::inbound::auth::InboundAuth;
use crate::inbound::bot::{Bot, BotSettings};
use crate::inbound::command::Limits;
use crate::inbound::endpoint::{routes, Endpoint, Notify};
use crate::ops::config::Config;
use crate::price::engine::{EngineError, PriceEngine};
use crate::store::{SledStore, SledStoreConfig, Store, StoreError};
use crate::watch::plan::PlanConfig;
use crate::watch::watcher::Watcher;

/// How often delivery looks at the outbox when no check has woken it (retries come due).
const DELIVERY_POLL: Duration = Duration::from_secs(5);
/// How long the delivery loop waits for one pass before starting the next beside it.
const PASS_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(
        "bot.app_id is set, but this build cannot yet check the Bot Framework tokens that \
         production channels send; refusing to run unauthenticated. Leave bot.app_id empty \
         for local development (Emulator)"
    )]
    AuthenticationUnavailable,
    #[error(
        "local-development mode (no bot.app_id) accepts unauthenticated activities, so it \
         binds loopback only; server.bind is {0}. Use 127.0.0.1 or [::1]"
    )]
    DevModeNotLoopback(SocketAddr),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the Connector client")]
    Connector(#[from] crate::delivery::connector::ConnectorError),
    #[error("start-up task failed")]
    Join(#[from] tokio::task::JoinError),
    #[error(
        "bot.app_type \"UserAssignedMSI\" is not supported yet; use \"MultiTenant\" or \"SingleTenant\" with an app password"
    )]
    UnsupportedAppType,
    #[error(
        "bot.app_id is set but no app password was found: set bot.app_password_file or \
         provide the app-password credential"
    )]
    NoAppPassword,
    #[error("{what}")]
    Secret {
        what: &'static str,
        #[source]
        source: crate::ops::config::SecretError,
    },
    #[error("outbound token")]
    Token(#[source] crate::delivery::token::TokenError),
    #[error(
        "the notify admin token is shorter than {} characters; use a long random one, e.g. `openssl rand -hex 32`",
        crate::ops::config::MIN_ADMIN_TOKEN
    )]
    ShortAdminToken,
    #[error("cannot build the price engine")]
    Engine(#[from] EngineError),
    #[error("cannot install the signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("cannot start the scheduler")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
}

/// The running daemon.
pub struct App {
    addr: SocketAddr,
    store: Arc<SledStore>,
    cancel: CancellationToken,
    server: JoinHandle<()>,
    grace: Duration,
    scheduler: tokio_cron_scheduler::JobScheduler,
    ticks: JoinHandle<()>,
    delivery: JoinHandle<()>,
    watcher: Watcher,
}

/// The bot's token client, when an app id is configured (none in local development: the
/// Emulator takes unsigned calls).
fn outbound_token(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<Option<Arc<TokenClient>>, AppError> {
    if config.bot.is_local_development() {
        return Ok(None);
    }
    if config.bot.app_type == crate::ops::config::AppType::UserAssignedMsi {
        return Err(AppError::UnsupportedAppType);
    }
    let password = config
        .bot
        .app_password(credentials_dir().as_deref())
        .map_err(|source| AppError::Secret {
            what: "bot app password",
            source,
        })?
        .ok_or(AppError::NoAppPassword)?;
    let client = TokenClient::new(
        TokenConfig {
            endpoint: config.bot.token_endpoint(),
            client_id: config.bot.app_id.clone(),
            client_secret: password,
            scope: crate::delivery::token::BOT_FRAMEWORK_SCOPE.to_owned(),
            timeout: config.bot.reply_timeout,
        },
        clock,
    )
    .map_err(AppError::Token)?;
    Ok(Some(Arc::new(client)))
}

/// systemd's `LoadCredential=` directory, when the daemon runs under it.
fn credentials_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from)
}

/// The notify endpoint's admin token, when one is configured.
fn admin_token(config: &Config) -> Result<Option<crate::ops::config::Secret>, AppError> {
    let token = config
        .notify
        .admin_token(credentials_dir().as_deref())
        .map_err(|source| AppError::Secret {
            what: "notify admin token",
            source,
        })?;
    if let Some(t) = &token {
        if t.expose().chars().count() < crate::ops::config::MIN_ADMIN_TOKEN {
            return Err(AppError::ShortAdminToken);
        }
    }
    Ok(token)
}

/// Checks the mode rules of the design (§5) before anything is opened.
pub fn check_mode(config: &Config) -> Result<(), AppError> {
    if !config.bot.is_local_development() {
        return Err(AppError::AuthenticationUnavailable);
    }
    if !config.server.bind.ip().is_loopback() {
        return Err(AppError::DevModeNotLoopback(config.server.bind));
    }
    Ok(())
}

impl App {
    /// Opens the store, binds the listener and starts serving. Returns once the daemon
    /// accepts activities.
    pub async fn start(config: &Config) -> Result<App, AppError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(config: &Config, clock: Arc<dyn Clock>) -> Result<App, AppError> {
        check_mode(config)?;
        let store_config = SledStoreConfig {
            path: config.storage.path.clone(),
            cache_capacity: config.storage.cache_capacity,
            flush_every: config.storage.flush_every,
        };
        // Opening sled replays its log: blocking work, kept off the runtime's workers.
        let store =
            Arc::new(tokio::task::spawn_blocking(move || SledStore::open(&store_config)).await??);
        let connector = Connector::new(
            &ConnectorConfig {
                timeout: config.bot.reply_timeout,
                connect_timeout: config.bot.connect_timeout,
                user_agent: format!("pricewatch/{}", env!("CARGO_PKG_VERSION")),
                policy: ServiceUrlPolicy::new(
                    &config.bot.service_url_hosts,
                    config.bot.is_local_development(),
                ),
            },
            outbound_token(config, clock.clone())?,
        )?;
        let watcher = Watcher::new(
            store.clone(),
            PriceEngine::from_config(config)?,
            clock.clone(),
            PlanConfig {
                trigger: config.alerts.trigger(),
                schedule: config.schedule.schedule(),
            },
            config.fetch.gate(),
            config.storage.history_retention,
        );
        let mut bot = Bot::new(
            store.clone(),
            clock.clone(),
            BotSettings {
                name: config.bot.name.clone(),
                default_drop: config.alerts.default_drop,
                max_watches_per_conversation: config.alerts.max_watches_per_conversation,
                limits: Limits::default(),
            },
        );
        if config.schedule.enabled {
            bot = bot.with_watcher(watcher.clone());
        }
        let limits = Arc::new(SendLimits::new(&config.rate_limits, clock.clone()));
        let announced = Arc::new(tokio::sync::Notify::new());
        let notify = admin_token(config)?.map(|token| Notify {
            token,
            store: store.clone(),
            clock: clock.clone(),
            queued: announced.clone(),
            max_text: config.notify.max_text,
        });
        let delivery = Delivery::new(
            store.clone(),
            connector.clone(),
            clock,
            config.delivery.retry_policy(),
            limits,
        );
        let endpoint = Arc::new(Endpoint {
            auth: InboundAuth::LocalDevelopment,
            bot,
            connector,
            body_limit: config.server.body_limit,
            notify,
        });
        let listener = tokio::net::TcpListener::bind(config.server.bind)
            .await
            .map_err(|source| AppError::Bind {
                addr: config.server.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: config.server.bind,
            source,
        })?;
        let cancel = CancellationToken::new();
        let server = warp::serve(routes(endpoint))
            .incoming(listener)
            .graceful(cancel.clone().cancelled_owned())
            .run();
        let server = tokio::spawn(server);
        let (tick_tx, tick_rx) = tokio::sync::mpsc::channel(1);
        let scheduler = start_ticks(config, tick_tx).await?;
        let ticks = tokio::spawn(run_ticks(watcher.clone(), tick_rx, cancel.clone()));
        let delivery = tokio::spawn(deliver(
            delivery,
            watcher.clone(),
            announced,
            config.alerts.digest_window,
            cancel.clone(),
        ));
        tracing::info!(%addr, data = %config.storage.path.display(), "pricewatch is listening");
        Ok(App {
            addr,
            store,
            cancel,
            server,
            grace: config.server.shutdown_grace,
            scheduler,
            ticks,
            delivery,
            watcher,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Waits until the token is cancelled, lets in-flight turns finish within the grace
    /// period, then flushes the store.
    pub async fn run_until_stopped(self) -> Result<(), AppError> {
        let App {
            store,
            cancel,
            mut server,
            grace,
            mut scheduler,
            ticks,
            delivery,
            watcher,
            ..
        } = self;
        // Both branches can be ready at once (a cancel makes the graceful server finish
        // quickly); a JoinHandle must not be polled again after it completed.
        let server_done = tokio::select! {
            _ = cancel.cancelled() => false,
            // The server only ends by itself if it failed; shut down the rest with it.
            _ = &mut server => {
                cancel.cancel();
                true
            }
        };
        tracing::info!(grace = ?grace, "shutting down: no new activities, finishing turns in flight");
        if !server_done && tokio::time::timeout(grace, &mut server).await.is_err() {
            tracing::warn!("turns still running after the grace period were cut off");
            server.abort();
        }
        if let Err(e) = scheduler.shutdown().await {
            tracing::warn!(error = %e, "the scheduler did not stop cleanly");
        }
        // Every task holding the store ends here, so sled's directory lock is released
        // when this returns and a new daemon can open the same data.
        let _ = ticks.await;
        delivery.abort();
        let _ = delivery.await;
        watcher.shutdown().await;
        drop(watcher);
        store.flush().await?;
        tracing::info!("store flushed; stopped");
        Ok(())
    }

    /// Starts a graceful shutdown and waits for it.
    pub async fn stop(self) -> Result<(), AppError> {
        self.cancel.cancel();
        self.run_until_stopped().await
    }
}

/// The cron schedule of the tick. The job only signals [`run_ticks`]: a full channel
/// means a tick is already pending, so slow ticks never pile up, and the scheduler's own
/// tasks hold nothing of the daemon.
async fn start_ticks(
    config: &Config,
    tick: tokio::sync::mpsc::Sender<()>,
) -> Result<tokio_cron_scheduler::JobScheduler, AppError> {
    let scheduler = tokio_cron_scheduler::JobScheduler::new().await?;
    if !config.schedule.enabled {
        tracing::warn!("schedule.enabled is false: no product is checked");
        return Ok(scheduler);
    }
    let job = tokio_cron_scheduler::Job::new_async(config.schedule.tick.as_str(), move |_, _| {
        let tick = tick.clone();
        Box::pin(async move {
            let _ = tick.try_send(());
        })
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    Ok(scheduler)
}

/// Runs one watcher tick per signal until shutdown. A tick that is cut off leaves its
/// products due; nothing half-done was recorded (a check commits in one transaction).
async fn run_ticks(
    watcher: Watcher,
    mut ticks: tokio::sync::mpsc::Receiver<()>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            signal = ticks.recv() => {
                if signal.is_none() {
                    return;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            result = watcher.tick() => match result {
                Ok(r) if r.checked > 0 || r.failed > 0 => {
                    tracing::info!(checked = r.checked, queued = r.queued, failed = r.failed, "tick")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "tick failed; due products wait for the next"),
            },
        }
    }
}

/// Sends queued messages when a check queued some, and every few seconds for retries.
///
/// Each pass runs as its own task and is waited for at most [`PASS_WAIT`]: a channel that
/// is slow to answer keeps its pass going in the background while the next pass serves
/// the other channels (a channel is in one pass at a time).
async fn deliver(
    delivery: Delivery,
    watcher: Watcher,
    announced: Arc<tokio::sync::Notify>,
    digest_window: Duration,
    cancel: CancellationToken,
) {
    let delivery = Arc::new(delivery);
    // Passes still sending to a slow channel; ended at shutdown, so none holds the store.
    let mut lingering: Vec<JoinHandle<Result<PassReport, StoreError>>> = Vec::new();
    loop {
        // Until the next pass: at once when the last one left due messages behind, at the
        // earliest stored next attempt, else the poll period (retries of earlier passes).
        let mut pause = DELIVERY_POLL;
        let d = delivery.clone();
        let mut pass = tokio::spawn(async move { d.pass().await });
        let outcome = tokio::select! {
            _ = cancel.cancelled() => {
                pass.abort();
                lingering.push(pass);
                break;
            }
            outcome = tokio::time::timeout(PASS_WAIT, &mut pass) => outcome,
        };
        match outcome {
            Ok(Ok(Ok(r))) => {
                if r.sent > 0 || r.retried > 0 || r.dead > 0 {
                    tracing::debug!(
                        sent = r.sent,
                        retried = r.retried,
                        dead = r.dead,
                        deferred = r.deferred,
                        "delivery pass"
                    );
                }
                // Only when it moved something: due messages of a paused (429) channel stay
                // due, and must not make this loop spin.
                let moved = r.done + r.retried + r.dead + r.deferred > 0;
                if r.more && moved {
                    pause = Duration::ZERO;
                } else if let Some(at) = r.next_attempt_ms {
                    let ms = at.saturating_sub(delivery.now_ms());
                    pause = pause.min(Duration::from_millis(ms));
                }
            }
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "delivery pass failed; retrying"),
            Ok(Err(e)) => tracing::error!(error = %e, "a delivery pass failed"),
            Err(_) => {
                // A slow channel: its pass goes on; the next serves the others.
                lingering.push(pass);
                pause = PASS_WAIT;
            }
        }
        lingering.retain(|p| !p.is_finished());
        if pause.is_zero() {
            if cancel.is_cancelled() {
                break;
            }
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = watcher.messages_queued() => {
                // The checks of one tick finish one after another: wait a moment so that
                // alerts for one conversation go out as one digest, not one by one.
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(digest_window) => {}
                }
            }
            _ = announced.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
    // A message cut off mid-send is still queued: the next daemon sends it (at least once).
    for p in &lingering {
        p.abort();
    }
    for p in lingering {
        let _ = p.await;
    }
}

/// `pricewatch serve`: starts the daemon, stops it on SIGINT/SIGTERM, and returns once it
/// has drained and flushed.
pub async fn serve(config: &Config) -> Result<(), AppError> {
    if config.bot.is_local_development() {
        tracing::warn!(
            "LOCAL-DEVELOPMENT MODE: no bot.app_id, so activities are NOT authenticated; \
             listening on loopback only (connect the Bot Framework Emulator with no app id)"
        );
    }
    let app = App::start(config).await?;
    crate::ops::shutdown::listen(app.shutdown_token()).map_err(AppError::Signals)?;
    app.run_until_stopped().await
}
