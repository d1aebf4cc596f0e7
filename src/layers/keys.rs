//! The `key=value` pairs of one config line, as a layer's parser reads them.
//!
//! The config parser ([`crate::config`]) splits a line into its layer name and its keys,
//! rejecting unknown and repeated keys; each layer module then reads its values through
//! [`LineKeys`], whose typed readers turn a bad value into an [`Error::Config`] at the
//! value's line and column, saying what was expected.

use crate::error::{Error, Result};
use crate::text::{did_you_mean, thousands};

use super::activation::Activation;

/// Largest `filters` or `units` accepted.
pub const MAX_UNITS: usize = 1_000_000;
/// Largest input dimension, kernel, pool, stride or padding accepted.
pub const MAX_DIM: usize = 100_000;
/// Largest number in a reference to a layer (`from=`, `layers=`): far more layers than
/// any network has, small enough that no arithmetic on it overflows.
pub const MAX_LAYERS: usize = 1_000_000;

/// A 1-based position in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// One `key=value` of a line, with where its key and value start.
#[derive(Debug, Clone, Copy)]
pub struct Arg<'a> {
    pub key: &'a str,
    pub key_pos: Pos,
    pub value: &'a str,
    pub value_pos: Pos,
}

/// The keys of one layer line, for the layer's parser.
pub struct LineKeys<'a> {
    /// The config file's name, for errors.
    pub file: &'a str,
    /// The layer name as written on the line, and where.
    pub name: &'a str,
    pub name_pos: Pos,
    pub args: &'a [Arg<'a>],
}

/// The names `activation=` accepts.
pub const ACTIVATIONS: &[&str] = &[
    "relu",
    "relu6",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "softmax",
    "none",
    "linear",
];

impl<'a> LineKeys<'a> {
    /// A config error at `pos` of this file.
    pub fn err(&self, pos: Pos, msg: impl Into<String>) -> Error {
        Error::Config {
            file: self.file.to_string(),
            line: pos.line,
            col: pos.col,
            msg: msg.into(),
        }
    }

    /// The argument `key`, if the line has it.
    pub fn get(&self, key: &str) -> Option<&Arg<'a>> {
        self.args.iter().find(|a| a.key == key)
    }

    /// The argument `key`, or an error at the layer's name saying it is required.
    pub fn required(&self, key: &str) -> Result<&Arg<'a>> {
        self.get(key).ok_or_else(|| {
            self.err(
                self.name_pos,
                format!(
                    "{} is missing the required key `{key}` (e.g. {})",
                    self.name,
                    example(key)
                ),
            )
        })
    }

    /// The whole number `key` in `min..=max`, `default` when absent.
    pub fn whole_or(&self, key: &str, min: usize, max: usize, default: usize) -> Result<usize> {
        match self.get(key) {
            Some(a) => self.whole(a, min, max),
            None => Ok(default),
        }
    }

    /// `key=true` or `key=false` (any case), `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        let Some(a) = self.get(key) else {
            return Ok(default);
        };
        match a.value.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(self.err(
                a.value_pos,
                format!("`{key}` must be `true` or `false`, found `{}`", a.value),
            )),
        }
    }

    /// A whole number in `min..=max`.
    pub fn whole(&self, arg: &Arg, min: usize, max: usize) -> Result<usize> {
        match parse_whole(arg.value) {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.err(
                arg.value_pos,
                format!(
                    "`{}` must be a whole number from {min} to {}, found `{}`",
                    arg.key,
                    thousands(max as u128),
                    arg.value
                ),
            )),
        }
    }

    /// `AxB` or `A` (square), each from 1 to [`MAX_DIM`].
    pub fn size2(&self, arg: &Arg) -> Result<(usize, usize)> {
        let dims = parse_dims(arg.value);
        match dims.as_deref() {
            Some([a]) => Ok((*a, *a)),
            Some([a, b]) => Ok((*a, *b)),
            _ => Err(self.err(
                arg.value_pos,
                format!(
                    "`{}` must be a size like `3x3` or `3` (each from 1 to {}), found `{}`",
                    arg.key,
                    thousands(MAX_DIM as u128),
                    arg.value
                ),
            )),
        }
    }

    /// The `activation=` key (with `alpha=` for `leaky_relu`); [`Activation::None`] when
    /// absent.
    pub fn activation(&self) -> Result<Activation> {
        let act = match self.get("activation") {
            None => Activation::None,
            Some(a) => match a.value.to_ascii_lowercase().as_str() {
                "relu" => Activation::Relu,
                "relu6" => Activation::Relu6,
                "leaky_relu" => Activation::LeakyRelu(0.01),
                "sigmoid" => Activation::Sigmoid,
                "tanh" => Activation::Tanh,
                "softmax" => Activation::Softmax,
                "none" | "linear" => Activation::None,
                _ => {
                    return Err(self.err(
                        a.value_pos,
                        format!(
                            "unknown activation `{}`{}; expected one of {}",
                            a.value,
                            did_you_mean(a.value, ACTIVATIONS),
                            ACTIVATIONS.join(", ")
                        ),
                    ))
                }
            },
        };
        match (act, self.get("alpha")) {
            (Activation::LeakyRelu(_), Some(a)) => Ok(Activation::LeakyRelu(self.alpha(a)?)),
            (_, Some(a)) => Err(self.err(
                a.key_pos,
                "`alpha` only applies with `activation=leaky_relu`",
            )),
            (act, None) => Ok(act),
        }
    }

    /// A reference to an earlier layer in the value of `key`, `text` written at `pos`: a
    /// whole number, negative to count back from the line (-1 is the line above), else a
    /// layer index from 0. Which layers exist is checked later, with the whole network
    /// ([`super::LayerSpec::reads`]).
    pub fn layer_ref(&self, key: &str, text: &str, pos: Pos) -> Result<i64> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        match parse_whole(digits).filter(|&n| n <= MAX_LAYERS) {
            Some(n) if text.starts_with('-') && n > 0 => Ok(-(n as i64)),
            Some(n) if !text.starts_with('-') => Ok(n as i64),
            _ => Err(self.err(
                pos,
                format!(
                    "`{key}` must be a whole number naming an earlier layer: negative to count \
                     back from this line (-1 is the line above, -3 three lines above), or a \
                     layer index counted from 0; found `{text}`"
                ),
            )),
        }
    }

    /// A leaky ReLU's negative slope, from 0 to 1.
    pub fn alpha(&self, a: &Arg) -> Result<f32> {
        match a.value.parse::<f32>() {
            Ok(x) if x.is_finite() && (0.0..=1.0).contains(&x) => Ok(x),
            _ => Err(self.err(
                a.value_pos,
                format!(
                    "`alpha` must be a number from 0 to 1 (e.g. `alpha=0.01`), found `{}`",
                    a.value
                ),
            )),
        }
    }
}

/// An example of `key`'s value, for error messages.
pub fn example(key: &str) -> &'static str {
    match key {
        "shape" => "`shape=1x28x28`",
        "filters" => "`filters=16`",
        "kernel" => "`kernel=3x3`",
        "stride" => "`stride=1`",
        "padding" => "`padding=same`",
        "activation" => "`activation=relu`",
        "alpha" => "`alpha=0.01`",
        "pool" => "`pool=2x2`",
        "units" => "`units=128`",
        "groups" => "`groups=2`",
        "bias" => "`bias=false`",
        "from" => "`from=-3`",
        "layers" => "`layers=-1,-4`",
        _ => "`key=value`",
    }
}

/// Digits only (no sign), fitting in `usize`.
pub fn parse_whole(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `AxBxC...`, each a whole number from 1 to [`MAX_DIM`].
pub fn parse_dims(s: &str) -> Option<Vec<usize>> {
    s.split(['x', 'X'])
        .map(|p| parse_whole(p).filter(|n| (1..=MAX_DIM).contains(n)))
        .collect()
}
