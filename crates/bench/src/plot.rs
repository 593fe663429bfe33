//! `--plot FILE`: the rows as a PNG. Left, records per second of the log and of the floor at each
//! in-flight count, with the ratio over each pair; right, the recovery times (both log scale).
//!
//! Text needs a font file: the first of [`FONT_PATHS`] that exists is used. Without one the bars
//! are drawn with no text rather than failing.

use crate::report::{Report, Row, human};
use anyhow::{Context as _, anyhow};
use plotters::coord::Shift;
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
const FONT: &str = "sans-serif";
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 560;
const CAIRN: RGBColor = RGBColor(31, 119, 180);
const FLOOR: RGBColor = RGBColor(150, 150, 150);

/// Draws the report to `path` as a PNG.
///
/// # Errors
/// Drawing or writing the file failed.
pub(crate) fn draw(report: &Report, path: &Path) -> anyhow::Result<()> {
    let pixels = render(report, font_registered())?;
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

/// The image as RGB bytes.
fn render(report: &Report, text: bool) -> anyhow::Result<Vec<u8>> {
    let mut pixels = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let (left, right) = root.split_horizontally(WIDTH * 3 / 5);
        draw_append(&left, report, text)?;
        draw_recovery(&right, report, text)?;
        root.present().map_err(drawing)?;
    }
    Ok(pixels)
}

/// One in-flight count: the log's and the floor's records per second.
struct Group<'a> {
    cairn: &'a Row,
    floor: Option<&'a Row>,
}

fn draw_append<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    report: &Report,
    text: bool,
) -> anyhow::Result<()> {
    let groups: Vec<Group<'_>> = report
        .rows
        .iter()
        .filter(|r| r.system == "cairn" && r.workload == "append" && r.ops_per_s.is_some())
        .map(|cairn| Group {
            cairn,
            floor: report.row("floor", "append", cairn.in_flight),
        })
        .collect();
    if groups.is_empty() {
        return Ok(());
    }
    let rate = |row: Option<&Row>| row.and_then(|r| r.ops_per_s).unwrap_or(0.0);
    let rates = groups
        .iter()
        .flat_map(|g| [rate(Some(g.cairn)), rate(g.floor)])
        .filter(|&r| r > 0.0);
    let (low, high) = rates.fold((f64::MAX, 1.0f64), |(low, high), r| {
        (low.min(r), high.max(r))
    });
    let (bottom, top) = (low.min(high) / 3.0, high * 8.0);
    let count = groups.len();
    let mut builder = ChartBuilder::on(area);
    builder.margin(20);
    if text {
        let caption = format!(
            "append ({}): durable records/s (log scale)",
            report.settings.appenders
        );
        builder
            .caption(caption, (FONT, 22))
            .x_label_area_size(40)
            .y_label_area_size(70);
    }
    let mut chart = builder
        .build_cartesian_2d(-0.5f64..(count as f64 - 0.5), (bottom..top).log_scale())
        .map_err(drawing)?;
    if text {
        let label =
            |x: &f64| group_label(*x, &groups, |g| g.cairn.in_flight.map(|n| n.to_string()));
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(0)
            .x_labels(count + 2)
            .x_label_formatter(&label)
            .y_label_formatter(&|y| human(*y))
            .x_desc("appenders in flight")
            .y_desc("records/s")
            .draw()
            .map_err(drawing)?;
    }
    let bar = |index: usize, left: f64, right: f64, value: f64, color: RGBColor| {
        Rectangle::new(
            [
                (index as f64 + left, bottom),
                (index as f64 + right, value.max(bottom)),
            ],
            color.filled(),
        )
    };
    chart
        .draw_series(
            groups
                .iter()
                .enumerate()
                .map(|(i, g)| bar(i, -0.4, -0.02, rate(Some(g.cairn)), CAIRN)),
        )
        .map_err(drawing)?
        .label("cairn")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], CAIRN.filled()));
    chart
        .draw_series(
            groups
                .iter()
                .enumerate()
                .map(|(i, g)| bar(i, 0.02, 0.4, rate(g.floor), FLOOR)),
        )
        .map_err(drawing)?
        .label("floor (write + fdatasync, same batch)")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], FLOOR.filled()));
    let target = groups
        .iter()
        .enumerate()
        .filter(|(_, g)| g.cairn.in_flight == Some(crate::TARGET_IN_FLIGHT));
    let target_lines = target.map(|(i, g)| {
        let y = rate(g.floor) * crate::TARGET_RATIO_TO_FLOOR;
        PathElement::new(
            vec![(i as f64 - 0.45, y), (i as f64 + 0.45, y)],
            BLACK.stroke_width(2),
        )
    });
    chart
        .draw_series(target_lines)
        .map_err(drawing)?
        .label(format!(
            "target: {:.0}% of floor",
            crate::TARGET_RATIO_TO_FLOOR * 100.0
        ))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], BLACK.stroke_width(2)));
    if !text {
        return Ok(());
    }
    let above = TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    let ratios = groups.iter().enumerate().filter_map(|(i, g)| {
        let ratio = g.cairn.ratio_to_floor?;
        let y = rate(Some(g.cairn)).max(rate(g.floor)) * 1.15;
        Some(Text::new(
            format!("{ratio:.2} of floor"),
            (i as f64, y),
            above.clone(),
        ))
    });
    chart.draw_series(ratios).map_err(drawing)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(drawing)
}

fn draw_recovery<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    report: &Report,
    text: bool,
) -> anyhow::Result<()> {
    let rows: Vec<&Row> = report
        .rows
        .iter()
        .filter(|r| r.workload != "append" && r.seconds.is_some_and(|s| s > 0.0))
        .collect();
    let seconds = |row: &Row| row.seconds.unwrap_or(0.0);
    let Some(low) = rows.iter().map(|r| seconds(r)).min_by(f64::total_cmp) else {
        return Ok(());
    };
    let high = rows.iter().map(|r| seconds(r)).fold(low, f64::max);
    let (bottom, top) = (low / 4.0, high * 4.0);
    let count = rows.len();
    let mut builder = ChartBuilder::on(area);
    builder.margin(20);
    if text {
        builder
            .caption("recovery: seconds (log scale)", (FONT, 22))
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut chart = builder
        .build_cartesian_2d(-0.5f64..(count as f64 - 0.5), (bottom..top).log_scale())
        .map_err(drawing)?;
    if text {
        let label = |x: &f64| group_label(*x, &rows, |r| Some(r.workload.clone()));
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(0)
            .x_labels(count + 2)
            .x_label_formatter(&label)
            .y_label_formatter(&|y| format!("{y:.3}"))
            .y_desc("seconds")
            .draw()
            .map_err(drawing)?;
    }
    let bars = rows.iter().enumerate().map(|(i, row)| {
        let color = if row.system == "floor" { FLOOR } else { CAIRN };
        Rectangle::new(
            [(i as f64 - 0.35, bottom), (i as f64 + 0.35, seconds(row))],
            color.filled(),
        )
    });
    chart.draw_series(bars).map_err(drawing)?;
    if !text {
        return Ok(());
    }
    let above = TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    let values = rows.iter().enumerate().map(|(i, row)| {
        let cache = row.cache.as_deref().unwrap_or("");
        Text::new(
            format!("{:.3} s ({cache})", seconds(row)),
            (i as f64, seconds(row) * 1.1),
            above.clone(),
        )
    });
    chart.draw_series(values).map_err(drawing)?;
    Ok(())
}

/// The label of the item whose index is `x`, or nothing between items.
fn group_label<T>(x: f64, items: &[T], label: impl Fn(&T) -> Option<String>) -> String {
    let index = x.round();
    if (x - index).abs() > 1e-6 || index < 0.0 {
        return String::new();
    }
    items
        .get(index as usize)
        .and_then(label)
        .unwrap_or_default()
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
    use crate::report::{Machine, Settings};

    fn report() -> Report {
        let machine = Machine {
            cores: 2,
            kernel: "k".into(),
            cpu: "c".into(),
        };
        let settings = Settings {
            duration_s: 1.0,
            warmup_s: 1.0,
            runs: 1,
            payload_bytes: 100,
            recover_records: 10,
            dir: "/x".into(),
            dir_fs: "ext4".into(),
            appenders: "tasks".into(),
        };
        let mut report = Report::new("log", machine, settings);
        for (n, cairn, floor) in [(1, 400.0, 500.0), (256, 30_000.0, 40_000.0)] {
            let row = |system: &str, ops: f64| Row {
                in_flight: Some(n),
                ops_per_s: Some(ops),
                ..Row::new(system, "append")
            };
            report.rows.push(Row {
                ratio_to_floor: Some(cairn / floor),
                ..row("cairn", cairn)
            });
            report.rows.push(row("floor", floor));
        }
        report.rows.push(Row {
            seconds: Some(2.0),
            ..Row::new("cairn", "recover-zero")
        });
        report.rows.push(Row {
            seconds: Some(0.01),
            ..Row::new("floor", "read-files")
        });
        report
    }

    // No test in this binary registers a font, so this proves the no-font path draws no text
    // (plotters fails on text without a font).
    #[test]
    fn without_a_font_the_bars_are_drawn_without_text() {
        let pixels = render(&report(), false).expect("draws");
        assert!(pixels.iter().any(|&p| p != 255), "something was drawn");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plot.png");
        write_png(&path, &pixels).expect("writes");
        let bytes = std::fs::read(&path).expect("reads");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn group_labels_fall_on_whole_indexes_only() {
        let items = ["a", "b"];
        let label = |s: &&str| Some((*s).to_string());
        assert_eq!(group_label(1.0, &items, label), "b");
        assert_eq!(group_label(0.5, &items, label), "");
        assert_eq!(group_label(2.0, &items, label), "");
        assert_eq!(group_label(-1.0, &items, label), "");
    }
}
