//! The fault commands and the schedule file: pure parsing, no I/O.
//!
//! One command per line, the same words for a schedule file, the binary's control socket and
//! standard input, and [`crate::Handle::apply`]:
//!
//! | command | effect |
//! |---|---|
//! | `down` | outage: new connections are refused (accepted and reset), live ones are cut |
//! | `up` | the outage ends |
//! | `cut` | reset every live connection now (a link blip); new ones connect |
//! | `refuse on\|off` | refuse new connections (live ones go on) |
//! | `drop P` | refuse each new connection with probability `P` (0..=1), drawn from the seeded RNG |
//! | `reset-after up\|down N\|off` | reset a connection once its bytes in that direction would pass `N` (`up` = client to upstream); exactly `N` bytes get through |
//! | `reset-random MIN MAX\|off` | reset each new connection after a total (both directions) drawn uniformly from `MIN..=MAX` bytes by the seeded RNG |
//! | `stall DURATION\|off` | from now, for `DURATION`: bytes are read (up to a bounded queue) but nothing is forwarded |
//! | `rate BYTES\|off` | cap each direction at `BYTES` per second, shared by every connection (a link's bandwidth) |
//! | `latency DURATION\|off` | delay every chunk by `DURATION`, in each direction (pipelined: throughput is kept) |
//! | `clear` | every fault off, link up |
//!
//! A schedule file has one `TIME COMMAND` per line (`TIME` relative to the proxy's start, e.g.
//! `1.5s`, `250ms`); blank lines and `#` comments are ignored. Lines must be in time order.

use std::time::Duration;

/// A direction of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to upstream (the request).
    Up,
    /// Upstream to client (the response).
    Down,
}

/// One change to the faults in force.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Down,
    Up,
    Cut,
    Refuse(bool),
    Drop(f64),
    ResetAfter(Direction, Option<u64>),
    ResetRandom(Option<(u64, u64)>),
    Stall(Option<Duration>),
    Rate(Option<u64>),
    Latency(Option<Duration>),
    Clear,
}

/// Why a command or schedule line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: String },
}

/// `"250ms"`, `"1.5s"`, `"2m"`, `"100us"`, `"0"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{text:?} is not a duration (e.g. 250ms, 2s)"))?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        u => return Err(format!("{text:?}: unknown unit {u:?} (ns, us, ms, s, m)")),
    };
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{text:?} is not a representable duration"))
}

fn number(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| format!("{text:?} is not a non-negative integer"))
}

fn off_or<T>(
    word: Option<&str>,
    what: &str,
    f: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    match word {
        None => Err(format!("{what}: missing argument (a value or `off`)")),
        Some("off") => Ok(None),
        Some(w) => f(w).map(Some),
    }
}

impl Command {
    /// Parses one command (without a time).
    pub fn parse(text: &str) -> Result<Command, String> {
        let mut words = text.split_whitespace();
        let verb = words.next().ok_or("empty command")?;
        let a = words.next();
        let b = words.next();
        let cmd = match verb {
            "down" => Command::Down,
            "up" => Command::Up,
            "cut" => Command::Cut,
            "clear" => Command::Clear,
            "refuse" => match a {
                Some("on") => Command::Refuse(true),
                Some("off") => Command::Refuse(false),
                _ => return Err("refuse: use `refuse on` or `refuse off`".into()),
            },
            "drop" => {
                let p: f64 = a
                    .ok_or("drop: missing probability")?
                    .parse()
                    .map_err(|_| format!("drop: {a:?} is not a number"))?;
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!("drop: probability {p} is not in 0..=1"));
                }
                Command::Drop(p)
            }
            "reset-after" => {
                let dir = match a {
                    Some("up") => Direction::Up,
                    Some("down") => Direction::Down,
                    _ => return Err("reset-after: direction `up` or `down` first".into()),
                };
                Command::ResetAfter(dir, off_or(b, "reset-after", number)?)
            }
            "reset-random" => match (a, b) {
                (Some("off"), None) => Command::ResetRandom(None),
                (Some(lo), Some(hi)) => {
                    let (lo, hi) = (number(lo)?, number(hi)?);
                    if lo > hi {
                        return Err(format!("reset-random: MIN {lo} is above MAX {hi}"));
                    }
                    Command::ResetRandom(Some((lo, hi)))
                }
                _ => return Err("reset-random: use `reset-random MIN MAX` or `off`".into()),
            },
            "stall" => Command::Stall(off_or(a, "stall", parse_duration)?),
            "rate" => {
                let r = off_or(a, "rate", number)?;
                if r == Some(0) {
                    return Err("rate: 0 bytes/s would never deliver; use `stall` or `down`".into());
                }
                Command::Rate(r)
            }
            "latency" => Command::Latency(off_or(a, "latency", parse_duration)?),
            v => return Err(format!("unknown command {v:?}")),
        };
        let used = match &cmd {
            Command::Down | Command::Up | Command::Cut | Command::Clear => 0,
            Command::ResetAfter(..) => 2,
            Command::ResetRandom(Some(_)) => 2,
            _ => 1,
        };
        if text.split_whitespace().count() > used + 1 {
            return Err(format!("{verb}: unexpected extra words in {text:?}"));
        }
        Ok(cmd)
    }
}

/// A schedule: commands at times relative to the proxy's start, in time order.
pub type Schedule = Vec<(Duration, Command)>;

/// Parses a schedule file's text.
pub fn parse_schedule(text: &str) -> Result<Schedule, ParseError> {
    let mut out: Schedule = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |problem: String| ParseError::Line { line, problem };
        let body = raw.split('#').next().unwrap_or_default().trim();
        if body.is_empty() {
            continue;
        }
        let (time, cmd) = body
            .split_once(char::is_whitespace)
            .ok_or_else(|| err(format!("{body:?}: expected `TIME COMMAND`")))?;
        let at = parse_duration(time).map_err(err)?;
        if let Some((last, _)) = out.last() {
            if at < *last {
                return Err(err(format!("time {time} is before the previous line's")));
            }
        }
        out.push((at, Command::parse(cmd).map_err(err)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses() {
        let ok = |t: &str| Command::parse(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(ok("down"), Command::Down);
        assert_eq!(ok("refuse on"), Command::Refuse(true));
        assert_eq!(ok("drop 0.25"), Command::Drop(0.25));
        assert_eq!(ok("reset-after down 0"), Command::ResetAfter(Direction::Down, Some(0)));
        assert_eq!(ok("reset-after up off"), Command::ResetAfter(Direction::Up, None));
        assert_eq!(ok("reset-random 10 20"), Command::ResetRandom(Some((10, 20))));
        assert_eq!(ok("reset-random off"), Command::ResetRandom(None));
        assert_eq!(ok("stall 1.5s"), Command::Stall(Some(Duration::from_millis(1500))));
        assert_eq!(ok("rate 65536"), Command::Rate(Some(65536)));
        assert_eq!(ok("latency 20ms"), Command::Latency(Some(Duration::from_millis(20))));
        assert_eq!(ok("latency off"), Command::Latency(None));
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let bad = |t: &str| Command::parse(t).expect_err(t);
        assert!(bad("drop 2").contains("not in 0..=1"));
        assert!(bad("rate 0").contains("never deliver"));
        assert!(bad("reset-random 9 3").contains("above MAX"));
        assert!(bad("reset-after sideways 3").contains("direction"));
        assert!(bad("stall").contains("missing"));
        assert!(bad("explode").contains("unknown command"));
        assert!(bad("down now").contains("extra words"));
    }

    #[test]
    fn a_schedule_is_timed_ordered_and_errors_name_the_line() {
        let s = parse_schedule("# link test\n0s latency 5ms\n\n250ms down   # outage\n1s up\n")
            .expect("schedule");
        assert_eq!(
            s,
            vec![
                (Duration::ZERO, Command::Latency(Some(Duration::from_millis(5)))),
                (Duration::from_millis(250), Command::Down),
                (Duration::from_secs(1), Command::Up),
            ]
        );
        let e = parse_schedule("1s down\n0.5s up\n").expect_err("out of order").to_string();
        assert!(e.starts_with("line 2: "), "{e}");
        let e = parse_schedule("1s\n").expect_err("no command").to_string();
        assert!(e.starts_with("line 1: "), "{e}");
    }
}
