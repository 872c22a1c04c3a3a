//! `iovctl plot`: a vehicle's verified history drawn as a time-series chart (PNG or SVG), one
//! panel per signal, time on the x axis, the signal's DBC unit on the y axis. The data comes
//! through exactly the checks of `history --ledger`; nothing is drawn unless it verified.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use ledger::note::Verifier as _;
use plotters::prelude::*;

use crate::fleet_cli::{self, note_report, LedgerOpts, Progress, Session, Usage};
use crate::history::parse_time_arg;

pub const EXAMPLES: &str = "\
Examples:
  iovctl plot --ledger http://127.0.0.1:7480 --vehicle VIN123 --from -2h --to now \\
      --key org/x25519.key --token-file analyst.token --dbc canmod-gps.dbc \\
      --signals gnss_speed.Speed,gnss_pos.Latitude --out speed.png
  iovctl plot ... --out speed.svg --width 1600

One panel per signal (at most 12; pick them with --signals), stacked, sharing the time axis
(seconds since --from, which the x label states in UTC). Units come from the DBC. Values are
drawn from the verified rows only (see `iovctl history --help`).

Exit status: 0 the chart was written; 1 a verification failure (nothing is written), or no
value to draw; 2 usage error, the ledger cannot be reached or refused.";

/// Most panels in one chart.
pub const MAX_PANELS: usize = 12;

#[derive(clap::Args)]
pub struct Args {
    /// Start of the range (inclusive): RFC 3339, now, -2h, or ns since the epoch.
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg, allow_hyphen_values = true)]
    from: u64,
    /// End of the range (inclusive).
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg, allow_hyphen_values = true)]
    to: u64,
    /// Signals to draw (comma separated; Message.Signal or Signal). Default: every signal.
    #[arg(long, value_name = "NAMES")]
    signals: Option<String>,
    /// Only this lane (default: every lane sealed for --key).
    #[arg(long, value_name = "NAME")]
    lane: Option<String>,
    #[command(flatten)]
    remote: LedgerOpts,
    /// Output file: .png or .svg.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Width in pixels.
    #[arg(long, default_value_t = 1200)]
    width: u32,
    /// Height of one panel in pixels.
    #[arg(long, default_value_t = 280)]
    panel_height: u32,
}

/// One signal's series.
#[derive(Default)]
pub struct Series {
    pub unit: String,
    pub points: Vec<(f64, f64)>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match run_inner(args) {
        Ok(c) => Ok(c),
        Err(e) => Ok(ExitCode::from(fleet_cli::report_error(&e))),
    }
}

fn run_inner(args: &Args) -> anyhow::Result<ExitCode> {
    let ext = args.out.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if ext != "png" && ext != "svg" {
        return Err(Usage(format!("--out {}: want a .png or .svg file", args.out.display())).into());
    }
    if args.from > args.to {
        return Err(Usage("--from is after --to".into()).into());
    }
    let s = Session::open(&args.remote, true)?;
    let signals: Option<Vec<String>> = args
        .signals
        .as_deref()
        .map(|x| x.split(',').map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect());
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    let mut progress = Progress::new();
    for (trust, _) in &s.gateways {
        let report = fleet_cli::rows_of_gateway(
            &s,
            trust,
            args.from,
            args.to,
            signals.clone(),
            args.lane.as_deref(),
            &mut progress,
            |rows| {
                for r in rows {
                    let (Some(v), Some(_)) = (r.value, &r.signal) else { continue };
                    if !v.is_finite() {
                        continue;
                    }
                    let e = series.entry(r.name()).or_default();
                    if e.unit.is_empty() {
                        e.unit = r.unit.clone().unwrap_or_default();
                    }
                    let t = (r.t_ns.saturating_sub(args.from)) as f64 / 1e9;
                    e.points.push((t, v));
                }
                Ok(())
            },
        )?;
        note_report(trust.gateway.name(), &report);
    }
    if series.is_empty() {
        eprintln!("iovctl: error: no signal value in the range to draw (is --dbc given?)");
        return Ok(ExitCode::from(1));
    }
    if series.len() > MAX_PANELS {
        eprintln!(
            "iovctl: warning: {} signals; drawing the first {MAX_PANELS} (choose with --signals)",
            series.len()
        );
    }
    let panels: Vec<(String, Series)> = series.into_iter().take(MAX_PANELS).collect();
    let from_label = iovctl::fleet::rows::rfc3339(args.from);
    draw(&args.out, &panels, &from_label, args.width, args.panel_height)?;
    eprintln!(
        "iovctl: wrote {} ({} panels, {} points)",
        args.out.display(),
        panels.len(),
        panels.iter().map(|(_, s)| s.points.len()).sum::<usize>()
    );
    Ok(ExitCode::SUCCESS)
}

/// Registers the bundled font once (plotters' ab_glyph backend has no system font lookup).
fn font() -> anyhow::Result<()> {
    static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    anyhow::ensure!(ok, "the bundled font did not load");
    Ok(())
}

/// Draws `panels` stacked into `out` (.png or .svg by extension).
pub fn draw(
    out: &Path,
    panels: &[(String, Series)],
    from_label: &str,
    width: u32,
    panel_height: u32,
) -> anyhow::Result<()> {
    font()?;
    let size = (width.max(200), panel_height.max(120) * panels.len().max(1) as u32);
    let svg =
        out.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if svg {
        let root = SVGBackend::new(out, size).into_drawing_area();
        draw_on(root, panels, from_label)
    } else {
        let root = BitMapBackend::new(out, size).into_drawing_area();
        draw_on(root, panels, from_label)
    }
    .with_context(|| format!("drawing {}", out.display()))
}

fn draw_on<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    panels: &[(String, Series)],
    from_label: &str,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("{e:?}");
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for ((name, s), area) in panels.iter().zip(areas.iter()) {
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in &s.points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let pad = if y1 > y0 { (y1 - y0) * 0.05 } else { y0.abs().max(1.0) * 0.05 };
        let (y0, y1) = (y0 - pad, y1 + pad);
        let unit = if s.unit.is_empty() { "value".to_owned() } else { s.unit.clone() };
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{name} [{unit}]"), ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(format!("time since {from_label} (s)"))
            .y_desc(unit)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), BLUE.stroke_width(2)))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
