//! The training settings a config file may carry, like darknet's `[net]` section, so that one
//! file is a whole recipe:
//!
//! ```text
//! Train epochs=30 batch=128 optimizer=sgd lr=0.05 momentum=0.9 nesterov=true weight_decay=5e-4 schedule=cosine warmup=1 label_smoothing=0.1
//! Augment shift=2 flip=horizontal
//! ```
//!
//! The config parser ([`crate::config`]) finds the lines and checks their keys (those of
//! [`line_keys`]); this module reads their values into [`RunOptions`], each bad value an
//! [`crate::Error::Config`] at its line and column. The command line's flags override them
//! ([`RunOptions::over`]), and the defaults of [`RunConfig::default`] fill the rest: flag >
//! config line > default.
//!
//! Each option's key, values and default are in the table of [`super::options`] (listed by
//! `cnn train --help` and in docs/GUIDE.md). A value reads as the flag's would, with three
//! exceptions of the file's own: a switch is `true` or `false`; `flip` is `horizontal` or
//! `none`; `early_stop=none` is no early stopping.
//!
//! `optimizer=sgd` reads as PyTorch's `SGD`: with `momentum` above 0 it is SGD with momentum,
//! and `nesterov=true` makes it Nesterov's. The flags `--optimizer sgd --momentum 0.5` mean the
//! same ([`RunConfig::with`]); `momentum` with Adam is refused, as `--momentum` is. A switch set on in the file (`normalize=true`,
//! `flip=horizontal`, `restore_best=true`) cannot be switched off by a flag: edit the line.

use std::ffi::OsStr;

use crate::config::{ParsedConfig, SettingsArg, SettingsLine};
use crate::error::{Error, Result};
use crate::layers::keys::{Arg, LineKeys};
use crate::text::did_you_mean;

use super::run_config::{Misfit, Wording};
use super::table::{Kind, Line, Spec};
use super::{OptimizerChoice, RunConfig, RunOptions, OPTIONS};

/// The keys of the settings line `line` (`Train` or `Augment`), for the config parser: the
/// options' keys on it, and on `Train`, `nesterov` (read with `optimizer` and `momentum`).
pub fn line_keys(line: &str) -> Vec<&'static str> {
    let mut keys = Vec::new();
    for key in OPTIONS.iter().filter_map(|s| s.key) {
        if key.line.name() == line {
            keys.push(key.name);
            if key.name == "momentum" {
                keys.push("nesterov");
            }
        }
    }
    keys
}

/// The run config of a new run: the options `given` (the command line's) over the `Train`
/// and `Augment` lines of the network config `given.config` names, over the defaults; checked.
///
/// # Errors
/// The config file's errors ([`crate::Error::Io`], [`crate::Error::Config`]), and
/// [`crate::Error::Usage`] for an option out of range or out of place. An option that does
/// not go with the others is blamed on the file's line when the file gave it, at its key,
/// and on the flag otherwise.
pub fn resolve(given: &RunOptions) -> Result<RunConfig> {
    let parsed = match &given.config {
        Some(path) => Some(crate::config::load(path)?),
        None => None,
    };
    resolve_with(given, parsed.as_ref(), Wording::Flag)
}

/// [`resolve`] with the network config already parsed (`parsed`, whose `Train` and `Augment`
/// lines apply; `given.config` is not read), an option the caller gave named in `wording`'s
/// words: Python's `Model.fit` gives keywords over the lines of a config it holds as text.
///
/// # Errors
/// As [`resolve`].
pub fn resolve_with(
    given: &RunOptions,
    parsed: Option<&ParsedConfig>,
    wording: Wording,
) -> Result<RunConfig> {
    let from_file = match parsed {
        Some(p) => from_config(p)?,
        None => RunOptions::default(),
    };
    let blame = |m: Misfit| -> Error {
        let flagged = (m.option.field.given)(given).is_some();
        match parsed.filter(|_| !flagged).and_then(|p| {
            let a = file_arg(p, m.option)?;
            Some(p.error_at(a.key_pos, format!("`{}={}` {}", a.key, a.value, m.line)))
        }) {
            Some(at_the_line) => at_the_line,
            None => Error::Usage(m.given(wording)),
        }
    };
    let merged = given.over(&from_file);
    if let Some(m) = merged.misplaced() {
        return Err(blame(m));
    }
    let config = RunConfig::default().with(&merged);
    // The file's values were checked as they were read: what is out of range is a flag's.
    config.check_ranges_as(wording)?;
    if let Some(m) = config.misfit() {
        return Err(blame(m));
    }
    Ok(config)
}

/// The `key=value` of the file that gave `spec`, if one did.
fn file_arg<'p>(parsed: &'p ParsedConfig, spec: &Spec) -> Option<&'p SettingsArg> {
    let key = spec.key?;
    let line = parsed.settings.iter().find(|l| l.name == key.line.name())?;
    line.args.iter().find(|a| a.key == key.name)
}

/// The run options that `parsed`'s `Train` and `Augment` lines set (none when it has none).
///
/// # Errors
/// [`crate::Error::Config`] at the value that is malformed or out of range, saying what was
/// expected.
pub fn from_config(parsed: &ParsedConfig) -> Result<RunOptions> {
    let mut o = RunOptions::default();
    for line in &parsed.settings {
        let args = line.args();
        let k = LineKeys {
            file: &parsed.file,
            name: line.name,
            name_pos: line.name_pos,
            args: &args,
        };
        for a in k.args {
            // The config parser let only the line's keys through; `nesterov` is read with
            // `optimizer` below.
            let Some(spec) = OPTIONS.iter().find(|s| {
                s.key
                    .is_some_and(|key| key.line.name() == line.name && key.name == a.key)
            }) else {
                continue;
            };
            if spec.name == "shift" {
                check_shift(&k, a, parsed)?;
            }
            read(&k, a, spec, &mut o)?;
        }
        if line.name == Line::Train.name() {
            optimizer_family(&k, &mut o)?;
        }
    }
    Ok(o)
}

/// Reads the value of `a`, the key of `spec`, into `o`.
fn read(k: &LineKeys, a: &Arg, spec: &Spec, o: &mut RunOptions) -> Result<()> {
    let mut text = a.value;
    match spec.kind {
        // A switch that is off is left out: off is what it is unless given. `flip` says
        // which flip, or none.
        Kind::Switch if spec.name == "flip" => match text {
            "horizontal" => text = "true",
            "none" => return Ok(()),
            other => {
                return Err(k.err(
                    a.value_pos,
                    format!(
                        "`flip` must be `horizontal` (left to right) or `none`, found \
                         `{other}`{}: a vertical flip turns objects upside down, which the \
                         test images never are, so it would teach the network images it never \
                         sees",
                        did_you_mean(other, &["horizontal", "none"])
                    ),
                ));
            }
        },
        Kind::Switch if !boolean(k, a)? => return Ok(()),
        Kind::Choice(choices) => {
            let mut names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            if spec.optional {
                if text == "none" {
                    return Ok(());
                }
                names.push("none");
            }
            if !names.contains(&text) {
                return Err(k.err(
                    a.value_pos,
                    format!(
                        "unknown {} `{text}`{}; expected one of {}",
                        a.key.replace('_', " "),
                        did_you_mean(text, &names),
                        names.join(", ")
                    ),
                ));
            }
        }
        Kind::Switch | Kind::Number | Kind::Integer | Kind::Path => {}
    }
    let read = (spec.field.set)(o, OsStr::new(text));
    let in_range = (spec.field.given_number)(o).is_none_or(|x| spec.range.holds(x));
    if read.is_err() || !in_range {
        let example = if spec.example.is_empty() {
            String::new()
        } else {
            format!(" (e.g. `{}={}`)", a.key, spec.example)
        };
        return Err(k.err(
            a.value_pos,
            format!(
                "`{}` must be {}{example}, found `{}`",
                a.key,
                spec.range.line_words(spec.kind),
                a.value
            ),
        ));
    }
    Ok(())
}

/// A shift must be below the image's height and width.
fn check_shift(k: &LineKeys, a: &Arg, parsed: &ParsedConfig) -> Result<()> {
    let [_, h, w] = parsed.spec.input;
    let most = h.min(w) - 1;
    if let Some(s) = crate::layers::keys::parse_whole(a.value).filter(|&s| s > most) {
        return Err(k.err(
            a.value_pos,
            format!(
                "`shift={s}` is too large for {h}x{w} images: a shift moves the image by up to \
                 that many pixels, so it must be below the height and width (at most {most}; 2 \
                 is usual for 28x28)"
            ),
        ));
    }
    Ok(())
}

/// Reads `optimizer`, `momentum` and `nesterov` together as PyTorch's `SGD` does: `sgd` with
/// a momentum above 0 is SGD with momentum, and with `nesterov=true` Nesterov's.
fn optimizer_family(k: &LineKeys, o: &mut RunOptions) -> Result<()> {
    let nesterov = match k.get("nesterov") {
        Some(a) => Some((a, boolean(k, a)?)),
        None => None,
    };
    let momentum = o.momentum.unwrap_or(0.0);
    let sgd_like = matches!(
        o.optimizer,
        None | Some(OptimizerChoice::Sgd | OptimizerChoice::Momentum | OptimizerChoice::Nesterov)
    );
    if let Some((a, on)) = nesterov {
        if !sgd_like {
            return Err(k.err(
                a.key_pos,
                "`nesterov` applies to SGD with momentum (`optimizer=sgd momentum=0.9`), not \
                 to Adam",
            ));
        }
        if on && k.get("momentum").is_none() && o.optimizer != Some(OptimizerChoice::Momentum) {
            return Err(k.err(
                a.key_pos,
                "`nesterov=true` needs a momentum: add `momentum=0.9` (as PyTorch's SGD, \
                 which refuses Nesterov without momentum)",
            ));
        }
        if !on && o.optimizer == Some(OptimizerChoice::Nesterov) {
            return Err(k.err(
                a.value_pos,
                "`nesterov=false` contradicts `optimizer=nesterov`; write `optimizer=momentum` \
                 for SGD with plain momentum",
            ));
        }
    }
    let nesterov = nesterov.is_some_and(|(_, on)| on);
    if o.optimizer.is_none() && k.get("momentum").is_none() && !nesterov {
        return Ok(());
    }
    o.optimizer = Some(match o.optimizer {
        Some(OptimizerChoice::Adam) => OptimizerChoice::Adam,
        Some(OptimizerChoice::AdamW) => OptimizerChoice::AdamW,
        Some(OptimizerChoice::Nesterov) => OptimizerChoice::Nesterov,
        _ if nesterov => OptimizerChoice::Nesterov,
        Some(OptimizerChoice::Momentum) => OptimizerChoice::Momentum,
        _ if momentum > 0.0 => OptimizerChoice::Momentum,
        _ => OptimizerChoice::Sgd,
    });
    Ok(())
}

/// `true` or `false`.
fn boolean(k: &LineKeys, a: &Arg) -> Result<bool> {
    match a.value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(k.err(
            a.value_pos,
            format!("`{}` must be `true` or `false`, found `{other}`", a.key),
        )),
    }
}

/// The `Train` and `Augment` lines of `settings` as `cnn summary` shows them: one line
/// each, `name key=value ...` as written. Empty when there are none.
pub fn describe(settings: &[SettingsLine]) -> String {
    let mut s = String::new();
    if settings.is_empty() {
        return s;
    }
    s += "Training settings (flags on the command line override them):\n";
    for line in settings {
        s += "  ";
        s += line.name;
        for a in &line.args {
            s += &format!(" {}={}", a.key, a.value);
        }
        s += "\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::early_stop::Monitor;
    use crate::init::Init;
    use crate::run::ScheduleChoice;

    fn options(train: &str) -> Result<RunOptions> {
        let text = format!("2\n{train}\nInput shape=1x8x8\nFlatten\nDense units=3\n");
        from_config(&crate::config::parse(&text, "t.cfg")?)
    }

    // PyTorch's SGD(lr, momentum=0, nesterov=False) is plain SGD; momentum > 0 adds the
    // momentum buffer; nesterov=True (which needs momentum) is Nesterov's variant.
    #[test]
    fn optimizer_sgd_reads_momentum_and_nesterov_as_pytorch_sgd_does() {
        let opt = |line: &str| options(line).unwrap().optimizer;
        assert_eq!(opt("Train optimizer=sgd"), Some(OptimizerChoice::Sgd));
        assert_eq!(
            opt("Train optimizer=sgd momentum=0"),
            Some(OptimizerChoice::Sgd)
        );
        assert_eq!(
            opt("Train optimizer=sgd momentum=0.9"),
            Some(OptimizerChoice::Momentum)
        );
        assert_eq!(
            opt("Train optimizer=sgd momentum=0.9 nesterov=true"),
            Some(OptimizerChoice::Nesterov)
        );
        assert_eq!(opt("Train momentum=0.9"), Some(OptimizerChoice::Momentum));
        assert_eq!(
            opt("Train optimizer=momentum nesterov=true"),
            Some(OptimizerChoice::Nesterov)
        );
        assert_eq!(opt("Train optimizer=adamw"), Some(OptimizerChoice::AdamW));
        assert_eq!(
            opt("Train lr=0.1"),
            None,
            "no optimizer key: the flag or default"
        );
    }

    #[test]
    fn nesterov_false_with_optimizer_nesterov_is_a_contradiction_at_its_value() {
        let err = options("Train optimizer=nesterov nesterov=false").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.cfg:2:35: `nesterov=false` contradicts `optimizer=nesterov`; write \
             `optimizer=momentum` for SGD with plain momentum"
        );
    }

    #[test]
    fn every_train_key_reaches_its_run_option() {
        let o = options(
            "Train epochs=4 batch=16 lr=0.2 weight_decay=0.01 schedule=step step=2 gamma=0.5 \
             warmup=1 label_smoothing=0.1 init=glorot seed=9 normalize=true val_split=0.25 \
             early_stop=val_accuracy patience=3 min_delta=0.01 restore_best=true",
        )
        .unwrap();
        let want = RunOptions {
            epochs: Some(4),
            batch_size: Some(16),
            lr: Some(0.2),
            weight_decay: Some(0.01),
            schedule: Some(ScheduleChoice::Step),
            step_size: Some(2),
            gamma: Some(0.5),
            warmup: Some(1),
            label_smoothing: Some(0.1),
            init_scheme: Some(Init::Glorot),
            seed: Some(9),
            normalize: Some(true),
            val_split: Some(0.25),
            early_stop: Some(Monitor::ValAccuracy),
            patience: Some(3),
            min_delta: Some(0.01),
            restore_best: Some(true),
            ..RunOptions::default()
        };
        assert_eq!(o, want);
    }

    #[test]
    fn a_flag_overrides_the_config_line_and_the_line_overrides_the_default() {
        let file = options("Train lr=0.2 epochs=4").unwrap();
        let flags = RunOptions {
            lr: Some(0.05),
            ..RunOptions::default()
        };
        let c = RunConfig::default().with(&flags.over(&file));
        assert_eq!((c.lr, c.epochs, c.batch_size), (0.05, 4, 32));
    }

    #[test]
    fn clip_grad_norm_reads_from_the_train_line_above_0() {
        let o = options("Train clip_grad_norm=1.0").unwrap();
        assert_eq!(o.clip_grad_norm, Some(1.0));
        assert_eq!(
            options("Train clip_grad_norm=0").unwrap_err().to_string(),
            "t.cfg:2:22: `clip_grad_norm` must be a number above 0 (e.g. \
             `clip_grad_norm=1.0`), found `0`"
        );
    }
}
