//! `--plot FILE`: the rows as a PNG, three panels: time to live of each publishing step beside
//! its target, bytes added per release, and read latency (p50, p99) idle and while publishing.
//! Values are on a log scale; a panel with nothing measured is left out.
//!
//! Text needs a font file: the first of [`FONT_PATHS`] that exists is used. Without one the bars
//! are drawn with no text rather than failing.

use super::report::{PUBLISH_1M, PUBLISH_10K, PublishReport, READ_IDLE, READ_PUBLISHING, ROLLBACK};
use crate::report::human;
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
const WIDTH: u32 = 1400;
const HEIGHT: u32 = 560;
const CAIRN: RGBColor = RGBColor(31, 119, 180);
const TARGET: RGBColor = RGBColor(150, 150, 150);
const LOADED: RGBColor = RGBColor(255, 127, 14);

/// Draws the report to `path` as a PNG.
///
/// # Errors
/// Drawing or writing the file failed.
pub(crate) fn draw(report: &PublishReport, path: &Path) -> anyhow::Result<()> {
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

/// One bar: its label under the axis, its value, its colour and the text above it.
struct Bar {
    label: String,
    value: f64,
    color: RGBColor,
    above: String,
}

/// One panel: a caption, the unit of its axis, and its bars.
struct Panel {
    caption: String,
    unit: &'static str,
    bars: Vec<Bar>,
}

fn panels(report: &PublishReport) -> Vec<Panel> {
    let measured = |workload: &str| report.row(workload).filter(|r| r.skipped.is_none());
    let mut live = Vec::new();
    for workload in [PUBLISH_10K, PUBLISH_1M, ROLLBACK] {
        let Some(row) = measured(workload) else {
            continue;
        };
        if let Some(seconds) = row.seconds {
            live.push(Bar {
                label: workload.to_string(),
                value: seconds * 1e3,
                color: CAIRN,
                above: format!("{:.1} ms", seconds * 1e3),
            });
        }
        if let Some(target) = row.target_s {
            live.push(Bar {
                label: "target".to_string(),
                value: target * 1e3,
                color: TARGET,
                above: format!("{:.0} ms", target * 1e3),
            });
        }
    }
    let memory = [PUBLISH_10K, PUBLISH_1M, ROLLBACK]
        .into_iter()
        .filter_map(|workload| {
            let added = measured(workload)?.bytes_added?;
            Some(Bar {
                label: workload.to_string(),
                value: (added as f64).max(1.0),
                color: CAIRN,
                above: format!("{} B", human(added as f64)),
            })
        })
        .collect();
    let mut reads = Vec::new();
    for (workload, color) in [(READ_IDLE, CAIRN), (READ_PUBLISHING, LOADED)] {
        let Some(row) = measured(workload) else {
            continue;
        };
        let name = workload.strip_prefix("read-").unwrap_or(workload);
        for (quantile, value) in [("p50", row.p50_us), ("p99", row.p99_us)] {
            if let Some(value) = value {
                reads.push(Bar {
                    label: format!("{name} {quantile}"),
                    value,
                    color,
                    above: format!("{value:.0} us"),
                });
            }
        }
    }
    vec![
        Panel {
            caption: "time to live (ms) beside the target".to_string(),
            unit: "ms",
            bars: live,
        },
        Panel {
            caption: "bytes added per release".to_string(),
            unit: "bytes",
            bars: memory,
        },
        Panel {
            caption: format!("read latency, {} readers (us)", report.settings.readers),
            unit: "us",
            bars: reads,
        },
    ]
    .into_iter()
    .filter(|panel| panel.bars.iter().any(|bar| bar.value > 0.0))
    .collect()
}

/// The image as RGB bytes.
fn render(report: &PublishReport, text: bool) -> anyhow::Result<Vec<u8>> {
    let mut pixels = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let panels = panels(report);
        if !panels.is_empty() {
            let areas = root.split_evenly((1, panels.len()));
            for (panel, area) in panels.iter().zip(&areas) {
                draw_panel(area, panel, text)?;
            }
        }
        root.present().map_err(drawing)?;
    }
    Ok(pixels)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    text: bool,
) -> anyhow::Result<()> {
    let values = panel.bars.iter().map(|b| b.value).filter(|&v| v > 0.0);
    let (low, high) = values.fold((f64::MAX, f64::MIN_POSITIVE), |(low, high), v| {
        (low.min(v), high.max(v))
    });
    let (bottom, top) = (low.min(high) / 4.0, high * 6.0);
    let count = panel.bars.len();
    let mut builder = ChartBuilder::on(area);
    builder.margin(20);
    if text {
        builder
            .caption(&panel.caption, (FONT, 20))
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
            panel
                .bars
                .get(index as usize)
                .map(|b| b.label.clone())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(0)
            .x_labels(count + 2)
            .x_label_formatter(&label)
            .y_label_formatter(&|y| human(*y))
            .y_desc(panel.unit)
            .draw()
            .map_err(drawing)?;
    }
    let bars = panel.bars.iter().enumerate().map(|(i, bar)| {
        Rectangle::new(
            [
                (i as f64 - 0.35, bottom),
                (i as f64 + 0.35, bar.value.max(bottom)),
            ],
            bar.color.filled(),
        )
    });
    chart.draw_series(bars).map_err(drawing)?;
    if text {
        let style =
            TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        let labels = panel.bars.iter().enumerate().map(|(i, bar)| {
            Text::new(
                bar.above.clone(),
                (i as f64, bar.value * 1.15),
                style.clone(),
            )
        });
        chart.draw_series(labels).map_err(drawing)?;
    }
    Ok(())
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
    use crate::publish::report::{PublishRow, PublishSettings};
    use crate::report::Machine;

    fn report() -> PublishReport {
        let machine = Machine {
            cores: 2,
            kernel: "k".into(),
            cpu: "c".into(),
        };
        let mut report = PublishReport::new(machine, PublishSettings::default());
        report.rows = vec![
            PublishRow {
                seconds: Some(0.02),
                target_s: Some(0.05),
                bytes_added: Some(1_500_000),
                ..PublishRow::new(PUBLISH_10K)
            },
            PublishRow {
                skipped: Some("no".into()),
                ..PublishRow::new(PUBLISH_1M)
            },
            PublishRow {
                p50_us: Some(300.0),
                p99_us: Some(900.0),
                ..PublishRow::new(READ_IDLE)
            },
        ];
        report
    }

    #[test]
    fn panels_leave_out_skipped_rows_and_empty_parts() {
        let panels = panels(&report());
        assert_eq!(panels.len(), 3);
        let labels: Vec<&str> = panels[0].bars.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, [PUBLISH_10K, "target"]);
        assert_eq!(panels[2].bars.len(), 2, "idle p50 and p99");
    }

    #[test]
    fn without_a_font_the_bars_are_drawn_without_text() {
        let pixels = render(&report(), false).expect("renders");
        assert!(pixels.iter().any(|&b| b != 255), "something was drawn");
    }
}
