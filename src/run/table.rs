//! The machinery behind the option table of [`super::options`]: what an entry holds
//! ([`Spec`]), the macro that turns the list into [`RunConfig`], [`RunOptions`] and
//! [`OPTIONS`](super::OPTIONS), and how a value reads from text ([`Value`]).
//!
//! Everything that treats options one by one (the range checks, what applies to what, the
//! resume rule, the config-line parser, the command line's flags, the documentation's
//! table) walks [`OPTIONS`](super::OPTIONS) and reaches the fields through [`Field`].

use std::ffi::OsStr;
use std::fmt;
use std::path::PathBuf;

use crate::early_stop::Monitor;
use crate::init::Init;
use crate::text::{did_you_mean, thousands};

use super::{OptimizerChoice, RunConfig, RunOptions, ScheduleChoice};

/// One run option: what its entry in [`super::options`] says, and (filled in by the macro)
/// its name, doc comment, kind of value and the way to its fields.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The field's name in [`RunConfig`] and [`RunOptions`], `run.json`'s key, and the name
    /// [`RunOptions::set`] takes.
    pub name: &'static str,
    /// The field's doc comment: what the option means, with its formula.
    pub doc: &'static str,
    /// The command-line flag without its `--` (`batch-size`); empty for an option the
    /// command line gives otherwise (the network config is an argument of its own).
    pub flag: &'static str,
    /// The flag's help (`--help` adds the default).
    pub help: &'static str,
    /// The key of the config file's `Train` or `Augment` line, if it has one.
    pub key: Option<Key>,
    /// The values allowed, checked for flags by [`RunConfig::validate`] and for config lines
    /// as they are read.
    pub range: Range,
    /// An example value for a config line's error: `0.01` gives "(e.g. `lr=0.01`)".
    pub example: &'static str,
    /// Which other option it belongs to; given without it, it is refused.
    pub applies: Applies,
    /// What a resumed run may do with it.
    pub resume: Resume,
    /// What an optional option's absence means, in messages ("none", "off").
    pub unset: &'static str,
    /// The kind of its value, from its type.
    pub kind: Kind,
    /// Whether its [`RunConfig`] field is an `Option` (absent by default).
    pub optional: bool,
    /// The way to its fields.
    pub field: Field,
}

/// A line of the config file that holds training settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    Train,
    Augment,
}

impl Line {
    /// The line's name as written in a config file.
    pub fn name(self) -> &'static str {
        match self {
            Line::Train => "Train",
            Line::Augment => "Augment",
        }
    }
}

/// The key of an option on a settings line: `Train batch=32` is `(Train, "batch")`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub line: Line,
    pub name: &'static str,
}

/// The option's key on the `Train` line.
pub const fn train(name: &'static str) -> Option<Key> {
    Some(Key {
        line: Line::Train,
        name,
    })
}

/// The option's key on the `Augment` line.
pub const fn augment(name: &'static str) -> Option<Key> {
    Some(Key {
        line: Line::Augment,
        name,
    })
}

/// The values an option allows. Every number must also be finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// Any value of its type.
    Any,
    /// x > 0.
    Positive,
    /// x >= 0.
    NonNegative,
    /// 0 <= x < 1.
    BelowOne,
    /// 0 < x <= 1.
    UpToOne,
    /// 0 < x < 1.
    Fraction,
    /// 0 <= x <= 1: a probability.
    Probability,
    /// A whole number from `min` to `max`.
    Whole { min: usize, max: usize },
}

impl Range {
    /// Whether `x` is allowed.
    pub fn holds(self, x: f64) -> bool {
        x.is_finite()
            && match self {
                Range::Any => true,
                Range::Positive => x > 0.0,
                Range::NonNegative => x >= 0.0,
                Range::BelowOne => (0.0..1.0).contains(&x),
                Range::UpToOne => x > 0.0 && x <= 1.0,
                Range::Fraction => x > 0.0 && x < 1.0,
                Range::Probability => (0.0..=1.0).contains(&x),
                Range::Whole { min, max } => x >= min as f64 && x <= max as f64,
            }
    }

    /// A flag's value `shown` (`x` as a number) out of range: "--lr must be positive, got
    /// -1", "--batch-size must be at least 1".
    pub fn flag_error(self, flag: &str, shown: &str, x: f64) -> String {
        self.error(&format!("--{flag}"), shown, x)
    }

    /// A keyword argument's value out of range, named as the caller wrote it (Python's
    /// `fit(lr=-1)`, [`super::Wording::Keyword`]): "lr must be positive, got -1".
    pub fn keyword_error(self, name: &str, shown: &str, x: f64) -> String {
        self.error(name, shown, x)
    }

    /// "`who` must be ...": the words of [`Range::flag_error`] and [`Range::keyword_error`].
    fn error(self, flag: &str, shown: &str, x: f64) -> String {
        let must = match self {
            Range::Any => return format!("{flag} must be a finite number, got {shown}"),
            Range::Positive => "positive",
            Range::NonNegative => "0 or positive",
            Range::BelowOne => "at least 0 and below 1",
            Range::UpToOne => "above 0 and at most 1",
            Range::Fraction => "strictly between 0 and 1",
            Range::Probability => "at least 0 and at most 1",
            // Below the least whole number allowed is 0 (the least is 0 or 1): no "got".
            Range::Whole { min, .. } if x < min as f64 => {
                return format!("{flag} must be at least {min}")
            }
            Range::Whole { max, .. } => {
                return format!(
                    "{flag} must be at most {}, got {shown}",
                    thousands(max as u128)
                )
            }
        };
        format!("{flag} must be {must}, got {shown}")
    }

    /// What a config line's value must be: "a number above 0", "a whole number from 1 to
    /// 1,000,000".
    pub fn line_words(self, kind: Kind) -> String {
        match self {
            Range::Any if kind == Kind::Integer => "a whole number".into(),
            Range::Any => "a number".into(),
            Range::Positive => "a number above 0".into(),
            Range::NonNegative => "a number 0 or more".into(),
            Range::BelowOne => "a number from 0 to below 1".into(),
            Range::UpToOne => "a number above 0 and at most 1".into(),
            Range::Fraction => "a number strictly between 0 and 1".into(),
            Range::Probability => "a number from 0 to 1".into(),
            Range::Whole { min, max } => {
                format!("a whole number from {min} to {}", thousands(max as u128))
            }
        }
    }
}

/// The kind of an option's value, from its type: what the command line and the config
/// line parser need to know.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A real number (`f32`, `f64`).
    Number,
    /// A whole number (`usize`, `u64`).
    Integer,
    /// On or off: a flag without a value; `true` or `false` on a config line.
    Switch,
    /// A file or folder.
    Path,
    /// One of the names, each with its help.
    Choice(&'static [(&'static str, &'static str)]),
}

/// Which option another one belongs to. Given without it, the option would be ignored, so
/// it is refused instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    Always,
    /// Only with this learning-rate schedule (`--gamma` with `--schedule step`).
    Schedule(ScheduleChoice),
    /// Only with early stopping (`--patience` with `--early-stop`).
    EarlyStop,
    /// Only with an SGD optimiser, `sgd`, `momentum` or `nesterov` (`--momentum`): Adam's and
    /// AdamW's own factors, their betas, are fixed.
    Sgd,
}

/// What a resumed run may do with an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// It may change: the resumed run takes the new value and reports the change.
    MayChange,
    /// It must equal the stored run's, so that the resumed run continues the stopped one
    /// exactly.
    Keep,
    /// It must equal the stored run's: it took effect when the run started (the weights'
    /// initialisation).
    Started,
    /// [`super::Run::resume`] checks it against the checkpoint (the network config).
    Checkpoint,
}

/// The way to an option's fields, made by the macro for each entry.
#[derive(Clone, Copy)]
pub struct Field {
    /// Reads a text into the [`RunOptions`] field.
    pub set: fn(&mut RunOptions, &OsStr) -> Result<(), String>,
    /// The [`RunOptions`] field, as text; `None` when not given.
    pub given: fn(&RunOptions) -> Option<String>,
    /// The [`RunOptions`] field as a number, for its range.
    pub given_number: fn(&RunOptions) -> Option<f64>,
    /// The [`RunConfig`] field, as text; `None` for an optional field that is absent.
    pub show: fn(&RunConfig) -> Option<String>,
    /// The [`RunConfig`] field as a number, for its range.
    pub number: fn(&RunConfig) -> Option<f64>,
    /// Puts the [`RunOptions`] field, when given, into the [`RunConfig`] field; true when
    /// that changed it.
    pub take: fn(&mut RunConfig, &RunOptions) -> bool,
}

impl fmt::Debug for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Field")
    }
}

impl Spec {
    /// What an entry does not say: no flag, no key, any value, always applies, kept on
    /// resume.
    pub const BASE: Spec = Spec {
        name: "",
        doc: "",
        flag: "",
        help: "",
        key: None,
        range: Range::Any,
        example: "",
        applies: Applies::Always,
        resume: Resume::Keep,
        unset: "none",
        kind: Kind::Path,
        optional: false,
        field: Field {
            set: |_, _| Ok(()),
            given: |_| None,
            given_number: |_| None,
            show: |_| None,
            number: |_| None,
            take: |_, _| false,
        },
    };

    /// The value of `c`'s field as text, or what its absence means.
    pub fn show(&self, c: &RunConfig) -> String {
        (self.field.show)(c).unwrap_or_else(|| self.unset.to_string())
    }

    /// The default as `--help` shows it; `None` for a switch (off) or an optional option
    /// (absent).
    pub fn default_text(&self) -> Option<String> {
        if self.kind == Kind::Switch {
            return None;
        }
        (self.field.show)(&RunConfig::default())
    }
}

/// A type an option's value can have: how it reads from text (a flag, a config line, a
/// Python keyword), how it shows in messages, and the number its range sees.
pub trait Value: Clone + PartialEq {
    const KIND: Kind;
    /// The value `text` says, or what was expected.
    fn parse(text: &str) -> Result<Self, String>;
    /// As [`Value::parse`], from the command line (a path need not be UTF-8).
    fn parse_os(text: &OsStr) -> Result<Self, String> {
        match text.to_str() {
            Some(t) => Self::parse(t),
            None => Err(format!("`{}` is not valid UTF-8", text.to_string_lossy())),
        }
    }
    /// The value as messages and `--help` show it.
    fn show(&self) -> String;
    /// The value as a number, for its range; `None` when it has none.
    fn number(&self) -> Option<f64> {
        None
    }
}

impl Value for f32 {
    const KIND: Kind = Kind::Number;
    fn parse(text: &str) -> Result<f32, String> {
        text.parse()
            .map_err(|_| format!("expected a number, got `{text}`"))
    }
    fn show(&self) -> String {
        self.to_string()
    }
    fn number(&self) -> Option<f64> {
        Some(f64::from(*self))
    }
}

impl Value for f64 {
    const KIND: Kind = Kind::Number;
    fn parse(text: &str) -> Result<f64, String> {
        text.parse()
            .map_err(|_| format!("expected a number, got `{text}`"))
    }
    fn show(&self) -> String {
        self.to_string()
    }
    fn number(&self) -> Option<f64> {
        Some(*self)
    }
}

/// Digits only, fitting in a `T`; a minus sign is "must not be negative".
fn whole<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    if text.starts_with('-') && text[1..].parse::<f64>().is_ok() {
        return Err("must not be negative".into());
    }
    match text.parse() {
        Ok(n) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("expected a whole number, got `{text}`")),
    }
}

impl Value for usize {
    const KIND: Kind = Kind::Integer;
    fn parse(text: &str) -> Result<usize, String> {
        whole(text)
    }
    fn show(&self) -> String {
        self.to_string()
    }
    fn number(&self) -> Option<f64> {
        Some(*self as f64)
    }
}

impl Value for u64 {
    const KIND: Kind = Kind::Integer;
    fn parse(text: &str) -> Result<u64, String> {
        whole(text)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for bool {
    const KIND: Kind = Kind::Switch;
    fn parse(text: &str) -> Result<bool, String> {
        match text {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("expected `true` or `false`, got `{text}`")),
        }
    }
    fn show(&self) -> String {
        if *self { "on" } else { "off" }.into()
    }
}

impl Value for PathBuf {
    const KIND: Kind = Kind::Path;
    fn parse(text: &str) -> Result<PathBuf, String> {
        Ok(PathBuf::from(text))
    }
    fn parse_os(text: &OsStr) -> Result<PathBuf, String> {
        Ok(PathBuf::from(text))
    }
    fn show(&self) -> String {
        self.display().to_string()
    }
}

/// [`Value`] for the enums of [`crate::names::named_enum!`]: a value is one of the names.
macro_rules! choice_values {
    ($($t:ty),*) => {$(
        impl Value for $t {
            const KIND: Kind = Kind::Choice(<$t>::CHOICES);
            fn parse(text: &str) -> Result<$t, String> {
                <$t>::from_name(text).ok_or_else(|| {
                    format!(
                        "expected one of {}, got `{text}`{}",
                        <$t>::NAMES.join(", "),
                        did_you_mean(text, <$t>::NAMES)
                    )
                })
            }
            fn show(&self) -> String {
                self.name().into()
            }
        }
    )*};
}

choice_values!(OptimizerChoice, ScheduleChoice, Init, Monitor);

/// Makes, from the list of [`super::options`], the run's option types and their table:
///
/// - [`RunConfig`]: a field per entry, with the entry's doc comment and `#[serde]`
///   attributes, and its `Default` from the entries' defaults;
/// - [`RunOptions`]: an `Option` per entry (for an `Option<T>` field, an `Option<T>`), and
///   [`RunOptions::over`];
/// - `OPTIONS`: a [`Spec`] per entry, from the entry's `{ ... }` (fields of [`Spec`], each
///   followed by a comma; the rest from [`Spec::BASE`]) and the [`Field`] functions.
///
/// An entry is `doc comment, #[serde(...)] attributes, name: Type = default => { spec }`.
macro_rules! run_options {
    // An entry whose field is an `Option`: given, it holds the value.
    (@entry [$($done:tt)*]
        $(#[doc = $doc:literal])* $(#[serde($($serde:tt)*)])*
        $name:ident : Option<$given:ty> = $default:expr => { $($spec:tt)* },
        $($rest:tt)*
    ) => {
        run_options!(@entry [$($done)* {
            [$($doc)*] [$(#[serde($($serde)*)])*] $name, Option<$given>, $given, $default,
            optional, { $($spec)* }
        }] $($rest)*);
    };
    // An entry whose field is its value.
    (@entry [$($done:tt)*]
        $(#[doc = $doc:literal])* $(#[serde($($serde:tt)*)])*
        $name:ident : $ty:ty = $default:expr => { $($spec:tt)* },
        $($rest:tt)*
    ) => {
        run_options!(@entry [$($done)* {
            [$($doc)*] [$(#[serde($($serde)*)])*] $name, $ty, $ty, $default,
            plain, { $($spec)* }
        }] $($rest)*);
    };
    (@entry [$($done:tt)*]) => {
        run_options!(@emit $($done)*);
    };

    // The field `$name` of a RunConfig, as a `&T` if present.
    (@ref optional, $c:expr, $name:ident) => { $c.$name.as_ref() };
    (@ref plain, $c:expr, $name:ident) => { Some(&$c.$name) };
    (@put optional, $c:expr, $name:ident, $v:expr) => { $c.$name = Some($v) };
    (@put plain, $c:expr, $name:ident, $v:expr) => { $c.$name = $v };
    (@optional optional) => { true };
    (@optional plain) => { false };

    (@emit $({
        [$($doc:literal)*] [$($attr:tt)*] $name:ident, $ty:ty, $given:ty, $default:expr,
        $how:ident, { $($spec:tt)* }
    })*) => {
        /// Everything that defines a training run, one field per option of
        /// [`OPTIONS`](crate::run::OPTIONS). Serialised, it is the run folder's `run.json`.
        ///
        /// Reading accepts the `run.json` of run folders written before this type existed:
        /// their extra keys (`threads`, `out`, `monitor`, ...) are ignored, a null `epochs`
        /// means the default, and missing keys take their defaults.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default)]
        pub struct RunConfig {
            $( $(#[doc = $doc])* $($attr)* pub $name: $ty, )*
        }

        impl Default for RunConfig {
            /// The defaults of every option, as the table gives them.
            fn default() -> RunConfig {
                RunConfig { $($name: $default,)* }
            }
        }

        /// The options given for a run (flags, a config file's `Train` and `Augment` lines,
        /// [`RunOptions::set`]): each `None` when not given. A new run takes the defaults for
        /// the rest ([`RunConfig::with`]); a resumed run keeps its stored values
        /// ([`RunConfig::resumed`]).
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct RunOptions {
            $(
                #[doc = concat!("[`RunConfig::", stringify!($name), "`], when given.")]
                pub $name: Option<$given>,
            )*
        }

        impl RunOptions {
            /// `self`'s options, with `base`'s where `self` has none: the command line's
            /// flags (`self`) over a config file's `Train` and `Augment` lines (`base`).
            pub fn over(&self, base: &RunOptions) -> RunOptions {
                RunOptions {
                    $($name: self.$name.clone().or_else(|| base.$name.clone()),)*
                }
            }
        }

        /// Every run option, in `run.json`'s order: see [`crate::run::options`].
        pub static OPTIONS: &[$crate::run::table::Spec] = &[$(
            $crate::run::table::Spec {
                name: stringify!($name),
                doc: concat!($($doc, "\n",)*),
                kind: <$given as $crate::run::table::Value>::KIND,
                optional: run_options!(@optional $how),
                field: $crate::run::table::Field {
                    set: |o, text| {
                        o.$name = Some(<$given as $crate::run::table::Value>::parse_os(text)?);
                        Ok(())
                    },
                    given: |o| o.$name.as_ref().map($crate::run::table::Value::show),
                    given_number: |o| {
                        o.$name.as_ref().and_then($crate::run::table::Value::number)
                    },
                    show: |c| run_options!(@ref $how, c, $name)
                        .map($crate::run::table::Value::show),
                    number: |c| run_options!(@ref $how, c, $name)
                        .and_then($crate::run::table::Value::number),
                    take: |c, o| match &o.$name {
                        Some(v) if run_options!(@ref $how, c, $name) != Some(v) => {
                            run_options!(@put $how, c, $name, v.clone());
                            true
                        }
                        _ => false,
                    },
                },
                $($spec)*
                ..$crate::run::table::Spec::BASE
            },
        )*];
    };

    ($($entries:tt)*) => {
        run_options!(@entry [] $($entries)*);
    };
}

pub(crate) use run_options;
