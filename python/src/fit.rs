//! `Model.fit`: the run options as keyword arguments, arrays or a dataset path as data, a
//! [`cnn::run::Run`] trained on the worker threads without the GIL while the calling thread
//! prints the epochs and watches for Ctrl-C.
//!
//! The keywords are the run options of [`cnn::run::OPTIONS`] that `cnn train` has flags
//! for, named as their [`cnn::run::RunConfig`] fields (`batch_size`, `label_smoothing`),
//! read from text by [`cnn::run::RunOptions::set_keyword`] as a flag's value is, with the
//! config's `Train` and `Augment` lines under them (keyword > config line > default), so a new
//! option in the table is a new keyword here with no edit.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use pyo3::exceptions::{PyFloatingPointError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use cnn::data::Dataset;
use cnn::model_file::ModelMeta;
use cnn::run::table::{Kind, Spec};
use cnn::run::{settings, InMemory, Outcome, Run, RunEvent, RunOptions, Wording, OPTIONS};
use cnn::train::{Control, EpochMetrics};
use indicatif::{ProgressBar, ProgressStyle};

use crate::arrays::{labels, Images};
use crate::errors::{to_py, value_error, OrPy};
use crate::model::Model;
use crate::pools;

/// `fit`'s arguments besides the run options.
pub struct FitArgs<'a, 'py> {
    pub x: Option<&'a Bound<'py, PyAny>>,
    pub y: Option<&'a Bound<'py, PyAny>>,
    pub validation_data: Option<&'a Bound<'py, PyAny>>,
    pub validation_split: Option<&'a Bound<'py, PyAny>>,
    pub out: Option<PathBuf>,
    pub force: bool,
    pub threads: Option<i64>,
    pub progress: bool,
    pub options: Option<&'a Bound<'py, PyDict>>,
}

/// The run options `fit` takes as keywords: those `cnn train` has a flag for.
///
/// The test-time views (`test_flip`, `test_shift`) are left out: they act on a run's final
/// score, and `fit` returns the epochs' history (one view each); `Model.evaluate` scores.
pub fn keyword_options() -> impl Iterator<Item = &'static Spec> {
    OPTIONS
        .iter()
        .filter(|s| !s.flag.is_empty() && !matches!(s.name, "test_flip" | "test_shift"))
}

/// A keyword's Python value as the text a flag would give, or `None` for `None` (not given).
fn option_text(spec: &Spec, v: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    if v.is_none() {
        return Ok(None);
    }
    let name = spec.name;
    let type_name = v.get_type().name()?.to_string();
    let wrong =
        |what: &str| PyTypeError::new_err(format!("fit(): {name} must be {what}, got {type_name}"));
    let is_bool = v.is_instance_of::<PyBool>();
    let text = match spec.kind {
        Kind::Switch if is_bool => if v.extract::<bool>()? {
            "true"
        } else {
            "false"
        }
        .to_string(),
        Kind::Switch => return Err(wrong("True or False")),
        Kind::Integer if !is_bool && v.is_instance_of::<PyInt>() => v.str()?.to_string(),
        Kind::Integer => return Err(wrong("an int")),
        Kind::Number
            if !is_bool && (v.is_instance_of::<PyInt>() || v.is_instance_of::<PyFloat>()) =>
        {
            v.str()?.to_string()
        }
        // NumPy scalars and other numbers: through float().
        Kind::Number if !is_bool && v.hasattr("__float__")? && !v.is_instance_of::<PyString>() => {
            let f: f64 = v.extract()?;
            PyFloat::new(v.py(), f).str()?.to_string()
        }
        Kind::Number => return Err(wrong("a number")),
        Kind::Choice(_) if v.is_instance_of::<PyString>() => v.extract::<String>()?,
        Kind::Choice(choices) => {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("'{n}'")).collect();
            return Err(wrong(&format!("one of {}", names.join(", "))));
        }
        Kind::Path => match v.extract::<PathBuf>() {
            Ok(p) => p.display().to_string(),
            Err(_) => return Err(wrong("a path (str or os.PathLike)")),
        },
    };
    Ok(Some(text))
}

/// The options given as keywords.
fn given_options(options: Option<&Bound<'_, PyDict>>) -> PyResult<RunOptions> {
    let mut given = RunOptions::default();
    let Some(options) = options else {
        return Ok(given);
    };
    let names: Vec<&str> = keyword_options().map(|s| s.name).collect();
    for (k, v) in options.iter() {
        let name: String = k.extract()?;
        let Some(spec) = keyword_options().find(|s| s.name == name) else {
            let mut known = names.clone();
            known.extend([
                "validation_data",
                "validation_split",
                "out",
                "force",
                "threads",
                "progress",
            ]);
            // Keras's and PyTorch's names for what is here under another.
            let other = match name.as_str() {
                "learning_rate" => Some("lr"),
                "shuffle" => Some("no_shuffle"),
                "verbose" => Some("progress"),
                "workers" | "num_threads" => Some("threads"),
                _ => None,
            };
            let hint = match other {
                Some(ours) => format!("; did you mean `{ours}`?"),
                None => cnn::text::did_you_mean(&name, &known),
            };
            return Err(PyTypeError::new_err(format!(
                "fit() got an unexpected keyword argument '{name}'{hint}"
            )));
        };
        if let Some(text) = option_text(spec, &v)? {
            given.set_keyword(&name, &text).map_err(value_error)?;
        }
    }
    Ok(given)
}

/// What the training thread tells the calling one.
enum Message {
    Epoch(EpochMetrics),
}

/// The run's end, as the training thread hands it back.
type Finished = (cnn::Result<Outcome>, Option<(cnn::model::Model, ModelMeta)>);

/// `print(line, flush=True)` on Python's `sys.stdout` (so a notebook shows it).
fn say(py: Python<'_>, line: &str) -> PyResult<()> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("flush", true)?;
    py.import("builtins")?
        .getattr("print")?
        .call((line,), Some(&kwargs))?;
    Ok(())
}

/// One epoch's line, as `cnn train` prints it.
fn epoch_line(m: &EpochMetrics, epochs: usize) -> String {
    let held_out = match (m.val_loss, m.val_accuracy) {
        (Some(l), Some(a)) => format!("  val loss {l:.4}  val acc {:6.2}%", a * 100.0),
        _ => String::new(),
    };
    format!(
        "epoch {:>3}/{epochs}  loss {:.4}  acc {:6.2}%{held_out}  {:.2}s  {:.0} img/s",
        m.epoch,
        m.loss,
        m.accuracy * 100.0,
        m.seconds,
        m.images_per_second
    )
}

/// Keras's `History.history`: a list per figure, one entry per epoch.
fn history<'py>(py: Python<'py>, outcome: &Outcome) -> PyResult<Bound<'py, PyDict>> {
    let h = &outcome.history;
    let d = PyDict::new(py);
    d.set_item("loss", h.iter().map(|m| m.loss).collect::<Vec<_>>())?;
    d.set_item("accuracy", h.iter().map(|m| m.accuracy).collect::<Vec<_>>())?;
    if h.iter().any(|m| m.val_loss.is_some()) {
        let nan = f64::NAN;
        d.set_item(
            "val_loss",
            h.iter()
                .map(|m| m.val_loss.unwrap_or(nan))
                .collect::<Vec<_>>(),
        )?;
        d.set_item(
            "val_accuracy",
            h.iter()
                .map(|m| m.val_accuracy.unwrap_or(nan))
                .collect::<Vec<_>>(),
        )?;
    }
    // The f32 rate as the f64 its shortest text is: 0.01, not 0.009999999776482582.
    let lr = |m: &EpochMetrics| m.lr.to_string().parse::<f64>().unwrap_or(f64::from(m.lr));
    d.set_item("lr", h.iter().map(lr).collect::<Vec<_>>())?;
    d.set_item("seconds", h.iter().map(|m| m.seconds).collect::<Vec<_>>())?;
    Ok(d)
}

/// Whether `v` names a dataset (a path or `"demo"`) rather than holding arrays.
fn is_path(v: &Bound<'_, PyAny>) -> bool {
    v.is_instance_of::<PyString>() || v.hasattr("__fspath__").unwrap_or(false)
}

/// A dataset of the arrays `x`, `y` for `model`.
fn dataset(
    model: &Model,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    names: [&str; 2],
) -> PyResult<Dataset> {
    let images = Images::load(x, model.input(), names[0])?;
    let labels = labels(y, images.n, model.k(), names[1])?;
    Ok(Dataset {
        images: images.bytes_for_training(names[0])?,
        labels,
        shape: images.shape,
        classes: model.meta.classes.clone(),
        source: "NumPy arrays".into(),
    })
}

pub fn fit<'py>(
    model: &mut Model,
    py: Python<'py>,
    a: FitArgs<'_, 'py>,
) -> PyResult<Bound<'py, PyDict>> {
    let mut given = given_options(a.options)?;
    if let Some(v) = a.validation_split {
        if given.val_split.is_some() {
            return Err(PyTypeError::new_err(
                "fit() got both validation_split and val_split, which are the same option",
            ));
        }
        let spec = cnn::run::options::find("val_split").expect("an option");
        if let Some(text) = option_text(spec, v)? {
            given.set_keyword("val_split", &text).map_err(value_error)?;
        }
    }
    if !model.fresh && given.init_scheme.is_some() {
        return Err(value_error(
            "init_scheme draws a new model's first weights, and this model has weights already \
             (trained, loaded or set); fit goes on from them. Model.from_config makes a new \
             model",
        ));
    }
    // The data: arrays, or a dataset path (`x` or `data=`; none: the demo set, as `cnn train`).
    let mut data = None;
    match a.x {
        Some(x) if is_path(x) => {
            if given.data.is_some() {
                return Err(value_error(
                    "fit() got a dataset path as x and data= too; give one",
                ));
            }
            if a.y.is_some() {
                return Err(value_error(
                    "fit() got a dataset path as x, and y: the labels come from the dataset",
                ));
            }
            given.data = Some(x.extract::<PathBuf>()?);
        }
        Some(x) => {
            if given.data.is_some() {
                return Err(value_error("fit() got arrays as x and data= too; give one"));
            }
            let Some(y) = a.y else {
                return Err(value_error("fit() got images x without labels y"));
            };
            data = Some((dataset(model, x, y, ["x", "y"])?, None));
        }
        None if a.y.is_some() => return Err(value_error("fit() got labels y without images x")),
        None => {}
    }
    match a.validation_data {
        None => {}
        Some(v) if is_path(v) => {
            if given.test_data.is_some() {
                return Err(value_error(
                    "fit() got validation_data as a path and test_data= too; give one",
                ));
            }
            given.test_data = Some(v.extract::<PathBuf>()?);
        }
        Some(v) => {
            let Some((_, test)) = &mut data else {
                return Err(value_error(
                    "validation_data arrays go with training arrays x, y; with a dataset path, \
                     give validation_data (or test_data) as a path",
                ));
            };
            let pair = v
                .cast::<PyTuple>()
                .ok()
                .filter(|t| t.len() == 2)
                .ok_or_else(|| {
                    value_error("validation_data must be a tuple (x_val, y_val) or a dataset path")
                })?;
            let held_out = dataset(
                model,
                &pair.get_item(0)?,
                &pair.get_item(1)?,
                ["validation_data[0]", "validation_data[1]"],
            )?;
            *test = Some(held_out);
        }
    }
    let mut config =
        settings::resolve_with(&given, Some(&model.parsed), Wording::Keyword).or_py()?;
    config.config = model.config_path.clone().unwrap_or_default();
    let epochs = config.epochs;
    let parts = InMemory {
        parsed: model.parsed.clone(),
        data,
        model: (!model.fresh).then(|| model.net.clone()),
    };
    let pool = pools::pool(a.threads)?;
    let (out, force, progress) = (a.out, a.force, a.progress);
    let out_dir = out.clone();
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Message>();

    // Training on the pool's threads; this thread, without the GIL but for a moment every
    // 50 ms, prints the epochs and checks for Ctrl-C (Python runs signal handlers on the
    // main thread only, so the check cannot be made from the workers).
    let (finished, interrupt): (std::thread::Result<Finished>, Option<PyErr>) = py.detach(move || {
        std::thread::scope(|s| {
            let stop = &stop;
            let worker = s.spawn(move || -> Finished {
                pool.install(|| {
                    cnn::kernels::threads::with_awake_workers(|| {
                        let mut run = match Run::in_memory(config, parts, out, force) {
                            Ok(run) => run,
                            Err(e) => return (Err(e), None),
                        };
                        let bar = if progress {
                            ProgressBar::new(run.steps_per_epoch() as u64)
                        } else {
                            ProgressBar::hidden()
                        };
                        bar.set_style(
                            ProgressStyle::with_template(
                                "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({per_sec}, {eta} left)",
                            )
                            .expect("a valid template")
                            .progress_chars("=> "),
                        );
                        let outcome = run.train(&mut |event| {
                            match event {
                                RunEvent::Step { epoch, step, loss, .. } => {
                                    if step == 1 {
                                        bar.reset();
                                        bar.set_prefix(format!("{epoch}/{epochs}"));
                                    }
                                    bar.set_position(step as u64);
                                    bar.set_message(format!("loss {loss:.4}"));
                                }
                                RunEvent::Epoch { metrics, .. } => {
                                    bar.finish_and_clear();
                                    let _ = tx.send(Message::Epoch(metrics.clone()));
                                }
                            }
                            if stop.load(Ordering::SeqCst) {
                                Control::Stop
                            } else {
                                Control::Continue
                            }
                        });
                        bar.finish_and_clear();
                        (outcome, Some(run.into_model()))
                    })
                })
            });
            let mut interrupt: Option<PyErr> = None;
            loop {
                let message = rx.recv_timeout(Duration::from_millis(50));
                if let Err(mpsc::RecvTimeoutError::Disconnected) = message {
                    break;
                }
                Python::attach(|py| {
                    if let Ok(Message::Epoch(m)) = &message {
                        if progress {
                            if let Err(e) = say(py, &epoch_line(m, epochs)) {
                                e.print(py);
                            }
                        }
                    }
                    if interrupt.is_none() {
                        if let Err(e) = py.check_signals() {
                            interrupt = Some(e);
                            stop.store(true, Ordering::SeqCst);
                        }
                    }
                });
            }
            (worker.join(), interrupt)
        })
    });
    let (result, trained) = finished.map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        PyRuntimeError::new_err(format!("internal error: training panicked: {what}"))
    })?;
    if let Some((net, meta)) = trained {
        model.net = net;
        model.meta = meta;
        model.fresh = false;
    }
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => return Err(interrupt.unwrap_or_else(|| to_py(e))),
    };
    if let Some(e) = interrupt {
        if progress {
            let at = outcome
                .stopped
                .map(|(epoch, step)| format!(" at epoch {epoch}, step {step}"))
                .unwrap_or_default();
            let saved = match &out_dir {
                Some(dir) => format!(
                    "; checkpoint saved: continue with `cnn train --resume {}`",
                    dir.display()
                ),
                None => String::new(),
            };
            say(py, &format!("interrupted{at}{saved}"))?;
        }
        return Err(e);
    }
    if let Some(msg) = outcome.diverged {
        return Err(PyFloatingPointError::new_err(msg));
    }
    if progress {
        if let Some(es) = &outcome.early_stopped {
            say(py, &es.to_string())?;
        }
        if let Some(dir) = &out_dir {
            say(
                py,
                &format!("model saved to {}", dir.join("model.safetensors").display()),
            )?;
        }
    }
    history(py, &outcome)
}

/// Every run option `fit` takes as a keyword, for the type stubs and the documentation:
/// a list of dicts with `name`, `kind` (`number`, `integer`, `switch`, `path` or `choice`),
/// `choices`, `optional`, `default` (its Python value) and `help`.
#[pyfunction]
pub fn fit_options(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let list = PyList::empty(py);
    let defaults = cnn::run::RunConfig::default();
    for spec in keyword_options() {
        let d = PyDict::new(py);
        d.set_item("name", spec.name)?;
        let (kind, choices): (&str, Vec<&str>) = match spec.kind {
            Kind::Number => ("number", vec![]),
            Kind::Integer => ("integer", vec![]),
            Kind::Switch => ("switch", vec![]),
            Kind::Path => ("path", vec![]),
            Kind::Choice(c) => ("choice", c.iter().map(|(n, _)| *n).collect()),
        };
        d.set_item("kind", kind)?;
        d.set_item("choices", choices)?;
        d.set_item("optional", spec.optional)?;
        let shown = (spec.field.show)(&defaults);
        let default: Bound<'_, PyAny> = match (spec.kind, shown) {
            (_, None) => py.None().into_bound(py),
            (Kind::Switch, Some(s)) => PyBool::new(py, s == "on").to_owned().into_any(),
            (Kind::Integer, Some(s)) => s
                .parse::<u64>()
                .map_err(value_error_of)?
                .into_pyobject(py)?
                .into_any(),
            (Kind::Number, Some(s)) => {
                // The shortest text of the f32 (or f64) value: what a flag would be given.
                PyFloat::new(py, s.parse::<f64>().map_err(value_error_of)?).into_any()
            }
            (_, Some(s)) => PyString::new(py, &s).into_any(),
        };
        d.set_item("default", default)?;
        d.set_item("help", spec.help)?;
        list.append(d)?;
    }
    Ok(list)
}

fn value_error_of(e: impl std::fmt::Display) -> PyErr {
    value_error(format!("internal error: {e}"))
}
