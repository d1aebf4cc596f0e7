//! The text config format of report 1 (section IV.B): a network described one layer a line.
//!
//! ```text
//! # Report 1's network: two classes (0s and 1s) from 28x28 grey images.
//! 5
//! Input shape=1x28x28
//! Conv2D filters=16 kernel=3x3 stride=1
//!  padding=same activation=relu
//! MaxPool2D pool=2x2 stride=2
//! Dense units=128 activation=relu
//! Dense units=2 activation=softmax
//! ```
//!
//! # Lines
//!
//! - The first non-blank, non-comment line is the **number of layers**. Both report 1's
//!   count (which includes the Flatten implied before a Dense that follows a spatial layer:
//!   5 above) and the count of layer lines (4 above) are accepted.
//! - Then `Input shape=CxHxW`, the shape of one sample (channels x height x width).
//! - Then one layer per line: `Name key=value key=value ...`. No spaces around `=`.
//! - A line starting with white space **continues** the line above (report 1's printed
//!   example wraps the Conv2D line this way).
//! - Blank lines are ignored; `#` starts a comment, on its own line or after a layer.
//! - Layer names are case-insensitive; keys are exact (lower case).
//! - `Train ...` and `Augment ...` lines hold training settings, not layers: they may stand
//!   anywhere after the layer count, once each, and are not counted in it. The parser checks
//!   their keys (the run options', [`crate::run::settings::line_keys`]) and keeps them in
//!   [`ParsedConfig::settings`];
//!   [`crate::run::settings`] reads their values, so that loading a model file never does.
//!
//! # Layers and keys
//!
//! The layer names and the keys each takes are those of the kinds listed in
//! [`crate::layers`] ([`LayerSpec::line_names`]); each kind's config struct documents its
//! keys and their defaults (a required key is marked so), and docs/GUIDE.md lists them all.
//! An unknown key is refused with the keys the line takes.
//!
//! Values:
//! - `kernel` and `pool`: `3x3` or `3` (square).
//! - `padding`: `valid` (none), `same` (output size ceil(H / S), as in Keras) or a whole
//!   number P of zeros on every side.
//! - `activation`: `relu`, `leaky_relu`, `sigmoid`, `tanh`, `softmax`, `none` or `linear`;
//!   with `leaky_relu`, `alpha=` sets the negative slope (default 0.01, from 0 to 1).
//!
//! A `Dense` layer reads its input flattened in (C, H, W) order, so `Flatten` may be left
//! out, as report 1 does. An implied Flatten is **not** added to [`NetworkSpec::layers`]:
//! there is exactly one entry per layer line, in order, and model tensors are named
//! `layers.{i}.weight` by that index.
//!
//! # Errors
//!
//! Every mistake is an [`Error::Config`] with the 1-based line and column of the offending
//! token and a message saying what was expected. Sizes are capped (see [`MAX_UNITS`],
//! [`MAX_DIM`], [`MAX_SAMPLE_VALUES`], [`MAX_PARAMS`], [`MAX_TRAIN_FLOPS`]) so that a typo
//! cannot ask for an absurd allocation later.

use std::path::Path;

use crate::error::{Error, Result};
use crate::layers::keys::{example, parse_dims, parse_whole, Arg, LineKeys};
pub use crate::layers::keys::{Pos, MAX_DIM, MAX_UNITS};
use crate::layers::{LayerSpec, NetworkSpec};
pub(crate) use crate::text::{did_you_mean, fmt_shape, thousands};
/// Largest number of values one sample may have at any layer's input or output.
pub const MAX_SAMPLE_VALUES: u128 = 100_000_000;
/// Largest total number of trainable parameters.
pub const MAX_PARAMS: u128 = 1_000_000_000;
/// Largest number of training FLOPs per sample (keeps every count well inside `u64`).
pub const MAX_TRAIN_FLOPS: u128 = 1_000_000_000_000_000_000;

/// Where one `key=value` of a layer was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLoc {
    pub key: String,
    /// The first character of the key.
    pub key_pos: Pos,
    /// The first character after `=`.
    pub value_pos: Pos,
}

/// Where a layer (or the Input line) was written: its name and its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerLoc {
    /// The first character of the layer's name.
    pub name: Pos,
    pub keys: Vec<KeyLoc>,
}

impl LayerLoc {
    /// Position of the value of `key`, if the layer has it.
    pub fn value_pos(&self, key: &str) -> Option<Pos> {
        self.keys.iter().find(|k| k.key == key).map(|k| k.value_pos)
    }
}

/// A parsed config: the network, and where everything was written for later errors.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedConfig {
    pub spec: NetworkSpec,
    /// The file name used in error messages.
    pub file: String,
    /// The config's text, as read.
    pub text: String,
    /// Position of the layer count.
    pub count: Pos,
    /// Position of the `Input` line.
    pub input: LayerLoc,
    /// One entry per entry of `spec.layers`.
    pub layers: Vec<LayerLoc>,
    /// The `Train` and `Augment` lines, in file order, their values unread: what they mean
    /// is [`crate::run::settings`]'s business, so that a model file whose config has them
    /// loads without reading them.
    pub settings: Vec<SettingsLine>,
}

/// The names of the lines that hold training settings rather than layers. They may stand
/// anywhere after the layer count, at most once each, and are not counted in it. The keys each
/// takes are the run options' ([`crate::run::settings::line_keys`]).
pub const SETTINGS_LINES: &[&str] = &["Train", "Augment"];

/// One `key=value` of a settings line, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsArg {
    pub key: String,
    pub key_pos: Pos,
    pub value: String,
    pub value_pos: Pos,
}

/// A `Train` or `Augment` line: its name as in [`SETTINGS_LINES`], where it was written, and
/// its keys (known to the line and not repeated: the parser checked that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsLine {
    pub name: &'static str,
    pub name_pos: Pos,
    pub args: Vec<SettingsArg>,
}

impl SettingsLine {
    /// The line's keys, borrowed, for a [`LineKeys`] reader.
    pub fn args(&self) -> Vec<Arg<'_>> {
        self.args
            .iter()
            .map(|a| Arg {
                key: &a.key,
                key_pos: a.key_pos,
                value: &a.value,
                value_pos: a.value_pos,
            })
            .collect()
    }
}

/// Reads and parses a config file. A file that cannot be read is an [`Error::Io`].
pub fn load(path: &Path) -> Result<ParsedConfig> {
    let (text, file) = read(path)?;
    parse(&text, &file)
}

/// The text of the config `path` names and the name that stands for it in messages: the
/// file's, or, when no file of that name exists and it is a bare name (`report1-10`, with or
/// without `.cfg`), a built-in example's ([`crate::examples`]).
///
/// # Errors
/// [`Error::Io`] for a file that cannot be read; [`Error::Data`] for a bare name that is
/// neither a file nor a built-in example (listing them), and for a file that is not UTF-8
/// text, saying what it is when it is a model file.
pub fn read(path: &Path) -> Result<(String, String)> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.components().count() == 1 => {
            if let Some(example) = crate::examples::named_by(path) {
                return Ok((example.text.to_string(), example.display_name()));
            }
            // A bare name that is neither: perhaps a mistyped example's.
            return Err(Error::Data {
                file: path.into(),
                msg: format!(
                    "no such file, nor a built-in example ({}; `cnn examples` lists them)",
                    crate::examples::names()
                ),
            });
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    match String::from_utf8(bytes) {
        Ok(text) => Ok((text, path.display().to_string())),
        Err(e) => Err(Error::Data {
            file: path.into(),
            msg: not_a_config(path, e.as_bytes(), e.utf8_error().valid_up_to()),
        }),
    }
}

/// Why the bytes of `path`, not UTF-8 from byte `valid_up_to` on, are no config: what they
/// are, when they are a model or an ONNX file, and what to do with one.
fn not_a_config(path: &Path, bytes: &[u8], valid_up_to: usize) -> String {
    let p = path.display();
    // safetensors: an 8-byte little-endian header length, then the JSON header.
    let safetensors = bytes.len() >= 9
        && bytes[8] == b'{'
        && u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) < bytes.len() as u64;
    if safetensors {
        format!(
            "is a model file (safetensors), not a network config; to train from its \
             weights, give its network and --init: `cnn train CONFIG --init {p}` (`cnn \
             summary {p}` shows the network stored in it)"
        )
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        format!(
            "is an ONNX file, not a network config; `cnn import {p} model.safetensors` reads it \
             into a model file"
        )
    } else {
        format!(
            "is not a network config: not UTF-8 text (invalid byte at offset {valid_up_to}); a \
             config is a text file, one layer a line (see `cnn examples`)"
        )
    }
}

/// Parses a config's text; `file` names it in error messages.
pub fn parse(text: &str, file: &str) -> Result<ParsedConfig> {
    Parser { file }.parse(text)
}

impl ParsedConfig {
    /// A config error at `pos` of this file.
    pub fn error_at(&self, pos: Pos, msg: impl Into<String>) -> Error {
        config_error(&self.file, pos, msg.into())
    }

    /// A config error at the name of layer `index` (the Input line if there is no such layer).
    pub fn layer_error(&self, index: usize, msg: impl Into<String>) -> Error {
        let pos = self.layers.get(index).unwrap_or(&self.input).name;
        self.error_at(pos, msg)
    }

    /// Checks that the network ends with one output per class: the output layer's units must
    /// equal the dataset's number of classes. The error points at the last Dense's `units`.
    pub fn check_classes(&self, classes: usize) -> Result<()> {
        if classes == 0 {
            return Err(Error::Invalid("the dataset has no classes".into()));
        }
        let out = self.spec.output_shape()?;
        if out == [classes] {
            return Ok(());
        }
        // The last layer that sets an output size (a Dense's `units`), if the network's
        // output is that size.
        let sizing = self
            .spec
            .layers
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, l)| l.output_key().map(|(key, n)| (i, key, n)));
        if let (Some((i, key, n)), [out_n]) = (sizing, out.as_slice()) {
            if n == *out_n {
                let loc = &self.layers[i];
                let pos = loc.value_pos(key).unwrap_or(loc.name);
                return Err(self.error_at(
                    pos,
                    format!(
                        "the output layer has {key}={n} but the dataset has {classes} \
                         classes; set {key}={classes}"
                    ),
                ));
            }
        }
        Err(self.layer_error(
            self.layers.len().saturating_sub(1),
            format!(
                "the network outputs {} but the dataset has {classes} classes; end the \
                 network with `Dense units={classes} activation=softmax`",
                fmt_shape(&out)
            ),
        ))
    }
}

fn config_error(file: &str, pos: Pos, msg: String) -> Error {
    Error::Config {
        file: file.to_string(),
        line: pos.line,
        col: pos.col,
        msg,
    }
}

/// One white-space separated word of a line.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    pos: Pos,
}

/// A non-blank line with its comment removed.
struct Line<'a> {
    tokens: Vec<Token<'a>>,
    indented: bool,
}

fn lex(text: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let content = match raw.find('#') {
            Some(b) => raw.get(..b).unwrap_or(""),
            None => raw,
        };
        let mut tokens = Vec::new();
        let mut start: Option<(usize, usize)> = None;
        let mut col = 0;
        for (b, ch) in content.char_indices() {
            col += 1;
            if ch.is_whitespace() {
                if let Some((sb, sc)) = start.take() {
                    tokens.push(Token {
                        text: content.get(sb..b).unwrap_or(""),
                        pos: Pos {
                            line: i + 1,
                            col: sc,
                        },
                    });
                }
            } else if start.is_none() {
                start = Some((b, col));
            }
        }
        if let Some((sb, sc)) = start {
            tokens.push(Token {
                text: content.get(sb..).unwrap_or(""),
                pos: Pos {
                    line: i + 1,
                    col: sc,
                },
            });
        }
        if !tokens.is_empty() {
            lines.push(Line {
                tokens,
                indented: content.starts_with(char::is_whitespace),
            });
        }
    }
    lines
}

/// A layer line with its continuation lines joined.
struct Logical<'a> {
    name: Token<'a>,
    args: Vec<Token<'a>>,
}

/// Every layer name a line may start with (`Input` first), with the keys each takes.
fn line_names() -> Vec<(&'static str, &'static [&'static str])> {
    let mut names: Vec<(&'static str, &'static [&'static str])> = vec![("Input", &["shape"])];
    names.extend(LayerSpec::line_names());
    names
}

struct Parser<'f> {
    file: &'f str,
}

impl Parser<'_> {
    fn err(&self, pos: Pos, msg: impl Into<String>) -> Error {
        config_error(self.file, pos, msg.into())
    }

    fn parse(&self, text: &str) -> Result<ParsedConfig> {
        let lines = lex(text);
        let mut iter = lines.into_iter();
        let Some(first) = iter.next() else {
            return Err(self.err(
                Pos { line: 1, col: 1 },
                "missing layer count: the file has no layers; expected the number of layers \
                 first (e.g. `4`), then `Input shape=CxHxW`, then one layer per line",
            ));
        };
        let (count, count_pos) = self.count_line(&first)?;

        // Join continuation lines onto the line above.
        let mut logical: Vec<Logical> = Vec::new();
        for line in iter {
            let mut tokens = line.tokens.into_iter();
            if line.indented {
                match logical.last_mut() {
                    Some(l) => l.args.extend(tokens),
                    None => {
                        let pos = tokens.next().map_or(count_pos, |t| t.pos);
                        return Err(self.err(
                            pos,
                            "this line starts with white space, so it would continue the \
                             line above, but the line above is the layer count; remove the \
                             leading white space",
                        ));
                    }
                }
            } else if let Some(name) = tokens.next() {
                logical.push(Logical {
                    name,
                    args: tokens.collect(),
                });
            }
        }

        // The settings lines, wherever they are, leave the layer lines in order.
        let mut settings: Vec<SettingsLine> = Vec::new();
        let mut layer_lines = Vec::new();
        for l in logical {
            match SETTINGS_LINES
                .iter()
                .find(|n| n.eq_ignore_ascii_case(l.name.text))
            {
                Some(name) => {
                    let allowed = crate::run::settings::line_keys(name);
                    settings.push(self.settings_line(name, &allowed, &l, &settings)?)
                }
                None => layer_lines.push(l),
            }
        }

        let mut logical = layer_lines.into_iter();
        let Some(input_line) = logical.next() else {
            return Err(self.err(
                count_pos,
                "missing Input line: the file ends after the layer count; expected \
                 `Input shape=CxHxW` (e.g. `Input shape=1x28x28`) next",
            ));
        };
        if !input_line.name.text.eq_ignore_ascii_case("input") {
            return Err(self.err(
                input_line.name.pos,
                format!(
                    "missing Input line: expected `Input shape=CxHxW` (e.g. \
                     `Input shape=1x28x28`) after the layer count, found `{}`",
                    input_line.name.text
                ),
            ));
        }
        let (input, input_loc) = self.input_line(&input_line)?;

        let mut layers = Vec::new();
        let mut locs = Vec::new();
        for l in logical {
            let (layer, loc) = self.layer_line(&l)?;
            layers.push(layer);
            locs.push(loc);
        }

        self.check_reads(text, &layers, &locs)?;
        self.check_count(count, count_pos, &layers, &locs)?;
        let spec = NetworkSpec { input, layers };
        self.check_shapes(&spec, &locs)?;
        Ok(ParsedConfig {
            spec,
            file: self.file.to_string(),
            text: text.to_string(),
            count: count_pos,
            input: input_loc,
            layers: locs,
            settings,
        })
    }

    /// A `Train` or `Augment` line: its keys checked against `allowed`, refused if `seen`
    /// has a line of that name already.
    fn settings_line(
        &self,
        name: &'static str,
        allowed: &[&str],
        l: &Logical,
        seen: &[SettingsLine],
    ) -> Result<SettingsLine> {
        if let Some(first) = seen.iter().find(|s| s.name == name) {
            return Err(self.err(
                l.name.pos,
                format!(
                    "a second {name} line (the first is on line {}); put every {name} setting \
                     on one line, continued on lines that start with white space if long",
                    first.name_pos.line
                ),
            ));
        }
        let args = self.args(name, allowed, &l.args)?;
        Ok(SettingsLine {
            name,
            name_pos: l.name.pos,
            args: args
                .iter()
                .map(|a| SettingsArg {
                    key: a.key.to_string(),
                    key_pos: a.key_pos,
                    value: a.value.to_string(),
                    value_pos: a.value_pos,
                })
                .collect(),
        })
    }

    fn count_line(&self, line: &Line) -> Result<(usize, Pos)> {
        let Some(tok) = line.tokens.first() else {
            return Err(self.err(Pos { line: 1, col: 1 }, "missing layer count"));
        };
        let looks_like_layer = tok.text.contains('=')
            || line_names()
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(tok.text));
        let count = match parse_whole(tok.text) {
            Some(n) => n,
            None if looks_like_layer => {
                return Err(self.err(
                    tok.pos,
                    format!(
                        "missing layer count: the first line must be the number of layers \
                         (e.g. `4`), found `{}`",
                        tok.text
                    ),
                ))
            }
            None => {
                return Err(self.err(
                    tok.pos,
                    format!(
                        "the layer count must be a whole number (e.g. `4`), found `{}`",
                        tok.text
                    ),
                ))
            }
        };
        if let Some(extra) = line.tokens.get(1) {
            return Err(self.err(
                extra.pos,
                format!(
                    "unexpected `{}` after the layer count; the first line holds only the \
                     number of layers",
                    extra.text
                ),
            ));
        }
        Ok((count, tok.pos))
    }

    /// Splits a layer's arguments into `key=value` pairs, rejecting unknown and repeated keys.
    fn args<'a>(&self, layer: &str, allowed: &[&str], args: &[Token<'a>]) -> Result<Vec<Arg<'a>>> {
        let takes = if allowed.is_empty() {
            format!("{layer} takes no keys")
        } else {
            format!("{layer} takes {}", allowed.join(", "))
        };
        let mut out: Vec<Arg> = Vec::new();
        for (i, tok) in args.iter().enumerate() {
            let Some((key, value)) = tok.text.split_once('=') else {
                let next_is_eq = args.get(i + 1).is_some_and(|t| t.text.starts_with('='));
                let msg = if next_is_eq && allowed.contains(&tok.text) {
                    format!(
                        "write `{0}=VALUE` without spaces around `=` (found `{0}` then `{1}`)",
                        tok.text,
                        args.get(i + 1).map_or("", |t| t.text)
                    )
                } else {
                    format!(
                        "expected `key=value`, found `{}` with no `=`; {takes}",
                        tok.text
                    )
                };
                return Err(self.err(tok.pos, msg));
            };
            if key.is_empty() {
                return Err(self.err(
                    tok.pos,
                    format!(
                        "`{}` has no key before `=` (no spaces around `=`); {takes}",
                        tok.text
                    ),
                ));
            }
            if !allowed.contains(&key) {
                return Err(self.err(
                    tok.pos,
                    format!(
                        "unknown key `{key}` for {layer}{}; {takes}",
                        did_you_mean(key, allowed)
                    ),
                ));
            }
            let value_pos = Pos {
                line: tok.pos.line,
                col: tok.pos.col + key.chars().count() + 1,
            };
            if value.is_empty() {
                return Err(self.err(
                    value_pos,
                    format!(
                        "`{key}=` has no value (no spaces after `=`); e.g. {}",
                        example(key)
                    ),
                ));
            }
            if let Some(prev) = out.iter().find(|a| a.key == key) {
                return Err(self.err(
                    tok.pos,
                    format!(
                        "duplicate key `{key}` ({layer} already has `{key}={}` at column {})",
                        prev.value, prev.key_pos.col
                    ),
                ));
            }
            out.push(Arg {
                key,
                key_pos: tok.pos,
                value,
                value_pos,
            });
        }
        Ok(out)
    }

    fn input_line(&self, l: &Logical) -> Result<([usize; 3], LayerLoc)> {
        let args = self.args("Input", &["shape"], &l.args)?;
        let keys = self.keys(l, &args);
        let shape = keys.required("shape")?;
        let input = match parse_dims(shape.value).as_deref() {
            Some([c, h, w]) => [*c, *h, *w],
            _ => {
                return Err(self.err(
                    shape.value_pos,
                    format!(
                        "`shape` must be CxHxW, channels x height x width (e.g. `1x28x28` or \
                         `3x64x64`, each from 1 to {}), found `{}`",
                        thousands(MAX_DIM as u128),
                        shape.value
                    ),
                ))
            }
        };
        let values: u128 = input.iter().map(|&d| d as u128).product();
        if values > MAX_SAMPLE_VALUES {
            return Err(self.err(
                shape.value_pos,
                format!(
                    "an input of {} has {} values per sample, more than the limit of {}",
                    shape.value,
                    thousands(values),
                    thousands(MAX_SAMPLE_VALUES)
                ),
            ));
        }
        Ok((input, loc_of(&l.name, &args)))
    }

    /// The keys of line `l`, for a layer's parser.
    fn keys<'a>(&'a self, l: &'a Logical, args: &'a [Arg<'a>]) -> LineKeys<'a> {
        LineKeys {
            file: self.file,
            name: l.name.text,
            name_pos: l.name.pos,
            args,
        }
    }

    fn layer_line(&self, l: &Logical) -> Result<(LayerSpec, LayerLoc)> {
        let names = line_names();
        let Some((name, allowed)) = names
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(l.name.text))
        else {
            let mut names: Vec<&str> = names.iter().skip(1).map(|(n, _)| *n).collect();
            names.extend(SETTINGS_LINES);
            let hint = if l.name.text.contains('=') {
                " (a line that continues the layer above must start with white space)"
            } else {
                ""
            };
            return Err(self.err(
                l.name.pos,
                format!(
                    "unknown layer `{}`{}{hint}; expected one of {}",
                    l.name.text,
                    did_you_mean(l.name.text, &names),
                    names.join(", ")
                ),
            ));
        };
        if *name == "Input" {
            return Err(self.err(
                l.name.pos,
                "a second Input line; `Input` comes once, right after the layer count",
            ));
        }
        let args = self.args(name, allowed, &l.args)?;
        let spec = match LayerSpec::parse(name, &self.keys(l, &args)) {
            Some(spec) => spec?,
            None => return Err(self.err(l.name.pos, format!("no parser for `{name}`"))),
        };
        Ok((spec, loc_of(&l.name, &args)))
    }

    /// Checks that every layer a line names (`Shortcut from=`, `Route layers=`) is an
    /// earlier one, the error at the reference's own column, and that every layer's output
    /// but the last is read by a later layer, the error at the unread layer's name.
    fn check_reads(&self, text: &str, layers: &[LayerSpec], locs: &[LayerLoc]) -> Result<()> {
        for (i, (layer, loc)) in layers.iter().zip(locs).enumerate() {
            if let Err((k, why)) = layer.reads(i) {
                let pos = layer
                    .refs_key()
                    .and_then(|key| loc.value_pos(key))
                    .map_or(loc.name, |pos| list_item_pos(text, pos, k));
                return Err(self.err(pos, why));
            }
        }
        let mut read = vec![false; layers.len()];
        for (i, layer) in layers.iter().enumerate() {
            for v in layer.reads(i).expect("checked above") {
                if let crate::layers::Value::Output(j) = v {
                    read[j] = true;
                }
            }
        }
        let last = layers.len().saturating_sub(1);
        match (0..last).find(|&j| !read[j]) {
            Some(j) => Err(self.err(locs[j].name, crate::layers::spec::unread(j, layers))),
            None => Ok(()),
        }
    }

    /// Accepts the count of layer lines, or that count plus the implied Flattens.
    fn check_count(
        &self,
        count: usize,
        count_pos: Pos,
        layers: &[LayerSpec],
        locs: &[LayerLoc],
    ) -> Result<()> {
        let implied = implied_flattens(layers);
        let n = layers.len();
        if count == n || count == n + implied.len() {
            return Ok(());
        }
        let names = if n <= 12 {
            let v: Vec<&str> = layers.iter().map(|l| l.name()).collect();
            format!(" ({})", v.join(", "))
        } else {
            String::new()
        };
        let msg = if implied.is_empty() {
            format!(
                "the layer count says {count}, but there are {n} layer lines after `Input`\
                 {names}; write {n}"
            )
        } else {
            let at: Vec<String> = implied
                .iter()
                .filter_map(|&i| locs.get(i))
                .map(|l| format!("line {}", l.name.line))
                .collect();
            format!(
                "the layer count says {count}, but there are {n} layer lines after `Input`\
                 {names} and {} implied Flatten (before the Dense on {}); write {n}, or {} to \
                 count the implied Flatten as report 1 does",
                implied.len(),
                at.join(", "),
                n + implied.len()
            )
        };
        Err(self.err(count_pos, msg))
    }

    /// Walks the shapes layer by layer, each from the shapes of the values it reads,
    /// checking the size caps before the next layer's arithmetic can overflow.
    fn check_shapes(&self, spec: &NetworkSpec, locs: &[LayerLoc]) -> Result<()> {
        let mut outs: Vec<Vec<usize>> = Vec::with_capacity(spec.layers.len());
        let mut params: u128 = 0;
        let mut train_flops: u128 = 0;
        for (i, (layer, loc)) in spec.layers.iter().zip(locs).enumerate() {
            let name = layer.name();
            let reads = layer.reads(i).expect("checked by check_reads");
            let inputs: Vec<Vec<usize>> = reads
                .iter()
                .map(|v| match *v {
                    crate::layers::Value::Input => spec.input.to_vec(),
                    crate::layers::Value::Output(j) => outs[j].clone(),
                })
                .collect();
            let shape = inputs[0].clone();
            if layer.input_form().needs_spatial() && shape.len() != 3 {
                return Err(self.err(
                    loc.name,
                    format!(
                        "{name} needs a (C, H, W) input, but {} outputs a flat \
                         vector {}; Conv2D and pooling layers must come before Flatten and Dense",
                        match reads[0] {
                            crate::layers::Value::Output(j) if j + 1 != i => format!("layer {j}"),
                            _ => "the layer before it".to_string(),
                        },
                        fmt_shape(&shape)
                    ),
                ));
            }
            let shapes: Vec<crate::layers::InputShape> = reads
                .iter()
                .zip(&inputs)
                .map(|(&value, shape)| crate::layers::InputShape { value, shape })
                .collect();
            let out = layer.output_shape_of(&shapes).map_err(|e| {
                let key = layer.refs_key().or(layer.shape_error_key(&shape));
                let pos = key.and_then(|key| loc.value_pos(key));
                let msg = match e {
                    Error::Invalid(m) => m,
                    e => e.to_string(),
                };
                // A layer that reads several values names them and their shapes itself.
                let msg = if inputs.len() == 1 {
                    format!("{msg}: this layer's input is {}", fmt_shape(&shape))
                } else {
                    msg
                };
                self.err(pos.unwrap_or(loc.name), msg)
            })?;
            if out.contains(&0) {
                return Err(self.err(
                    loc.name,
                    format!(
                        "{name} shrinks its input {} to {}, which has a zero dimension",
                        fmt_shape(&shape),
                        fmt_shape(&out)
                    ),
                ));
            }
            let n_out: u128 = out.iter().map(|&d| d as u128).product();
            if n_out > MAX_SAMPLE_VALUES {
                return Err(self.err(
                    loc.name,
                    format!(
                        "{name} outputs {} = {} values per sample, more than the limit of {}",
                        fmt_shape(&out),
                        thousands(n_out),
                        thousands(MAX_SAMPLE_VALUES)
                    ),
                ));
            }
            let counts = layer.counts(&shape, &out);
            let (p, f) = (counts.params, counts.flops);
            params += p;
            train_flops += if i == 0 { 2 * f } else { 3 * f };
            if params > MAX_PARAMS {
                return Err(self.err(
                    loc.name,
                    format!(
                        "the network has {} parameters by this layer ({name} adds {}), more \
                         than the limit of {}",
                        thousands(params),
                        thousands(p),
                        thousands(MAX_PARAMS)
                    ),
                ));
            }
            if train_flops > MAX_TRAIN_FLOPS {
                return Err(self.err(
                    loc.name,
                    format!(
                        "the network needs {} training FLOPs per sample by this layer, more \
                         than the limit of {}",
                        thousands(train_flops),
                        thousands(MAX_TRAIN_FLOPS)
                    ),
                ));
            }
            outs.push(out);
        }
        Ok(())
    }
}

/// The position of item `k` of the comma-separated list whose first character is at `pos`
/// in `text` (`layers=-1,-4`: item 1 is `-4`); `pos` itself when the list is shorter.
fn list_item_pos(text: &str, pos: Pos, k: usize) -> Pos {
    let Some(line) = text.split('\n').nth(pos.line - 1) else {
        return pos;
    };
    let mut col = pos.col;
    let mut item = 0;
    for ch in line.chars().skip(pos.col - 1) {
        if item == k || ch.is_whitespace() {
            break;
        }
        col += 1;
        if ch == ',' {
            item += 1;
        }
    }
    if item == k {
        Pos {
            line: pos.line,
            col,
        }
    } else {
        pos
    }
}

fn loc_of(name: &Token, args: &[Arg]) -> LayerLoc {
    LayerLoc {
        name: name.pos,
        keys: args
            .iter()
            .map(|a| KeyLoc {
                key: a.key.to_string(),
                key_pos: a.key_pos,
                value_pos: a.value_pos,
            })
            .collect(),
    }
}

/// Indices of the Dense layers whose input is spatial (C, H, W): a Flatten is implied
/// before each. Decided from the layer kinds alone, so it works before shapes are checked:
/// a layer's input is spatial if the (first) value it reads is (a reference that names no
/// earlier layer counts as the line above).
pub fn implied_flattens(layers: &[LayerSpec]) -> Vec<usize> {
    let mut spatial: Vec<bool> = Vec::with_capacity(layers.len());
    let mut out = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let first = l.reads(i).ok().and_then(|r| r.first().copied());
        let input_spatial = match first {
            Some(crate::layers::Value::Output(j)) => spatial[j],
            Some(crate::layers::Value::Input) => true,
            None => i == 0 || spatial[i - 1],
        };
        let form = l.input_form();
        if input_spatial && form.implies_flatten() {
            out.push(i);
        }
        spatial.push(form.output_spatial(input_spatial));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT1: &str = "5
Input shape=1x28x28
Conv2D filters=16 kernel=3x3 stride=1
 padding=same activation=relu
MaxPool2D pool=2x2 stride=2
Dense units=128 activation=relu
Dense units=2 activation=softmax
";

    /// Report 1's network built by hand in code (shared with the benchmarks).
    use crate::layers::{Activation, Conv2dSpec, DenseSpec, Flatten, Padding, PoolSpec};
    use crate::text::edit_distance;

    /// Report 1's network (section IV.B) with `classes` outputs, written out by hand: what
    /// the parser must make of `examples/report1.cfg`.
    fn report1_spec(classes: usize) -> NetworkSpec {
        NetworkSpec {
            input: [1, 28, 28],
            layers: vec![
                LayerSpec::Conv2D(Conv2dSpec {
                    filters: 16,
                    kernel: (3, 3),
                    stride: 1,
                    padding: Padding::Same,
                    activation: Activation::Relu,
                    groups: 1,
                    bias: true,
                }),
                LayerSpec::MaxPool2D(PoolSpec {
                    pool: (2, 2),
                    stride: 2,
                }),
                LayerSpec::Dense(DenseSpec {
                    units: 128,
                    activation: Activation::Relu,
                }),
                LayerSpec::Dense(DenseSpec {
                    units: classes,
                    activation: Activation::Softmax,
                }),
            ],
        }
    }

    /// Parses `text` expecting a config error; returns (line, col, msg).
    fn error(text: &str) -> (usize, usize, String) {
        match parse(text, "t.cfg") {
            Err(Error::Config {
                file,
                line,
                col,
                msg,
            }) => {
                assert_eq!(file, "t.cfg");
                (line, col, msg)
            }
            other => panic!("expected a config error for {text:?}, got {other:?}"),
        }
    }

    fn assert_error(text: &str, line: usize, col: usize, fragment: &str) {
        let (l, c, msg) = error(text);
        assert_eq!((l, c), (line, col), "position of {msg:?} for {text:?}");
        assert!(
            msg.contains(fragment),
            "message {msg:?} should contain {fragment:?}"
        );
    }

    /// Report 1's network with one line replaced (1-based), keeping the count valid.
    fn with_line(n: usize, replacement: &str) -> String {
        REPORT1
            .lines()
            .enumerate()
            .map(|(i, l)| if i + 1 == n { replacement } else { l })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn report1_example_parses_as_printed() {
        let p = parse(REPORT1, "config.txt").unwrap();
        assert_eq!(p.spec, report1_spec(2));
        assert_eq!(p.file, "config.txt");
        assert_eq!(p.text, REPORT1);
        assert_eq!(p.count, Pos { line: 1, col: 1 });
        assert_eq!(p.input.name, Pos { line: 2, col: 1 });
        let lines: Vec<usize> = p.layers.iter().map(|l| l.name.line).collect();
        assert_eq!(lines, vec![3, 5, 6, 7]);
        // The continued line's keys keep their own positions.
        assert_eq!(
            p.layers[0].value_pos("padding"),
            Some(Pos { line: 4, col: 10 })
        );
        assert_eq!(
            p.layers[3].value_pos("units"),
            Some(Pos { line: 7, col: 13 })
        );
        assert_eq!(implied_flattens(&p.spec.layers), vec![2]);
    }

    #[test]
    fn count_of_layer_lines_without_implied_flatten_is_accepted() {
        let text = REPORT1.replacen('5', "4", 1);
        assert_eq!(parse(&text, "t").unwrap().spec, report1_spec(2));
    }

    #[test]
    fn comments_blank_lines_crlf_and_case_are_accepted() {
        let text = "# report 1\r\n\r\n  # indented comment\r\n4   # four layer lines\r\n\
                    input shape=1x28x28\r\n\r\nCONV2D filters=16 kernel=3 # square\r\n\
                    \tpadding=same activation=RELU\r\n# between\r\n stride=1\r\n\
                    maxpool2d pool=2\r\ndense units=128 activation=relu\r\n\
                    Dense units=2 activation=softmax # output\r\n";
        assert_eq!(parse(text, "t").unwrap().spec, report1_spec(2));
    }

    #[test]
    fn defaults_and_every_layer_kind() {
        let text = "9
Input shape=3x8x8
Conv2D filters=4 kernel=3x2
AvgPool2D pool=3
LeakyReLU
Flatten
Dense units=5 activation=leaky_relu alpha=0.2
Sigmoid
Tanh
LeakyReLU alpha=0.3
Dense units=2 activation=linear
";
        let p = parse(text, "t").unwrap();
        assert_eq!(
            p.spec.layers,
            vec![
                LayerSpec::Conv2D(Conv2dSpec {
                    filters: 4,
                    kernel: (3, 2),
                    stride: 1,
                    padding: Padding::Valid,
                    activation: Activation::None,
                    groups: 1,
                    bias: true,
                }),
                LayerSpec::AvgPool2D(PoolSpec {
                    pool: (3, 3),
                    stride: 3,
                }),
                LayerSpec::Activation(Activation::LeakyRelu(0.01)),
                LayerSpec::Flatten(Flatten),
                LayerSpec::Dense(DenseSpec {
                    units: 5,
                    activation: Activation::LeakyRelu(0.2),
                }),
                LayerSpec::Activation(Activation::Sigmoid),
                LayerSpec::Activation(Activation::Tanh),
                LayerSpec::Activation(Activation::LeakyRelu(0.3)),
                LayerSpec::Dense(DenseSpec {
                    units: 2,
                    activation: Activation::None,
                }),
            ]
        );
        assert!(implied_flattens(&p.spec.layers).is_empty());
        let p = parse(
            "1\nInput shape=1x9x9\nConv2D filters=1 kernel=3 padding=2",
            "t",
        )
        .unwrap();
        assert_eq!(
            p.spec.layers[0],
            LayerSpec::Conv2D(Conv2dSpec {
                filters: 1,
                kernel: (3, 3),
                stride: 1,
                padding: Padding::Explicit(2),
                activation: Activation::None,
                groups: 1,
                bias: true,
            })
        );
    }

    #[test]
    fn relu6_parses_as_a_key_and_as_a_line() {
        let p = parse(
            "3\nInput shape=1x4x4\nConv2D filters=2 kernel=3 activation=ReLU6\nReLU6\n\
             Dense units=2\n",
            "t",
        )
        .unwrap();
        assert_eq!(p.spec.layers[0].activation(), Activation::Relu6);
        assert_eq!(p.spec.layers[1], LayerSpec::Activation(Activation::Relu6));
        let e = parse(
            "2\nInput shape=1x4x4\nConv2D filters=2 kernel=3 activation=relu7\nDense units=2\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("relu6"), "{e}");
    }

    #[test]
    fn missing_count_and_input() {
        assert_error("", 1, 1, "missing layer count");
        assert_error("# only a comment\n\n", 1, 1, "missing layer count");
        assert_error(
            "Input shape=1x28x28\nDense units=2",
            1,
            1,
            "missing layer count",
        );
        assert_error("five\nInput shape=1x2x2", 1, 1, "whole number");
        assert_error("4 layers\nInput shape=1x2x2", 1, 3, "unexpected `layers`");
        assert_error("\n\n3\n", 3, 1, "missing Input line");
        assert_error(
            "1\nDense units=2\n",
            2,
            1,
            "missing Input line: expected `Input shape=CxHxW`",
        );
        assert_error(
            "1\n Input shape=1x2x2\n",
            2,
            2,
            "the line above is the layer count",
        );
        assert_error(
            "1\nInput\nDense units=2",
            2,
            1,
            "missing the required key `shape`",
        );
        assert_error(
            "1\nInput shape=1x28\nDense units=2",
            2,
            13,
            "`shape` must be CxHxW",
        );
        assert_error(
            "2\nInput shape=1x2x2\nDense units=2\nInput shape=1x2x2",
            4,
            1,
            "second Input line",
        );
    }

    #[test]
    fn layer_count_mismatch_says_what_was_counted() {
        let (l, c, msg) = error(&REPORT1.replacen('5', "7", 1));
        assert_eq!((l, c), (1, 1));
        assert!(msg.contains("says 7"), "{msg}");
        assert!(msg.contains("4 layer lines"), "{msg}");
        assert!(msg.contains("(Conv2D, MaxPool2D, Dense, Dense)"), "{msg}");
        assert!(
            msg.contains("1 implied Flatten (before the Dense on line 6)"),
            "{msg}"
        );
        assert!(msg.contains("write 4, or 5"), "{msg}");
        assert_error(
            "3\nInput shape=1x4x4\nFlatten\nDense units=2",
            1,
            1,
            "there are 2 layer lines after `Input` (Flatten, Dense); write 2",
        );
        assert_error(
            "\n  12 # indented count\nInput shape=1x4x4\nFlatten\n",
            2,
            3,
            "says 12",
        );
    }

    #[test]
    fn unknown_layers_and_keys_suggest_the_closest() {
        assert!(parse(&with_line(3, "Conv2d filters=16 kernel=3x3 stride=1"), "t").is_ok());
        assert_error(
            &with_line(3, "Conv3D filters=16 kernel=3x3 stride=1"),
            3,
            1,
            "unknown layer `Conv3D`; did you mean `Conv2D`?",
        );
        assert_error(
            &with_line(5, "MaxPool pool=2x2 stride=2"),
            5,
            1,
            "did you mean `MaxPool2D`?",
        );
        assert_error(
            &with_line(5, "Banana pool=2"),
            5,
            1,
            "expected one of Conv2D",
        );
        assert_error(
            &with_line(3, "Conv2D filter=16 kernel=3x3 stride=1"),
            3,
            8,
            "unknown key `filter` for Conv2D; did you mean `filters`?",
        );
        assert_error(
            &with_line(6, "Dense units=128 stride=1"),
            6,
            17,
            "Dense takes units, activation, alpha",
        );
        assert_error(
            &with_line(3, "Conv2D Filters=16 kernel=3x3"),
            3,
            8,
            "did you mean `filters`?",
        );
        assert_error(
            &with_line(4, "padding=same activation=relu"),
            4,
            1,
            "must start with white space",
        );
        assert_error(
            "2\nInput shape=1x2x2\nFlatten units=3\nDense units=2",
            3,
            9,
            "Flatten takes no keys",
        );
    }

    #[test]
    fn key_syntax_errors() {
        assert_error(
            &with_line(6, "Dense units=128 units=64"),
            6,
            17,
            "duplicate key `units`",
        );
        // The duplicate may hide on a continuation line.
        assert_error(
            &with_line(4, " padding=same stride=2"),
            4,
            15,
            "duplicate key `stride`",
        );
        assert_error(&with_line(6, "Dense units 128"), 6, 7, "no `=`");
        assert_error(
            &with_line(6, "Dense units =128"),
            6,
            7,
            "without spaces around `=`",
        );
        assert_error(
            &with_line(6, "Dense units= 128"),
            6,
            13,
            "`units=` has no value",
        );
        assert_error(&with_line(6, "Dense =128"), 6, 7, "no key before `=`");
        assert_error(
            &with_line(6, "Dense activation=relu"),
            6,
            1,
            "Dense is missing the required key `units` (e.g. `units=128`)",
        );
        assert_error(
            &with_line(3, "Conv2D kernel=3x3"),
            3,
            1,
            "missing the required key `filters`",
        );
        assert_error(
            &with_line(3, "Conv2D filters=16"),
            3,
            1,
            "missing the required key `kernel`",
        );
        assert_error(
            &with_line(5, "MaxPool2D stride=2"),
            5,
            1,
            "missing the required key `pool`",
        );
    }

    #[test]
    fn dropout_takes_a_rate_from_0_up_to_1() {
        use crate::layers::DropoutSpec;
        let net = |line: &str| format!("2\nInput shape=1x4x4\n{line}\nDense units=2\n");
        let p = parse(&net("Dropout"), "t").unwrap();
        assert_eq!(
            p.spec.layers[0],
            LayerSpec::Dropout(DropoutSpec { rate: 0.5 })
        );
        let p = parse(&net("Dropout rate=0.25"), "t").unwrap();
        assert_eq!(
            p.spec.layers[0],
            LayerSpec::Dropout(DropoutSpec { rate: 0.25 })
        );
        for bad in ["1", "1.5", "-0.1", "half", "NaN"] {
            assert_error(
                &net(&format!("Dropout rate={bad}")),
                3,
                14,
                &format!(
                    "`rate` must be a number from 0 up to but not including 1 (the share \
                          of values dropped, e.g. `rate=0.5`), found `{bad}`"
                ),
            );
        }
        assert_error(&net("Dropout p=0.5"), 3, 9, "unknown key `p` for Dropout");
    }

    #[test]
    fn malformed_values() {
        let conv = |rest: &str| {
            with_line(3, &format!("Conv2D {rest}")).replace(" padding=same activation=relu", "#")
        };
        assert_error(
            &conv("filters=16 kernel=3y3"),
            3,
            26,
            "`kernel` must be a size like `3x3` or `3`",
        );
        assert_error(
            &conv("filters=-1 kernel=3"),
            3,
            16,
            "`filters` must be a whole number from 1 to 1,000,000, found `-1`",
        );
        assert_error(&conv("filters=abc kernel=3"), 3, 16, "found `abc`");
        assert_error(&conv("filters=0 kernel=3"), 3, 16, "from 1 to");
        assert_error(
            &conv("filters=1000001 kernel=3"),
            3,
            16,
            "from 1 to 1,000,000",
        );
        assert_error(
            &conv("filters=99999999999999999999999 kernel=3"),
            3,
            16,
            "whole number",
        );
        assert_error(
            &conv("filters=1 kernel=3 stride=0"),
            3,
            34,
            "`stride` must be",
        );
        assert_error(&conv("filters=1 kernel=0x3"), 3, 25, "`kernel` must be");
        assert_error(&conv("filters=1 kernel=3x3x3"), 3, 25, "`kernel` must be");
        assert_error(
            &conv("filters=1 kernel=3 padding=half"),
            3,
            35,
            "`same`, `valid`",
        );
        assert_error(
            &conv("filters=1 kernel=3 activation=rleu"),
            3,
            38,
            "unknown activation `rleu`; did you mean `relu`?",
        );
        assert_error(
            &conv("filters=1 kernel=3 activation=relu alpha=0.1"),
            3,
            43,
            "`alpha` only applies with `activation=leaky_relu`",
        );
        assert_error(
            &conv("filters=1 kernel=3 activation=leaky_relu alpha=NaN"),
            3,
            55,
            "`alpha` must be a number from 0 to 1",
        );
        assert_error(
            &with_line(5, "MaxPool2D pool=2x2 stride=-2"),
            5,
            27,
            "`stride`",
        );
        assert_error(
            &with_line(2, "Input shape=1x28x0"),
            2,
            13,
            "`shape` must be",
        );
        assert_error(
            &with_line(2, "Input shape=1x100001x2"),
            2,
            13,
            "`shape` must be",
        );
        assert_error(
            &with_line(2, "Input shape=100000x100000x100"),
            2,
            13,
            "values per sample",
        );
    }

    #[test]
    fn shape_errors_point_at_the_layer() {
        // The kernel is larger than its input: pointed at the kernel value.
        assert_error(
            "1\nInput shape=1x4x4\nConv2D filters=2 kernel=5",
            3,
            25,
            "kernel 5 is larger than its (padded) input 4: this layer's input is (1, 4, 4)",
        );
        // The shape shrinks layer by layer until a pool no longer fits.
        assert_error(
            "4\nInput shape=1x4x4\nMaxPool2D pool=2\nMaxPool2D pool=2\nMaxPool2D pool=2\n\
             Dense units=2",
            5,
            16,
            "this layer's input is (1, 1, 1)",
        );
        assert_error(
            "2\nInput shape=1x4x4\nDense units=3\nConv2D filters=1 kernel=1",
            4,
            1,
            "Conv2D needs a (C, H, W) input, but the layer before it outputs a flat vector (3)",
        );
        assert_error(
            "2\nInput shape=1x4x4\nFlatten\nMaxPool2D pool=2",
            4,
            1,
            "MaxPool2D needs a (C, H, W) input",
        );
        // Caps on absurd sizes.
        assert_error(
            "1\nInput shape=1x10000x10000\nConv2D filters=1000 kernel=1",
            3,
            1,
            "values per sample",
        );
        assert_error(
            "2\nInput shape=100x100x100\nDense units=1000000\nDense units=1000000",
            3,
            1,
            "parameters",
        );
    }

    #[test]
    fn check_classes_points_at_the_output_units() {
        let p = parse(REPORT1, "t.cfg").unwrap();
        p.check_classes(2).unwrap();
        match p.check_classes(10) {
            Err(Error::Config { line, col, msg, .. }) => {
                assert_eq!((line, col), (7, 13));
                assert!(
                    msg.contains("units=2 but the dataset has 10 classes"),
                    "{msg}"
                );
            }
            other => panic!("{other:?}"),
        }
        // An activation layer after the output Dense keeps the Dense's units.
        let p = parse("2\nInput shape=1x4x4\nDense units=3\nSoftmax", "t.cfg").unwrap();
        p.check_classes(3).unwrap();
        assert!(matches!(
            p.check_classes(4),
            Err(Error::Config {
                line: 3,
                col: 13,
                ..
            })
        ));
        // No Dense at all: pointed at the last layer.
        let p = parse("1\nInput shape=1x4x4\nFlatten", "t.cfg").unwrap();
        match p.check_classes(10) {
            Err(Error::Config { line, col, msg, .. }) => {
                assert_eq!((line, col), (3, 1));
                assert!(msg.contains("outputs (16)"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(p.check_classes(0), Err(Error::Invalid(_))));
    }

    #[test]
    fn load_reads_files_and_reports_io_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.cfg");
        std::fs::write(&path, REPORT1).unwrap();
        assert_eq!(load(&path).unwrap().spec, report1_spec(2));
        let missing = dir.path().join("missing.cfg");
        assert!(matches!(load(&missing), Err(Error::Io { .. })));
        // A bare name is a built-in example when no file has it, or else a file.
        let lenet = load(Path::new("lenet")).unwrap();
        assert_eq!(lenet.file, "lenet (built-in example)");
        assert_eq!(lenet.text, crate::examples::LENET);
        let e = load(Path::new("lenett")).unwrap_err().to_string();
        assert!(
            e.starts_with("lenett: no such file, nor a built-in example (report1, report1-10, "),
            "{e}"
        );
        std::fs::write(&path, "1\nInput shape=1x2x2\nDense").unwrap();
        match load(&path) {
            Err(Error::Config { file, .. }) => assert!(file.ends_with("net.cfg")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn example_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let report1 = load(&dir.join("report1.cfg")).unwrap();
        assert_eq!(report1.spec, report1_spec(2));
        report1.check_classes(2).unwrap();
        let report10 = load(&dir.join("report1-10.cfg")).unwrap();
        assert_eq!(report10.spec, report1_spec(10));
        report10.check_classes(10).unwrap();
        let lenet = load(&dir.join("lenet.cfg")).unwrap();
        lenet.check_classes(10).unwrap();
        let outs: Vec<Vec<usize>> = lenet
            .spec
            .shapes()
            .unwrap()
            .into_iter()
            .map(|s| s.output)
            .collect();
        assert_eq!(
            outs,
            vec![
                vec![32, 28, 28],
                vec![32, 14, 14],
                vec![64, 14, 14],
                vec![64, 7, 7],
                vec![128],
                vec![10]
            ]
        );
    }

    #[test]
    fn edit_distance_is_levenshtein() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("conv2d", "conv2d"), 0);
        assert_eq!(thousands(401_954), "401,954");
        assert_eq!(thousands(100), "100");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    mod never_panics {
        use super::*;
        use proptest::prelude::*;

        /// An edit of the valid example: (position, kind, character).
        fn mutate(text: &str, edits: &[(usize, u8, char)]) -> String {
            let mut chars: Vec<char> = text.chars().collect();
            for &(at, kind, ch) in edits {
                let at = at % (chars.len() + 1);
                match kind % 3 {
                    0 => chars.insert(at, ch),
                    1 if at < chars.len() => {
                        chars.remove(at);
                    }
                    _ if at < chars.len() => chars[at] = ch,
                    _ => {}
                }
            }
            chars.into_iter().collect()
        }

        fn config_char() -> impl Strategy<Value = char> {
            prop_oneof![
                prop::sample::select(
                    "0123456789x=# \n\t-.,_abcdefgnpsuyXDCIMR"
                        .chars()
                        .collect::<Vec<_>>()
                ),
                any::<char>(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn on_arbitrary_strings(text in any::<String>()) {
                let _ = parse(&text, "t");
            }

            #[test]
            fn on_config_like_strings(text in "[0-9x=# \n\tA-Za-z_.-]{0,200}") {
                let _ = parse(&text, "t");
            }

            #[test]
            fn on_mutations_of_the_example(
                edits in prop::collection::vec((any::<usize>(), any::<u8>(), config_char()), 1..8)
            ) {
                let text = mutate(REPORT1, &edits);
                if let Ok(p) = parse(&text, "t") {
                    // Whatever parses must also be summarisable and checkable.
                    let _ = p.check_classes(2);
                    let _ = crate::summary::render(&p.spec, true);
                }
            }
        }
    }
}
