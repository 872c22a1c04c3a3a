//! The recordings vehicles replay: counted once, cut to `max_frames`, and cut again from a
//! position when a gateway restarts mid-drive (the bus went on while the gateway was down).
//! Written as candump `-L` text, which every gateway trace source reads.

use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use can_decoders::trace::{self, CandumpWriter, ErrorPolicy};

/// What a recording holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceInfo {
    pub frames: u64,
    /// Recorded time of the first and the last frame (ns since the epoch).
    pub first_ns: u64,
    pub last_ns: u64,
    pub malformed: u64,
}

impl TraceInfo {
    pub fn span_ns(&self) -> u64 {
        self.last_ns.saturating_sub(self.first_ns)
    }
}

/// Copies the frames of `src` whose index is below `max_frames` and whose recorded offset
/// from the first frame is at least `from_offset_ns` into `out` (candump), when `out` is given;
/// returns what was kept (and, with `out = None`, just counts).
pub fn cut(
    src: &Path,
    out: Option<&Path>,
    max_frames: Option<u64>,
    from_offset_ns: u64,
) -> Result<TraceInfo> {
    let mut reader = trace::open(src, ErrorPolicy::Skip)
        .with_context(|| format!("opening {}", src.display()))?;
    let mut writer = match out {
        Some(p) => Some(CandumpWriter::new(BufWriter::with_capacity(
            1 << 16,
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        ))),
        None => None,
    };
    let mut info = TraceInfo { frames: 0, first_ns: 0, last_ns: 0, malformed: 0 };
    let mut first: Option<u64> = None;
    let mut index = 0u64;
    while let Some(item) = reader.next() {
        let f = match item {
            Ok(f) => f,
            Err(_) => {
                info.malformed += 1;
                continue;
            }
        };
        if max_frames.is_some_and(|m| index >= m) {
            break;
        }
        index += 1;
        let t0 = *first.get_or_insert(f.t_ns);
        if f.t_ns.saturating_sub(t0) < from_offset_ns {
            continue;
        }
        if info.frames == 0 {
            info.first_ns = f.t_ns;
        }
        info.first_ns = info.first_ns.min(f.t_ns);
        info.last_ns = info.last_ns.max(f.t_ns);
        info.frames += 1;
        if let Some(w) = &mut writer {
            let ch = reader
                .channels()
                .get(usize::from(f.channel.0))
                .cloned()
                .unwrap_or_else(|| "can0".into());
            w.write(&f, &ch).context("writing the cut trace")?;
        }
    }
    if let Some(w) = writer {
        let mut inner = w.into_inner().context("flushing the cut trace")?;
        inner.flush()?;
    }
    Ok(info)
}

/// The file a vehicle entry replays: the recording itself, or its first `max_frames` frames
/// written once into `dir`.
pub fn prepare(
    src: &Path,
    max_frames: Option<u64>,
    dir: &Path,
    tag: &str,
) -> Result<(PathBuf, TraceInfo)> {
    match max_frames {
        None => Ok((src.to_path_buf(), cut(src, None, None, 0)?)),
        Some(_) => {
            let out = dir.join(format!("{tag}.log"));
            let info = cut(src, Some(&out), max_frames, 0)?;
            Ok((out, info))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_keeps_the_frames_from_an_offset_and_up_to_a_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("a.log");
        std::fs::write(
            &src,
            "(1.000000) can1 003#01\n(1.500000) can2 004#02\n(2.000000) can1 003#03\n(3.000000) can1 003#04\n",
        )
        .expect("write");
        let all = cut(&src, None, None, 0).expect("count");
        assert_eq!((all.frames, all.first_ns, all.last_ns), (4, 1_000_000_000, 3_000_000_000));
        let out = dir.path().join("b.log");
        let part = cut(&src, Some(&out), Some(3), 500_000_000).expect("cut");
        assert_eq!((part.frames, part.first_ns, part.last_ns), (2, 1_500_000_000, 2_000_000_000));
        let text = std::fs::read_to_string(&out).expect("read");
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("can2 004#02"), "{text}");
        assert_eq!(cut(&out, None, None, 0).expect("recount").frames, 2);
    }
}
