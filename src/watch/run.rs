//! The watch loop's timing: the cron job that asks for a tick, and the task that runs
//! one [`Watcher::tick`] per request until shutdown. Apart from the watcher, which only
//! sequences the I/O of one tick, so that when ticks run is decided in one place.

use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;

use crate::error::Chain;
use crate::store::StoreError;
use crate::watch::watcher::{TickReport, Watcher};

/// The cron job's requests for a tick. One slot: a full channel means a tick is already
/// pending, so slow ticks never pile up.
pub struct Ticks(mpsc::Receiver<()>);

/// Starts the cron schedule of the tick (`None`: the schedule is off, and no tick is ever
/// asked for). The job only signals [`Watcher::run`] through the returned [`Ticks`], so
/// the scheduler's own tasks hold nothing of the daemon.
pub async fn start_ticks(
    cron: Option<&str>,
) -> Result<(Option<JobScheduler>, Ticks), JobSchedulerError> {
    let (tick, ticks) = mpsc::channel(1);
    let Some(cron) = cron else {
        tracing::warn!("schedule.enabled is false: no product is checked");
        // No scheduler at all: one that was never started logs errors when shut down.
        return Ok((None, Ticks(ticks)));
    };
    let scheduler = JobScheduler::new().await?;
    let job = Job::new_async(cron, move |_, _| {
        let tick = tick.clone();
        Box::pin(async move {
            let _ = tick.try_send(());
        })
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    Ok((Some(scheduler), Ticks(ticks)))
}

impl Watcher {
    /// Runs one [`Watcher::step`] per tick asked for until shutdown. A tick that is cut
    /// off leaves its products due; nothing half-done was recorded (a check commits in
    /// one transaction).
    pub async fn run(self, mut ticks: Ticks, cancel: CancellationToken) {
        let mut beats = tokio::time::interval(crate::liveness::BEAT_EVERY);
        loop {
            self.beat();
            tokio::select! {
                _ = cancel.cancelled() => return,
                // Waiting for a tick is alive too.
                _ = beats.tick() => continue,
                signal = ticks.0.recv() => {
                    if signal.is_none() {
                        // No schedule: nothing ever asks for a tick, so the loop only
                        // shows it is alive until shutdown.
                        loop {
                            tokio::select! {
                                _ = cancel.cancelled() => return,
                                _ = beats.tick() => self.beat(),
                            }
                        }
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.step() => {}
            }
        }
    }

    /// One step of the loop: a tick, logged as the loop logs it. Also what
    /// [`crate::app::App::tick_now`] runs for tests and operators' tooling.
    pub async fn step(&self) -> Result<TickReport, StoreError> {
        let result = self.tick().await;
        match &result {
            Ok(r) if r.checked > 0 || r.failed > 0 => {
                tracing::info!(
                    checked = r.checked,
                    queued = r.queued,
                    failed = r.failed,
                    "tick"
                )
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "tick failed; due products wait for the next")
            }
        }
        result
    }
}
