//! Text on bitmaps, laid out glyph by glyph.
//!
//! plotters 0.3.7 draws bitmap text through ab_glyph, and misplaces the glyphs in two ways
//! (`plotters/src/style/font/ab_glyph.rs`, `FontDataInternal::draw`):
//! - it rasterises every glyph at position (0, 0) and adds the pen position truncated to whole
//!   pixels, so the pen's fraction is lost at every glyph;
//! - the rasteriser's pixel coordinates are relative to the outline's pixel bounds, whose left
//!   edge is `floor(left side bearing)`, and plotters adds them to the pen without that edge,
//!   so each glyph is drawn a whole pixel too far left whenever its bearing is a pixel or more.
//!
//! At 13 px, "n", "r" and "1" in DejaVu Sans have bearings just over a pixel and "d", "o" and
//! "0" just under: the glyph before the gap is pulled left and the one after is not, and the
//! captions read "San dal", "Tr ouser" and "lr1 000". Widths were right (advances and kerning
//! are summed correctly), only the ink was misplaced.
//!
//! [`Bitmap`] wraps plotters' bitmap backend and draws text itself: the pen moves by each
//! glyph's advance plus the pair's kerning, each glyph is rasterised at its exact sub-pixel pen
//! position, and its coverage is written at its own pixel bounds.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, Glyph, PxScale, ScaleFont};
use plotters::backend::{BitMapBackend, RGBPixel};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};

/// The embedded font file (DejaVu Sans, Bitstream Vera licence).
pub(super) static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The embedded font, parsed once.
fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| {
        FontRef::try_from_slice(DEJAVU_SANS)
            .expect("the embedded DejaVuSans.ttf is a valid TrueType font")
    })
}

/// One line of text, laid out: glyphs positioned on a baseline `ascent` pixels below the top of
/// the line, and the line's size.
pub(super) struct Line {
    pub glyphs: Vec<Glyph>,
    /// Sum of the advances and kerning, in pixels.
    pub width: f32,
    /// Ascent minus descent: the height of the line's box, in pixels.
    pub height: f32,
}

/// Lays `text` out at `px` pixels (the font's ascent minus descent, as ab_glyph and plotters
/// measure size), starting at x = 0 with the top of the line at y = 0.
///
/// The pen starts at 0; each glyph sits at the pen, and the pen then moves by the glyph's
/// advance, plus the kerning of the next pair: `x[i+1] = x[i] + advance[i] + kern(i, i+1)`.
pub(super) fn layout(text: &str, px: f32) -> Line {
    let font = font().as_scaled(PxScale::from(px));
    let ascent = font.ascent();
    let mut pen = 0.0f32;
    let mut prev = None;
    let mut glyphs = Vec::with_capacity(text.len());
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(p) = prev {
            pen += font.kern(p, id);
        }
        glyphs.push(id.with_scale_and_position(px, point(pen, ascent)));
        pen += font.h_advance(id);
        prev = Some(id);
    }
    Line {
        glyphs,
        width: pen,
        height: ascent - font.descent(),
    }
}

/// Width and height in whole pixels of `text` at `px` pixels.
pub(super) fn text_size(text: &str, px: f64) -> (u32, u32) {
    let line = layout(text, px as f32);
    (line.width.ceil() as u32, line.height.ceil() as u32)
}

/// Calls `put(x, y, coverage)` for every pixel the glyphs of `line` cover, in the line's own
/// coordinates (top-left of the line box at 0, 0). Coverage is in 0..=1.
pub(super) fn rasterize(line: &Line, mut put: impl FnMut(i32, i32, f32)) {
    let font = font();
    for glyph in &line.glyphs {
        if let Some(outline) = font.outline_glyph(glyph.clone()) {
            let at = outline.px_bounds().min;
            outline.draw(|x, y, c| put(at.x as i32 + x as i32, at.y as i32 + y as i32, c.min(1.0)));
        }
    }
}

/// plotters' bitmap backend with text drawn by [`layout`] and [`rasterize`]; everything else is
/// passed through. Every text uses the embedded font, whatever family a style names.
pub(super) struct Bitmap<'a> {
    inner: BitMapBackend<'a, RGBPixel>,
}

impl<'a> Bitmap<'a> {
    pub fn new(inner: BitMapBackend<'a, RGBPixel>) -> Self {
        Self { inner }
    }
}

type DrawResult<E> = Result<(), DrawingErrorKind<E>>;

impl DrawingBackend for Bitmap<'_> {
    type ErrorType = <BitMapBackend<'static, RGBPixel> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> DrawResult<Self::ErrorType> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> DrawResult<Self::ErrorType> {
        self.inner.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> DrawResult<Self::ErrorType> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> DrawResult<Self::ErrorType> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> DrawResult<Self::ErrorType> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> DrawResult<Self::ErrorType> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> DrawResult<Self::ErrorType> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> DrawResult<Self::ErrorType> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> DrawResult<Self::ErrorType> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<TStyle: BackendTextStyle>(
        &self,
        text: &str,
        style: &TStyle,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        Ok(text_size(text, style.size()))
    }

    /// Draws `text` with its anchor (`style.anchor()`) at `pos`, turned by `style.transform()`
    /// about the anchor, as plotters does. The box the anchor refers to is the advance width by
    /// the ascent-to-descent height.
    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> DrawResult<Self::ErrorType> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let line = layout(text, style.size() as f32);
        let (w, h) = (line.width.round() as i32, line.height.round() as i32);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Center => -w / 2,
            HPos::Right => -w,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -h / 2,
            VPos::Bottom => -h,
        };
        let turn = style.transform();
        let mut result = Ok(());
        rasterize(&line, |x, y, c| {
            if result.is_err() || c <= 0.0 {
                return;
            }
            let (x, y) = turn.transform(x + dx, y + dy);
            let ink = BackendColor {
                alpha: color.alpha * f64::from(c),
                rgb: color.rgb,
            };
            result = self.inner.draw_pixel((pos.0 + x, pos.1 + y), ink);
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Canvas of the test renderings: wide enough for every test word, text drawn at (4, 4).
    const CANVAS: (usize, usize) = (200, 30);

    /// Renders `text` black on white at `px` pixels with its top-left corner at (4, 4); returns
    /// the grey level of every pixel of the [`CANVAS`], row by row.
    fn render(text: &str, px: f64) -> Vec<u8> {
        let (w, h) = CANVAS;
        let mut buf = vec![255u8; w * h * 3];
        {
            let mut backend = Bitmap::new(
                BitMapBackend::<RGBPixel>::with_buffer_and_format(&mut buf, (w as u32, h as u32))
                    .expect("buffer of the right size"),
            );
            let style = plotters::style::TextStyle::from(("sans-serif", px));
            backend.draw_text(text, &style, (4, 4)).expect("draws");
            backend.present().expect("presents");
        }
        buf.chunks(3).map(|p| p[0]).collect()
    }

    /// For each character of `text`, the first and last column it put ink in: the columns that
    /// the prefix ending with it darkened over the prefix before it.
    fn glyph_ink_spans(text: &str, px: f64) -> Vec<(usize, usize)> {
        let (w, h) = CANVAS;
        let chars: Vec<char> = text.chars().collect();
        let mut before = vec![255u8; w * h];
        let mut spans = Vec::new();
        for k in 0..chars.len() {
            let now = render(&chars[..=k].iter().collect::<String>(), px);
            let cols: Vec<usize> = (0..w)
                .filter(|&x| (0..h).any(|y| now[y * w + x] < before[y * w + x]))
                .collect();
            assert!(!cols.is_empty(), "{:?} drew nothing", chars[k]);
            spans.push((cols[0], cols[cols.len() - 1]));
            before = now;
        }
        spans
    }

    /// For each character of `text`, where the font puts its ink, in pixels from the start of
    /// the line: the pen (the sum of the advances and kerning before it) plus the outline's
    /// left and right edges. Computed from the font's metrics alone, not from [`layout`].
    fn font_ink_spans(text: &str, px: f32) -> Vec<(f32, f32)> {
        let f = font().as_scaled(PxScale::from(px));
        let sx = f.h_scale_factor();
        let mut pen = 0.0;
        let mut prev = None;
        let mut spans = Vec::new();
        for c in text.chars() {
            let id = f.glyph_id(c);
            if let Some(p) = prev {
                pen += f.kern(p, id);
            }
            let bounds = f.font().outline(id).expect("a visible glyph").bounds;
            spans.push((pen + bounds.min.x * sx, pen + bounds.max.x * sx));
            pen += f.h_advance(id);
            prev = Some(id);
        }
        spans
    }

    const WORDS: [&str; 7] = [
        "Sandal",
        "Trouser",
        "lr1000",
        "Pullover",
        "Sneaker",
        "T-shirt/top",
        "Ankle-boot",
    ];

    #[test]
    fn layout_width_is_the_sum_of_advances_and_kerning() {
        let px = 13.0;
        let f = font().as_scaled(PxScale::from(px));
        let text = "Trouser";
        let ids: Vec<_> = text.chars().map(|c| f.glyph_id(c)).collect();
        let expected: f32 = ids.iter().map(|&id| f.h_advance(id)).sum::<f32>()
            + ids.windows(2).map(|p| f.kern(p[0], p[1])).sum::<f32>();
        let line = layout(text, px);
        assert!((line.width - expected).abs() < 1e-3);
        assert_eq!(line.glyphs.len(), 7);
        assert_eq!(text_size(text, 13.0).0, expected.ceil() as u32);
    }

    /// plotters drew "n", "r" and "1" a pixel or more left of where the font puts them, which
    /// opened the gaps of "San dal", "Tr ouser" and "lr1 000". Each glyph's ink must start and
    /// end within a pixel of where the advances, kerning and outline say.
    #[test]
    fn every_glyph_is_drawn_where_the_font_metrics_put_it() {
        for px in [11.0, 13.0, 15.0, 17.0] {
            for word in WORDS {
                let drawn = glyph_ink_spans(word, px);
                let want = font_ink_spans(word, px as f32);
                for (k, (c, (&(lo, hi), &(wlo, whi)))) in
                    word.chars().zip(drawn.iter().zip(&want)).enumerate()
                {
                    // Column x covers [x, x + 1); the text starts at column 4.
                    let (lo, hi) = (lo as f32 - 4.0, hi as f32 + 1.0 - 4.0);
                    assert!(
                        (lo - wlo).abs() <= 1.0 && (hi - whi).abs() <= 1.0,
                        "{word:?} at {px} px, glyph {k} {c:?}: ink over {lo}..{hi}, the font \
                         says {wlo:.2}..{whi:.2}"
                    );
                }
            }
        }
    }

    /// The blank columns between two neighbouring glyphs are no more than the space the font
    /// leaves between their outlines (right bearing + kerning + left bearing), rounded up.
    #[test]
    fn words_have_no_gap_wider_than_the_font_leaves() {
        for px in [11.0, 13.0, 15.0, 17.0] {
            for word in WORDS {
                let drawn = glyph_ink_spans(word, px);
                let want = font_ink_spans(word, px as f32);
                for k in 0..drawn.len() - 1 {
                    let blank = drawn[k + 1].0.saturating_sub(drawn[k].1 + 1);
                    let font_gap = want[k + 1].0 - want[k].1;
                    assert!(
                        blank as f32 <= font_gap.max(0.0).ceil(),
                        "{word:?} at {px} px: {blank} blank columns after glyph {k}, the font \
                         leaves {font_gap:.2} px"
                    );
                }
            }
        }
    }

    #[test]
    fn text_is_drawn_inside_its_estimated_box() {
        let text = "Ankle boot → Sneaker";
        let (w, h) = CANVAS;
        let grey = render(text, 13.0);
        let (tw, th) = text_size(text, 13.0);
        let mut ink = 0;
        for y in 0..h {
            for x in 0..w {
                if grey[y * w + x] < 250 {
                    ink += 1;
                    assert!(
                        (3..=4 + tw as usize).contains(&x) && (3..=4 + th as usize).contains(&y),
                        "ink at ({x}, {y}) outside the {tw}x{th} box at (4, 4)"
                    );
                }
            }
        }
        assert!(ink > 100, "the text was drawn");
    }
}
