//! The daemon's address, read from its start-up log line (it binds port 0 in the benchmarks,
//! so the line is the only place the port is told).

use std::net::SocketAddr;

use anyhow::{anyhow, Context};

/// The `addr=` field of the line that says the daemon listens.
pub fn listening_addr(line: &str) -> anyhow::Result<SocketAddr> {
    let addr = line
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| anyhow!("no addr= in the start-up line: {line}"))?;
    addr.parse()
        .with_context(|| format!("bad address {addr:?} in: {line}"))
}
