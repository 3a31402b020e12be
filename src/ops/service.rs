//! The daemon as a systemd service: `sd_notify` messages (`READY=1` once it serves,
//! `STATUS=`, `STOPPING=1`), and the watchdog, which pings only while the watch and
//! delivery loops show they are alive.
//!
//! The loops beat a [`Liveness`] as they go round; a watchdog task pings systemd
//! (`WATCHDOG=1`) at half the interval systemd asked for, but only while every loop
//! has beaten recently. A loop that is stuck therefore stops the pings, and systemd
//! restarts the service (`Restart=on-failure`), instead of a timer pinging for a daemon
//! that no longer works.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::liveness::Liveness;

/// One message to the service manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    Ready,
    Reloading,
    Stopping,
    Status(String),
    Watchdog,
}

/// Where `sd_notify` messages go: systemd in production, a recorder in tests.
pub trait ServiceManager: Send + Sync + 'static {
    fn notify(&self, signals: &[Signal]);

    /// The watchdog interval systemd expects pings within, if it asked for any.
    fn watchdog_interval(&self) -> Option<Duration>;
}

/// systemd, through `$NOTIFY_SOCKET` (nothing is sent when it is not set). The variable
/// is left in place for the whole life of the process: unsetting it would make every
/// later watchdog ping fail silently.
pub struct Systemd;

impl ServiceManager for Systemd {
    fn notify(&self, signals: &[Signal]) {
        let states: Vec<sd_notify::NotifyState<'_>> = signals
            .iter()
            .map(|s| match s {
                Signal::Ready => sd_notify::NotifyState::Ready,
                Signal::Reloading => sd_notify::NotifyState::Reloading,
                Signal::Stopping => sd_notify::NotifyState::Stopping,
                Signal::Status(text) => sd_notify::NotifyState::Status(text),
                Signal::Watchdog => sd_notify::NotifyState::Watchdog,
            })
            .collect();
        if let Err(e) = sd_notify::notify(&states) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }

    fn watchdog_interval(&self) -> Option<Duration> {
        sd_notify::watchdog_enabled()
    }
}

/// How often `STATUS=` is refreshed (it counts the store, which costs a scan).
const STATUS_EVERY: Duration = Duration::from_secs(60);

/// Pings the watchdog at half of `interval` while every loop is alive, and refreshes
/// `STATUS=` with `status()` every minute, until `cancel`. A stall is logged once when it
/// begins and once when it ends.
pub async fn watchdog<F, Fut>(
    manager: Arc<dyn ServiceManager>,
    liveness: Arc<Liveness>,
    interval: Option<Duration>,
    stale_after: Duration,
    status: F,
    cancel: CancellationToken,
) where
    F: Fn() -> Fut + Send,
    Fut: std::future::Future<Output = Option<String>> + Send,
{
    let ping_every = interval.map(|i| (i / 2).max(Duration::from_millis(10)));
    let tick = ping_every.map_or(STATUS_EVERY, |p| p.min(STATUS_EVERY));
    let mut since_status = Duration::ZERO;
    let mut was_stalled = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        since_status += tick;
        if since_status >= STATUS_EVERY {
            since_status = Duration::ZERO;
            if let Some(text) = status().await {
                manager.notify(&[Signal::Status(text)]);
            }
        }
        if ping_every.is_none() {
            continue;
        }
        let stalled = liveness.stalled(stale_after);
        if stalled.is_empty() {
            if was_stalled {
                tracing::info!("every loop is alive again; watchdog pings resume");
                was_stalled = false;
            }
            manager.notify(&[Signal::Watchdog]);
        } else if !was_stalled {
            was_stalled = true;
            let names: Vec<&str> = stalled.iter().map(|l| l.name()).collect();
            tracing::error!(
                stalled = %names.join(", "),
                after = ?stale_after,
                "a loop has not moved; withholding watchdog pings so that systemd restarts the daemon"
            );
        }
    }
}
