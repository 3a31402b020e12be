//! Operations: the configuration, logging, signals and the operator's commands.

pub mod admin;
pub mod config;
pub mod metrics;
pub mod migrate;
pub mod probe;
pub mod reload;
pub mod service;
pub mod shutdown;
pub mod sizes;
pub mod telemetry;
pub mod transfer;
pub mod verify;

/// What an operator command prints, and whether it did all it was asked (a price found,
/// every id re-queued). `main` writes it out and exits with [`CommandOutput::status`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    pub stdout: String,
    pub stderr: String,
    pub ok: bool,
}

impl CommandOutput {
    /// The exit status: 0 when it did all it was asked, 1 when not (stderr says why).
    pub fn status(&self) -> u8 {
        if self.ok {
            0
        } else {
            1
        }
    }
}
