//! Bar charts of one layer's values: the output layer's class probabilities as labelled
//! horizontal bars, and any other flat layer's activations as one bar per unit.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::chart::{tick_label, ticks, Axis};
use super::{format_of, render_png, render_svg, text_size, Format, FONT, PALETTE};
use crate::error::{Error, Result};

/// Height of one class's row, and the longest bar, in pixels.
const ROW: i32 = 30;
const BAR_W: i32 = 420;
const LABEL_PX: f64 = 15.0;
const TITLE_PX: f64 = 20.0;

/// A probability as a short percentage: "97.2%", "0.3%", "<0.1%".
pub fn percent(p: f32) -> String {
    if p > 0.0 && p < 0.0005 {
        "<0.1%".into()
    } else {
        format!("{:.1}%", p * 100.0)
    }
}

/// Where the parts of a probability chart go.
struct BarsLayout {
    size: (u32, u32),
    /// Left end of the bars and top of the first row.
    origin: (i32, i32),
}

fn bars_layout(title: &str, labels: &[String]) -> BarsLayout {
    let widest = labels
        .iter()
        .map(|l| text_size(l, LABEL_PX).0)
        .max()
        .unwrap_or(0);
    let left = 20 + widest + 12;
    let top = 20 + TITLE_PX as i32 + 22;
    let right = text_size("100.0%", LABEL_PX).0 + 30;
    let width = (left + BAR_W + right).max(text_size(title, TITLE_PX).0 + 40);
    let height = top + labels.len() as i32 * ROW + 50;
    BarsLayout {
        size: (width as u32, height as u32),
        origin: (left, top),
    }
}

/// Draws one horizontal bar per class, longest for the most probable, and writes it to `path`
/// (`.png` or `.svg`): class names on the left, each bar's probability at its end, the most
/// probable class in colour and the others in grey, a 0-100% scale underneath.
///
/// # Errors
/// [`Error::Invalid`] for no classes, as many probabilities as labels, or an extension other
/// than `.png`/`.svg`; [`Error::Write`] (with `path`) when the file cannot be written.
pub fn probability_bars(path: &Path, title: &str, labels: &[String], probs: &[f32]) -> Result<()> {
    if labels.is_empty() || labels.len() != probs.len() {
        return Err(Error::Invalid(format!(
            "probability bars: {} class names for {} probabilities",
            labels.len(),
            probs.len()
        )));
    }
    let layout = bars_layout(title, labels);
    let bytes = match format_of(path)? {
        Format::Png => render_png(path, layout.size, |root| {
            draw_probability_bars(root, title, labels, probs, &layout)
        })?,
        Format::Svg => render_svg(path, layout.size, |root| {
            draw_probability_bars(root, title, labels, probs, &layout)
        })?,
    };
    crate::io::write_atomic(path, &bytes)
}

fn draw_probability_bars<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    labels: &[String],
    probs: &[f32],
    layout: &BarsLayout,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (x0, y0) = layout.origin;
    let rows = labels.len() as i32;
    let text = |h: HPos, v: VPos, px: f64| {
        TextStyle::from((FONT, px).into_font())
            .pos(Pos::new(h, v))
            .color(&BLACK)
    };
    root.draw(&Text::new(
        title.to_string(),
        (layout.size.0 as i32 / 2, 18),
        text(HPos::Center, VPos::Top, TITLE_PX),
    ))?;
    // The scale: lines at 0, 25, 50, 75 and 100%, labelled underneath.
    let bottom = y0 + rows * ROW;
    for q in 0..=4 {
        let x = x0 + BAR_W * q / 4;
        let colour = if q == 0 {
            RGBColor(120, 120, 120)
        } else {
            RGBColor(225, 225, 225)
        };
        root.draw(&PathElement::new(
            vec![(x, y0 - 4), (x, bottom + 4)],
            colour,
        ))?;
        root.draw(&Text::new(
            format!("{}%", q * 25),
            (x, bottom + 10),
            text(HPos::Center, VPos::Top, 13.0),
        ))?;
    }
    let best = crate::model::argmax(probs);
    for (k, (label, &p)) in labels.iter().zip(probs).enumerate() {
        let mid = y0 + k as i32 * ROW + ROW / 2;
        root.draw(&Text::new(
            label.clone(),
            (x0 - 12, mid),
            text(HPos::Right, VPos::Center, LABEL_PX),
        ))?;
        let p = if p.is_finite() {
            p.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let len = (p * BAR_W as f32).round() as i32;
        let colour = if k == best {
            PALETTE[0]
        } else {
            RGBColor(170, 180, 195)
        };
        if len > 0 {
            root.draw(&Rectangle::new(
                [(x0, mid - ROW / 2 + 5), (x0 + len, mid + ROW / 2 - 5)],
                colour.filled(),
            ))?;
        }
        root.draw(&Text::new(
            percent(p),
            (x0 + len + 6, mid),
            text(HPos::Left, VPos::Center, LABEL_PX),
        ))?;
    }
    root.present()
}

/// Size of a [`value_bars`] chart in pixels.
const VALUES_SIZE: (u32, u32) = (800, 360);

/// Draws `values` as one vertical bar per unit (x: the unit's index, y: its value, from a zero
/// line) and writes it to `path` (`.png` or `.svg`). Non-finite values are drawn as 0.
///
/// # Errors
/// [`Error::Invalid`] for no values or an extension other than `.png`/`.svg`; [`Error::Write`]
/// (with `path`) when the file cannot be written.
pub fn value_bars(path: &Path, title: &str, y_label: &str, values: &[f32]) -> Result<()> {
    if values.is_empty() {
        return Err(Error::Invalid("value bars: no values".into()));
    }
    let bytes = match format_of(path)? {
        Format::Png => render_png(path, VALUES_SIZE, |root| {
            draw_value_bars(root, title, y_label, values)
        })?,
        Format::Svg => render_svg(path, VALUES_SIZE, |root| {
            draw_value_bars(root, title, y_label, values)
        })?,
    };
    crate::io::write_atomic(path, &bytes)
}

fn draw_value_bars<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    y_label: &str,
    values: &[f32],
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let v: Vec<f64> = values
        .iter()
        .map(|&x| if x.is_finite() { f64::from(x) } else { 0.0 })
        .collect();
    let lo = v.iter().copied().fold(0.0, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    let (lo, hi) = if hi > lo { (lo, hi) } else { (0.0, 1.0) };
    let pad = (hi - lo) * 0.05;
    let y_range = (lo - if lo < 0.0 { pad } else { 0.0 })..(hi + pad);
    let n = v.len();
    let x_range = -0.5..(n as f64 - 0.5);
    let x_ticks = ticks(&(0.0..(n - 1) as f64), 16, true);
    let y_ticks = ticks(&y_range, 6, false);
    let area = root
        .margin(12, 10, 10, 20)
        .titled(title, (FONT, TITLE_PX))?;
    let mut chart = ChartBuilder::on(&area)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            Axis {
                range: x_range,
                ticks: x_ticks,
            },
            Axis {
                range: y_range,
                ticks: y_ticks,
            },
        )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("unit")
        .y_desc(y_label)
        .x_label_formatter(&tick_label)
        .y_label_formatter(&tick_label)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()?;
    // Bars a little narrower than a unit, so neighbours stay apart when there is room.
    let half = if n <= 200 { 0.38 } else { 0.5 };
    chart.draw_series(
        v.iter()
            .enumerate()
            .filter(|(_, &y)| y != 0.0)
            .map(|(i, &y)| {
                let x = i as f64;
                Rectangle::new([(x - half, 0.0), (x + half, y)], PALETTE[0].filled())
            }),
    )?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(-0.5, 0.0), (n as f64 - 0.5, 0.0)],
        RGBColor(90, 90, 90),
    )))?;
    root.present()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_short() {
        assert_eq!(percent(0.9723), "97.2%");
        assert_eq!(percent(1.0), "100.0%");
        assert_eq!(percent(0.0), "0.0%");
        assert_eq!(percent(0.0001), "<0.1%");
    }

    #[test]
    fn probability_bars_grow_with_classes_and_name_them() {
        let d = tempfile::tempdir().expect("temporary directory");
        let labels: Vec<String> = ["T-shirt/top", "Trouser", "Ankle boot"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let png = d.path().join("p.png");
        probability_bars(&png, "output", &labels, &[0.1, 0.2, 0.7]).expect("bars");
        let img = image::open(&png).expect("decodes");
        assert_eq!(
            (img.width(), img.height()),
            bars_layout("output", &labels).size
        );
        let svg = d.path().join("p.svg");
        probability_bars(&svg, "output", &labels, &[0.1, 0.2, 0.7]).expect("bars");
        let text = std::fs::read_to_string(&svg).expect("read");
        for want in ["Ankle boot", "70.0%", "20.0%", "T-shirt/top"] {
            assert!(text.contains(want), "{want} missing");
        }
        assert!(matches!(
            probability_bars(&png, "t", &labels, &[1.0]),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn the_most_probable_class_has_the_longest_coloured_bar() {
        let d = tempfile::tempdir().expect("temporary directory");
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let png = d.path().join("p.png");
        probability_bars(&png, "t", &labels, &[0.25, 0.7, 0.05]).expect("bars");
        let rgb = image::open(&png).expect("decodes").to_rgb8();
        let layout = bars_layout("t", &labels);
        let (x0, y0) = layout.origin;
        let blue = |k: i32| {
            let y = (y0 + k * ROW + ROW / 2) as u32;
            (x0 as u32..rgb.width())
                .filter(|&x| rgb.get_pixel(x, y).0 == [31, 119, 180])
                .count()
        };
        assert_eq!(blue(0), 0);
        assert!(
            (blue(1) as i32 - (0.7 * BAR_W as f32) as i32).abs() <= 2,
            "{}",
            blue(1)
        );
        assert_eq!(blue(2), 0);
    }

    #[test]
    fn value_bars_draw_any_length() {
        let d = tempfile::tempdir().expect("temporary directory");
        for n in [1, 10, 128, 3136] {
            let values: Vec<f32> = (0..n).map(|i| ((i * 7) % 13) as f32 - 3.0).collect();
            let png = d.path().join(format!("v{n}.png"));
            value_bars(&png, "layer", "activation", &values).expect("bars");
            let img = image::open(&png).expect("decodes");
            assert_eq!((img.width(), img.height()), VALUES_SIZE);
        }
        assert!(matches!(
            value_bars(&d.path().join("e.png"), "t", "y", &[]),
            Err(Error::Invalid(_))
        ));
    }
}
