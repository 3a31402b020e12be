//! Operations: the configuration, logging, signals and the operator's commands.

pub mod admin;
pub mod config;
pub mod probe;
pub mod shutdown;
pub mod telemetry;
