//! Where the daemon's `tracing` events go: the systemd journal (structured), human text on
//! stderr, or JSON lines on stderr for log shippers.
//!
//! [`select`] is the pure choice: an explicit `--log-format` wins; `auto` picks the journal
//! when systemd connected our stderr to it (`JOURNAL_STREAM` names stderr's device and inode,
//! as `systemd.exec(5)` says to check), text otherwise. [`init`] installs the subscriber; when
//! the journal was chosen but its socket cannot be opened it falls back to text and says so.
//!
//! Journal entries carry the event's fields as journal fields (upper-cased by
//! `tracing-journald`, e.g. `HEIGHT=12`), `PRIORITY` from the level (error 3, warn 4, info 5,
//! debug 6, trace 7) and `SYSLOG_IDENTIFIER=iov-gateway`. Nothing secret is ever a field: keys
//! and passwords are never logged (their `Debug` impls redact them).

use std::fmt;
use std::str::FromStr;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

/// The journal's identifier for our entries (`journalctl -t iov-gateway`).
pub const SYSLOG_IDENTIFIER: &str = "iov-gateway";

/// What `--log-format` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// The journal when stderr is connected to it, else text.
    #[default]
    Auto,
    /// Human-readable lines on stderr (`level target: message key=value`).
    Text,
    /// One JSON object per event on stderr.
    Json,
    /// The systemd journal's native protocol, fields as journal fields.
    Journald,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "auto" => Ok(LogFormat::Auto),
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            "journald" => Ok(LogFormat::Journald),
            o => Err(format!("{o:?}: use auto, text, json or journald")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Auto => "auto",
            LogFormat::Text => "text",
            LogFormat::Json => "json",
            LogFormat::Journald => "journald",
        })
    }
}

/// The concrete output [`select`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
    Journald,
}

/// Chooses the output. `journal_stream` is `$JOURNAL_STREAM` (`DEVICE:INODE`), `stderr` the
/// device and inode of fd 2 (`None` when unknown). With `Auto`, the journal is chosen only when
/// they match: a child that inherited the variable but writes elsewhere keeps text.
pub fn select(
    asked: LogFormat,
    journal_stream: Option<&str>,
    stderr: Option<(u64, u64)>,
) -> Output {
    match asked {
        LogFormat::Text => Output::Text,
        LogFormat::Json => Output::Json,
        LogFormat::Journald => Output::Journald,
        LogFormat::Auto => {
            let named = journal_stream.and_then(|v| {
                let (dev, ino) = v.trim().split_once(':')?;
                Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?))
            });
            match (named, stderr) {
                (Some(n), Some(s)) if n == s => Output::Journald,
                _ => Output::Text,
            }
        }
    }
}

/// Device and inode of our stderr.
fn stderr_id() -> Option<(u64, u64)> {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let m = std::fs::File::from(fd).metadata().ok()?;
    Some((m.dev(), m.ino()))
}

/// The `RUST_LOG` filter, `info` by default.
fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber for `asked` (see [`select`]); returns what was chosen.
/// Call once, early in `main`.
pub fn init(asked: LogFormat) -> Output {
    let env = std::env::var("JOURNAL_STREAM").ok();
    let out = select(asked, env.as_deref(), stderr_id());
    let registry = tracing_subscriber::registry().with(filter());
    match out {
        Output::Journald => match journald_layer() {
            Ok(layer) => {
                registry.with(layer).init();
                return Output::Journald;
            }
            Err(e) => {
                eprintln!(
                    "iov-gateway: the journal socket cannot be opened ({e}); logging text to stderr"
                );
                init_text(registry);
                return Output::Text;
            }
        },
        Output::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .init(),
        Output::Text => init_text(registry),
    }
    out
}

fn init_text<S>(registry: S)
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
}

/// The journal layer: `SYSLOG_IDENTIFIER=iov-gateway`, event fields unprefixed (the journal
/// upper-cases them), the target in `TARGET`.
pub fn journald_layer() -> std::io::Result<tracing_journald::Layer> {
    Ok(tracing_journald::layer()?
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_owned())
        .with_field_prefix(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_format_wins_over_the_environment() {
        let j = Some("8:1234");
        let fd = Some((8, 1234));
        assert_eq!(select(LogFormat::Text, j, fd), Output::Text);
        assert_eq!(select(LogFormat::Json, j, fd), Output::Json);
        assert_eq!(select(LogFormat::Journald, None, None), Output::Journald);
    }

    #[test]
    fn auto_picks_the_journal_only_when_stderr_is_the_named_stream() {
        assert_eq!(select(LogFormat::Auto, Some("8:1234"), Some((8, 1234))), Output::Journald);
        // Inherited by a child whose stderr was redirected elsewhere.
        assert_eq!(select(LogFormat::Auto, Some("8:1234"), Some((8, 99))), Output::Text);
        assert_eq!(select(LogFormat::Auto, None, Some((8, 1234))), Output::Text);
        assert_eq!(select(LogFormat::Auto, Some("garbage"), Some((8, 1234))), Output::Text);
        assert_eq!(select(LogFormat::Auto, Some("8:1234"), None), Output::Text);
    }

    #[test]
    fn formats_parse_and_print_the_same_names() {
        for f in [LogFormat::Auto, LogFormat::Text, LogFormat::Json, LogFormat::Journald] {
            assert_eq!(f.to_string().parse::<LogFormat>(), Ok(f));
        }
        assert!("syslog".parse::<LogFormat>().expect_err("no such format").contains("journald"));
    }
}
