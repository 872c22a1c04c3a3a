//! A gateway's blocks over a time range from a ledger, verified page by page.
//!
//! 1. A time query (`since_ns`/`until_ns`) gives the first page and the height range
//!    `[lo, hi_end)` the ledger says holds every block overlapping the range.
//! 2. The boundary blocks are fetched and verified like any page: block `lo - 1` must end
//!    before the range starts and block `hi_end` must start after it ends, so the ledger
//!    cannot leave out blocks at either edge by naming a narrower height range. When `hi_end`
//!    is the size of the cosigned checkpoint there is no later block to check: the range is
//!    complete up to that checkpoint (reported as `open_end`; later records may not be
//!    cosigned yet).
//! 3. The pages between are fetched by height; each is verified on its own and linked to the
//!    previous one by its `prev` hash, and only then handed to the caller.
//!
//! Limitation: a block further out whose clock stepped back into the range (a corrected
//! gateway clock) is not caught by the boundary check; the ledger flags such blocks
//! (`time_backwards`) and the gateway's local history shows them.

use ledger::block::BlockHeader;
use ledger::note::Verifier as _;

use super::client::{ClientError, Ledger};
use super::verify::{self, Trust, VerifiedPage, VerifyError};

/// What a verified page is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Block `lo - 1`: proves nothing before the range was left out.
    Before,
    /// Blocks of the range.
    Data,
    /// Block `hi_end`: proves nothing after the range was left out.
    After,
}

/// Why a range could not be fetched and verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{origin}, {what}: {source}")]
    Verify { origin: String, what: String, source: Box<VerifyError> },
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

impl RangeError {
    /// Exit status of the CLI: 1 verification failure, 2 usage or connection.
    pub fn exit_code(&self) -> u8 {
        match self {
            RangeError::Verify { .. } => 1,
            RangeError::Client(c) if !c.is_connection() && c.status().is_none() => 1,
            _ => 2,
        }
    }
}

/// A query over one gateway.
pub struct Query<'a> {
    pub ledger: &'a Ledger,
    pub trust: &'a Trust,
    /// Inclusive, ns since the epoch (record timestamps, the gateway's clock).
    pub from_ns: u64,
    pub to_ns: u64,
    /// The verifier's clock, POSIX seconds (cosignatures from the future are refused).
    pub now_s: u64,
}

/// What was proven.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `[lo, hi_end)`; `None` when the ledger holds no block overlapping the range (its
    /// "nothing" is not provable: see the crate README).
    pub heights: Option<(u64, u64)>,
    /// Largest checkpoint size a page was proven against.
    pub checkpoint_size: u64,
    /// The range reaches the end of the cosigned log: nothing after it could be checked.
    pub open_end: bool,
    pub pages: u64,
}

fn verified(
    q: &Query<'_>,
    what: String,
    answer: &ledger::sync_wire::QueryBlocks,
    asked: (Option<u64>, Option<u64>),
) -> Result<VerifiedPage, RangeError> {
    verify::page(answer, q.trust, asked, q.now_s).map_err(|e| RangeError::Verify {
        origin: q.trust.gateway.name().to_owned(),
        what,
        source: Box::new(e),
    })
}

fn fail(q: &Query<'_>, what: String, source: VerifyError) -> RangeError {
    RangeError::Verify { origin: q.trust.gateway.name().to_owned(), what, source: Box::new(source) }
}

/// Fetches and verifies the range, calling `on_page` with each verified page (boundary pages
/// first, then the data pages in height order). Nothing reaches `on_page` unverified.
pub fn fetch(
    q: &Query<'_>,
    mut on_page: impl FnMut(Role, &VerifiedPage) -> Result<(), RangeError>,
) -> Result<Report, RangeError> {
    let origin = q.trust.gateway.name();
    let until = q.to_ns.saturating_add(1);
    let Some(answer) = q.ledger.query_times(origin, q.from_ns, until)? else {
        return Ok(Report::default());
    };
    let first = verified(q, format!("time query [{}, {until})", q.from_ns), &answer, (None, None))?;
    let (lo, hi_end) = (first.start, first.requested_end);
    let mut report = Report {
        heights: Some((lo, hi_end)),
        checkpoint_size: first.checkpoint.size(),
        open_end: false,
        pages: 1,
    };
    let first_header = first.headers.first().cloned().ok_or_else(|| {
        fail(q, "the time query".into(), VerifyError::BlockCount { start: lo, end: lo, blocks: 0 })
    })?;
    if lo > 0 {
        let what = format!("boundary block {}", lo - 1);
        let b = q.ledger.query_heights(origin, lo - 1, lo)?;
        let b = verified(q, what.clone(), &b, (Some(lo - 1), Some(lo)))?;
        let h = &b.headers[0];
        if h.last_ns >= q.from_ns {
            return Err(fail(q, what, boundary(h, q, "starts after it")));
        }
        verify::link(h, &first_header).map_err(|e| fail(q, what.clone(), e))?;
        report.checkpoint_size = report.checkpoint_size.max(b.checkpoint.size());
        on_page(Role::Before, &b)?;
    }
    let mut after: Option<BlockHeader> = None;
    if hi_end < first.checkpoint.size() {
        let what = format!("boundary block {hi_end}");
        let b = q.ledger.query_heights(origin, hi_end, hi_end + 1)?;
        let b = verified(q, what.clone(), &b, (Some(hi_end), Some(hi_end + 1)))?;
        let h = &b.headers[0];
        if h.first_ns <= q.to_ns {
            return Err(fail(q, what, boundary(h, q, "ends before it")));
        }
        report.checkpoint_size = report.checkpoint_size.max(b.checkpoint.size());
        after = Some(h.clone());
        on_page(Role::After, &b)?;
    } else {
        report.open_end = true;
    }
    let mut end = first.end;
    let mut last = first.headers.last().cloned().unwrap_or(first_header);
    on_page(Role::Data, &first)?;
    while end < hi_end {
        let what = format!("heights [{end}, {hi_end})");
        let a = q.ledger.query_heights(origin, end, hi_end)?;
        let p = verified(q, what.clone(), &a, (Some(end), Some(hi_end)))?;
        verify::link(&last, &p.headers[0]).map_err(|e| fail(q, what.clone(), e))?;
        report.checkpoint_size = report.checkpoint_size.max(p.checkpoint.size());
        report.pages += 1;
        end = p.end;
        last = p.headers.last().cloned().unwrap_or(last);
        on_page(Role::Data, &p)?;
    }
    if let Some(a) = after {
        verify::link(&last, &a).map_err(|e| fail(q, format!("boundary block {hi_end}"), e))?;
    }
    Ok(report)
}

fn boundary(h: &BlockHeader, q: &Query<'_>, side: &'static str) -> VerifyError {
    VerifyError::Boundary {
        height: h.height,
        first_ns: h.first_ns,
        last_ns: h.last_ns,
        from_ns: q.from_ns,
        to_ns: q.to_ns,
        side,
    }
}
