//! The PNG chart: per ledger, the sync lag of each acknowledged block (left) and the backlog
//! of blocks not yet at that ledger (right), one colour per vehicle, over drive time, with the
//! scenario's link windows (dead zones, tunnels) shaded.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::world::World;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// Draws the chart of `w` into `path`.
pub fn draw(w: &World, path: &Path) -> Result<()> {
    // Registering twice is harmless (the map keeps the first).
    plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the bundled font does not load"))?;
    let rows = w.orgs.len().max(1);
    let root = BitMapBackend::new(path, (1400, 60 + 380 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("chart: {e}"))?;
    let (title, body) = root.split_vertically(50);
    title
        .titled(
            &format!(
                "{}: sync lag and backlog per vehicle ({} vehicles; shaded: link windows)",
                w.scenario.name,
                w.cars.len()
            ),
            (FAMILY, 24),
        )
        .map_err(|e| anyhow!("chart: {e}"))?;
    let t_max = w
        .cars
        .iter()
        .flat_map(|c| c.backlog.iter().flat_map(|b| b.last().map(|x| x.0)))
        .fold(w.scenario.duration.as_secs_f64(), f64::max)
        .max(1.0);
    let panels = body.split_evenly((rows, 2));
    for (l, o) in w.orgs.iter().enumerate() {
        let lag_max =
            w.cars.iter().flat_map(|c| c.lag[l].iter().map(|x| x.1)).fold(1.0, f64::max) * 1.1;
        let back_max =
            w.cars.iter().flat_map(|c| c.backlog[l].iter().map(|x| x.1)).fold(1.0, f64::max) * 1.1;
        for (side, (ymax, ylabel, what)) in [
            (lag_max, "lag (s)", "sync lag of each block, by when it was sealed"),
            (back_max, "blocks", "backlog (durable, not yet acknowledged)"),
        ]
        .into_iter()
        .enumerate()
        {
            let area = &panels[l * 2 + side];
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{} ledger: {what}", o.spec.name), (FAMILY, 18))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .build_cartesian_2d(0f64..t_max, 0f64..ymax)
                .map_err(|e| anyhow!("chart: {e}"))?;
            chart
                .configure_mesh()
                .x_desc("drive time (s)")
                .y_desc(ylabel)
                .label_style((FAMILY, 13))
                .draw()
                .map_err(|e| anyhow!("chart: {e}"))?;
            for rule in &w.scenario.links {
                let (a, b) = (rule.from.as_secs_f64(), (rule.to + rule.jitter).as_secs_f64());
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(a, 0.0), (b, ymax)],
                        RGBColor(230, 230, 230).filled(),
                    )))
                    .map_err(|e| anyhow!("chart: {e}"))?;
            }
            for (k, c) in w.cars.iter().enumerate() {
                let colour = Palette99::pick(k).to_rgba();
                let series = if side == 0 { &c.lag[l] } else { &c.backlog[l] };
                let drawn = chart
                    .draw_series(LineSeries::new(series.iter().copied(), colour.stroke_width(2)))
                    .map_err(|e| anyhow!("chart: {e}"))?;
                if w.cars.len() <= 10 && side == 1 {
                    drawn.label(c.id.clone()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(3))
                    });
                }
            }
            if w.cars.len() <= 10 && side == 1 {
                chart
                    .configure_series_labels()
                    .label_font((FAMILY, 13))
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| anyhow!("chart: {e}"))?;
            }
        }
    }
    root.present().map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}
