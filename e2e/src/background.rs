//! A thread that runs until it is told to stop, as the servers the tests start in a network
//! namespace or on loopback do: dropping it stops the thread and waits for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::Error;

/// A thread told to stop, and joined, when this is dropped.
pub struct Background {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Runs `run` on a thread of its own with the flag that says when to stop.
    pub fn spawn(run: impl FnOnce(Arc<AtomicBool>) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        Self {
            stop,
            thread: Some(std::thread::spawn(move || run(flag))),
        }
    }

    /// Runs `setup` on a thread of its own (e.g. entering a namespace and binding a socket)
    /// and, once it succeeded, `run` with what it made, until stopped. `setup`'s error is
    /// returned here; `what` names the thread when it dies before saying.
    pub fn start<T>(
        what: &str,
        setup: impl FnOnce() -> Result<T, Error> + Send + 'static,
        run: impl FnOnce(T, Arc<AtomicBool>) + Send + 'static,
    ) -> Result<Self, Error> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let background = Self::spawn(move |stop| match setup() {
            Ok(made) => {
                let _ = ready_tx.send(Ok(()));
                run(made, stop);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        });
        ready_rx.recv().map_err(|_| Error::Command {
            what: format!("starting the {what}"),
            stderr: "its thread died".into(),
        })??;
        Ok(background)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
