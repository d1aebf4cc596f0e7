//! Pictures: training curves, confusion heat-maps and image grids, as PNG or SVG files.
//!
//! Everything is drawn off-screen with [`plotters`]; text uses the DejaVu Sans font embedded in
//! the binary (`assets/fonts/DejaVuSans.ttf`, licence in `assets/fonts/LICENSE-DejaVu.txt`), so
//! nothing depends on a display, fontconfig or the fonts installed on the machine.
//!
//! Every function writes its file atomically: the picture is rendered into memory, written to
//! a temporary file in the destination folder and renamed into place, so a reader never sees
//! half a file.

mod bars;
mod chart;
mod text;

use std::path::Path;
use std::sync::Once;

use plotters::backend::RGBPixel;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use crate::error::{Error, Result};
use crate::metrics::ConfusionMatrix;

pub use bars::{percent, probability_bars, value_bars};
pub use chart::Series;
use text::Bitmap;

/// The family name the embedded font is registered under (and the one SVG files ask for).
const FONT: &str = "sans-serif";

static REGISTER_FONT: Once = Once::new();

/// Registers the embedded font with plotters, once per process. Bitmaps draw their text
/// themselves ([`text::Bitmap`]); plotters still measures text with it when it lays out an SVG.
fn ensure_font() {
    REGISTER_FONT.call_once(|| {
        let registered = plotters::style::register_font(FONT, FontStyle::Normal, text::DEJAVU_SANS);
        assert!(
            registered.is_ok(),
            "the embedded DejaVuSans.ttf is a valid TrueType font"
        );
    });
}

/// Line colours (matplotlib's "tab10"), cycled when there are more series.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Size of a line chart in pixels.
const CHART_SIZE: (u32, u32) = (800, 500);

/// One small picture of an [`image_grid`].
#[derive(Debug, Clone, PartialEq)]
pub struct GridImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// `channels * height * width` values, channel-major (CHW). Any range: each image is
    /// min-max normalised to 0..255 on its own; non-finite values show as black.
    pub pixels: Vec<f32>,
    /// Text written under the image, e.g. `"true 3 / pred 5"`.
    pub caption: Option<String>,
}

/// Output format, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Svg,
}

fn format_of(path: &Path) -> Result<Format> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => Ok(Format::Png),
        Some("svg") => Ok(Format::Svg),
        _ => Err(Error::Invalid(format!(
            "{}: picture file name must end in .png or .svg",
            path.display()
        ))),
    }
}

/// A plotters drawing error, reported against the file being drawn.
fn draw_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}: drawing failed: {e}", path.display()))
}

/// Renders with `draw` onto an in-memory RGB bitmap of `size` and returns the raw pixels.
fn render_rgb<F, E>(path: &Path, buf: &mut [u8], size: (u32, u32), draw: F) -> Result<()>
where
    F: FnOnce(DrawingArea<Bitmap<'_>, Shift>) -> std::result::Result<(), E>,
    E: std::fmt::Display,
{
    ensure_font();
    let backend = BitMapBackend::<RGBPixel>::with_buffer_and_format(buf, size)
        .map_err(|e| draw_error(path, e))?;
    draw(Bitmap::new(backend).into_drawing_area()).map_err(|e| draw_error(path, e))
}

/// Encodes an RGB buffer as PNG.
fn encode_png(path: &Path, buf: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(buf, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::Invalid(format!("{}: PNG encoding failed: {e}", path.display())))?;
    Ok(out)
}

/// Renders with `draw` as a PNG of `size`.
fn render_png<F, E>(path: &Path, size: (u32, u32), draw: F) -> Result<Vec<u8>>
where
    F: FnOnce(DrawingArea<Bitmap<'_>, Shift>) -> std::result::Result<(), E>,
    E: std::fmt::Display,
{
    let mut buf = vec![0u8; size.0 as usize * size.1 as usize * 3];
    render_rgb(path, &mut buf, size, draw)?;
    encode_png(path, &buf, size)
}

/// Renders with `draw` as an SVG document of `size`.
fn render_svg<F, E>(path: &Path, size: (u32, u32), draw: F) -> Result<Vec<u8>>
where
    F: FnOnce(DrawingArea<SVGBackend<'_>, Shift>) -> std::result::Result<(), E>,
    E: std::fmt::Display,
{
    ensure_font();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(root).map_err(|e| draw_error(path, e))?;
        // Dropping the backend finishes the document.
    }
    Ok(svg.into_bytes())
}

/// Width and height in pixels of `text` in the embedded font at `size` px: the sum of the
/// glyphs' advances and kerning, by the font's ascent minus descent.
fn text_size(text: &str, size: f64) -> (i32, i32) {
    let (w, h) = text::text_size(text, size);
    (w as i32, h as i32)
}

// ---------------------------------------------------------------------------------------------
// Line chart
// ---------------------------------------------------------------------------------------------

/// Draws `series` as lines on one pair of axes and writes an 800x500 picture to `path`
/// (`.png` or `.svg`, by extension).
///
/// The axes are labelled `x_label` and `y_label`. Each series has its own colour, dash pattern
/// and marker; the legend goes in the corner the curves leave empty, or beside the plot. When
/// every x is a whole number (epochs) the x ticks are whole numbers. Points with a non-finite
/// coordinate are dropped; a series that diverged goes on from its last finite point to the top
/// edge at the x where it diverged, marked with a cross and "`<name>: diverged in epoch <x>`".
///
/// # Errors
/// [`Error::Invalid`] for an extension other than `.png`/`.svg`; [`Error::Write`] (with `path`)
/// when the file cannot be written.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    let format = format_of(path)?;
    let bytes = match format {
        Format::Png => render_png(path, CHART_SIZE, |root| {
            chart::draw_line_chart(root, title, x_label, y_label, series)
        })?,
        Format::Svg => render_svg(path, CHART_SIZE, |root| {
            chart::draw_line_chart(root, title, x_label, y_label, series)
        })?,
    };
    crate::io::write_atomic(path, &bytes)
}

// ---------------------------------------------------------------------------------------------
// Confusion heat-map
// ---------------------------------------------------------------------------------------------

/// Side of one heat-map cell in pixels.
const CELL: i32 = 60;
/// Font size of class names and cell counts.
const LABEL_PX: f64 = 15.0;
const COUNT_PX: f64 = 16.0;
const TITLE_PX: f64 = 22.0;
const AXIS_TITLE_PX: f64 = 17.0;

/// Where the parts of a heat-map go.
struct HeatmapLayout {
    size: (u32, u32),
    /// Top-left corner of the grid.
    grid: (i32, i32),
    /// Column names written vertically because one is wider than a cell.
    rotate_columns: bool,
}

fn heatmap_layout(cm: &ConfusionMatrix, title: &str) -> HeatmapLayout {
    let n = cm.classes.len() as i32;
    let widest = cm
        .classes
        .iter()
        .map(|c| text_size(c, LABEL_PX).0)
        .max()
        .unwrap_or(0);
    let rotate_columns = widest > CELL - 6;
    let axis_title_h = text_size("predicted", AXIS_TITLE_PX)
        .1
        .max(AXIS_TITLE_PX as i32);
    let left = 10 + axis_title_h + 10 + widest + 10;
    let top = 20 + TITLE_PX as i32 + 20;
    let column_names_h = if rotate_columns {
        widest
    } else {
        LABEL_PX as i32 + 4
    };
    let bottom = 8 + column_names_h + 12 + axis_title_h + 14;
    let grid_w = n * CELL;
    let width = (left + grid_w + 25).max(text_size(title, TITLE_PX).0 + 40);
    HeatmapLayout {
        size: (width as u32, (top + n * CELL + bottom) as u32),
        grid: (left, top),
        rotate_columns,
    }
}

/// Draws `cm` as a grid of cells (rows: true class, columns: predicted class) and writes it to
/// `path` (`.png` or `.svg`, by extension).
///
/// Each cell is shaded by its count divided by its row's total (so every true class uses the
/// full colour range whatever its size) and shows the count itself. Class names label both axes,
/// which are titled "true" and "predicted". Cells are 60 pixels square; the picture grows with
/// the number of classes and the length of their names.
///
/// # Errors
/// [`Error::Invalid`] for a matrix with no classes or counts of the wrong length, or an
/// extension other than `.png`/`.svg`; [`Error::Write`] (with `path`) when the file cannot be
/// written.
pub fn confusion_heatmap(path: &Path, cm: &ConfusionMatrix, title: &str) -> Result<()> {
    let n = cm.classes.len();
    if n == 0 {
        return Err(Error::Invalid(
            "confusion heat-map: the matrix has no classes".into(),
        ));
    }
    if cm.counts.len() != n * n {
        return Err(Error::Invalid(format!(
            "confusion heat-map: {} counts for {n} classes (expected {})",
            cm.counts.len(),
            n * n
        )));
    }
    let format = format_of(path)?;
    let layout = heatmap_layout(cm, title);
    let bytes = match format {
        Format::Png => render_png(path, layout.size, |root| {
            draw_heatmap(root, cm, title, &layout)
        })?,
        Format::Svg => render_svg(path, layout.size, |root| {
            draw_heatmap(root, cm, title, &layout)
        })?,
    };
    crate::io::write_atomic(path, &bytes)
}

/// White to dark blue (the ends of matplotlib's "Blues") at `t` in 0..=1.
fn blues(t: f64) -> RGBColor {
    let lo = (247.0, 251.0, 255.0);
    let hi = (8.0, 48.0, 107.0);
    let mix = |a: f64, b: f64| (a + (b - a) * t.clamp(0.0, 1.0)).round() as u8;
    RGBColor(mix(lo.0, hi.0), mix(lo.1, hi.1), mix(lo.2, hi.2))
}

fn draw_heatmap<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    cm: &ConfusionMatrix,
    title: &str,
    layout: &HeatmapLayout,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let n = cm.classes.len();
    let (gx, gy) = layout.grid;
    let grid_w = n as i32 * CELL;
    let centre = |i: usize| i as i32 * CELL + CELL / 2;
    root.fill(&WHITE)?;

    let title_style = TextStyle::from((FONT, TITLE_PX).into_font())
        .pos(Pos::new(HPos::Center, VPos::Top))
        .color(&BLACK);
    root.draw(&Text::new(
        title.to_string(),
        (layout.size.0 as i32 / 2, 18),
        title_style,
    ))?;

    for t in 0..n {
        let row_total = cm.row_sum(t);
        for p in 0..n {
            let count = cm.get(t, p);
            let share = if row_total == 0 {
                0.0
            } else {
                count as f64 / row_total as f64
            };
            let (x0, y0) = (gx + p as i32 * CELL, gy + t as i32 * CELL);
            root.draw(&Rectangle::new(
                [(x0, y0), (x0 + CELL, y0 + CELL)],
                blues(share).filled(),
            ))?;
            let text = count.to_string();
            let w = text_size(&text, COUNT_PX).0;
            let px = if w > CELL - 8 {
                COUNT_PX * (CELL - 8) as f64 / w as f64
            } else {
                COUNT_PX
            };
            let ink = if share > 0.5 { WHITE } else { BLACK };
            let style = TextStyle::from((FONT, px).into_font())
                .pos(Pos::new(HPos::Center, VPos::Center))
                .color(&ink);
            root.draw(&Text::new(text, (gx + centre(p), gy + centre(t)), style))?;
        }
    }
    // Thin lines between cells and a frame, so white cells stay visible.
    let grid_line = RGBColor(200, 200, 200);
    for i in 0..=n as i32 {
        let at = i * CELL;
        root.draw(&PathElement::new(
            vec![(gx + at, gy), (gx + at, gy + grid_w)],
            grid_line,
        ))?;
        root.draw(&PathElement::new(
            vec![(gx, gy + at), (gx + grid_w, gy + at)],
            grid_line,
        ))?;
    }

    let label = |anchor: Pos| {
        TextStyle::from((FONT, LABEL_PX).into_font())
            .pos(anchor)
            .color(&BLACK)
    };
    for (i, name) in cm.classes.iter().enumerate() {
        // Row names, right-aligned against the grid.
        root.draw(&Text::new(
            name.clone(),
            (gx - 8, gy + centre(i)),
            label(Pos::new(HPos::Right, VPos::Center)),
        ))?;
        // Column names under the grid, vertical when they would overlap.
        let (pos, style) = if layout.rotate_columns {
            (
                (gx + centre(i), gy + grid_w + 8),
                label(Pos::new(HPos::Right, VPos::Center)).transform(FontTransform::Rotate270),
            )
        } else {
            (
                (gx + centre(i), gy + grid_w + 8),
                label(Pos::new(HPos::Center, VPos::Top)),
            )
        };
        root.draw(&Text::new(name.clone(), pos, style))?;
    }

    let axis_title = |anchor: Pos| {
        TextStyle::from((FONT, AXIS_TITLE_PX).into_font())
            .pos(anchor)
            .color(&BLACK)
    };
    root.draw(&Text::new(
        "true",
        (10 + AXIS_TITLE_PX as i32 / 2, gy + grid_w / 2),
        axis_title(Pos::new(HPos::Center, VPos::Center)).transform(FontTransform::Rotate270),
    ))?;
    root.draw(&Text::new(
        "predicted",
        (gx + grid_w / 2, layout.size.1 as i32 - 12),
        axis_title(Pos::new(HPos::Center, VPos::Bottom)),
    ))?;
    root.present()
}

// ---------------------------------------------------------------------------------------------
// Image grid
// ---------------------------------------------------------------------------------------------

/// Space between and around images, in pixels.
const GRID_PAD: usize = 8;
const CAPTION_PX: f64 = 13.0;
/// Distance between the baselines of a caption's lines.
const CAPTION_LINE: usize = 17;
/// Refuse pictures larger than this many pixels (a mistake, not a gallery).
const MAX_PIXELS: usize = 64 << 20;

/// Lays `images` out in rows of `cols`, each enlarged `scale` times (nearest neighbour) with its
/// caption underneath, and writes the grid as a PNG to `path`.
///
/// Each image is min-max normalised to 0..255 on its own (a constant image is black), so filters,
/// feature maps and inputs are all visible whatever their range. Cells are as large as the
/// largest image (or caption) and images are centred in them. A caption may have several lines
/// (separated by `\n`), each centred.
///
/// # Errors
/// [`Error::Invalid`] for no images, `cols` or `scale` of 0, an image with 0 width or height,
/// `channels` other than 1 or 3, `pixels` of the wrong length, a picture over 64 Mpixel or an
/// extension other than `.png`; [`Error::Write`] (with `path`) when the file cannot be written.
pub fn image_grid(path: &Path, images: &[GridImage], cols: usize, scale: usize) -> Result<()> {
    titled_image_grid(path, None, images, cols, scale)
}

/// [`image_grid`] with `title`, when given, centred above the images.
///
/// # Errors
/// As [`image_grid`].
pub fn titled_image_grid(
    path: &Path,
    title: Option<&str>,
    images: &[GridImage],
    cols: usize,
    scale: usize,
) -> Result<()> {
    draw_image_grid(path, title, images, cols, scale, None)
}

/// [`image_grid`] with every image drawn on the one scale `lo..=hi` (black to white), the
/// same for all channels, instead of each stretched to its own range: pixels as they are
/// (`0.0..=255.0` for bytes), so that colours keep their balance.
///
/// # Errors
/// As [`image_grid`], and [`Error::Invalid`] for a range that is not finite and increasing.
pub fn image_grid_on_scale(
    path: &Path,
    images: &[GridImage],
    cols: usize,
    scale: usize,
    (lo, hi): (f32, f32),
) -> Result<()> {
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(Error::Invalid(format!(
            "image grid: the scale {lo}..{hi} is not a finite, increasing range"
        )));
    }
    draw_image_grid(path, None, images, cols, scale, Some((lo, hi)))
}

/// `min -0.31, max 0.42`: the range of `values` (finite ones), for a caption under a tile
/// drawn stretched from its minimum (black) to its maximum (white), so that its shades can
/// be read as numbers; three significant digits.
pub fn range_caption(values: &[f32]) -> String {
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return "no finite value".into();
    }
    format!("min {}, max {}", significant(lo), significant(hi))
}

/// `v` to three significant digits, without trailing zeros: `0.123`, `-12.3`, `1.5e-5`.
fn significant(v: f32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-3..6).contains(&magnitude) {
        return format!("{v:.2e}");
    }
    let decimals = (2 - magnitude).max(0) as usize;
    let t = format!("{v:.decimals$}");
    let t = if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.')
    } else {
        &t
    };
    if t == "-0" {
        "0".into()
    } else {
        t.to_string()
    }
}

/// [`titled_image_grid`], each image on its own scale (`levels` `None`) or all on `levels`.
fn draw_image_grid(
    path: &Path,
    title: Option<&str>,
    images: &[GridImage],
    cols: usize,
    scale: usize,
    levels: Option<(f32, f32)>,
) -> Result<()> {
    if format_of(path)? != Format::Png {
        return Err(Error::Invalid(format!(
            "{}: image grids are written as PNG only",
            path.display()
        )));
    }
    if images.is_empty() {
        return Err(Error::Invalid("image grid: no images".into()));
    }
    if cols == 0 || scale == 0 {
        return Err(Error::Invalid(format!(
            "image grid: cols ({cols}) and scale ({scale}) must be at least 1"
        )));
    }
    for (i, img) in images.iter().enumerate() {
        if img.width == 0 || img.height == 0 || !(img.channels == 1 || img.channels == 3) {
            return Err(Error::Invalid(format!(
                "image grid: image {i} is {}x{} with {} channels (need non-empty, 1 or 3 channels)",
                img.width, img.height, img.channels
            )));
        }
        let expected = img.channels * img.height * img.width;
        if img.pixels.len() != expected {
            return Err(Error::Invalid(format!(
                "image grid: image {i} has {} values, expected {} ({}x{}x{})",
                img.pixels.len(),
                expected,
                img.channels,
                img.height,
                img.width
            )));
        }
    }

    let captions: Vec<Vec<&str>> = images
        .iter()
        .map(|i| {
            i.caption
                .as_deref()
                .map_or(Vec::new(), |c| c.lines().collect())
        })
        .collect();
    let caption_w = captions
        .iter()
        .flatten()
        .map(|c| text_size(c, CAPTION_PX).0.max(0) as usize + 4)
        .max()
        .unwrap_or(0);
    let caption_lines = captions.iter().map(Vec::len).max().unwrap_or(0);
    let caption_h = if caption_lines > 0 {
        caption_lines * CAPTION_LINE + 8 - (CAPTION_LINE - CAPTION_PX as usize)
    } else {
        0
    };
    let title_h = if title.is_some() {
        TITLE_PX as usize + 2 * GRID_PAD + 4
    } else {
        0
    };
    let big = |v: usize| v.saturating_mul(scale);
    let cell_w = images
        .iter()
        .map(|i| big(i.width))
        .max()
        .unwrap_or(0)
        .max(caption_w);
    let image_h = images.iter().map(|i| big(i.height)).max().unwrap_or(0);
    let cell_h = image_h + caption_h;
    let cols = cols.min(images.len());
    let rows = images.len().div_ceil(cols);
    let grid_w = GRID_PAD.saturating_add(cols.saturating_mul(cell_w.saturating_add(GRID_PAD)));
    let title_w = title.map_or(0, |t| {
        text_size(t, TITLE_PX).0.max(0) as usize + 4 * GRID_PAD
    });
    let width = grid_w.max(title_w);
    // The grid is centred under a title wider than itself.
    let left = (width - grid_w) / 2;
    let height = title_h
        .saturating_add(GRID_PAD)
        .saturating_add(rows.saturating_mul(cell_h.saturating_add(GRID_PAD)));
    if width.saturating_mul(height) > MAX_PIXELS {
        return Err(Error::Invalid(format!(
            "image grid: {width}x{height} pixels is too large (limit {MAX_PIXELS})"
        )));
    }

    let cell_origin = |k: usize| {
        let (row, col) = (k / cols, k % cols);
        (
            left + GRID_PAD + col * (cell_w + GRID_PAD),
            title_h + GRID_PAD + row * (cell_h + GRID_PAD),
        )
    };
    let mut buf = vec![255u8; width * height * 3];
    for (k, img) in images.iter().enumerate() {
        let (cx, cy) = cell_origin(k);
        let x0 = cx + (cell_w - big(img.width)) / 2;
        let y0 = cy + (image_h - big(img.height)) / 2;
        frame(&mut buf, width, (x0, y0), (big(img.width), big(img.height)));
        blit(&mut buf, width, img, scale, (x0, y0), levels);
    }

    let size = (width as u32, height as u32);
    render_rgb(path, &mut buf, size, |root| {
        if let Some(t) = title {
            let style = TextStyle::from((FONT, TITLE_PX).into_font())
                .pos(Pos::new(HPos::Center, VPos::Top))
                .color(&BLACK);
            root.draw(&Text::new(
                t,
                (width as i32 / 2, GRID_PAD as i32 + 4),
                style,
            ))?;
        }
        let style = TextStyle::from((FONT, CAPTION_PX).into_font())
            .pos(Pos::new(HPos::Center, VPos::Top))
            .color(&BLACK);
        for (k, lines) in captions.iter().enumerate() {
            let (cx, cy) = cell_origin(k);
            for (j, line) in lines.iter().enumerate() {
                let x = cx + cell_w / 2;
                let y = cy + image_h + 5 + j * CAPTION_LINE;
                root.draw(&Text::new(*line, (x as i32, y as i32), style.clone()))?;
            }
        }
        root.present()
    })?;
    let bytes = encode_png(path, &buf, size)?;
    crate::io::write_atomic(path, &bytes)
}

/// Draws a one-pixel grey frame just outside the `w` x `h` rectangle at `at` in the RGB buffer
/// `buf` (`buf_w` pixels wide), so white image borders stay distinct from the background. The
/// grid padding leaves room for it.
fn frame(buf: &mut [u8], buf_w: usize, at: (usize, usize), (w, h): (usize, usize)) {
    const GREY: [u8; 3] = [170, 170, 170];
    let (x0, y0) = (at.0 - 1, at.1 - 1);
    let (x1, y1) = (at.0 + w, at.1 + h);
    let mut set = |x: usize, y: usize| {
        let i = (y * buf_w + x) * 3;
        buf[i..i + 3].copy_from_slice(&GREY);
    };
    for x in x0..=x1 {
        set(x, y0);
        set(x, y1);
    }
    for y in y0..=y1 {
        set(x0, y);
        set(x1, y);
    }
}

/// Copies `img`, enlarged `scale` times, into the RGB buffer `buf` (`buf_w` pixels wide) with
/// its top-left corner at `at`: on the scale `levels` (black to white), or else min-max
/// normalised (all its channels together).
fn blit(
    buf: &mut [u8],
    buf_w: usize,
    img: &GridImage,
    scale: usize,
    at: (usize, usize),
    levels: Option<(f32, f32)>,
) {
    let (lo, hi) = levels.unwrap_or_else(|| {
        img.pixels
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            })
    });
    let span = hi - lo;
    let to_byte = |v: f32| -> u8 {
        if !v.is_finite() || span <= 0.0 || !span.is_finite() {
            0
        } else {
            ((v - lo) / span * 255.0).round().clamp(0.0, 255.0) as u8
        }
    };
    let plane = img.width * img.height;
    for y in 0..img.height {
        for x in 0..img.width {
            let i = y * img.width + x;
            let rgb = if img.channels == 1 {
                let g = to_byte(img.pixels[i]);
                [g, g, g]
            } else {
                [
                    to_byte(img.pixels[i]),
                    to_byte(img.pixels[plane + i]),
                    to_byte(img.pixels[2 * plane + i]),
                ]
            };
            for dy in 0..scale {
                let row = at.1 + y * scale + dy;
                let start = (row * buf_w + at.0 + x * scale) * 3;
                for dx in 0..scale {
                    buf[start + dx * 3..start + dx * 3 + 3].copy_from_slice(&rgb);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temporary directory")
    }

    fn curves() -> Vec<Series> {
        vec![
            Series {
                name: "train loss".into(),
                points: (0..20)
                    .map(|e| (e as f64, 2.3 * (-0.15 * e as f64).exp() + 0.1))
                    .collect(),
                diverged: false,
            },
            Series {
                name: "validation loss".into(),
                points: (0..20)
                    .map(|e| (e as f64, 2.3 * (-0.12 * e as f64).exp() + 0.25))
                    .collect(),
                diverged: false,
            },
            Series {
                name: "lr 1.0".into(),
                points: vec![(0.0, 2.3), (1.0, 1.9), (2.0, 2.8), (3.0, f64::NAN)],
                diverged: true,
            },
        ]
    }

    fn example_cm() -> ConfusionMatrix {
        let names = ["airplane", "automobile", "bird", "cat"];
        let mut cm = ConfusionMatrix::new(names.iter().map(|s| s.to_string()).collect());
        let counts = [
            [812, 20, 40, 3],
            [5, 930, 0, 1],
            [60, 2, 1200, 98],
            [1, 0, 150, 700],
        ];
        for (t, row) in counts.iter().enumerate() {
            for (p, &c) in row.iter().enumerate() {
                for _ in 0..c {
                    cm.add(t, p);
                }
            }
        }
        cm
    }

    fn digits(n: usize) -> Vec<GridImage> {
        (0..n)
            .map(|k| GridImage {
                width: 8,
                height: 6,
                channels: if k % 2 == 0 { 1 } else { 3 },
                pixels: (0..(if k % 2 == 0 { 1 } else { 3 }) * 48)
                    .map(|i| ((i * (k + 1)) % 17) as f32 - 8.0)
                    .collect(),
                caption: Some(format!("true {k} / pred {}", (k + 1) % 10)),
            })
            .collect()
    }

    #[test]
    fn tick_labels_are_short() {
        use chart::tick_label;
        assert_eq!(tick_label(&4.0), "4");
        assert_eq!(tick_label(&-20.0), "-20");
        assert_eq!(tick_label(&0.25), "0.25");
        assert_eq!(tick_label(&(1.0 / 3.0)), "0.3333");
        assert_eq!(tick_label(&2.5e7), "2.5e7");
        assert_eq!(tick_label(&1.5e-4), "1.5e-4");
    }

    #[test]
    fn line_chart_png_has_chart_size() {
        let d = dir();
        let path = d.path().join("loss.png");
        line_chart(&path, "Loss", "epoch", "loss", &curves()).expect("chart");
        let img = image::open(&path).expect("decodes");
        assert_eq!((img.width(), img.height()), (800, 500));
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(d.path()).expect("list").count(), 1);
    }

    #[test]
    fn line_chart_svg_is_svg_with_legend() {
        let d = dir();
        let path = d.path().join("loss.SVG");
        line_chart(&path, "Loss", "epoch", "loss", &curves()).expect("chart");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("<svg"));
        assert!(text.contains("lr 1.0 (diverged)"));
        assert!(text.contains("lr 1.0: diverged in epoch 3"));
        assert!(text.contains("validation loss"));
    }

    #[test]
    fn line_chart_survives_nan_only_and_empty_series() {
        let d = dir();
        let path = d.path().join("nan.png");
        let nan = Series {
            name: "nan".into(),
            points: vec![(0.0, f64::NAN), (f64::INFINITY, 1.0)],
            diverged: true,
        };
        let flat = Series {
            name: "one point".into(),
            points: vec![(3.0, 5.0)],
            diverged: false,
        };
        line_chart(&path, "t", "x", "y", &[nan, flat]).expect("chart");
        line_chart(&path, "t", "x", "y", &[]).expect("empty chart");
        assert!(image::open(&path).is_ok());
    }

    #[test]
    fn bad_path_is_write_error_and_bad_extension_invalid() {
        let d = dir();
        let missing = d.path().join("no/such/dir/loss.png");
        match line_chart(&missing, "t", "x", "y", &curves()) {
            Err(Error::Write { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected Error::Write, got {other:?}"),
        }
        assert!(matches!(
            confusion_heatmap(&d.path().join("no/cm.svg"), &example_cm(), "t"),
            Err(Error::Write { .. })
        ));
        assert!(matches!(
            image_grid(&d.path().join("no/g.png"), &digits(2), 2, 2),
            Err(Error::Write { .. })
        ));
        assert!(matches!(
            line_chart(&d.path().join("loss.jpg"), "t", "x", "y", &curves()),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn heatmap_png_size_follows_classes() {
        let d = dir();
        let path = d.path().join("cm.png");
        let cm = example_cm();
        confusion_heatmap(&path, &cm, "Confusion matrix").expect("heatmap");
        let img = image::open(&path).expect("decodes");
        let expected = heatmap_layout(&cm, "Confusion matrix").size;
        assert_eq!((img.width(), img.height()), expected);
        assert!(img.width() >= 4 * CELL as u32 && img.height() >= 4 * CELL as u32);
        // Four classes with margins, not a poster.
        assert!(img.width() < 4 * CELL as u32 + 250 && img.height() < 4 * CELL as u32 + 250);
    }

    #[test]
    fn heatmap_svg_and_degenerate_matrices() {
        let d = dir();
        let path = d.path().join("cm.svg");
        confusion_heatmap(&path, &example_cm(), "cm").expect("heatmap");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("<svg"));
        let squeezed: String = text.split_whitespace().collect();
        assert!(
            squeezed.contains(">1200<"),
            "counts are written in the cells"
        );
        // All-zero matrix: no division by zero.
        let empty = ConfusionMatrix::new(vec!["a".into(), "b".into()]);
        confusion_heatmap(&d.path().join("zero.png"), &empty, "empty").expect("heatmap");
        assert!(matches!(
            confusion_heatmap(&path, &ConfusionMatrix::new(vec![]), "none"),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn image_grid_png_size() {
        let d = dir();
        let path = d.path().join("grid.png");
        image_grid(&path, &digits(5), 3, 4).expect("grid");
        let img = image::open(&path).expect("decodes");
        // 3 columns, 2 rows; cells as wide as the widest of the image (32 px) and caption.
        let caption_w = digits(5)
            .iter()
            .map(|i| text_size(i.caption.as_deref().unwrap_or(""), CAPTION_PX).0 as usize + 4)
            .max()
            .unwrap_or(0);
        let cell_w = caption_w.max(32);
        let cell_h = 24 + CAPTION_PX as usize + 8;
        assert_eq!(img.width() as usize, GRID_PAD + 3 * (cell_w + GRID_PAD));
        assert_eq!(img.height() as usize, GRID_PAD + 2 * (cell_h + GRID_PAD));
    }

    #[test]
    fn image_grid_normalises_each_image() {
        let d = dir();
        let path = d.path().join("norm.png");
        // 2x1 grayscale image with values -3 and 5: black and white after normalisation.
        let img = GridImage {
            width: 2,
            height: 1,
            channels: 1,
            pixels: vec![-3.0, 5.0],
            caption: None,
        };
        image_grid(&path, &[img], 1, 1).expect("grid");
        let rgb = image::open(&path).expect("decodes").to_rgb8();
        assert_eq!(
            rgb.dimensions(),
            (2 + 2 * GRID_PAD as u32, 1 + 2 * GRID_PAD as u32)
        );
        let p = GRID_PAD as u32;
        assert_eq!(rgb.get_pixel(p, p).0, [0, 0, 0]);
        assert_eq!(rgb.get_pixel(p + 1, p).0, [255, 255, 255]);
    }

    #[test]
    fn image_grid_on_scale_draws_pixels_as_they_are() {
        let d = dir();
        let path = d.path().join("raw.png");
        // One RGB pixel (135, 127, 156): stretched, it would be lost to min-max.
        let img = GridImage {
            width: 1,
            height: 1,
            channels: 3,
            pixels: vec![135.0, 127.0, 156.0],
            caption: None,
        };
        image_grid_on_scale(&path, std::slice::from_ref(&img), 1, 1, (0.0, 255.0)).unwrap();
        let rgb = image::open(&path).unwrap().to_rgb8();
        let p = GRID_PAD as u32;
        assert_eq!(rgb.get_pixel(p, p).0, [135, 127, 156]);
        assert!(image_grid_on_scale(&path, &[img], 1, 1, (1.0, 1.0)).is_err());
    }

    #[test]
    fn a_range_caption_gives_min_and_max_to_three_digits() {
        assert_eq!(
            range_caption(&[-0.31234, 0.0, 0.4219]),
            "min -0.312, max 0.422"
        );
        assert_eq!(range_caption(&[0.0, 12.345, f32::NAN]), "min 0, max 12.3");
        assert_eq!(range_caption(&[1234.6, 0.5]), "min 0.5, max 1235");
        assert_eq!(range_caption(&[1.5e-5, 2.0]), "min 1.50e-5, max 2");
        assert_eq!(range_caption(&[f32::NAN]), "no finite value");
    }

    #[test]
    fn image_grid_rejects_bad_images() {
        let d = dir();
        let path = d.path().join("bad.png");
        let mut wrong_len = digits(1);
        wrong_len[0].pixels.pop();
        for (images, cols, scale) in [
            (wrong_len, 1, 1),
            (Vec::new(), 1, 1),
            (digits(1), 0, 1),
            (digits(1), 1, 0),
        ] {
            assert!(matches!(
                image_grid(&path, &images, cols, scale),
                Err(Error::Invalid(_))
            ));
        }
        assert!(matches!(
            image_grid(&d.path().join("g.svg"), &digits(1), 1, 1),
            Err(Error::Invalid(_))
        ));
        assert!(!path.exists());
    }

    /// Writes sample pictures to `$CNN_PLOT_SAMPLES` (default `/tmp/cnn-plot-samples`) for a
    /// person to look at: `cargo test --release -- --ignored plot_samples`.
    #[test]
    #[ignore]
    fn plot_samples() {
        let out = std::env::var_os("CNN_PLOT_SAMPLES")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/cnn-plot-samples"));
        std::fs::create_dir_all(&out).expect("create sample folder");
        line_chart(
            &out.join("loss.png"),
            "Training loss",
            "epoch",
            "cross-entropy loss",
            &curves(),
        )
        .expect("chart");
        line_chart(
            &out.join("loss.svg"),
            "Training loss",
            "epoch",
            "cross-entropy loss",
            &curves(),
        )
        .expect("chart");
        let exploding = Series {
            name: "lr 10".into(),
            points: vec![(0.0, 2.3), (1.0, 40.0), (2.0, 9.0e5), (3.0, f64::INFINITY)],
            diverged: true,
        };
        line_chart(
            &out.join("loss_big.png"),
            "Exploding loss",
            "epoch",
            "loss",
            &[curves()[0].clone(), exploding],
        )
        .expect("chart");
        confusion_heatmap(
            &out.join("cm.png"),
            &example_cm(),
            "CIFAR-10 (4 classes) confusion",
        )
        .expect("heatmap");
        confusion_heatmap(
            &out.join("cm.svg"),
            &example_cm(),
            "CIFAR-10 (4 classes) confusion",
        )
        .expect("heatmap");
        let mut digits_cm = ConfusionMatrix::new((0..10).map(|d| d.to_string()).collect());
        for t in 0..10 {
            for p in 0..10 {
                let c = if t == p {
                    950 + t * 3
                } else {
                    (t * 7 + p * 3) % 13
                };
                for _ in 0..c {
                    digits_cm.add(t, p);
                }
            }
        }
        confusion_heatmap(&out.join("cm10.png"), &digits_cm, "MNIST test set").expect("heatmap");
        image_grid(&out.join("grid.png"), &digits(7), 4, 4).expect("grid");
        // Curves in every corner: the legend goes beside the plot.
        let zigzag = |phase: f64| -> Vec<(f64, f64)> {
            (1..=30)
                .map(|e| (f64::from(e), ((f64::from(e) + phase) * 0.9).sin()))
                .collect()
        };
        let busy: Vec<Series> = (0..3)
            .map(|k| Series {
                name: format!("oscillating run {k}"),
                points: zigzag(f64::from(k)),
                diverged: false,
            })
            .collect();
        line_chart(&out.join("busy.png"), "Busy", "epoch", "value", &busy).expect("chart");
        // A run that climbs for two epochs, then diverges in the third.
        let climbing = Series {
            name: "lr 0.5".into(),
            points: vec![(1.0, 0.7), (2.0, 1.4), (3.0, f64::NAN)],
            diverged: true,
        };
        line_chart(
            &out.join("diverging.png"),
            "Diverging after two epochs",
            "epoch",
            "loss",
            &[
                Series {
                    name: "lr 0.01".into(),
                    points: vec![(1.0, 0.6), (2.0, 0.4), (3.0, 0.3), (4.0, 0.25)],
                    diverged: false,
                },
                climbing,
            ],
        )
        .expect("chart");
    }
}
