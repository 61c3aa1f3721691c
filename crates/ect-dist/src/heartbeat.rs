//! Naming the lost peer after a failed collective.
//!
//! Gloo reports a dead peer as a closed connection to an address, not a rank, and a stalled peer only as a
//! timeout. Each rank therefore bumps a counter `hb/<rank>` in the rendezvous store from a background
//! thread; after a failure, the counters that stop moving name the ranks whose processes are gone. When the
//! store itself is unreachable, its host is the lost peer (rank 0, or torchrun's agent).

use crate::handle::Store;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The key of `rank`'s counter (under the group's store prefix).
fn key(rank: usize) -> String {
    format!("hb/{rank}")
}

/// The heartbeat period for a collective timeout: a twentieth of it, within 100 ms to 1 s.
pub(crate) fn period_for(timeout: Duration) -> Duration {
    (timeout / 20).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// This rank's heartbeat thread and the connection used to read the others'.
pub(crate) struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    probe: Store,
    period: Duration,
    rank: usize,
    world_size: usize,
}

impl Heartbeat {
    /// Registers `rank`'s counter and starts beating every `period`, on two new connections to `store`.
    pub(crate) fn start(
        store: &Store,
        rank: usize,
        world_size: usize,
        period: Duration,
    ) -> Result<Self, String> {
        let mut beat = store.try_clone()?;
        let mut probe = store.try_clone()?;
        // Neither reading a peer's counter nor beating may wait as long as a collective does: a stuck store
        // must not stall the diagnosis or the join in `drop`.
        probe.set_timeout(period * 3)?;
        beat.set_timeout(period * 3)?;
        beat.add(&key(rank), 1)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("ect-dist-heartbeat-{rank}"))
            .spawn(move || loop {
                match stopped.recv_timeout(period) {
                    Err(RecvTimeoutError::Timeout) => {
                        // A store that went away ends the beating; the failure is reported by whoever
                        // needs the store next.
                        if beat.add(&key(rank), 1).is_err() {
                            return;
                        }
                    }
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })
            .map_err(|e| format!("cannot start the heartbeat thread: {e}"))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
            probe,
            period,
            rank,
            world_size,
        })
    }

    /// The peers whose heartbeat stopped, watched for three periods; `Err` when the store is unreachable.
    pub(crate) fn lost_peers(&mut self) -> Result<Vec<usize>, String> {
        let peers: Vec<usize> = (0..self.world_size).filter(|&r| r != self.rank).collect();
        let read = |probe: &mut Store| -> Result<Vec<i64>, String> {
            peers.iter().map(|&r| probe.add(&key(r), 0)).collect()
        };
        let before = read(&mut self.probe)?;
        std::thread::sleep(self.period * 3);
        let after = read(&mut self.probe)?;
        Ok(peers
            .iter()
            .zip(before.iter().zip(&after))
            .filter(|(_, (b, a))| a == b)
            .map(|(&r, _)| r)
            .collect())
    }

    /// Stops beating (idempotent). Done before the final barrier of an orderly shutdown, so that no rank
    /// still beats when rank 0 takes the store down.
    pub(crate) fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Whether [`Heartbeat::stop`] was called.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stop.is_none()
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop();
    }
}
