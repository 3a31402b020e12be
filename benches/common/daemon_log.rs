//! A benchmark daemon's stderr, read for its whole life on a thread of its own (so the pipe
//! never blocks the daemon): every line passed on, and the warnings and errors but one
//! expected warning kept for the report.

use std::io::{BufRead, BufReader};
use std::process::ChildStderr;
use std::sync::{mpsc, Arc, Mutex};

/// The lines as they come, and the unexpected warnings and errors so far.
pub fn drain(
    stderr: ChildStderr,
    expected_warning: &'static str,
) -> (mpsc::Receiver<String>, Arc<Mutex<Vec<String>>>) {
    let (tx, rx) = mpsc::channel();
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let seen = warnings.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if (line.contains(" WARN ") || line.contains("ERROR"))
                && !line.contains(expected_warning)
            {
                if let Ok(mut w) = seen.lock() {
                    w.push(line.clone());
                }
            }
            let _ = tx.send(line);
        }
    });
    (rx, warnings)
}
