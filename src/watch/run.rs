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

/// The cron schedule of the tick, which a reload may change or switch off and on. Its
/// job only signals [`Watcher::run`] through [`Ticks`], so the scheduler's own tasks hold
/// nothing of the daemon, and replacing the scheduler never touches a tick in progress.
pub struct TickSchedule {
    tick: mpsc::Sender<()>,
    /// The cron expression running and its scheduler; `None` while the schedule is off.
    running: tokio::sync::Mutex<Option<(String, JobScheduler)>>,
}

impl TickSchedule {
    /// Starts the schedule on `cron` (`None`: off, and no tick is asked for until a
    /// reload turns it on).
    pub async fn start(cron: Option<&str>) -> Result<(TickSchedule, Ticks), JobSchedulerError> {
        let (tick, ticks) = mpsc::channel(1);
        let schedule = TickSchedule {
            tick,
            running: tokio::sync::Mutex::new(None),
        };
        schedule.set(cron).await?;
        Ok((schedule, Ticks(ticks)))
    }

    /// Runs the tick on `cron` from now on (`None`: no more ticks); true if that changed
    /// anything. The new scheduler is started before the old one stops, so a cron the
    /// scheduler refuses leaves the running one in place.
    pub async fn set(&self, cron: Option<&str>) -> Result<bool, JobSchedulerError> {
        let mut running = self.running.lock().await;
        if running.as_ref().map(|(c, _)| c.as_str()) == cron {
            return Ok(false);
        }
        let next = match cron {
            None => None,
            Some(cron) => {
                let scheduler = JobScheduler::new().await?;
                let tick = self.tick.clone();
                let job = Job::new_async(cron, move |_, _| {
                    let tick = tick.clone();
                    Box::pin(async move {
                        let _ = tick.try_send(());
                    })
                })?;
                scheduler.add(job).await?;
                scheduler.start().await?;
                Some((cron.to_owned(), scheduler))
            }
        };
        if let Some((_, mut old)) = std::mem::replace(&mut *running, next) {
            if let Err(e) = old.shutdown().await {
                tracing::warn!(error = %Chain(&e), "the previous tick scheduler did not stop cleanly");
            }
        }
        Ok(true)
    }

    /// Stops the schedule for good (shutdown).
    pub async fn stop(&self) {
        if let Err(e) = self.set(None).await {
            tracing::warn!(error = %Chain(&e), "the scheduler did not stop cleanly");
        }
    }
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
                        // The schedule is gone (shutdown): nothing asks for a tick any
                        // more, so the loop only shows it is alive until cancelled.
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
