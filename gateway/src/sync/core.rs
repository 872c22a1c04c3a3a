//! The agent's decision core: no I/O, no clock. The shell feeds it what it learned (the
//! durable head, the ledger's state, responses) and asks it what to do next.
//!
//! Order of work, as the design asks: the newest checkpoint first (so a short link window
//! still advances what the ledger can vouch for), then the missing blocks, oldest first, in
//! bounded batches. After any failure or a restart the core knows nothing about the ledger and
//! asks for its state again, so every resend starts from what the ledger reports.

use ledger::store::cursor::LedgerCursor;

/// What the ledger reported about this gateway (`GET .../state`), as updated by its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remote {
    /// Size of the checkpoint it last cosigned for us.
    pub witnessed: u64,
    /// Blocks `0..mirrored` it holds.
    pub mirrored: u64,
}

/// The next thing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing known about the ledger: ask for its state.
    FetchState,
    /// Send our checkpoint of `size` with a consistency proof from `old`.
    AddCheckpoint { old: u64, size: u64 },
    /// Upload blocks `from..to` (at most; the shell may cut the batch shorter by bytes), with
    /// an inclusion proof of the last one in the tree of size `witnessed`.
    Upload { from: u64, to: u64, witnessed: u64 },
    /// The ledger is caught up with everything durable: wait for more.
    Idle,
    /// The ledger claims more than this gateway's log holds (`witnessed` or `mirrored` past
    /// our head): a rollback of our store or a ledger holding a fork. Never resolved by
    /// retrying blindly: report it, back off, ask again.
    Diverged { ours: u64, theirs: u64 },
}

/// Why a step failed: the metric label and whether the state must be fetched again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailKind {
    /// Could not connect, the connection broke, or no answer in time.
    Link,
    Timeout,
    /// The ledger refused the request (403 bad signature, 404 unknown origin, 422 bad proof,
    /// other 4xx).
    Rejected,
    /// 5xx.
    Server,
    /// An answer we could not parse or that contradicts what we sent.
    Protocol,
    /// The cosignature did not verify with the configured key.
    Cosignature,
    /// Reading our own store failed.
    Store,
    /// The ledger is ahead of our log.
    Diverged,
}

impl FailKind {
    pub const ALL: [FailKind; 8] = [
        FailKind::Link,
        FailKind::Timeout,
        FailKind::Rejected,
        FailKind::Server,
        FailKind::Protocol,
        FailKind::Cosignature,
        FailKind::Store,
        FailKind::Diverged,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FailKind::Link => "link",
            FailKind::Timeout => "timeout",
            FailKind::Rejected => "rejected",
            FailKind::Server => "server",
            FailKind::Protocol => "protocol",
            FailKind::Cosignature => "cosignature",
            FailKind::Store => "store",
            FailKind::Diverged => "diverged",
        }
    }
}

/// The core's state for one ledger.
#[derive(Debug, Clone)]
pub struct Core {
    /// Durable size of our log.
    local: u64,
    /// What the ledger holds; `None` until fetched (and again after any failure).
    remote: Option<Remote>,
    /// Most blocks per upload.
    batch_blocks: u64,
    /// Our record of its progress (what we store).
    cursor: LedgerCursor,
    /// The `old` of the last add-checkpoint we sent: a 409 naming it again is a protocol error.
    last_old: Option<u64>,
    /// Batches are cut to `batch_blocks >> shrink` blocks (and the shell's byte limit likewise):
    /// each failed upload halves the batch, each successful one doubles it back. A link whose
    /// up-windows are shorter than a full batch's transfer still moves, block by block.
    shrink: u32,
    /// Whether the last action handed out was an upload (to know what a failure was).
    uploading: bool,
}

/// Most halvings of a batch (a batch never goes below one block anyway).
pub const MAX_SHRINK: u32 = 16;

impl Core {
    pub fn new(local: u64, cursor: LedgerCursor, batch_blocks: usize) -> Core {
        Core {
            local,
            remote: None,
            batch_blocks: (batch_blocks as u64).max(1),
            cursor,
            last_old: None,
            shrink: 0,
            uploading: false,
        }
    }

    /// How many times the batch limits are halved now (`limit >> shrink`, at least 1).
    pub fn shrink(&self) -> u32 {
        self.shrink
    }

    pub fn local(&self) -> u64 {
        self.local
    }

    pub fn remote(&self) -> Option<Remote> {
        self.remote
    }

    pub fn cursor(&self) -> LedgerCursor {
        self.cursor
    }

    /// Blocks the ledger is behind our head (by what it holds in full).
    pub fn lag(&self) -> u64 {
        self.local.saturating_sub(self.remote.map_or(self.cursor.acked, |r| r.mirrored))
    }

    /// The durable head moved (it only grows).
    pub fn durable(&mut self, size: u64) {
        self.local = self.local.max(size);
    }

    pub fn next_action(&mut self) -> Action {
        let a = self.decide();
        self.uploading = matches!(a, Action::Upload { .. });
        a
    }

    fn decide(&mut self) -> Action {
        let Some(r) = self.remote else { return Action::FetchState };
        if r.witnessed > self.local {
            return Action::Diverged { ours: self.local, theirs: r.witnessed };
        }
        if r.mirrored > r.witnessed.max(self.local) {
            return Action::Diverged { ours: self.local, theirs: r.mirrored };
        }
        if self.local > r.witnessed {
            self.last_old = Some(r.witnessed);
            return Action::AddCheckpoint { old: r.witnessed, size: self.local };
        }
        if r.mirrored < r.witnessed {
            let batch = (self.batch_blocks >> self.shrink).max(1);
            let to = r.witnessed.min(r.mirrored.saturating_add(batch));
            return Action::Upload { from: r.mirrored, to, witnessed: r.witnessed };
        }
        Action::Idle
    }

    /// The ledger's state arrived. Returns the cursor to store if it changed.
    pub fn state(&mut self, remote: Remote) -> Option<LedgerCursor> {
        self.remote = Some(remote);
        self.last_old = None;
        // Only what is within our log counts as acknowledged; `witnessed` moves only with a
        // verified receipt (`cosigned`).
        self.set_acked(remote.mirrored.min(self.local).min(remote.witnessed))
    }

    /// The ledger cosigned our checkpoint of `size` (the shell verified the cosignature).
    pub fn cosigned(&mut self, size: u64) -> Option<LedgerCursor> {
        if let Some(r) = &mut self.remote {
            r.witnessed = size;
        }
        self.last_old = None;
        if self.cursor.witnessed == size {
            return None;
        }
        self.cursor.witnessed = size;
        Some(self.cursor)
    }

    /// 409: the ledger's last cosigned size is `size`, not the `old` we sent. `Err` when it
    /// names the very size we sent (the ledger contradicts itself; retrying would loop).
    pub fn conflict(&mut self, size: u64) -> Result<(), FailKind> {
        if self.last_old == Some(size) {
            self.remote = None;
            return Err(FailKind::Protocol);
        }
        if size == self.local {
            // It cosigned our head already (an earlier request whose answer was lost arrived
            // late): no add-checkpoint will bring that receipt, the state carries it.
            // Found by the load test: without this the agent uploaded against the size the
            // 409 named, went idle, and its cursor never recorded the cosignature.
            self.remote = None;
            return Ok(());
        }
        match &mut self.remote {
            Some(r) => {
                r.witnessed = size;
                r.mirrored = r.mirrored.min(size);
            }
            None => self.remote = Some(Remote { witnessed: size, mirrored: 0 }),
        }
        Ok(())
    }

    /// Blocks up to `mirrored` are stored at the ledger. Returns the cursor to store if it
    /// changed.
    pub fn uploaded(&mut self, mirrored: u64) -> Option<LedgerCursor> {
        self.shrink = self.shrink.saturating_sub(1);
        if let Some(r) = &mut self.remote {
            r.mirrored = r.mirrored.max(mirrored);
        }
        self.set_acked(mirrored.min(self.local))
    }

    /// A step failed: forget the ledger's state (fetch it again before anything else).
    pub fn failed(&mut self) {
        if self.uploading {
            self.shrink = (self.shrink + 1).min(MAX_SHRINK);
        }
        self.uploading = false;
        self.remote = None;
        self.last_old = None;
    }

    fn set_acked(&mut self, acked: u64) -> Option<LedgerCursor> {
        if self.cursor.acked == acked {
            return None;
        }
        self.cursor.acked = acked;
        Some(self.cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(local: u64) -> Core {
        Core::new(local, LedgerCursor::default(), 10)
    }

    #[test]
    fn a_fresh_agent_asks_for_the_state_first() {
        let mut c = core(5);
        assert_eq!(c.next_action(), Action::FetchState);
        assert_eq!(c.lag(), 5);
    }

    #[test]
    fn checkpoint_first_then_blocks_in_batches_then_idle() {
        let mut c = core(25);
        c.state(Remote { witnessed: 0, mirrored: 0 });
        assert_eq!(c.next_action(), Action::AddCheckpoint { old: 0, size: 25 });
        assert_eq!(c.cosigned(25), Some(LedgerCursor { witnessed: 25, acked: 0 }));
        assert_eq!(c.next_action(), Action::Upload { from: 0, to: 10, witnessed: 25 });
        assert_eq!(c.uploaded(10), Some(LedgerCursor { witnessed: 25, acked: 10 }));
        assert_eq!(c.next_action(), Action::Upload { from: 10, to: 20, witnessed: 25 });
        // The shell cut this batch short by bytes: the next one starts where it ended.
        c.uploaded(13);
        assert_eq!(c.next_action(), Action::Upload { from: 13, to: 23, witnessed: 25 });
        c.uploaded(23);
        assert_eq!(c.next_action(), Action::Upload { from: 23, to: 25, witnessed: 25 });
        c.uploaded(25);
        assert_eq!(c.next_action(), Action::Idle);
        assert_eq!(c.lag(), 0);
        assert_eq!(c.cursor(), LedgerCursor { witnessed: 25, acked: 25 });
    }

    #[test]
    fn new_durable_blocks_are_checkpointed_before_old_ones_are_uploaded() {
        let mut c = core(25);
        c.state(Remote { witnessed: 25, mirrored: 5 });
        c.durable(40);
        assert_eq!(c.next_action(), Action::AddCheckpoint { old: 25, size: 40 });
        c.cosigned(40);
        assert_eq!(c.next_action(), Action::Upload { from: 5, to: 15, witnessed: 40 });
    }

    #[test]
    fn a_conflict_retries_from_the_size_the_ledger_reports() {
        let mut c = core(30);
        c.state(Remote { witnessed: 0, mirrored: 0 });
        assert_eq!(c.next_action(), Action::AddCheckpoint { old: 0, size: 30 });
        assert_eq!(c.conflict(20), Ok(()));
        assert_eq!(c.next_action(), Action::AddCheckpoint { old: 20, size: 30 });
        // Naming the size we just sent again is a contradiction, not a reason to loop.
        assert_eq!(c.conflict(20), Err(FailKind::Protocol));
        assert_eq!(c.next_action(), Action::FetchState);
    }

    #[test]
    fn a_conflict_naming_our_head_fetches_the_state_for_its_receipt() {
        // add-checkpoint 0 -> 10 took effect but its answer was lost; the state was read before
        // that request reached the ledger, so the retry gets a 409 naming 10.
        let mut c = core(10);
        c.state(Remote { witnessed: 0, mirrored: 0 });
        assert_eq!(c.next_action(), Action::AddCheckpoint { old: 0, size: 10 });
        assert_eq!(c.conflict(10), Ok(()));
        assert_eq!(c.next_action(), Action::FetchState);
        // The state brings the cosigned checkpoint; the shell stores it as the receipt.
        c.state(Remote { witnessed: 10, mirrored: 0 });
        assert_eq!(c.cosigned(10), Some(LedgerCursor { witnessed: 10, acked: 0 }));
        assert_eq!(c.next_action(), Action::Upload { from: 0, to: 10, witnessed: 10 });
    }

    #[test]
    fn after_a_failure_the_state_is_fetched_again_and_the_cursor_follows_it() {
        let mut c = Core::new(30, LedgerCursor { witnessed: 30, acked: 12 }, 10);
        c.state(Remote { witnessed: 30, mirrored: 12 });
        assert_eq!(c.next_action(), Action::Upload { from: 12, to: 22, witnessed: 30 });
        // The upload's response was lost, but the ledger stored it: resume from its state.
        c.failed();
        assert_eq!(c.next_action(), Action::FetchState);
        assert_eq!(
            c.state(Remote { witnessed: 30, mirrored: 22 }),
            Some(LedgerCursor { witnessed: 30, acked: 22 })
        );
        // The failed upload halved the batch (10 -> 5).
        assert_eq!(c.next_action(), Action::Upload { from: 22, to: 27, witnessed: 30 });
    }

    #[test]
    fn a_ledger_ahead_of_our_log_is_reported_not_chased() {
        let mut c = core(10);
        c.state(Remote { witnessed: 12, mirrored: 0 });
        assert_eq!(c.next_action(), Action::Diverged { ours: 10, theirs: 12 });
        c.state(Remote { witnessed: 10, mirrored: 11 });
        assert_eq!(c.next_action(), Action::Diverged { ours: 10, theirs: 11 });
        // The cursor never claims more than our log holds.
        assert!(c.cursor().acked <= 10);
    }

    #[test]
    fn failed_uploads_halve_the_batch_and_successes_grow_it_back() {
        let mut c = Core::new(100, LedgerCursor::default(), 8);
        c.state(Remote { witnessed: 100, mirrored: 0 });
        assert_eq!(c.next_action(), Action::Upload { from: 0, to: 8, witnessed: 100 });
        c.failed();
        c.state(Remote { witnessed: 100, mirrored: 0 });
        assert_eq!(c.next_action(), Action::Upload { from: 0, to: 4, witnessed: 100 });
        for _ in 0..10 {
            c.failed();
            c.state(Remote { witnessed: 100, mirrored: 0 });
            assert!(matches!(c.next_action(), Action::Upload { .. }));
        }
        assert_eq!(
            c.next_action(),
            Action::Upload { from: 0, to: 1, witnessed: 100 },
            "never below one"
        );
        // A failed state fetch is not an upload failure: no further shrink.
        c.failed();
        let before = c.shrink();
        assert_eq!(c.next_action(), Action::FetchState);
        c.failed();
        assert_eq!(c.shrink(), before);
        c.state(Remote { witnessed: 100, mirrored: 0 });
        c.next_action();
        c.uploaded(1);
        assert_eq!(c.shrink(), before - 1);
    }

    #[test]
    fn the_cursor_is_written_only_when_it_changes() {
        let mut c = core(10);
        assert!(c.state(Remote { witnessed: 0, mirrored: 0 }).is_none());
        assert!(c.cosigned(10).is_some());
        assert!(c.cosigned(10).is_none());
        assert!(c.uploaded(10).is_some());
        assert!(c.uploaded(10).is_none());
    }

    /// Drives the core against a model ledger that loses some responses (the request took
    /// effect, the answer never came) and checks it always converges to the head.
    #[test]
    fn lost_responses_never_stop_convergence() {
        for seed in 0..200u64 {
            let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut roll = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % 4 == 0
            };
            let mut ledger = Remote { witnessed: 0, mirrored: 0 };
            let mut c = core(0);
            let mut head = 0;
            for step in 0..2000 {
                if step % 7 == 0 && head < 100 {
                    head += 3;
                    c.durable(head);
                }
                let lost = roll();
                match c.next_action() {
                    Action::FetchState => {
                        c.state(ledger);
                    }
                    Action::AddCheckpoint { old, size } => {
                        if old != ledger.witnessed {
                            c.conflict(ledger.witnessed).expect("no contradiction");
                            continue;
                        }
                        ledger.witnessed = size;
                        if lost {
                            c.failed();
                        } else {
                            c.cosigned(size);
                        }
                    }
                    Action::Upload { from, to, witnessed } => {
                        assert!(to <= witnessed && witnessed <= ledger.witnessed);
                        assert!(from <= ledger.mirrored, "no gap: {from} > {}", ledger.mirrored);
                        ledger.mirrored = ledger.mirrored.max(to);
                        if lost {
                            c.failed();
                        } else {
                            c.uploaded(ledger.mirrored);
                        }
                    }
                    Action::Idle => {
                        if head >= 100 {
                            break;
                        }
                    }
                    Action::Diverged { .. } => panic!("seed {seed}: diverged"),
                }
            }
            assert_eq!(ledger, Remote { witnessed: 102, mirrored: 102 }, "seed {seed}");
            assert_eq!(c.cursor().acked, 102, "seed {seed}");
        }
    }
}
