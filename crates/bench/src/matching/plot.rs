//! `--plot FILE`: the rows as a PNG, one panel per part: orders per second of the three books
//! (with Cairn's ratios), orders per second end to end at each in-flight count (when measured),
//! and the recovery times. Values are on a log scale; a panel with nothing measured is left out.
//!
//! Text needs a font file: the first of [`FONT_PATHS`] that exists is used. Without one the bars
//! are drawn with no text rather than failing.

use super::report::{MatchingReport, MatchingRow};
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
const PEER: RGBColor = RGBColor(150, 150, 150);
const CAIRN_HTTP: RGBColor = RGBColor(158, 202, 225);

/// Draws the report to `path` as a PNG.
///
/// # Errors
/// Drawing or writing the file failed.
pub(crate) fn draw(report: &MatchingReport, path: &Path) -> anyhow::Result<()> {
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

fn panels(report: &MatchingReport) -> Vec<Panel> {
    let measured = |workload: &str| -> Vec<&MatchingRow> {
        report
            .rows
            .iter()
            .filter(|r| r.workload == workload && r.skipped.is_none())
            .collect()
    };
    let color = |row: &MatchingRow| match row.system.as_str() {
        "cairn-http" => CAIRN_HTTP,
        system if system.starts_with("cairn") => CAIRN,
        _ => PEER,
    };
    let core = measured("core-mixed")
        .into_iter()
        .filter_map(|row| {
            let ratios = [
                row.ratio_to_orderbook_rs
                    .map(|r| format!("{r:.1}x orderbook-rs")),
                row.ratio_to_lobster.map(|r| format!("{r:.2}x lobster")),
            ];
            let above: Vec<String> = ratios.into_iter().flatten().collect();
            Some(Bar {
                label: row.system.clone(),
                value: row.ops_per_s?,
                color: color(row),
                above: if above.is_empty() {
                    human(row.ops_per_s?)
                } else {
                    above.join(", ")
                },
            })
        })
        .collect();
    let e2e_systems: Vec<&str> = measured("e2e").iter().fold(Vec::new(), |mut names, row| {
        if !names.contains(&row.system.as_str()) {
            names.push(row.system.as_str());
        }
        names
    });
    let e2e_caption = format!(
        "e2e ({}): durable orders/s by in-flight",
        e2e_systems.join(", ")
    );
    let e2e = measured("e2e")
        .into_iter()
        .filter_map(|row| {
            let transport = row.system.strip_prefix("cairn-").unwrap_or(&row.system);
            Some(Bar {
                label: format!("{transport} {}", row.in_flight?),
                value: row.ops_per_s?,
                color: color(row),
                above: format!("p99 {:.1} ms", row.p99_us.unwrap_or(0.0) / 1e3),
            })
        })
        .collect();
    let recovery = measured("recover-snapshot")
        .into_iter()
        .chain(measured("recover-zero"))
        .filter_map(|row| {
            Some(Bar {
                label: row.workload.clone(),
                value: row.seconds?,
                color: color(row),
                above: format!("{:.3} s", row.seconds?),
            })
        })
        .collect();
    let s = &report.settings;
    vec![
        Panel {
            caption: format!("core-mixed, {} resting: orders/s", s.resting),
            unit: "orders/s",
            bars: core,
        },
        Panel {
            caption: e2e_caption,
            unit: "orders/s",
            bars: e2e,
        },
        Panel {
            caption: format!(
                "recovery, {} resting: seconds",
                s.recover_orders
                    .map_or_else(|| "-".into(), |n| human(n as f64))
            ),
            unit: "seconds",
            bars: recovery,
        },
    ]
    .into_iter()
    .filter(|panel| panel.bars.iter().any(|bar| bar.value > 0.0))
    .collect()
}

/// The image as RGB bytes.
fn render(report: &MatchingReport, text: bool) -> anyhow::Result<Vec<u8>> {
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
            TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
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
    use crate::matching::report::MatchingSettings;
    use crate::report::Machine;

    fn report() -> MatchingReport {
        let machine = Machine {
            cores: 2,
            kernel: "k".into(),
            cpu: "c".into(),
        };
        let mut report = MatchingReport::new(machine, MatchingSettings::default());
        report.rows = vec![
            MatchingRow {
                ops_per_s: Some(3e6),
                ratio_to_lobster: Some(1.2),
                ..MatchingRow::new("cairn", "core-mixed")
            },
            MatchingRow::skipped("orderbook-rs", "core-mixed", "not built"),
            MatchingRow {
                ops_per_s: Some(2.5e6),
                ..MatchingRow::new("lobster", "core-mixed")
            },
            MatchingRow {
                in_flight: Some(1),
                ..MatchingRow::skipped("cairn-grpc", "e2e", "not in this build")
            },
            MatchingRow {
                seconds: Some(0.4),
                ..MatchingRow::new("cairn", "recover-snapshot")
            },
        ];
        report
    }

    #[test]
    fn panels_leave_out_skipped_rows_and_empty_parts() {
        let panels = panels(&report());
        assert_eq!(
            panels.len(),
            2,
            "core and recovery; e2e has nothing measured"
        );
        let labels: Vec<&str> = panels[0].bars.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["cairn", "lobster"]);
        assert_eq!(panels[0].bars[0].above, "1.20x lobster");
    }

    #[test]
    fn without_a_font_the_bars_are_drawn_without_text() {
        let pixels = render(&report(), false).expect("renders");
        assert!(pixels.iter().any(|&b| b != 255), "something was drawn");
    }
}
