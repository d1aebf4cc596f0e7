//! The training settings a config file may carry, like darknet's `[net]` section, so that one
//! file is a whole recipe:
//!
//! ```text
//! Train epochs=30 batch=128 optimizer=sgd lr=0.05 momentum=0.9 nesterov=true weight_decay=5e-4 schedule=cosine warmup=1 label_smoothing=0.1
//! Augment shift=2 flip=horizontal
//! ```
//!
//! The config parser ([`crate::config`]) finds the lines and checks their keys; this module
//! reads their values into [`RunOptions`], each bad value an [`crate::Error::Config`] at its
//! line and column. The command line's flags override them ([`RunOptions::over`]), and the
//! defaults of [`RunConfig::default`] fill the rest: flag > config line > default.
//!
//! | key | flag | value |
//! |---|---|---|
//! | `epochs` | `--epochs` | whole number, at least 1 |
//! | `batch` | `--batch-size` | whole number, at least 1 |
//! | `optimizer` | `--optimizer` | `sgd`, `momentum`, `nesterov`, `adam`, `adamw` |
//! | `lr` | `--lr` | number above 0 |
//! | `momentum` | `--momentum` | from 0 to below 1 |
//! | `nesterov` | | `true` or `false` |
//! | `weight_decay` | `--weight-decay` | 0 or more |
//! | `schedule` | `--schedule` | `constant`, `step`, `cosine` |
//! | `step` | `--step-size` | whole number, at least 1 |
//! | `gamma` | `--gamma` | above 0, at most 1 |
//! | `min_lr` | `--min-lr` | 0 or more |
//! | `warmup` | `--warmup` | whole number |
//! | `label_smoothing` | `--label-smoothing` | from 0 to below 1 |
//! | `init` | `--init-scheme` | `normal`, `he`, `glorot` |
//! | `seed` | `--seed` | whole number |
//! | `normalize` | `--normalize` | `true` or `false` |
//! | `val_split` | `--val-split` | strictly between 0 and 1 |
//! | `early_stop` | `--early-stop` | `val_loss`, `val_accuracy`, `none` |
//! | `patience` | `--patience` | whole number, at least 1 |
//! | `min_delta` | `--min-delta` | 0 or more |
//! | `restore_best` | `--restore-best` | `true` or `false` |
//! | `shift` (Augment) | `--shift` | whole number of pixels, below the image's height and width |
//! | `flip` (Augment) | `--flip` | `horizontal` or `none` |
//!
//! `optimizer=sgd` reads as PyTorch's `SGD`: with `momentum` above 0 it is SGD with momentum,
//! and `nesterov=true` makes it Nesterov's. A switch set on in the file (`normalize=true`,
//! `flip=horizontal`, `restore_best=true`) cannot be switched off by a flag: edit the line.

use crate::config::{ParsedConfig, SettingsLine};
use crate::early_stop::Monitor;
use crate::error::Result;
use crate::init::Init;
use crate::layers::keys::{Arg, LineKeys};
use crate::text::did_you_mean;

use super::{OptimizerChoice, RunConfig, RunOptions, ScheduleChoice};

/// The run config of a new run: the options `given` (the command line's) over the `Train`
/// and `Augment` lines of the network config `given.config` names, over the defaults; checked.
///
/// # Errors
/// The config file's errors ([`crate::Error::Io`], [`crate::Error::Config`]), and
/// [`crate::Error::Usage`] for an option out of range or out of place.
pub fn resolve(given: &RunOptions) -> Result<RunConfig> {
    let parsed = match &given.config {
        Some(path) => Some(crate::config::load(path)?),
        None => None,
    };
    let from_file = match &parsed {
        Some(p) => from_config(p)?,
        None => RunOptions::default(),
    };
    let merged = given.over(&from_file);
    if let Some(p) = &parsed {
        check_file_keys(p, given, &merged)?;
    }
    merged.check()?;
    let config = RunConfig::default().with(&merged);
    config.validate()?;
    Ok(config)
}

/// Refuses a setting of the file that only applies with another one that the run does not
/// have (`gamma=` without `schedule=step`, `patience=` without `early_stop=`, `early_stop=`
/// without `val_split=`) or that contradicts another (`warmup=` not below the epochs,
/// `min_lr=` above the rate), at the setting's line and column, unless a flag replaced it. The
/// same mistakes made with flags are [`RunOptions::check`]'s and
/// [`RunConfig::validate`]'s.
fn check_file_keys(parsed: &ParsedConfig, given: &RunOptions, merged: &RunOptions) -> Result<()> {
    let schedule = merged.schedule.unwrap_or_default();
    let c = RunConfig::default().with(merged);
    let warmup_why = format!(
        "must be fewer epochs than the run's {} (warm-up comes before the schedule)",
        c.epochs
    );
    let min_lr_why = format!("must be at most the run's learning rate ({})", c.lr);
    let rules = [
        (
            "warmup",
            given.warmup.is_none() && c.warmup > 0 && c.warmup >= c.epochs,
            warmup_why.as_str(),
        ),
        (
            "min_lr",
            given.min_lr.is_none() && c.min_lr > c.lr,
            min_lr_why.as_str(),
        ),
        (
            "step",
            given.step_size.is_none() && schedule != ScheduleChoice::Step,
            "applies to `schedule=step`; add it, or leave `step` out",
        ),
        (
            "gamma",
            given.gamma.is_none() && schedule != ScheduleChoice::Step,
            "applies to `schedule=step`; add it, or leave `gamma` out",
        ),
        (
            "min_lr",
            given.min_lr.is_none() && schedule != ScheduleChoice::Cosine,
            "applies to `schedule=cosine`; add it, or leave `min_lr` out",
        ),
        (
            "patience",
            given.patience.is_none() && merged.early_stop.is_none(),
            "applies to early stopping; add `early_stop=val_loss` (or val_accuracy)",
        ),
        (
            "min_delta",
            given.min_delta.is_none() && merged.early_stop.is_none(),
            "applies to early stopping; add `early_stop=val_loss` (or val_accuracy)",
        ),
        (
            "restore_best",
            merged.restore_best && merged.early_stop.is_none(),
            "applies to early stopping; add `early_stop=val_loss` (or val_accuracy)",
        ),
        (
            "early_stop",
            given.early_stop.is_none() && merged.early_stop.is_some() && merged.val_split.is_none(),
            "watches a validation split, and this run has none: add `val_split=0.1` (early \
             stopping never looks at the test set)",
        ),
    ];
    let train = parsed.settings.iter().find(|l| l.name == "Train");
    for (key, wrong, why) in rules {
        let Some(a) = train.and_then(|l| l.args.iter().find(|a| a.key == key)) else {
            continue;
        };
        if wrong {
            return Err(parsed.error_at(a.key_pos, format!("`{key}={}` {why}", a.value)));
        }
    }
    Ok(())
}

/// Largest `epochs`, `batch`, `step`, `warmup` or `patience` a config line may give.
const MAX_COUNT: usize = 1_000_000;

/// The run options that `parsed`'s `Train` and `Augment` lines set (none when it has none).
///
/// # Errors
/// [`crate::Error::Config`] at the value that is malformed or out of range, saying what was
/// expected.
pub fn from_config(parsed: &ParsedConfig) -> Result<RunOptions> {
    let mut o = RunOptions::default();
    for line in &parsed.settings {
        let args = line.args();
        let keys = LineKeys {
            file: &parsed.file,
            name: line.name,
            name_pos: line.name_pos,
            args: &args,
        };
        match line.name {
            "Train" => train_line(&keys, &mut o)?,
            _ => augment_line(&keys, parsed, &mut o)?,
        }
    }
    Ok(o)
}

fn train_line(k: &LineKeys, o: &mut RunOptions) -> Result<()> {
    for a in k.args {
        match a.key {
            "epochs" => o.epochs = Some(k.whole(a, 1, MAX_COUNT)?),
            "batch" => o.batch_size = Some(k.whole(a, 1, MAX_COUNT)?),
            "lr" => o.lr = Some(number(k, a, "above 0 (e.g. `lr=0.01`)", |x| x > 0.0)? as f32),
            "momentum" => {
                o.momentum = Some(
                    number(k, a, "from 0 to below 1 (e.g. `momentum=0.9`)", |x| {
                        (0.0..1.0).contains(&x)
                    })? as f32,
                )
            }
            "weight_decay" => {
                o.weight_decay =
                    Some(number(k, a, "0 or more (e.g. `weight_decay=5e-4`)", |x| x >= 0.0)? as f32)
            }
            "gamma" => {
                o.gamma = Some(
                    number(k, a, "above 0 and at most 1 (e.g. `gamma=0.1`)", |x| {
                        x > 0.0 && x <= 1.0
                    })? as f32,
                )
            }
            "min_lr" => {
                o.min_lr =
                    Some(number(k, a, "0 or more (e.g. `min_lr=0.0001`)", |x| x >= 0.0)? as f32)
            }
            "label_smoothing" => {
                o.label_smoothing = Some(number(
                    k,
                    a,
                    "from 0 to below 1 (e.g. `label_smoothing=0.1`)",
                    |x| (0.0..1.0).contains(&x),
                )? as f32)
            }
            "val_split" => {
                o.val_split = Some(number(
                    k,
                    a,
                    "strictly between 0 and 1 (e.g. `val_split=0.1`)",
                    |x| x > 0.0 && x < 1.0,
                )?)
            }
            "min_delta" => {
                o.min_delta = Some(number(k, a, "0 or more (e.g. `min_delta=0.001`)", |x| {
                    x >= 0.0
                })?)
            }
            "step" => o.step_size = Some(k.whole(a, 1, MAX_COUNT)?),
            "warmup" => o.warmup = Some(k.whole(a, 0, MAX_COUNT)?),
            "patience" => o.patience = Some(k.whole(a, 1, MAX_COUNT)?),
            "seed" => {
                o.seed = Some(a.value.parse::<u64>().map_err(|_| {
                    k.err(
                        a.value_pos,
                        format!(
                            "`seed` must be a whole number from 0 to {}, found `{}`",
                            u64::MAX,
                            a.value
                        ),
                    )
                })?)
            }
            "normalize" => o.normalize = boolean(k, a)?,
            "restore_best" => o.restore_best = boolean(k, a)?,
            "nesterov" => {} // read with `optimizer` below
            "optimizer" => {
                o.optimizer = Some(choice(
                    k,
                    a,
                    &[
                        ("sgd", OptimizerChoice::Sgd),
                        ("momentum", OptimizerChoice::Momentum),
                        ("nesterov", OptimizerChoice::Nesterov),
                        ("adam", OptimizerChoice::Adam),
                        ("adamw", OptimizerChoice::AdamW),
                    ],
                )?)
            }
            "schedule" => {
                o.schedule = Some(choice(
                    k,
                    a,
                    &[
                        ("constant", ScheduleChoice::Constant),
                        ("step", ScheduleChoice::Step),
                        ("cosine", ScheduleChoice::Cosine),
                    ],
                )?)
            }
            "init" => {
                o.init_scheme = Some(choice(
                    k,
                    a,
                    &[
                        ("normal", Init::Normal),
                        ("he", Init::He),
                        ("glorot", Init::Glorot),
                    ],
                )?)
            }
            "early_stop" => {
                o.early_stop = choice(
                    k,
                    a,
                    &[
                        ("val_loss", Some(Monitor::ValLoss)),
                        ("val_accuracy", Some(Monitor::ValAccuracy)),
                        ("none", None),
                    ],
                )?
            }
            _ => {}
        }
    }
    optimizer_family(k, o)
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

fn augment_line(k: &LineKeys, parsed: &ParsedConfig, o: &mut RunOptions) -> Result<()> {
    let [_, h, w] = parsed.spec.input;
    for a in k.args {
        match a.key {
            "shift" => {
                let most = h.min(w) - 1;
                let s = k.whole(a, 0, MAX_COUNT)?;
                if s > most {
                    return Err(k.err(
                        a.value_pos,
                        format!(
                            "`shift={s}` is too large for {h}x{w} images: a shift moves the \
                             image by up to that many pixels, so it must be below the height \
                             and width (at most {most}; 2 is usual for 28x28)"
                        ),
                    ));
                }
                o.shift = Some(s);
            }
            "flip" => {
                o.flip = match a.value {
                    "horizontal" => true,
                    "none" => false,
                    other => {
                        return Err(k.err(
                            a.value_pos,
                            format!(
                                "`flip` must be `horizontal` (left to right) or `none`, found \
                                 `{other}`{}: a vertical flip turns objects upside down, which \
                                 the test images never are, so it would teach the network \
                                 images it never sees",
                                did_you_mean(other, &["horizontal", "none"])
                            ),
                        ))
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A finite number for which `ok` holds; `what` says which (for the error).
fn number(k: &LineKeys, a: &Arg, what: &str, ok: impl Fn(f64) -> bool) -> Result<f64> {
    match a.value.parse::<f64>() {
        Ok(x) if x.is_finite() && ok(x) => Ok(x),
        _ => Err(k.err(
            a.value_pos,
            format!("`{}` must be a number {what}, found `{}`", a.key, a.value),
        )),
    }
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

/// One of the named `options`, with a "did you mean" for a near miss.
fn choice<T: Copy>(k: &LineKeys, a: &Arg, options: &[(&str, T)]) -> Result<T> {
    if let Some((_, v)) = options.iter().find(|(n, _)| *n == a.value) {
        return Ok(*v);
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    Err(k.err(
        a.value_pos,
        format!(
            "unknown {} `{}`{}; expected one of {}",
            a.key.replace('_', " "),
            a.value,
            did_you_mean(a.value, &names),
            names.join(", ")
        ),
    ))
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
            normalize: true,
            val_split: Some(0.25),
            early_stop: Some(Monitor::ValAccuracy),
            patience: Some(3),
            min_delta: Some(0.01),
            restore_best: true,
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
}
