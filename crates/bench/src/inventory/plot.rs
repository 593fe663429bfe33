//! `--plot FILE`: the inventory rows as a PNG. One group of bars per workload and in-flight
//! count (operations per second of `cairn-grpc`, `cairn-http`, `postgres` and `redis`, log scale), with Cairn's
//! ratios to each peer above the group. Skipped systems have no bar.
//!
//! Text needs a font file: the first of [`FONT_PATHS`] that exists is used. Without one the bars
//! are drawn with no text rather than failing.

use super::report::{InventoryReport, InventoryRow, ratio_text};
use crate::report::human;
use anyhow::{Context as _, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};
use std::path::Path;
use std::sync::OnceLock;

/// Where a sans-serif font may be, on Debian and others.
const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];
/// Registered under its own name, so that it never meets the log plot's registration.
const FONT: &str = "cairn-inventory-sans";
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 620;
/// The inventory plot's title.
const CAPTION: &str = "inventory: reservations/s (log scale); ratios are cairn-grpc over each peer";
/// One bar per system, in this order and colour.
const SERIES: [(&str, RGBColor); 4] = [
    ("cairn-grpc", RGBColor(44, 160, 44)),
    ("cairn-http", RGBColor(31, 119, 180)),
    ("postgres", RGBColor(255, 127, 14)),
    ("redis", RGBColor(150, 150, 150)),
];

/// Draws the report to `path` as a PNG.
///
/// # Errors
/// Drawing or writing the file failed.
pub(crate) fn draw(report: &InventoryReport, path: &Path) -> anyhow::Result<()> {
    draw_with(report, path, CAPTION, &SERIES)
}

/// Draws the rows of `report` to `path` under `caption`, one bar per system of `series` (name,
/// colour), for another benchmark whose rows have the inventory's shape.
///
/// # Errors
/// Drawing or writing the file failed.
pub(crate) fn draw_with(
    report: &InventoryReport,
    path: &Path,
    caption: &str,
    series: &[(&str, RGBColor)],
) -> anyhow::Result<()> {
    let pixels = render(report, font_registered(), caption, series)?;
    write_png(path, &pixels)
}

/// Registers the first font found, once per process; whether there is one.
fn font_registered() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        FONT_PATHS.iter().any(|path| {
            let Ok(bytes) = std::fs::read(path) else {
                return false;
            };
            // plotters keeps fonts for the life of the process: one font file, leaked once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font(FONT, FontStyle::Normal, bytes).is_ok()
        })
    })
}

fn drawing<E: std::fmt::Display>(error: E) -> anyhow::Error {
    anyhow!("drawing the plot: {error}")
}

/// One workload at one in-flight count.
struct Group<'a> {
    label: String,
    bars: Vec<Option<&'a InventoryRow>>,
}

fn groups<'a>(report: &'a InventoryReport, series: &[(&str, RGBColor)]) -> Vec<Group<'a>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    for row in &report.rows {
        let label = format!("{} / {}", row.workload, row.in_flight);
        if groups.iter().any(|g| g.label == label) {
            continue;
        }
        let bars = series
            .iter()
            .map(|(system, _)| {
                report
                    .row(system, &row.workload, row.in_flight)
                    .filter(|r| r.ops_per_s.is_some_and(|o| o > 0.0))
            })
            .collect();
        groups.push(Group { label, bars });
    }
    groups
}

/// The image as RGB bytes.
fn render(
    report: &InventoryReport,
    text: bool,
    caption: &str,
    series: &[(&str, RGBColor)],
) -> anyhow::Result<Vec<u8>> {
    let mut pixels = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let groups = groups(report, series);
        let rate = |row: Option<&InventoryRow>| row.and_then(|r| r.ops_per_s).unwrap_or(0.0);
        let rates = groups
            .iter()
            .flat_map(|g| g.bars.iter().map(|b| rate(*b)))
            .filter(|&r| r > 0.0);
        let (low, high) = rates.fold((f64::MAX, 1.0f64), |(low, high), r| {
            (low.min(r), high.max(r))
        });
        let (bottom, top) = (low.min(high) / 3.0, high * 12.0);
        let count = groups.len().max(1);
        let mut builder = ChartBuilder::on(&root);
        builder.margin(20);
        if text {
            builder
                .caption(caption, (FONT, 22))
                .x_label_area_size(40)
                .y_label_area_size(70);
        }
        let mut chart = builder
            .build_cartesian_2d(-0.5f64..(count as f64 - 0.5), (bottom..top).log_scale())
            .map_err(drawing)?;
        if text {
            let label = |x: &f64| {
                let index = x.round();
                if (x - index).abs() > 1e-6 || index < 0.0 {
                    return String::new();
                }
                groups
                    .get(index as usize)
                    .map(|g| g.label.clone())
                    .unwrap_or_default()
            };
            chart
                .configure_mesh()
                .disable_x_mesh()
                .max_light_lines(0)
                .label_style((FONT, 14))
                .axis_desc_style((FONT, 16))
                .x_labels(count + 2)
                .x_label_formatter(&label)
                .y_label_formatter(&|y| human(*y))
                .x_desc("workload / requests in flight")
                .y_desc("operations/s")
                .draw()
                .map_err(drawing)?;
        }
        let width = 0.8 / series.len().max(1) as f64;
        for (index, (name, color)) in series.iter().enumerate() {
            let left = -0.4 + width * index as f64;
            let bars = groups.iter().enumerate().filter_map(|(i, g)| {
                let value = rate(g.bars[index]);
                (value > 0.0).then(|| {
                    Rectangle::new(
                        [
                            (i as f64 + left + 0.01, bottom),
                            (i as f64 + left + width - 0.01, value),
                        ],
                        color.filled(),
                    )
                })
            });
            let color = *color;
            chart
                .draw_series(bars)
                .map_err(drawing)?
                .label(*name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled())
                });
        }
        if text {
            let above =
                TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
            let labels = groups.iter().enumerate().filter_map(|(i, g)| {
                // The first system with ratios (Cairn's fastest front) speaks for the group.
                let cairn = g
                    .bars
                    .iter()
                    .flatten()
                    .find(|r| r.ratio_to_postgres.is_some() || r.ratio_to_redis.is_some())?;
                let mut parts = Vec::new();
                if let Some(r) = cairn.ratio_to_postgres {
                    parts.push(format!("pg ×{}", ratio_text(r)));
                }
                if let Some(r) = cairn.ratio_to_redis {
                    parts.push(format!("redis ×{}", ratio_text(r)));
                }
                let y = g.bars.iter().map(|b| rate(*b)).fold(0.0, f64::max) * 1.3;
                (!parts.is_empty())
                    .then(|| Text::new(parts.join(", "), (i as f64, y), above.clone()))
            });
            chart.draw_series(labels).map_err(drawing)?;
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font((FONT, 14))
                .draw()
                .map_err(drawing)?;
        }
        root.present().map_err(drawing)?;
    }
    Ok(pixels)
}

fn write_png(path: &Path, pixels: &[u8]) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .with_context(|| format!("writing {}", path.display()))?;
    writer
        .write_image_data(pixels)
        .with_context(|| format!("writing {}", path.display()))?;
    writer
        .finish()
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::report::InventorySettings;
    use crate::report::Machine;

    fn report() -> InventoryReport {
        let machine = Machine {
            cores: 2,
            kernel: "k".into(),
            cpu: "c".into(),
        };
        let mut report = InventoryReport::new(machine, InventorySettings::default());
        for (n, cairn, pg, redis) in [(1, 400.0, 300.0, 9000.0), (64, 20_000.0, 2000.0, 90_000.0)] {
            report.rows.push(InventoryRow {
                ops_per_s: Some(cairn * 2.0),
                ratio_to_postgres: Some(cairn * 2.0 / pg),
                ratio_to_redis: Some(cairn * 2.0 / redis),
                ..InventoryRow::new("cairn-grpc", "hot", n)
            });
            report.rows.push(InventoryRow {
                ops_per_s: Some(cairn),
                ratio_to_postgres: Some(cairn / pg),
                ratio_to_redis: Some(cairn / redis),
                ..InventoryRow::new("cairn-http", "hot", n)
            });
            report.rows.push(InventoryRow {
                ops_per_s: Some(pg),
                ..InventoryRow::new("postgres", "hot", n)
            });
            report.rows.push(InventoryRow {
                ops_per_s: Some(redis),
                ..InventoryRow::new("redis", "hot", n)
            });
        }
        report
            .rows
            .push(InventoryRow::skipped("redis", "uniform", 1, "down"));
        report
    }

    #[test]
    fn groups_follow_the_rows_and_leave_skipped_systems_out() {
        let report = report();
        let groups = groups(&report, &SERIES);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].label, "hot / 1");
        assert!(groups[0].bars.iter().all(Option::is_some));
        assert!(groups[2].bars.iter().all(Option::is_none));
    }

    // No font is registered in this test, so this proves the no-font path draws no text
    // (plotters fails on text without a font).
    #[test]
    fn without_a_font_the_bars_are_drawn_without_text() {
        let pixels = render(&report(), false, CAPTION, &SERIES).expect("draws");
        assert!(pixels.iter().any(|&p| p != 255), "something was drawn");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plot.png");
        write_png(&path, &pixels).expect("writes");
        let bytes = std::fs::read(&path).expect("reads");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }
}
