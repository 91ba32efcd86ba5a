//! The sweep's PNG charts (issue 17, "a PNG chart per scenario of latency against offered
//! load", plotters): per scenario, the p50 and p99 latency of the gateway and of its floor
//! against the rate offered, on a log scale. Labels need a TrueType font: the first of
//! `MIMI_BENCH_FONT` or the usual system paths of DejaVu Sans / Liberation Sans; without one
//! the chart is drawn without text and the bench says so.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;

use super::Scenario;
use super::sweep::Point;

/// The chart's size in pixels.
pub const SIZE: (u32, u32) = (900, 560);

/// The series' colours: gateway p50, gateway p99, floor p50, floor p99.
pub const GATEWAY_P50: RGBColor = RGBColor(0, 90, 200);
pub const GATEWAY_P99: RGBColor = RGBColor(110, 170, 240);
pub const FLOOR_P50: RGBColor = RGBColor(210, 95, 0);
pub const FLOOR_P99: RGBColor = RGBColor(245, 175, 110);

/// Where the labels' font came from, or `None` when none was found (registered once).
pub fn font() -> Option<&'static Path> {
    static FONT: OnceLock<Option<PathBuf>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<PathBuf> = match std::env::var_os("MIMI_BENCH_FONT") {
            Some(path) => vec![PathBuf::from(path)],
            None => [
                "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/TTF/DejaVuSans.ttf",
                "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
                "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
                "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
                "/System/Library/Fonts/Supplemental/Arial.ttf",
            ]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        };
        candidates.into_iter().find(|path| {
            let Ok(bytes) = std::fs::read(path) else {
                return false;
            };
            // Registered for the life of the process: the font table keeps a 'static slice.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        })
    })
    .as_deref()
}

/// Draws `scenario`'s points to `bench-<stamp>-<scenario>.png` in `out`: those of the
/// measured target (`gateway`, or `gateways` for a fan-out) and of its `floor`, if it has
/// one. With `labels` false, no text is drawn (no font).
pub fn draw(
    out: &Path,
    stamp: u64,
    scenario: Scenario,
    targets: (&str, Option<&str>),
    points: &[&Point],
    labels: bool,
) -> Result<PathBuf, String> {
    let path = out.join(format!("bench-{stamp}-{}.png", scenario.name()));
    draw_to(&path, scenario, targets, points, labels)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    Ok(path)
}

/// The series of one target and percentile: (offered, latency ms, saturated), of runs with
/// answers; saturated: some requests due in the run were never sent.
fn series(points: &[&Point], target: &str, percentile: f64) -> Vec<(f64, f64, bool)> {
    points
        .iter()
        .filter(|point| point.target == target && point.outcome.answered() > 0)
        .map(|point| {
            (
                point.offered,
                super::ms(point.outcome.percentile(percentile)),
                point.outcome.unsent > 0,
            )
        })
        .collect()
}

/// One series as drawn: its points (offered, latency ms, saturated), colour and legend name.
type Line = (Vec<(f64, f64, bool)>, RGBColor, String);

fn draw_to(
    path: &Path,
    scenario: Scenario,
    (measured, floor): (&str, Option<&str>),
    points: &[&Point],
    labels: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut lines = vec![(measured, 0.50, GATEWAY_P50), (measured, 0.99, GATEWAY_P99)];
    if let Some(floor) = floor {
        lines.push((floor, 0.50, FLOOR_P50));
        lines.push((floor, 0.99, FLOOR_P99));
    }
    let lines: Vec<Line> = lines
        .into_iter()
        .map(|(target, percentile, colour)| {
            let name = format!("{target} p{:.0}", percentile * 100.0);
            (series(points, target, percentile), colour, name)
        })
        .collect();
    let all = || lines.iter().flat_map(|(series, _, _)| series.iter());
    let x_max = all().map(|(x, _, _)| *x).fold(1.0, f64::max) * 1.05;
    // A log scale needs a positive floor: under the fastest answer, at most 10 us.
    let y_min = (all().map(|(_, y, _)| *y).fold(f64::INFINITY, f64::min) / 1.5).clamp(0.01, 1e6);
    let y_max = (all().map(|(_, y, _)| *y).fold(0.0, f64::max) * 1.5).max(y_min * 10.0);

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if labels {
        builder
            .caption(
                format!(
                    "{}: latency against offered load (hollow: saturated)",
                    scenario.name()
                ),
                ("sans-serif", 22),
            )
            .x_label_area_size(45)
            .y_label_area_size(70);
    }
    let mut chart = builder.build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())?;
    let mut mesh = chart.configure_mesh();
    // The log scale's minor lines, one per unit, are a grey wall: none.
    mesh.light_line_style(WHITE);
    if labels {
        let (x_desc, y_desc) = match scenario {
            Scenario::Fanout(_) => (
                "messages offered per second",
                "in the last member's queue, ms since due (log scale)",
            ),
            _ => (
                "requests offered per second",
                "answered, ms since due (log scale)",
            ),
        };
        mesh.x_desc(x_desc)
            .y_desc(y_desc)
            .label_style(("sans-serif", 14))
            .x_labels(8)
            .y_labels(8)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| match *y {
                y if y >= 10.0 => format!("{y:.0}"),
                y if y >= 1.0 => format!("{y:.1}"),
                y => format!("{y:.2}"),
            });
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    for (series, colour, name) in &lines {
        let colour = *colour;
        if series.is_empty() {
            continue;
        }
        let drawn = chart.draw_series(LineSeries::new(
            series.iter().map(|&(x, y, _)| (x, y.max(y_min))),
            colour.stroke_width(2),
        ))?;
        if labels {
            drawn.label(name.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        }
        // A saturated run's point is hollow: its latencies are of what was sent.
        chart.draw_series(series.iter().map(|&(x, y, saturated)| {
            let style = if saturated {
                colour.stroke_width(2)
            } else {
                colour.filled()
            };
            Circle::new((x, y.max(y_min)), 4, style)
        }))?;
    }
    if labels {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// A chart read back: its size and how many pixels have each colour (for tests and for a
/// person checking a chart was drawn).
pub struct Pixels {
    pub size: (u32, u32),
    pub counts: std::collections::HashMap<[u8; 3], usize>,
}

impl Pixels {
    /// Reads an RGB PNG such as `draw` writes.
    pub fn read(path: &Path) -> Result<Pixels, String> {
        let fail = |error: &dyn std::fmt::Display| format!("{}: {error}", path.display());
        let file = std::fs::File::open(path).map_err(|error| fail(&error))?;
        let mut reader = png::Decoder::new(std::io::BufReader::new(file))
            .read_info()
            .map_err(|error| fail(&error))?;
        let mut buffer = vec![0; reader.output_buffer_size()];
        let frame = reader
            .next_frame(&mut buffer)
            .map_err(|error| fail(&error))?;
        if frame.color_type != png::ColorType::Rgb || frame.bit_depth != png::BitDepth::Eight {
            return Err(fail(&"not 8-bit RGB"));
        }
        let mut counts = std::collections::HashMap::new();
        for pixel in buffer[..frame.buffer_size()].chunks_exact(3) {
            *counts.entry([pixel[0], pixel[1], pixel[2]]).or_insert(0) += 1;
        }
        Ok(Pixels {
            size: (frame.width, frame.height),
            counts,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::bench::load::RunOutcome;

    fn point(target: &'static str, offered: f64, p50_ms: u64) -> Point {
        let latencies = (0..100)
            .map(|index| Duration::from_millis(p50_ms) + Duration::from_micros(index * 40))
            .collect();
        Point {
            scenario: Scenario::Signed,
            target,
            offered,
            outcome: RunOutcome {
                latencies,
                statuses: BTreeMap::from([(200, 100)]),
                elapsed: Duration::from_secs(1),
                resumed: 0,
                unsent: 0,
            },
        }
    }

    /// A chart, with and without labels: a PNG of `SIZE` with each of the four series drawn
    /// in its colour; with labels, text (anti-aliased grey pixels) besides.
    #[test]
    fn a_chart_draws_every_series_with_and_without_labels() {
        let dir = tempfile::tempdir().unwrap();
        let points = [
            point("gateway", 1000.0, 2),
            point("gateway", 2000.0, 5),
            point("gateway", 3000.0, 40),
            point("signed-floor", 1000.0, 1),
            point("signed-floor", 2000.0, 2),
            point("signed-floor", 3000.0, 3),
        ];
        let refs: Vec<&Point> = points.iter().collect();
        // Without labels first, before `font` registers one: the path of a machine
        // without fonts.
        for labels in [false, true] {
            if labels {
                assert!(
                    font().is_some(),
                    "a TrueType font for the labels (tests/run.sh installs fonts-dejavu-core)"
                );
            }
            let path = draw(
                dir.path(),
                labels as u64,
                Scenario::Signed,
                ("gateway", Some("signed-floor")),
                &refs,
                labels,
            )
            .unwrap();
            let pixels = Pixels::read(&path).unwrap();
            assert_eq!(pixels.size, SIZE);
            for colour in [GATEWAY_P50, GATEWAY_P99, FLOOR_P50, FLOOR_P99] {
                let drawn = pixels.counts.get(&[colour.0, colour.1, colour.2]).copied();
                assert!(
                    drawn.unwrap_or(0) > 100,
                    "{colour:?} drawn {drawn:?} times (labels {labels})"
                );
            }
            let greys = pixels
                .counts
                .keys()
                .filter(|[r, g, b]| r == g && g == b && *r > 30 && *r < 220)
                .count();
            if labels {
                assert!(greys > 10, "text drawn: {greys} shades of grey");
            }
        }
    }
}
