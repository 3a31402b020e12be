//! Builds the daemon from its configuration, runs it, and stops it cleanly.
//!
//! The only module that knows every other one. It owns the cancellation token that
//! every task watches and the deadline within which in-flight turns must finish.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::delivery::connector::{Connector, ConnectorConfig, ServiceUrlPolicy};
use crate::delivery::ratelimit::SendLimits;
use crate::delivery::replies::ReplyLanes;
use crate::delivery::run::Wake;
use crate::delivery::token::{TokenClient, TokenConfig};
use crate::delivery::{Delivery, PassReport};
use crate::error::Chain;
use crate::inbound::auth::{BotFrameworkAuth, BotFrameworkSettings, InboundAuth};
use crate::inbound::bot::{Bot, TurnSettings};
use crate::inbound::command::Limits;
use crate::inbound::endpoint::{routes, Announcements, Endpoint, Health, LateReplies, Surface};
use crate::liveness::Liveness;
use crate::ops::config::Config;
use crate::ops::metrics::{Deliveries, Metrics};
use crate::ops::service::{ServiceManager, Signal, Systemd};
use crate::price::engine::EngineError;
use crate::store::postgres::PgStore;
use crate::store::{GuardedStore, LeaseBook, SledStore, Store, StoreError};
use crate::watch::gate::GateConfig;
use crate::watch::plan::PlanConfig;
use crate::watch::run::TickSchedule;
use crate::watch::watcher::{TickReport, Watcher};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(
        "local-development mode (no bot.app_id) accepts unauthenticated activities, so it \
         binds loopback only; {key} is {addr}. Use 127.0.0.1 or [::1]"
    )]
    DevModeNotLoopback { key: &'static str, addr: SocketAddr },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the client that fetches the token signing keys")]
    KeyClient(#[source] reqwest::Error),
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
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Catalogs(Vec<crate::price::catalog::CatalogError>),
    #[error("cannot install the signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("cannot start the scheduler")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
    #[error(transparent)]
    Database(#[from] crate::ops::migrate::MigrateError),
    #[error(transparent)]
    Postgres(#[from] crate::store::postgres::PgError),
}

/// What the daemon tells its service manager, and when it counts a loop as stuck.
pub struct ServiceHooks {
    pub manager: Arc<dyn ServiceManager>,
    /// A loop that has not gone round for this long stops the watchdog pings.
    pub stale_after: Duration,
    /// Puts something between the daemon and its database (tests: a store that fails
    /// on demand); the time limit and the disk reserve still stand in front of it.
    pub wrap_store: Option<WrapStore>,
}

/// See [`ServiceHooks::wrap_store`].
pub type WrapStore = Box<dyn FnOnce(Arc<dyn Store>) -> Arc<dyn Store> + Send>;

impl ServiceHooks {
    /// systemd, through `$NOTIFY_SOCKET` when it is set. A watch loop goes round at least
    /// once a check has ended, which the fetch timeout (plus the extraction deadline)
    /// bounds; twice that and a margin is surely stuck.
    pub fn systemd(config: &Config) -> ServiceHooks {
        ServiceHooks {
            manager: Arc::new(Systemd),
            stale_after: config.fetch.timeout * 2 + Duration::from_secs(30),
            wrap_store: None,
        }
    }
}

/// `STATUS=`: what an operator sees in `systemctl status`.
fn status_line(s: &crate::store::StoreStats) -> String {
    format!(
        "{} watches, {} products, {} queued messages, {} dead letters",
        s.watches, s.products, s.outbox, s.dead_letters
    )
}

/// `READY=1` once the daemon serves: the store is open, the listener bound and the loops
/// started when this runs; in production it waits for the signing keys too (a daemon
/// without them answers every activity 401).
async fn ready_when_serving(
    manager: Arc<dyn ServiceManager>,
    auth: InboundAuth,
    store: Arc<dyn Store>,
    cancel: CancellationToken,
) {
    while auth.key_status().is_some_and(|k| k.keys == 0) {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let mut signals = vec![Signal::Ready];
    if let Ok(stats) = store.stats().await {
        signals.push(Signal::Status(status_line(&stats)));
    }
    manager.notify(&signals);
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, AppError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })
}

/// The least time the drain after the turns gets (the loops, the final flush).
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// The running daemon.
pub struct App {
    addr: SocketAddr,
    store: Arc<dyn Store>,
    cancel: CancellationToken,
    server: JoinHandle<()>,
    /// The health and metrics listener, when `server.ops_bind` gives it its own address.
    ops: Option<(SocketAddr, JoinHandle<()>)>,
    grace: Duration,
    schedule: Arc<TickSchedule>,
    ticks: JoinHandle<()>,
    delivering: JoinHandle<()>,
    watcher: Watcher,
    delivery: Arc<Delivery>,
    auth: InboundAuth,
    manager: Arc<dyn ServiceManager>,
    reloader: Arc<Reloader>,
    /// The leases this replica holds in a shared store, given back when it stops.
    leases: Arc<LeaseBook>,
    /// How long after a stop a shop given back may be asked by another replica.
    lease_tail: std::time::Duration,
}

/// The bot's token client, when an app id is configured (none in local development: the
/// Emulator takes unsigned calls).
fn outbound_token(
    config: &Config,
    password: Option<crate::secret::Secret>,
    clock: Arc<dyn Clock>,
) -> Result<Option<Arc<TokenClient>>, AppError> {
    let Some(password) = password else {
        return Ok(None);
    };
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

fn app_password(config: &Config) -> Result<crate::secret::Secret, AppError> {
    config
        .bot
        .app_password(credentials_dir().as_deref())
        .map_err(|source| AppError::Secret {
            what: "bot app password",
            source,
        })?
        .ok_or(AppError::NoAppPassword)
}

/// Production mode's token checker, with its signing keys fetched once (a start-up
/// whose key server is unreachable still starts: every token is refused, and the log
/// says why, until the keys arrive) and then kept fresh until `cancel`.
async fn inbound_auth(
    config: &Config,
    mode: Mode,
    clock: Arc<dyn Clock>,
    cancel: &CancellationToken,
) -> Result<InboundAuth, AppError> {
    if mode == Mode::LocalDevelopment {
        return Ok(InboundAuth::LocalDevelopment);
    }
    let http =
        crate::inbound::auth::keys::http_client(&user_agent()).map_err(AppError::KeyClient)?;
    let auth = Arc::new(BotFrameworkAuth::new(
        BotFrameworkSettings {
            app_id: config.bot.app_id.clone(),
            own_tenant: (config.bot.app_type == crate::ops::config::AppType::SingleTenant)
                .then(|| config.bot.tenant_id.trim().to_owned()),
            config: config.auth.clone(),
        },
        http,
        clock,
    ));
    let caches = auth.key_caches();
    futures_util::future::join_all(caches.iter().map(|c| c.refresh())).await;
    for cache in caches {
        tokio::spawn(cache.run(config.auth.key_refresh, cancel.clone()));
    }
    Ok(InboundAuth::BotFramework(auth))
}

fn user_agent() -> String {
    format!("pricewatch/{}", env!("CARGO_PKG_VERSION"))
}

/// systemd's `LoadCredential=` directory, when the daemon runs under it.
fn credentials_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from)
}

/// The notify endpoint's admin token, when one is configured.
fn admin_token(config: &Config) -> Result<Option<crate::secret::Secret>, AppError> {
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

/// Which of the two modes the daemon runs in (docs/rules.md, "Modes and the bot's
/// token").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No app id: nothing is authenticated, so only loopback is served.
    LocalDevelopment,
    /// An app id: every activity carries a Bot Framework token, any address may be bound.
    Production,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::LocalDevelopment => "local-development mode",
            Mode::Production => "production mode",
        })
    }
}

/// What [`preflight`] found: the mode, and the secrets it read (read once, here).
pub struct Preflight {
    pub mode: Mode,
    /// Production mode's app password.
    app_password: Option<crate::secret::Secret>,
    admin_token: Option<crate::secret::Secret>,
    /// With `storage.backend = "postgres"`: the database, its connection string read.
    postgres: Option<crate::store::postgres::PostgresConfig>,
}

/// Every rule `serve` applies before it opens anything: the mode rules and the secrets
/// they need. `check-config` runs exactly this, so a file it passes is one `serve` starts
/// with (the data directory and the port aside).
pub fn preflight(config: &Config) -> Result<Preflight, AppError> {
    let (mode, app_password) = if config.bot.is_local_development() {
        if !config.server.bind.ip().is_loopback() {
            return Err(AppError::DevModeNotLoopback {
                key: "server.bind",
                addr: config.server.bind,
            });
        }
        if let Some(ops) = config.server.ops_bind.filter(|a| !a.ip().is_loopback()) {
            return Err(AppError::DevModeNotLoopback {
                key: "server.ops_bind",
                addr: ops,
            });
        }
        (Mode::LocalDevelopment, None)
    } else {
        if config.bot.app_type == crate::ops::config::AppType::UserAssignedMsi {
            return Err(AppError::UnsupportedAppType);
        }
        (Mode::Production, Some(app_password(config)?))
    };
    let postgres = match config.storage.backend {
        crate::ops::config::Backend::Sled => None,
        crate::ops::config::Backend::Postgres => {
            Some(crate::ops::migrate::postgres_config(config)?)
        }
    };
    Ok(Preflight {
        mode,
        app_password,
        admin_token: admin_token(config)?,
        postgres,
    })
}

impl App {
    /// Opens the store, binds the listener and starts serving. Returns once the daemon
    /// accepts activities.
    pub async fn start(config: &Config) -> Result<App, AppError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(config: &Config, clock: Arc<dyn Clock>) -> Result<App, AppError> {
        let service = ServiceHooks::systemd(config);
        Self::start_with_service(config, clock, service).await
    }

    /// Like [`App::start_with_clock`], telling `service` what systemd would be told.
    pub async fn start_with_service(
        config: &Config,
        clock: Arc<dyn Clock>,
        service: ServiceHooks,
    ) -> Result<App, AppError> {
        let Preflight {
            mode,
            app_password,
            admin_token,
            postgres,
        } = preflight(config)?;
        let cancel = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        let mut backend: Arc<dyn Store> = match postgres {
            None => {
                let store_config = config.storage.sled();
                // Opening sled replays its log: blocking work, kept off the runtime's workers.
                let store =
                    tokio::task::spawn_blocking(move || SledStore::open(&store_config)).await??;
                Arc::new(store)
            }
            Some(postgres) => Arc::new(PgStore::open(&postgres).await?),
        };
        if let Some(wrap) = service.wrap_store {
            backend = wrap(backend);
        }
        let store: Arc<dyn Store> = Arc::new(GuardedStore::new(backend, config.storage.guard()));
        let connector = Connector::new(
            &ConnectorConfig {
                timeout: config.bot.reply_timeout,
                connect_timeout: config.bot.connect_timeout,
                user_agent: user_agent(),
                policy: ServiceUrlPolicy::new(
                    &config.bot.service_url_hosts,
                    config.bot.is_local_development(),
                ),
            },
            outbound_token(config, app_password, clock.clone())?
                .inspect(|t| t.count_in(metrics.clone())),
        )?;
        let wake = Wake::default();
        let watcher = Watcher::new(
            store.clone(),
            config.price_engine()?,
            clock.clone(),
            PlanConfig {
                trigger: config.alerts.trigger(),
                schedule: config.schedule.clone(),
            },
            GateConfig::from(&config.fetch),
            config.storage.history_retention,
            wake.clone(),
        );
        watcher.count_in(metrics.clone());
        let bot = Bot::new(
            store.clone(),
            clock.clone(),
            TurnSettings {
                name: config.bot.name.clone(),
                default_drop: config.alerts.default_drop,
                max_watches_per_conversation: config.alerts.max_watches_per_conversation,
                limits: Limits::default(),
                checks: config.schedule.enabled,
                catalogs: Arc::new(config.catalogs().map_err(AppError::Catalogs)?),
            },
        )
        .with_first_check(Arc::new(watcher.clone()))
        .with_catalog_fetch(Arc::new(watcher.clone()));
        let limits = Arc::new(SendLimits::resuming(&config.rate_limits, clock.clone()));
        let announcements = admin_token.map(|token| Announcements {
            token,
            store: store.clone(),
            clock: clock.clone(),
            wake: wake.clone(),
            max_text: config.notify.max_text,
        });
        let clock_for_auth = clock.clone();
        let clock_for_service = clock.clone();
        // Replies queued before a restart keep their order over the new turns' replies.
        let reply_lanes = Arc::new(ReplyLanes::from_queued(
            &store.queued_messages(usize::MAX).await?,
        ));
        let late_replies = LateReplies {
            store: store.clone(),
            clock: clock.clone(),
            wake: wake.clone(),
            lanes: reply_lanes.clone(),
        };
        let delivery = Arc::new(
            Delivery::new(
                store.clone(),
                connector.clone(),
                clock,
                config.delivery,
                limits,
            )
            .with_replies(reply_lanes),
        );
        delivery.count_in(metrics.clone());
        // Only a shared store (PostgreSQL) has leases; with sled this process does it all.
        let leases = Arc::new(LeaseBook::new(config.storage.postgres_lease));
        if let Some(replicas) = store.replicas() {
            watcher.share_with(leases.clone());
            delivery.share_with(leases.clone());
            tracing::info!(
                holder = %replicas.holder(),
                lease = %humantime::format_duration(config.storage.postgres_lease),
                "sharing the work with any other replica on this database"
            );
        }
        // Weak: the metrics must not keep delivery (and the store it holds) alive after
        // the daemon stops, or the store's lock would outlive it.
        let counted = Arc::downgrade(&delivery);
        metrics.read_deliveries_from(move || {
            let c = counted.upgrade()?.counters();
            Some(Deliveries {
                sent: c.sent,
                retried: c.retried,
                dead: c.dead,
            })
        });
        let auth = inbound_auth(config, mode, clock_for_auth, &cancel).await?;
        let liveness = Arc::new(Liveness::new(clock_for_service.clone()));
        let sizes = Arc::new(crate::ops::sizes::StoreSizes::new(store.clone()));
        let endpoint = Arc::new(Endpoint {
            auth: auth.clone(),
            bot,
            connector,
            body_limit: config.server.body_limit,
            body_timeout: config.server.body_timeout,
            announcements,
            health: Health {
                store: store.clone(),
                sizes: sizes.clone(),
                liveness: liveness.clone(),
                clock: clock_for_service.clone(),
                stale_after: service.stale_after,
            },
            metrics,
            late_replies,
        });
        let (reloader_endpoint, reloader_clock) = (endpoint.clone(), clock_for_service.clone());
        let listener = bind(config.server.bind).await?;
        let addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: config.server.bind,
            source,
        })?;
        let (surface, ops) = match config.server.ops_bind {
            None => (Surface::All, None),
            Some(ops_bind) => {
                let ops = bind(ops_bind).await?;
                let ops_addr = ops.local_addr().map_err(|source| AppError::Bind {
                    addr: ops_bind,
                    source,
                })?;
                let server = tokio::spawn(crate::inbound::listener::serve(
                    ops,
                    warp::service(routes(endpoint.clone(), Surface::Ops)),
                    config.server.listener(),
                    cancel.clone(),
                ));
                tracing::info!(addr = %ops_addr, "health and metrics on their own address");
                (Surface::Bot, Some((ops_addr, server)))
            }
        };
        let server = tokio::spawn(crate::inbound::listener::serve(
            listener,
            warp::service(routes(endpoint, surface)),
            config.server.listener(),
            cancel.clone(),
        ));
        let (schedule, tick_signals) = TickSchedule::start(tick_cron(&config.schedule)).await?;
        let schedule = Arc::new(schedule);
        if !config.schedule.enabled {
            tracing::warn!("schedule.enabled is false: no product is checked");
        }
        watcher.report_to(liveness.clone());
        let ticks = tokio::spawn(watcher.clone().run(tick_signals, cancel.clone()));
        // Ends with the cancel; the leases it renews are given back with the others.
        tokio::spawn(watcher.clone().keep_polling_presence(cancel.clone()));
        let (reloader_watcher, reloader_delivery) = (watcher.clone(), delivery.clone());
        let delivering = tokio::spawn(crate::delivery::run::run(
            delivery.clone(),
            wake,
            config.alerts.digest_window,
            liveness.clone(),
            cancel.clone(),
        ));
        tokio::spawn(crate::ops::service::watchdog(
            service.manager.clone(),
            liveness,
            service.manager.watchdog_interval(),
            service.stale_after,
            move || {
                let sizes = sizes.clone();
                async move { sizes.get().await.ok().map(|s| status_line(&s)) }
            },
            cancel.clone(),
        ));
        tokio::spawn(ready_when_serving(
            service.manager.clone(),
            auth.clone(),
            store.clone(),
            cancel.clone(),
        ));
        tracing::info!(%addr, %mode, data = %config.storage.path.display(), "pricewatch is listening");
        Ok(App {
            addr,
            store,
            cancel,
            server,
            ops,
            grace: config.server.shutdown_grace,
            schedule: schedule.clone(),
            ticks,
            delivering,
            watcher,
            delivery,
            auth,
            manager: service.manager,
            reloader: Arc::new(Reloader {
                started: config.clone(),
                applied: tokio::sync::Mutex::new(config.clone()),
                watcher: reloader_watcher,
                endpoint: reloader_endpoint,
                delivery: reloader_delivery,
                schedule,
                clock: reloader_clock,
            }),
            leases,
            lease_tail: config.fetch.host_gap,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where health and metrics are served when `server.ops_bind` is set.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().map(|(addr, _)| *addr)
    }

    /// The signing keys' state in production mode (`None` in local development).
    pub fn key_status(&self) -> Option<crate::inbound::auth::keys::KeyStatus> {
        self.auth.key_status()
    }

    /// Applies a configuration's live keys, as SIGHUP does with the re-read file.
    pub async fn reload(&self, config: &Config) -> Result<ReloadOutcome, AppError> {
        self.reloader.reload(config).await
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Runs one step of the watch loop now, beside the scheduled ones (a product being
    /// checked is never checked twice at once), whether or not the schedule is on. For
    /// tests and operators' tooling: whoever needs to know what a tick did asks for one
    /// and reads its report, instead of waiting for the cron.
    pub async fn tick_now(&self) -> Result<TickReport, StoreError> {
        self.watcher.step().await
    }

    /// Runs one delivery pass now, beside the loop's (a channel is in one pass at a time,
    /// so one the loop is sending to is left to it), and returns its report. For tests and
    /// operators' tooling, like [`App::tick_now`].
    pub async fn deliver_now(&self) -> Result<PassReport, StoreError> {
        self.delivery.pass().await
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
            ops,
            grace,
            schedule,
            ticks,
            delivering,
            watcher,
            delivery,
            manager,
            leases,
            lease_tail,
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
        manager.notify(&[Signal::Stopping]);
        tracing::info!(grace = ?grace, "shutting down: no new activities, finishing turns in flight");
        // One deadline for the whole drain, so that a store that stopped answering (a
        // full disk) cannot hold the process past it.
        let deadline = tokio::time::Instant::now() + grace;
        if !server_done
            && tokio::time::timeout_at(deadline, &mut server)
                .await
                .is_err()
        {
            tracing::warn!("turns still running after the grace period were cut off");
            server.abort();
        }
        if let Some((_, mut ops)) = ops {
            // Scrapes are quick; one still running after the turns' grace is cut off.
            if tokio::time::timeout_at(deadline, &mut ops).await.is_err() {
                ops.abort();
            }
        }
        let drain = async {
            schedule.stop().await;
            // Every task holding the store ends here, so sled's directory lock is released
            // when this returns and a new daemon can open the same data.
            let _ = ticks.await;
            delivering.abort();
            let _ = delivering.await;
            drop(delivery);
            watcher.shutdown().await;
            drop(watcher);
            // Nothing of this replica fetches or sends any more: another may take over
            // its shops (after their gap) and channels (its limiters start as after a
            // restart) now rather than when the leases run out.
            if let Some(replicas) = store.replicas() {
                let held = leases.take_all();
                if let Err(e) = replicas.release(held, lease_tail).await {
                    tracing::warn!(error = %crate::error::Chain(&e), "giving back the leases failed; they run out by themselves");
                }
            }
            store.flush().await
        };
        // The loops and the final flush get what is left of the grace, and at least
        // FINAL_FLUSH when the turns took all of it.
        let limit = deadline.max(tokio::time::Instant::now() + FINAL_FLUSH);
        match tokio::time::timeout_at(limit, drain).await {
            Ok(flushed) => flushed?,
            Err(_) => {
                // What was acknowledged was flushed before it was; what is lost here is
                // what no one was promised (a later display name, a sent message's removal).
                tracing::error!(
                    "the store did not finish within the grace period; stopping anyway"
                );
                return Err(AppError::Store(StoreError::TimedOut {
                    what: "the final flush",
                    after: grace,
                }));
            }
        }
        tracing::info!("store flushed; stopped");
        Ok(())
    }

    /// Starts a graceful shutdown and waits for it.
    pub async fn stop(self) -> Result<(), AppError> {
        self.cancel.cancel();
        self.run_until_stopped().await
    }
}

/// `pricewatch serve`: starts the daemon, stops it on SIGINT/SIGTERM, and returns once it
/// has drained and flushed.
pub async fn serve(config: &Config, file: Option<&Path>) -> Result<(), AppError> {
    if !config.bot.is_local_development() {
        tracing::info!(
            app_id = %config.bot.app_id,
            app_type = ?config.bot.app_type,
            emulator_tokens = config.auth.emulator_tokens,
            "PRODUCTION MODE: every activity must carry a Bot Framework token"
        );
    } else {
        tracing::warn!(
            "LOCAL-DEVELOPMENT MODE: no bot.app_id, so activities are NOT authenticated; \
             listening on loopback only (connect the Bot Framework Emulator with no app id)"
        );
    }
    let app = App::start(config).await?;
    crate::ops::shutdown::listen(app.shutdown_token()).map_err(AppError::Signals)?;
    // Installed whatever the file: SIGHUP's default action would end the daemon.
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(AppError::Signals)?;
    let reloader = app.reloader.clone();
    let manager = app.manager.clone();
    let file = file.map(Path::to_path_buf);
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            manager.notify(&[Signal::Reloading]);
            reload_from(file.as_deref(), &reloader).await;
            manager.notify(&[Signal::Ready]);
        }
    });
    app.run_until_stopped().await
}

/// SIGHUP: re-reads `file` and applies what can change live; a file with errors changes
/// nothing, and each error is logged.
async fn reload_from(file: Option<&Path>, reloader: &Reloader) {
    let Some(file) = file else {
        tracing::warn!(
            "reload asked for, but the daemon runs on its embedded defaults: no file to re-read"
        );
        return;
    };
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let config = match crate::ops::config::load(Some(file), env) {
        Ok(config) => config,
        Err(errors) => {
            for line in errors.to_string().lines() {
                tracing::error!("reload refused: {line}");
            }
            tracing::warn!(file = %file.display(), "the running configuration is kept");
            return;
        }
    };
    match reloader.reload(&config).await {
        Ok(outcome) => {
            tracing::info!(
                file = %file.display(),
                applied = %list(&outcome.applied),
                "configuration reloaded"
            );
            if !outcome.restart.is_empty() {
                tracing::warn!(
                    keys = %list(&outcome.restart),
                    "changed keys that only a restart applies; they keep their running values"
                );
            }
        }
        Err(e) => {
            tracing::error!(error = %Chain(&e), "reload failed; the running configuration is kept")
        }
    }
}

fn list(keys: &[String]) -> String {
    if keys.is_empty() {
        "nothing".to_owned()
    } else {
        keys.join(", ")
    }
}

/// Applies a reloaded configuration's live keys to the running daemon: the schedule's
/// intervals, jitter and back-off, politeness and the rest of `[fetch]`, site rules,
/// trigger defaults, retries, rate limits and the log level.
pub struct Reloader {
    /// What the daemon started with: the keys only a restart changes are compared to it.
    started: Config,
    /// What was applied last: the live keys are compared to it.
    applied: tokio::sync::Mutex<Config>,
    watcher: Watcher,
    endpoint: Arc<Endpoint>,
    delivery: Arc<Delivery>,
    schedule: Arc<TickSchedule>,
    clock: Arc<dyn Clock>,
}

/// The cron the tick runs on, `None` when the schedule is off.
fn tick_cron(schedule: &crate::watch::schedule::ScheduleConfig) -> Option<&str> {
    schedule.enabled.then_some(schedule.tick.as_str())
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    pub applied: Vec<String>,
    /// Changed keys that keep their running values until a restart.
    pub restart: Vec<String>,
}

impl Reloader {
    pub async fn reload(&self, new: &Config) -> Result<ReloadOutcome, AppError> {
        // Held throughout: reloads are applied one at a time, in order.
        let mut applied = self.applied.lock().await;
        let live = crate::ops::reload::plan(&applied, new).live;
        let restart = crate::ops::reload::plan(&self.started, new).restart;
        // Built first: a rule that does not compile fails the reload before anything
        // changed.
        let engine = new.price_engine()?;
        let catalogs = Arc::new(new.catalogs().map_err(AppError::Catalogs)?);
        // Then the schedule, which can fail too (the scheduler's own start-up); a failure
        // leaves the running schedule and everything else as they were.
        if self.schedule.set(tick_cron(&new.schedule)).await? && !new.schedule.enabled {
            tracing::warn!("schedule.enabled is false: no product is checked from now on");
        }
        self.watcher.reconfigure(
            engine,
            PlanConfig {
                trigger: new.alerts.trigger(),
                schedule: new.schedule.clone(),
            },
            GateConfig::from(&new.fetch),
        );
        self.endpoint.bot.reconfigure(TurnSettings {
            name: self.started.bot.name.clone(),
            default_drop: new.alerts.default_drop,
            max_watches_per_conversation: new.alerts.max_watches_per_conversation,
            limits: Limits::default(),
            checks: new.schedule.enabled,
            catalogs,
        });
        self.delivery.reconfigure(
            new.delivery,
            Arc::new(SendLimits::resuming(&new.rate_limits, self.clock.clone())),
        );
        if live.iter().any(|k| k == "log.level") {
            if let Err(e) = crate::ops::telemetry::set_level(&new.log.level) {
                tracing::warn!(error = %e, "log.level not applied");
            }
        }
        *applied = new.clone();
        Ok(ReloadOutcome {
            applied: live,
            restart,
        })
    }
}
