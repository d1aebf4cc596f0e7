//! Line charts: training curves and sweeps.
//!
//! What a reader must be able to tell apart is drawn so that colour is not the only cue:
//! every series has its own dash pattern and marker ([`LineLook`]), so curves that coincide
//! (the first epochs of an epoch sweep) still show each one. The legend goes in the corner the
//! curves leave empty, or beside the plot when no corner is ([`place_legend`]). Epoch axes get
//! whole-number ticks only ([`ticks`]). A run that diverged is drawn up to its last finite
//! point and then up to the top edge at the epoch where it diverged, marked with a cross and
//! the word "diverged".

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{text_size, FONT, PALETTE};

/// One line of a [`super::line_chart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Name shown in the legend.
    pub name: String,
    /// `(x, y)` points in drawing order; points with a non-finite coordinate are not drawn.
    pub points: Vec<(f64, f64)>,
    /// Training diverged. The x where it did is that of the first point whose y is not finite
    /// (a loss that became NaN or infinite in that epoch), or one past the last point when no
    /// point says. The curve goes on from its last finite point to the top edge at that x,
    /// where a cross and "`<name>: diverged in epoch <x>`" mark it, and the legend says "(diverged)".
    pub diverged: bool,
}

impl Series {
    /// The x at which the series diverged, if it did (see [`Series::diverged`]).
    pub(crate) fn diverged_at(&self) -> Option<f64> {
        if !self.diverged {
            return None;
        }
        let first_bad = self
            .points
            .iter()
            .find(|(x, y)| x.is_finite() && !y.is_finite())
            .map(|p| p.0);
        first_bad.or_else(|| {
            self.points
                .iter()
                .rfind(|(x, y)| x.is_finite() && y.is_finite())
                .map(|p| p.0 + 1.0)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Ticks and ranges
// ---------------------------------------------------------------------------------------------

/// Tick positions for an axis over `range`: the multiples of the smallest "nice" step (1, 2 or
/// 5 times a power of ten) that gives at most `max_ticks` ticks. With `whole`, the step is at
/// least 1, so an epoch axis only ever shows whole epochs.
pub(crate) fn ticks(range: &Range<f64>, max_ticks: usize, whole: bool) -> Vec<f64> {
    let (lo, hi) = (range.start, range.end);
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) || max_ticks == 0 {
        return Vec::new();
    }
    // 1, 2, 5, 10, 20, 50, ...
    let mut step = 10f64.powf((span / max_ticks as f64).log10().floor());
    let mut k = 0;
    while (span / step).floor() + 1.0 > max_ticks as f64 || (whole && step < 1.0) {
        step *= [2.0, 2.5, 2.0][k % 3];
        k += 1;
    }
    let eps = step * 1e-9;
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last)
        .map(|i| i as f64 * step)
        .filter(|t| *t >= lo - eps && *t <= hi + eps)
        .map(|t| if t.abs() < eps { 0.0 } else { t })
        .collect()
}

/// A linear f64 axis over `range` with its tick positions given (plotters' own choice gives
/// 0.9, 0.92, ... for one epoch).
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    pub range: Range<f64>,
    pub ticks: Vec<f64>,
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    /// `limit.0 + (v - lo) / (hi - lo) * (limit.1 - limit.0)`, rounded; values far outside the
    /// range are held a few plot widths away so the pixel stays a valid i32.
    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        if span.is_nan() || span <= 0.0 {
            return (limit.0 + limit.1) / 2;
        }
        let t = ((v - self.range.start) / span).clamp(-4.0, 5.0);
        (f64::from(limit.0) + t * f64::from(limit.1 - limit.0)).round() as i32
    }

    /// The given ticks as the bold mesh lines and labels; no light lines.
    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// `lo..hi` covering `values`, widened when empty or flat; with `pad` (fraction of the span)
/// added on both sides.
fn axis_range(values: impl Iterator<Item = f64>, pad: f64) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return 0.0..1.0;
    }
    let (lo, hi) = if lo == hi {
        let half = if lo == 0.0 { 0.5 } else { lo.abs() * 0.1 };
        (lo - half, hi + half)
    } else {
        (lo, hi)
    };
    let p = (hi - lo) * pad;
    (lo - p)..(hi + p)
}

/// The x axis: its range and whether it counts whole things (epochs).
///
/// When every x is a whole number the axis is an epoch axis: a single epoch gets the range
/// epoch ± 0.5 (one tick, the point in the middle), more get a 3% margin so markers at the ends
/// stay inside the plot.
fn x_axis(xs: &[f64]) -> (Range<f64>, bool) {
    let whole = !xs.is_empty() && xs.iter().all(|x| x.fract() == 0.0);
    let range = axis_range(xs.iter().copied(), 0.0);
    if !whole {
        return (range, false);
    }
    let (lo, hi) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    if lo == hi {
        return ((lo - 0.5)..(hi + 0.5), true);
    }
    let pad = (hi - lo) * 0.03;
    ((lo - pad)..(hi + pad), true)
}

/// A tick label: whole numbers without decimals (epochs read "4", not "4.0"), very large or
/// small magnitudes in scientific notation, others with at most four decimals.
pub(crate) fn tick_label(v: &f64) -> String {
    let v = *v;
    let a = v.abs();
    if v == v.round() && a < 1e6 {
        format!("{v:.0}")
    } else if !(1e-3..1e6).contains(&a) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The tick labels of an axis with `ticks`: [`tick_label`], or scientific notation for every
/// tick when the largest is 100,000 or more, so "800000" does not sit under "1.0e6".
pub(crate) fn tick_labeller(ticks: &[f64]) -> impl Fn(&f64) -> String {
    let sci = ticks.iter().any(|t| t.abs() >= 1e5);
    move |v: &f64| {
        if sci && *v != 0.0 {
            format!("{v:.1e}")
        } else {
            tick_label(v)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// How each series looks
// ---------------------------------------------------------------------------------------------

/// A marker drawn on a curve's points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    TriangleDown,
}

/// The dash pattern and marker of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LineLook {
    /// Alternating drawn and skipped lengths in pixels; empty for a solid line.
    pub dash: &'static [f64],
    pub marker: Marker,
}

/// Series `i` is drawn with `LOOKS[i % 5]`: solid, dashed, dotted, dash-dot, long dashes.
const LOOKS: [LineLook; 5] = [
    LineLook {
        dash: &[],
        marker: Marker::Circle,
    },
    LineLook {
        dash: &[9.0, 5.0],
        marker: Marker::Square,
    },
    LineLook {
        dash: &[2.0, 4.0],
        marker: Marker::Triangle,
    },
    LineLook {
        dash: &[10.0, 4.0, 2.0, 4.0],
        marker: Marker::Diamond,
    },
    LineLook {
        dash: &[16.0, 6.0],
        marker: Marker::TriangleDown,
    },
];

pub(crate) fn look(i: usize) -> LineLook {
    LOOKS[i % LOOKS.len()]
}

/// Splits the polyline `points` (pixels) into the drawn pieces of the dash `pattern`
/// (alternating on and off lengths, starting with on). An empty pattern gives the whole line.
pub(crate) fn dash(points: &[(f64, f64)], pattern: &[f64]) -> Vec<Vec<(f64, f64)>> {
    if pattern.is_empty() || pattern.iter().any(|&l| l.is_nan() || l <= 0.0) {
        return vec![points.to_vec()];
    }
    let mut pieces = Vec::new();
    let mut current = Vec::new();
    let mut k = 0; // index into the pattern; even = on
    let mut left = pattern[0];
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let len = (b.0 - a.0).hypot(b.1 - a.1);
        let mut done = 0.0;
        if k % 2 == 0 && current.is_empty() {
            current.push(a);
        }
        while len - done > left {
            done += left;
            let t = done / len;
            let p = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
            if k % 2 == 0 {
                current.push(p);
                pieces.push(std::mem::take(&mut current));
            } else {
                current.push(p);
            }
            k = (k + 1) % pattern.len();
            left = pattern[k];
        }
        left -= len - done;
        if k % 2 == 0 {
            current.push(b);
        }
    }
    if current.len() > 1 {
        pieces.push(current);
    }
    pieces
}

/// The points of series `index` (of a chart spanning `x_span`) that get a marker: about one
/// every twelfth of the x axis, shifted by the series index so that coinciding curves show
/// each one's markers, and always the last point. A series sparser than that (a test set
/// scored every few epochs) has a marker on every point, so that the reader sees where its
/// figures were taken.
pub(crate) fn marked(points: &[(f64, f64)], index: usize, x_span: f64) -> Vec<(f64, f64)> {
    // The mean distance between neighbouring points along x.
    let dx = match (points.first(), points.last()) {
        (Some(a), Some(b)) if points.len() > 1 => (b.0 - a.0) / (points.len() - 1) as f64,
        _ => 1.0,
    };
    let every = (x_span / 12.0 / dx.max(f64::MIN_POSITIVE)).ceil().max(1.0) as usize;
    points
        .iter()
        .enumerate()
        .filter(|(j, _)| (j + index).is_multiple_of(every) || *j + 1 == points.len())
        .map(|(_, &p)| p)
        .collect()
}

fn to_px(p: (f64, f64)) -> (i32, i32) {
    (p.0.round() as i32, p.1.round() as i32)
}

/// Draws `marker` of radius `r` at pixel `at`, filled with `color` and rimmed in white so
/// overlapping markers stay distinct.
fn draw_marker<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    marker: Marker,
    at: (i32, i32),
    r: i32,
    color: RGBColor,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for (radius, fill) in [(r + 2, WHITE), (r, color)] {
        let (x, y) = at;
        let rf = radius as f64;
        let poly: Vec<(i32, i32)> = match marker {
            Marker::Circle => {
                root.draw(&Circle::new(at, radius, fill.filled()))?;
                continue;
            }
            Marker::Square => {
                let s = (rf * 0.85).round() as i32;
                vec![
                    (x - s, y - s),
                    (x + s, y - s),
                    (x + s, y + s),
                    (x - s, y + s),
                ]
            }
            Marker::Diamond => vec![
                (x, y - radius),
                (x + radius, y),
                (x, y + radius),
                (x - radius, y),
            ],
            Marker::Triangle | Marker::TriangleDown => {
                let s = if marker == Marker::Triangle {
                    1.0
                } else {
                    -1.0
                };
                let top = (rf * 1.15 * s).round() as i32;
                let base = (rf * 0.7 * s).round() as i32;
                let half = (rf * 1.05).round() as i32;
                vec![(x, y - top), (x + half, y + base), (x - half, y + base)]
            }
        };
        root.draw(&Polygon::new(poly, fill.filled()))?;
    }
    Ok(())
}

/// Draws the polyline `points` (pixels) with `look`'s dash pattern.
fn draw_line<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: &[(f64, f64)],
    look: LineLook,
    style: ShapeStyle,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for piece in dash(points, look.dash) {
        root.draw(&PathElement::new(
            piece.into_iter().map(to_px).collect::<Vec<_>>(),
            style,
        ))?;
    }
    Ok(())
}

/// A cross marking where a run diverged.
fn draw_cross<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    r: i32,
    color: RGBColor,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (x, y) = at;
    for (width, c) in [(6, WHITE), (3, color)] {
        let s = ShapeStyle::from(c).stroke_width(width);
        root.draw(&PathElement::new(vec![(x - r, y - r), (x + r, y + r)], s))?;
        root.draw(&PathElement::new(vec![(x - r, y + r), (x + r, y - r)], s))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Legend
// ---------------------------------------------------------------------------------------------

/// A rectangle in pixels: `x0..x1` by `y0..y1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rect {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl Rect {
    fn contains(&self, (x, y): (f64, f64)) -> bool {
        (self.x0..=self.x1).contains(&x) && (self.y0..=self.y1).contains(&y)
    }
}

/// Where the legend goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LegendPlace {
    UpperRight,
    UpperLeft,
    LowerRight,
    LowerLeft,
    /// Beside the plot, on the right: every corner has data in it.
    Outside,
}

/// Gap between the legend and the plot's edges, in pixels.
const LEGEND_INSET: f64 = 10.0;

/// The legend's rectangle at `place` inside `plot`, for a legend of `size` pixels.
fn legend_rect(plot: Rect, size: (f64, f64), place: LegendPlace) -> Rect {
    let (w, h) = size;
    let left = plot.x0 + LEGEND_INSET;
    let right = plot.x1 - LEGEND_INSET - w;
    let top = plot.y0 + LEGEND_INSET;
    let bottom = plot.y1 - LEGEND_INSET - h;
    let (x0, y0) = match place {
        LegendPlace::UpperRight | LegendPlace::Outside => (right, top),
        LegendPlace::UpperLeft => (left, top),
        LegendPlace::LowerRight => (right, bottom),
        LegendPlace::LowerLeft => (left, bottom),
    };
    Rect {
        x0,
        y0,
        x1: x0 + w,
        y1: y0 + h,
    }
}

/// The points along the polyline `line` (pixels), one every 2 pixels and every vertex: what
/// the legend must not cover.
pub(crate) fn sample_line(line: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = line.first().copied().into_iter().collect();
    for pair in line.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let n = ((b.0 - a.0).hypot(b.1 - a.1) / 2.0).ceil().max(1.0) as usize;
        out.extend((1..=n).map(|k| {
            let t = k as f64 / n as f64;
            (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
        }));
    }
    out
}

/// The corner of `plot` where a legend of `size` pixels covers the fewest of `occupied` (the
/// pixels of the curves, their markers and labels; see [`sample_line`]), with 6 pixels of
/// clearance. Ties go to the first of upper right, upper left, lower right, lower left. When
/// every corner covers something, or the legend does not fit, it goes [`LegendPlace::Outside`].
pub(crate) fn place_legend(plot: Rect, size: (f64, f64), occupied: &[(f64, f64)]) -> LegendPlace {
    const CLEARANCE: f64 = 6.0;
    if size.0 + 2.0 * LEGEND_INSET > plot.x1 - plot.x0
        || size.1 + 2.0 * LEGEND_INSET > plot.y1 - plot.y0
    {
        return LegendPlace::Outside;
    }
    let corners = [
        LegendPlace::UpperRight,
        LegendPlace::UpperLeft,
        LegendPlace::LowerRight,
        LegendPlace::LowerLeft,
    ];
    let covered = |place: LegendPlace| {
        let r = legend_rect(plot, size, place);
        let grown = Rect {
            x0: r.x0 - CLEARANCE,
            y0: r.y0 - CLEARANCE,
            x1: r.x1 + CLEARANCE,
            y1: r.y1 + CLEARANCE,
        };
        occupied.iter().filter(|&&p| grown.contains(p)).count()
    };
    corners
        .into_iter()
        .find(|&c| covered(c) == 0)
        .unwrap_or(LegendPlace::Outside)
}

/// Legend geometry: row height, swatch width, padding (pixels) and label size.
const LEGEND_ROW: f64 = 22.0;
const LEGEND_SWATCH: f64 = 40.0;
const LEGEND_PAD: f64 = 10.0;
const LEGEND_PX: f64 = 15.0;

/// Width and height in pixels of a legend listing `labels`.
fn legend_size(labels: &[String]) -> (f64, f64) {
    let widest = labels
        .iter()
        .map(|l| text_size(l, LEGEND_PX).0)
        .max()
        .unwrap_or(0) as f64;
    (
        LEGEND_PAD + LEGEND_SWATCH + 8.0 + widest + LEGEND_PAD,
        LEGEND_PAD * 0.6 * 2.0 + labels.len() as f64 * LEGEND_ROW,
    )
}

/// One row of the legend.
struct LegendEntry {
    label: String,
    color: RGBColor,
    look: LineLook,
    diverged: bool,
}

fn draw_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    at: Rect,
    entries: &[LegendEntry],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.draw(&Rectangle::new(
        [to_px((at.x0, at.y0)), to_px((at.x1, at.y1))],
        WHITE.mix(0.9).filled(),
    ))?;
    root.draw(&Rectangle::new(
        [to_px((at.x0, at.y0)), to_px((at.x1, at.y1))],
        RGBColor(170, 170, 170),
    ))?;
    let text = TextStyle::from((FONT, LEGEND_PX).into_font())
        .pos(Pos::new(HPos::Left, VPos::Center))
        .color(&BLACK);
    for (k, e) in entries.iter().enumerate() {
        let y = at.y0 + LEGEND_PAD * 0.6 + LEGEND_ROW * (k as f64 + 0.5);
        let (x0, x1) = (at.x0 + LEGEND_PAD, at.x0 + LEGEND_PAD + LEGEND_SWATCH);
        draw_line(root, &[(x0, y), (x1, y)], e.look, e.color.stroke_width(2))?;
        let mid = to_px(((x0 + x1) / 2.0, y));
        if e.diverged {
            draw_cross(root, mid, 5, e.color)?;
        } else {
            draw_marker(root, e.look.marker, mid, 4, e.color)?;
        }
        root.draw(&Text::new(
            e.label.clone(),
            to_px((x1 + 8.0, y)),
            text.clone(),
        ))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The chart
// ---------------------------------------------------------------------------------------------

/// The words beside the cross of a diverged series.
fn divergence_label(s: &Series, x: f64) -> String {
    format!("{}: diverged in epoch {}", s.name, tick_label(&x))
}

/// The legend text of `s`.
fn legend_label(s: &Series) -> String {
    if s.diverged {
        format!("{} (diverged)", s.name)
    } else {
        s.name.clone()
    }
}

/// The axes of a chart.
struct Frame {
    x_range: Range<f64>,
    y_range: Range<f64>,
    whole_x: bool,
    /// For each series that diverged, the height of its cross: one row each in a band added
    /// above the data, so the crosses and their words cover no curve and no other cross.
    cross_y: Vec<Option<f64>>,
}

/// Height in pixels of one row of divergence marks.
const DIVERGED_ROW: f64 = 22.0;

/// Raises the top of `frame`'s y axis to make a band of one row per diverged series above the
/// data (at most 60% of the `plot_h` pixels of the plot), and puts each one's cross in its row.
///
/// For a band of `b` pixels over data spanning `s` (y units) in a plot `h` pixels high, the
/// axis gains `s * b / (h - b)`.
fn add_divergence_band(frame: &mut Frame, series: &[Series], plot_h: f64) {
    let diverged: Vec<usize> = (0..series.len())
        .filter(|&i| series[i].diverged_at().is_some())
        .collect();
    if diverged.is_empty() || plot_h.is_nan() || plot_h <= 0.0 {
        return;
    }
    let band = (diverged.len() as f64 * DIVERGED_ROW + 8.0).min(plot_h * 0.6);
    let (lo, hi) = (frame.y_range.start, frame.y_range.end);
    let top = hi + (hi - lo) * band / (plot_h - band);
    frame.y_range.end = top;
    let per_px = (top - lo) / plot_h;
    for (row, &i) in diverged.iter().enumerate() {
        let from_top = 4.0 + DIVERGED_ROW * (row as f64 + 0.5);
        frame.cross_y[i] = Some(top - from_top.min(band) * per_px);
    }
}

/// A line chart's axes, built.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<Axis, Axis>>;

/// Data coordinates to pixels.
type ToPixels<'a> = &'a dyn Fn(&(f64, f64)) -> (f64, f64);

/// Builds the axes on `area` (without drawing anything).
fn build<'a, DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    f: &Frame,
) -> Result<Chart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let x_ticks = ticks(&f.x_range, 10, f.whole_x);
    let y_ticks = ticks(&f.y_range, 8, false);
    ChartBuilder::on(area)
        .x_label_area_size(50)
        .y_label_area_size(75)
        .build_cartesian_2d(
            Axis {
                range: f.x_range.clone(),
                ticks: x_ticks,
            },
            Axis {
                range: f.y_range.clone(),
                ticks: y_ticks,
            },
        )
}

pub(super) fn draw_line_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let finite: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect()
        })
        .collect();
    let xs: Vec<f64> = finite
        .iter()
        .flatten()
        .map(|p| p.0)
        .chain(series.iter().filter_map(Series::diverged_at))
        .collect();
    let (x_range, whole_x) = x_axis(&xs);
    let y_range = axis_range(finite.iter().flatten().map(|p| p.1), 0.05);
    let mut frame = Frame {
        cross_y: vec![None; series.len()],
        x_range,
        y_range,
        whole_x,
    };

    let area = root.margin(15, 15, 15, 25).titled(title, (FONT, 24))?;
    let plot_h = {
        let r = plot_rect(&build(&area, &frame)?);
        r.y1 - r.y0
    };
    add_divergence_band(&mut frame, series, plot_h);
    let labels: Vec<String> = series.iter().map(legend_label).collect();
    let size = legend_size(&labels);

    // Where everything lands with the plot at full width; the legend goes in an empty corner
    // or, when there is none, beside a narrower plot.
    let mut chart = build(&area, &frame)?;
    let mut place = LegendPlace::Outside;
    if !series.is_empty() {
        let occupied = occupied_pixels(&chart, series, &finite, &frame);
        place = place_legend(plot_rect(&chart), size, &occupied);
        if place == LegendPlace::Outside {
            let (w, _) = area.dim_in_pixel();
            let (left, _) = area.split_horizontally(w as i32 - size.0.ceil() as i32 - 15);
            chart = build(&left, &frame)?;
        }
    }
    let y_ticks_label = tick_labeller(&ticks(&frame.y_range, 8, false));
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&tick_label)
        .y_label_formatter(&y_ticks_label)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()?;

    let plot = plot_rect(&chart);
    let x_span = frame.x_range.end - frame.x_range.start;
    let px = |p: &(f64, f64)| {
        let (x, y) = chart.backend_coord(p);
        (f64::from(x), f64::from(y))
    };
    // Lines first, then the markers, then each curve's last marker, so no line hides a marker
    // and every curve shows where it ends.
    for (i, (s, points)) in series.iter().zip(&finite).enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut line: Vec<(f64, f64)> = points.iter().map(px).collect();
        if let Some(mark) = divergence_mark(i, s, &frame, &plot, &px) {
            line.push(mark.at);
        }
        draw_line(&root, &line, look(i), color.stroke_width(2))?;
    }
    let radius = |points: &[(f64, f64)]| if points.len() == 1 { 6 } else { 4 };
    for (i, points) in finite.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let marks = marked(points, i, x_span);
        for p in &marks[..marks.len().saturating_sub(1)] {
            draw_marker(&root, look(i).marker, to_px(px(p)), radius(points), color)?;
        }
    }
    for (i, (s, points)) in series.iter().zip(&finite).enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        if let Some(last) = points.last() {
            draw_marker(
                &root,
                look(i).marker,
                to_px(px(last)),
                radius(points) + 1,
                color,
            )?;
        }
        if let Some(mark) = divergence_mark(i, s, &frame, &plot, &px) {
            draw_cross(&root, to_px(mark.at), 7, color)?;
            // On a white ground, so a line passing under the words leaves them readable.
            let b = mark.label_box;
            root.draw(&Rectangle::new(
                [
                    to_px((b.x0 - 3.0, b.y0 - 1.0)),
                    to_px((b.x1 + 3.0, b.y1 + 1.0)),
                ],
                WHITE.mix(0.85).filled(),
            ))?;
            let style = TextStyle::from((FONT, DIVERGED_PX).into_font())
                .pos(Pos::new(mark.anchor, VPos::Center))
                .color(&color);
            root.draw(&Text::new(mark.label, to_px(mark.label_at), style))?;
        }
    }

    if !series.is_empty() {
        let at = if place == LegendPlace::Outside {
            let (w, _) = root.dim_in_pixel();
            let x0 = f64::from(w) - 15.0 - size.0;
            Rect {
                x0,
                y0: plot.y0,
                x1: x0 + size.0,
                y1: plot.y0 + size.1,
            }
        } else {
            legend_rect(plot, size, place)
        };
        let entries: Vec<LegendEntry> = series
            .iter()
            .zip(labels)
            .enumerate()
            .map(|(i, (s, label))| LegendEntry {
                label,
                color: PALETTE[i % PALETTE.len()],
                look: look(i),
                diverged: s.diverged,
            })
            .collect();
        draw_legend(&root, at, &entries)?;
    }
    root.present()
}

/// The plotting area of `chart` in pixels.
fn plot_rect<DB: DrawingBackend, CT: plotters::coord::CoordTranslate>(
    chart: &ChartContext<'_, DB, CT>,
) -> Rect {
    let (xr, yr) = chart.plotting_area().get_pixel_range();
    Rect {
        x0: f64::from(xr.start),
        y0: f64::from(yr.start),
        x1: f64::from(xr.end),
        y1: f64::from(yr.end),
    }
}

/// Size of the words beside a divergence cross.
const DIVERGED_PX: f64 = 14.0;

/// The cross and words that mark where a series diverged.
struct DivergenceMark {
    /// The cross, in pixels.
    at: (f64, f64),
    label: String,
    /// The label's anchor point and which side of it the text is on.
    label_at: (f64, f64),
    anchor: HPos,
    /// The pixels the label covers.
    label_box: Rect,
}

/// Where the cross of a diverged series goes (at its divergence x, in the band above the data)
/// and its words: to the right of the cross, or to its left when they would leave the plot.
fn divergence_mark(
    index: usize,
    s: &Series,
    frame: &Frame,
    plot: &Rect,
    px: ToPixels<'_>,
) -> Option<DivergenceMark> {
    let at = px(&(s.diverged_at()?, frame.cross_y[index]?));
    let label = divergence_label(s, s.diverged_at()?);
    let (w, h) = text_size(&label, DIVERGED_PX);
    let (w, h) = (f64::from(w), f64::from(h));
    // On the right, away from the line coming in from the earlier epochs, when it fits.
    let right_half = at.0 + 14.0 + w > plot.x1 - 4.0;
    let (anchor, x) = if right_half {
        (HPos::Right, at.0 - 14.0)
    } else {
        (HPos::Left, at.0 + 14.0)
    };
    let x0 = if right_half { x - w } else { x };
    Some(DivergenceMark {
        at,
        label,
        label_at: (x, at.1),
        anchor,
        label_box: Rect {
            x0,
            y0: at.1 - h / 2.0,
            x1: x0 + w,
            y1: at.1 + h / 2.0,
        },
    })
}

/// The pixels the curves, markers and divergence marks of `series` take on `chart`.
fn occupied_pixels<DB: DrawingBackend>(
    chart: &Chart<'_, DB>,
    series: &[Series],
    finite: &[Vec<(f64, f64)>],
    frame: &Frame,
) -> Vec<(f64, f64)> {
    let plot = plot_rect(chart);
    let px = |p: &(f64, f64)| {
        let (x, y) = chart.backend_coord(p);
        (f64::from(x), f64::from(y))
    };
    let mut out = Vec::new();
    for (i, (s, points)) in series.iter().zip(finite).enumerate() {
        let mut line: Vec<(f64, f64)> = points.iter().map(px).collect();
        if let Some(mark) = divergence_mark(i, s, frame, &plot, &px) {
            line.push(mark.at);
            let b = mark.label_box;
            for k in 0..=8 {
                let x = b.x0 + (b.x1 - b.x0) * f64::from(k) / 8.0;
                out.extend([(x, b.y0), (x, b.y1)]);
            }
        }
        out.extend(sample_line(&line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diverged_series_knows_its_epoch() {
        let mut s = Series {
            name: "lr 1000".into(),
            points: vec![(1.0, 2.0), (2.0, 5.0), (3.0, f64::NAN)],
            diverged: true,
        };
        assert_eq!(s.diverged_at(), Some(3.0));
        s.points.pop();
        assert_eq!(s.diverged_at(), Some(3.0), "one past the last point");
        s.points = vec![(1.0, f64::INFINITY)];
        assert_eq!(s.diverged_at(), Some(1.0), "diverged in the first epoch");
        s.diverged = false;
        assert_eq!(s.diverged_at(), None);
    }

    #[test]
    fn diverged_runs_get_their_own_rows_above_the_data() {
        let run = |name: &str, points: Vec<(f64, f64)>, diverged| Series {
            name: name.into(),
            points,
            diverged,
        };
        let series = vec![
            run("a", vec![(1.0, 0.5), (2.0, 0.2)], false),
            run("b", vec![(1.0, f64::NAN)], true),
            run("c", vec![(1.0, f64::NAN)], true),
        ];
        let mut frame = Frame {
            x_range: 0.5..2.5,
            y_range: 0.0..0.5,
            whole_x: true,
            cross_y: vec![None; 3],
        };
        add_divergence_band(&mut frame, &series, 400.0);
        assert_eq!(frame.cross_y[0], None);
        let (b, c) = (frame.cross_y[1].unwrap(), frame.cross_y[2].unwrap());
        let per_px = (frame.y_range.end - frame.y_range.start) / 400.0;
        assert!(b < frame.y_range.end && c < b);
        assert!(
            ((b - c) / per_px - DIVERGED_ROW).abs() < 1e-6,
            "a row apart"
        );
        assert!(
            (c - 0.5) / per_px >= DIVERGED_ROW / 2.0,
            "clear of the data"
        );
    }

    #[test]
    fn an_axis_is_labelled_in_one_notation() {
        let big = tick_labeller(&[0.0, 5e5, 1e6]);
        assert_eq!([big(&0.0), big(&5e5), big(&1e6)], ["0", "5.0e5", "1.0e6"]);
        let small = tick_labeller(&[0.0, 0.5, 1.0]);
        assert_eq!([small(&0.0), small(&0.5), small(&1.0)], ["0", "0.5", "1"]);
    }

    #[test]
    fn one_epoch_gets_one_whole_tick() {
        let (range, whole) = x_axis(&[1.0, 1.0]);
        assert!(whole);
        assert_eq!(range, 0.5..1.5);
        assert_eq!(ticks(&range, 10, whole), vec![1.0]);
    }

    #[test]
    fn epoch_ticks_are_whole_numbers_at_a_nice_step() {
        for epochs in 2..=120 {
            let xs: Vec<f64> = (1..=epochs).map(f64::from).collect();
            let (range, whole) = x_axis(&xs);
            let t = ticks(&range, 10, whole);
            assert!(!t.is_empty() && t.len() <= 10, "{epochs} epochs: {t:?}");
            assert!(t.iter().all(|v| v.fract() == 0.0), "{epochs} epochs: {t:?}");
            let step = if t.len() > 1 { t[1] - t[0] } else { 1.0 };
            let mantissa = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-9),
                "{epochs} epochs: step {step}"
            );
        }
        assert_eq!(
            ticks(&(0.7..10.3), 10, true),
            (1..=10).map(f64::from).collect::<Vec<_>>()
        );
    }

    #[test]
    fn fractional_axes_get_nice_fractional_ticks() {
        let t = ticks(&(0.0..1.0), 6, false);
        assert_eq!(t.len(), 6);
        for (k, v) in t.iter().enumerate() {
            assert!((v - 0.2 * k as f64).abs() < 1e-12, "{t:?}");
        }
        assert_eq!(ticks(&(0.0..1.0), 5, false), vec![0.0, 0.5, 1.0]);
        let t = ticks(&(98.4..100.1), 8, false);
        assert_eq!(t.last().copied(), Some(100.0));
        assert!(t.len() <= 8);
        // Not whole: x values that are not all integers.
        assert!(!x_axis(&[0.5, 1.0]).1);
    }

    #[test]
    fn dashes_alternate_on_and_off_along_the_line() {
        let pieces = dash(&[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0)], &[4.0, 2.0]);
        let lengths: Vec<f64> = pieces
            .iter()
            .map(|p| {
                p.windows(2)
                    .map(|w| (w[1].0 - w[0].0).hypot(w[1].1 - w[0].1))
                    .sum()
            })
            .collect();
        // 20 px of line: on 4, off 2, on 4 (turning the corner), off 2, on 4, off 2, on 2.
        assert_eq!(lengths.len(), 4);
        for l in &lengths[..3] {
            assert!((l - 4.0).abs() < 1e-9, "{lengths:?}");
        }
        assert!((lengths[3] - 2.0).abs() < 1e-9);
        assert_eq!(pieces[1][0], (6.0, 0.0));
        assert_eq!(dash(&[(0.0, 0.0), (5.0, 0.0)], &[]).len(), 1);
    }

    #[test]
    fn series_look_different() {
        for i in 0..5 {
            for j in 0..i {
                assert!(look(i).dash != look(j).dash && look(i).marker != look(j).marker);
            }
        }
    }

    #[test]
    fn markers_of_coinciding_series_fall_on_different_points() {
        let points: Vec<(f64, f64)> = (1..=50)
            .map(|e| (f64::from(e), 1.0 / f64::from(e)))
            .collect();
        let a = marked(&points, 0, 49.0);
        let b = marked(&points, 1, 49.0);
        assert!(a.len() >= 10 && a.len() <= 15, "{}", a.len());
        assert!(
            a.iter().filter(|p| b.contains(p)).count() <= 1,
            "only the last point is shared"
        );
        assert_eq!(a.last(), points.last());
        // A short series is marked at every point.
        assert_eq!(marked(&points[..5], 2, 4.0).len(), 5);
        // So is a sparse one: a figure every 4th epoch of 36.
        let sparse: Vec<(f64, f64)> = (1..=9).map(|e| (f64::from(4 * e), 0.5)).collect();
        assert_eq!(marked(&sparse, 1, 35.0), sparse);
    }

    fn plot() -> Rect {
        Rect {
            x0: 100.0,
            y0: 50.0,
            x1: 700.0,
            y1: 400.0,
        }
    }

    #[test]
    fn legend_goes_to_the_empty_corner() {
        // Accuracy rising from the lower left to 100% along the top: the upper right is taken,
        // the lower right is empty.
        let rising = sample_line(&[(100.0, 400.0), (250.0, 70.0), (700.0, 60.0)]);
        let size = (150.0, 60.0);
        assert_eq!(place_legend(plot(), size, &rising), LegendPlace::LowerRight);
        // A falling loss leaves the upper right.
        let falling = sample_line(&[(100.0, 60.0), (250.0, 350.0), (700.0, 390.0)]);
        assert_eq!(
            place_legend(plot(), size, &falling),
            LegendPlace::UpperRight
        );
        // Nothing at all: the upper right.
        assert_eq!(place_legend(plot(), size, &[]), LegendPlace::UpperRight);
        // Only the upper left is clear.
        let mut most = sample_line(&[(100.0, 390.0), (700.0, 390.0)]);
        most.extend(sample_line(&[(400.0, 60.0), (700.0, 60.0)]));
        assert_eq!(place_legend(plot(), size, &most), LegendPlace::UpperLeft);
    }

    #[test]
    fn legend_goes_outside_when_every_corner_has_data() {
        let top = sample_line(&[(100.0, 60.0), (700.0, 60.0)]);
        let bottom = sample_line(&[(100.0, 390.0), (700.0, 390.0)]);
        let both: Vec<_> = top.into_iter().chain(bottom).collect();
        assert_eq!(
            place_legend(plot(), (150.0, 60.0), &both),
            LegendPlace::Outside
        );
        // Too big to fit inside.
        assert_eq!(
            place_legend(plot(), (650.0, 60.0), &[]),
            LegendPlace::Outside
        );
    }

    #[test]
    fn the_chosen_corner_covers_no_data() {
        let rising = sample_line(&[(100.0, 400.0), (250.0, 70.0), (700.0, 60.0)]);
        let place = place_legend(plot(), (150.0, 60.0), &rising);
        let r = legend_rect(plot(), (150.0, 60.0), place);
        assert!(rising.iter().all(|&p| !r.contains(p)));
    }
}
