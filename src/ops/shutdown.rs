//! Turns SIGINT and SIGTERM into a cancellation: the first asks for a graceful stop,
//! a second one quits at once.

use tokio_util::sync::CancellationToken;

/// Spawns the signal listener. Fails only if the signal handlers cannot be installed.
pub fn listen(token: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            seen += 1;
            if seen == 1 {
                tracing::info!(signal = name, "stop requested");
                token.cancel();
            } else {
                tracing::warn!(signal = name, "second stop request: exiting now");
                std::process::exit(130);
            }
        }
    });
    Ok(())
}
