//! `cnn.Model`: a network, its weights and what its model file holds besides them.

use std::path::PathBuf;

use numpy::ndarray::{Array, IxDyn};
use numpy::prelude::*;
use numpy::{PyArray, PyArrayDyn};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use cnn::config::{self, ParsedConfig};
use cnn::data::{Dataset, Normalization};
use cnn::layers::{Activation, Buffer, BufferMut};
use cnn::metrics::ConfusionMatrix;
use cnn::model::Model as Net;
use cnn::model_file::{self, ModelMeta};
use cnn::run::{settings, RunOptions, Wording};
use cnn::tensor::Tensor;

use crate::arrays::{labels, Images};
use crate::errors::{value_error, OrPy};
use crate::pools;

/// A convolutional network with its weights, class names and input normalisation: what a
/// model file (`model.safetensors`) holds.
///
/// Make one with ``Model.from_config`` (a network config, report 1's format, with fresh
/// weights) or ``Model.load`` (a model file or checkpoint written by ``cnn train`` or
/// ``save``). Train it with ``fit``, use it with ``predict``, ``evaluate`` and
/// ``activations``, and read or set its weights with ``state_dict`` and
/// ``load_state_dict``, under the model file's (PyTorch's) names.
///
/// A Model is not for use by several threads at once: a call made while another thread's
/// call on the same Model runs raises ``RuntimeError``.
#[pyclass(module = "cnn", name = "Model")]
pub struct Model {
    pub(crate) parsed: ParsedConfig,
    pub(crate) net: Net,
    pub(crate) meta: ModelMeta,
    /// The weights are the ones drawn when the model was made: `fit` draws them again from
    /// its `seed` and `init_scheme`, as `cnn train` does.
    pub(crate) fresh: bool,
    /// The config file the model was made from, if any (`run.json`'s `config`).
    pub(crate) config_path: Option<PathBuf>,
}

/// `values` as a NumPy array of `shape`, without a copy.
pub(crate) fn array<'py, T: numpy::Element>(
    py: Python<'py>,
    shape: &[usize],
    values: Vec<T>,
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let a = Array::from_shape_vec(IxDyn(shape), values)
        .map_err(|e| value_error(format!("internal error: {e}")))?;
    Ok(PyArray::from_owned_array(py, a))
}

/// A tensor of the model: its name, shape and values (f32), or the i64 scalar of
/// `num_batches_tracked`.
type Named = (String, Vec<usize>, Result<Vec<f32>, i64>);

impl Model {
    /// A model of `parsed`'s network whose weights are those `fit` (and `cnn train`) start
    /// from with the config's settings: drawn from its `Train` line's `seed` and `init`
    /// (0 and `normal` without one).
    fn fresh(
        parsed: ParsedConfig,
        classes: Option<Vec<String>>,
        config_path: Option<PathBuf>,
    ) -> PyResult<Model> {
        let run = settings::resolve_with(&RunOptions::default(), Some(&parsed), Wording::Keyword)
            .or_py()?;
        let net = Net::new(&parsed.spec, run.init_scheme, run.seed).or_py()?;
        let k = net.classes();
        let classes = match classes {
            Some(c) => check_classes(c, k)?,
            None => (0..k).map(|i| i.to_string()).collect(),
        };
        let meta = ModelMeta {
            config: parsed.text.clone(),
            classes,
            normalization: Normalization::identity(parsed.spec.input[0]),
            seed: run.seed,
        };
        Ok(Model {
            parsed,
            net,
            meta,
            fresh: true,
            config_path,
        })
    }

    /// (C, H, W) of the network's input.
    pub(crate) fn input(&self) -> [usize; 3] {
        self.parsed.spec.input
    }

    /// Number of classes (outputs).
    pub(crate) fn k(&self) -> usize {
        self.net.classes()
    }

    /// The class probabilities of `images`, `[N, K]` row-major, computed without the GIL.
    fn probabilities(&mut self, py: Python<'_>, images: &Images<'_>) -> PyResult<Vec<f32>> {
        let x = images.tensor(&self.meta.normalization, 0, images.n)?;
        let pool = pools::pool(None)?;
        let net = &mut self.net;
        py.detach(|| pool.install(|| net.predict_proba(&x).map(Tensor::into_vec)))
            .or_py()
    }

    /// Every tensor's name and its values (f32 tensors; an i64 scalar for
    /// `num_batches_tracked`), layer by layer, each layer's parameters before its buffers:
    /// PyTorch's `state_dict` order.
    fn tensors(&self) -> Vec<Named> {
        let mut out: Vec<(usize, Named)> = Vec::new();
        let layer = |name: &str| -> usize {
            name.split('.')
                .nth(1)
                .and_then(|i| i.parse().ok())
                .unwrap_or(0)
        };
        for (name, p) in self.net.named_params() {
            let v = Ok(p.value.data().to_vec());
            out.push((layer(&name), (name, p.value.shape().to_vec(), v)));
        }
        for (name, b) in self.net.named_buffers() {
            let (shape, v) = match b {
                Buffer::F32(t) => (t.shape().to_vec(), Ok(t.data().to_vec())),
                Buffer::I64(n) => (Vec::new(), Err(n)),
            };
            out.push((layer(&name), (name, shape, v)));
        }
        // Stable: within a layer, parameters stay before buffers.
        out.sort_by_key(|t| t.0);
        out.into_iter().map(|(_, t)| t).collect()
    }
}

/// Class names for a network with `k` outputs.
fn check_classes(classes: Vec<String>, k: usize) -> PyResult<Vec<String>> {
    if classes.len() != k {
        return Err(value_error(format!(
            "{} class names for a network with {k} outputs",
            classes.len()
        )));
    }
    Ok(classes)
}

/// A config given as a path or as text: `(text, name for messages, path)`.
fn config_source(config: &Bound<'_, PyAny>) -> PyResult<(Option<String>, PathBuf)> {
    if let Ok(s) = config.cast::<PyString>() {
        let s: String = s.extract()?;
        if s.contains('\n') {
            return Ok((Some(s), PathBuf::new()));
        }
        return Ok((None, PathBuf::from(s)));
    }
    match config.extract::<PathBuf>() {
        Ok(p) => Ok((None, p)),
        Err(_) => Err(PyTypeError::new_err(format!(
            "config must be a path or a config's text, got {}",
            config.get_type().name()?
        ))),
    }
}

#[pymethods]
impl Model {
    /// A model of the network that ``config`` describes (a path to a config file, or a
    /// config's text: report 1's format, as ``cnn train`` reads it), with the weights
    /// ``cnn train`` would start from: drawn from the config's ``Train`` line's ``seed`` and
    /// ``init`` (0 and ``normal`` without one). ``classes`` names the outputs (default
    /// ``"0"``, ``"1"``, ...).
    ///
    /// Raises ``ValueError`` for a config error (``file:line:column: ...``, as the command
    /// line says it) and ``OSError`` for a file that cannot be read.
    #[staticmethod]
    #[pyo3(signature = (config, classes=None))]
    fn from_config(config: &Bound<'_, PyAny>, classes: Option<Vec<String>>) -> PyResult<Model> {
        let (text, path) = config_source(config)?;
        let parsed = match text {
            Some(text) => config::parse(&text, "<config text>"),
            None => config::load(&path),
        }
        .or_py()?;
        let config_path = (!path.as_os_str().is_empty()).then_some(path);
        Model::fresh(parsed, classes, config_path)
    }

    /// The model in a model file (``model.safetensors``) or checkpoint
    /// (``checkpoint.safetensors``) written by ``cnn train`` or ``Model.save``: its network,
    /// weights, classes and normalisation. Raises ``OSError`` for a missing or malformed file.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Model> {
        let (net, meta) = py.detach(|| model_file::load(&path)).or_py()?;
        let parsed = config::parse(
            &meta.config,
            &format!("{} (embedded config)", path.display()),
        )
        .or_py()?;
        Ok(Model {
            parsed,
            net,
            meta,
            fresh: false,
            config_path: None,
        })
    }

    /// Writes the model file (safetensors, as ``cnn train`` writes ``model.safetensors``:
    /// ``cnn predict``, ``cnn evaluate``, ``cnn serve`` and ``Model.load`` read it),
    /// atomically. Raises ``OSError`` when it cannot be written.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let (net, meta) = (&self.net, &self.meta);
        py.detach(|| model_file::save(&path, net, meta)).or_py()
    }

    /// The network's table, as ``cnn summary`` prints it: each layer's output shape,
    /// parameters and FLOPs, the memory training takes, the config's training settings and
    /// the classes. ``explain=True`` adds the arithmetic behind the numbers.
    #[pyo3(signature = (explain=false))]
    fn summary(&self, explain: bool) -> PyResult<String> {
        let spec = &self.parsed.spec;
        let mut s = cnn::summary::render(spec, explain).or_py()?;
        let given = settings::from_config(&self.parsed).unwrap_or_default();
        let run = cnn::run::RunConfig::default().with(&given);
        s += &cnn::memory::summary_line(
            spec,
            run.batch_size,
            run.optimizer().kind,
            pools::pool(None)?.threads(),
        )
        .or_py()?;
        s += &settings::describe(&self.parsed.settings);
        s += &format!(
            "Classes ({}): {}\n",
            self.meta.classes.len(),
            self.meta.classes.join(", ")
        );
        Ok(s)
    }

    /// The network config's text (report 1's format), as a model file stores it.
    #[getter]
    fn config(&self) -> String {
        self.parsed.text.clone()
    }

    /// The class names, indexed by output. Set it (a list of as many names as outputs)
    /// to name the classes of arrays that ``fit`` trains on.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.meta.classes.clone()
    }

    #[setter]
    fn set_classes(&mut self, classes: Vec<String>) -> PyResult<()> {
        self.meta.classes = check_classes(classes, self.k())?;
        Ok(())
    }

    /// ``(C, H, W)``: the shape of one input image.
    #[getter]
    fn input_shape(&self) -> (usize, usize, usize) {
        let [c, h, w] = self.input();
        (c, h, w)
    }

    /// The input normalisation, ``{"mean": [...], "std": [...]}`` per channel: a pixel
    /// ``p`` in [0, 1] enters the network as ``(p - mean) / std``. 0 and 1 unless the model
    /// was trained with ``normalize=True``.
    #[getter]
    fn normalization<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("mean", self.meta.normalization.mean.clone())?;
        d.set_item("std", self.meta.normalization.std.clone())?;
        Ok(d)
    }

    /// Each layer's config line, as the summary labels it (``Conv2D 16 3x3 same relu``):
    /// layer ``i`` here is ``layers.{i}`` in ``state_dict`` and ``activations(x)[i]``.
    #[getter]
    fn layers(&self) -> Vec<String> {
        self.parsed
            .spec
            .layers
            .iter()
            .map(|l| l.describe())
            .collect()
    }

    fn __repr__(&self) -> String {
        let [c, h, w] = self.input();
        format!(
            "<cnn.Model: {} layers, input {c}x{h}x{w}, {} classes>",
            self.parsed.spec.layers.len(),
            self.k()
        )
    }

    /// The class probabilities of images ``x`` (``[N, C, H, W]`` or, for one channel,
    /// ``[N, H, W]``; ``uint8`` pixels 0-255 or ``float32`` values in [0, 1]) as a
    /// ``float32`` array ``[N, classes]``: what ``cnn predict`` computes. Runs without the
    /// GIL, on every core.
    fn predict<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let images = Images::load(x, self.input(), "x")?;
        let p = self.probabilities(py, &images)?;
        array(py, &[images.n, self.k()], p)
    }

    /// The most probable class of each image of ``x`` (as ``predict``), an ``int64`` array
    /// ``[N]``; ``model.classes[i]`` names class ``i``.
    fn predict_classes<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArrayDyn<i64>>> {
        let images = Images::load(x, self.input(), "x")?;
        let p = self.probabilities(py, &images)?;
        let classes: Vec<i64> = p
            .chunks(self.k())
            .map(|row| cnn::model::argmax(row) as i64)
            .collect();
        array(py, &[images.n], classes)
    }

    /// Scores the model on images ``x`` with labels ``y`` (integer class indices), as
    /// ``cnn evaluate`` does. Returns a dict: ``accuracy`` and ``loss`` (mean cross-entropy),
    /// ``confusion_matrix`` (``int64 [classes, classes]``, rows the true class, columns the
    /// predicted one), ``precision``, ``recall``, ``f1`` and ``support`` per class (arrays
    /// ``[classes]``), ``classes`` and ``images``.
    #[pyo3(signature = (x, y, batch_size=256))]
    fn evaluate<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let images = Images::load(x, self.input(), "x")?;
        let k = self.k();
        let y = labels(y, images.n, k, "y")?;
        let pool = pools::pool(None)?;
        let norm = &self.meta.normalization;
        let batch_size = batch_size.max(1);
        let (loss, predictions) = match images.exact_bytes()? {
            // Bytes: `cnn evaluate`'s own arithmetic, on a dataset.
            Ok(bytes) => {
                let ds = Dataset {
                    images: bytes,
                    labels: y.clone(),
                    shape: images.shape,
                    classes: self.meta.classes.clone(),
                    source: "x".into(),
                };
                let net = &mut self.net;
                let e = py
                    .detach(|| {
                        pool.install(|| {
                            cnn::train::evaluate(
                                net,
                                &ds,
                                norm,
                                batch_size,
                                cnn::train::TestViews::ONE,
                            )
                        })
                    })
                    .or_py()?;
                (e.loss, e.predictions)
            }
            // Floats that are not bytes: the same, from the floats.
            Err(_) => {
                let mut chunks = Vec::new();
                for start in (0..images.n).step_by(batch_size) {
                    let end = (start + batch_size).min(images.n);
                    chunks.push(images.tensor(norm, start, end)?);
                }
                let labels: Vec<usize> = y.iter().map(|&l| usize::from(l)).collect();
                let net = &mut self.net;
                py.detach(|| {
                    pool.install(|| -> cnn::Result<(f64, Vec<usize>)> {
                        let (mut sum, mut pred, mut at) = (0.0f64, Vec::new(), 0);
                        for x in &chunks {
                            let n = x.batch();
                            let logits = net.infer(x)?;
                            let l = cnn::loss::cross_entropy_only(
                                logits.data(),
                                &labels[at..at + n],
                                k,
                            );
                            sum += f64::from(l) * n as f64;
                            pred.extend(logits.data().chunks(k).map(cnn::model::argmax));
                            at += n;
                        }
                        Ok((sum / at.max(1) as f64, pred))
                    })
                })
                .or_py()?
            }
        };
        let mut cm = ConfusionMatrix::new(self.meta.classes.clone());
        for (&t, &p) in y.iter().zip(&predictions) {
            cm.add(usize::from(t), p);
        }
        let per = cm.per_class();
        let d = PyDict::new(py);
        d.set_item("accuracy", cm.accuracy())?;
        d.set_item("loss", loss)?;
        let counts: Vec<i64> = cm.counts.iter().map(|&c| c as i64).collect();
        d.set_item("confusion_matrix", array(py, &[k, k], counts)?)?;
        d.set_item(
            "precision",
            array(py, &[k], per.iter().map(|m| m.precision).collect())?,
        )?;
        d.set_item(
            "recall",
            array(py, &[k], per.iter().map(|m| m.recall).collect())?,
        )?;
        d.set_item("f1", array(py, &[k], per.iter().map(|m| m.f1).collect())?)?;
        let support: Vec<i64> = per.iter().map(|m| m.support as i64).collect();
        d.set_item("support", array(py, &[k], support)?)?;
        d.set_item("classes", self.meta.classes.clone())?;
        d.set_item("images", images.n)?;
        Ok(d)
    }

    /// Every layer's output for images ``x`` (as ``predict`` takes them), as a list of
    /// ``float32`` arrays, one per layer of the config (``model.layers``): ``[N, C, H, W]``
    /// for spatial layers, ``[N, units]`` for flat ones. The last is the class
    /// probabilities when the network ends with a softmax. What ``cnn visualize`` and
    /// ``cnn serve`` draw.
    fn activations<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let images = Images::load(x, self.input(), "x")?;
        let chunk = cnn::model::INFER_CHUNK;
        let mut inputs = Vec::new();
        for start in (0..images.n).step_by(chunk) {
            let end = (start + chunk).min(images.n);
            inputs.push(images.tensor(&self.meta.normalization, start, end)?);
        }
        let layers = self.parsed.spec.layers.len();
        let softmax_last = self
            .parsed
            .spec
            .layers
            .last()
            .is_some_and(|l| l.activation() == Activation::Softmax);
        let pool = pools::pool(None)?;
        let net = &mut self.net;
        let outputs = py
            .detach(|| {
                pool.install(|| -> cnn::Result<Vec<(Vec<usize>, Vec<f32>)>> {
                    let mut outs: Vec<(Vec<usize>, Vec<f32>)> =
                        vec![(Vec::new(), Vec::new()); layers];
                    // Every layer's output, not only those a pass that shares buffers
                    // leaves in place.
                    let passes = net.keeping_outputs(|net| {
                        inputs.iter().try_for_each(|x| {
                            net.infer(x)?;
                            for (i, out) in outs.iter_mut().enumerate() {
                                let Some(a) = net.activation(i) else { continue };
                                out.0 = a.shape().to_vec();
                                out.1.extend_from_slice(a.data());
                            }
                            Ok(())
                        })
                    });
                    passes.map(|()| outs)
                })
            })
            .or_py()?;
        let list = PyList::empty(py);
        let n_layers = outputs.len();
        for (i, (mut shape, mut values)) in outputs.into_iter().enumerate() {
            if shape.is_empty() {
                continue;
            }
            shape[0] = images.n;
            if i + 1 == n_layers && softmax_last {
                let k = values.len() / images.n;
                cnn::layers::activation::forward(Activation::Softmax, &mut values, k);
            }
            list.append(array(py, &shape, values)?)?;
        }
        Ok(list)
    }

    /// The weights (and BatchNorm's running statistics) as NumPy arrays, under the model
    /// file's names, which are PyTorch's: ``layers.{i}.weight``, ``layers.{i}.bias``,
    /// ``layers.{i}.running_mean``, ... with ``i`` the layer's index among the config's
    /// layer lines. Conv2D weights are ``[out, in, kh, kw]``, Dense ``[out, in]``, as
    /// ``torch.nn.Conv2d`` and ``torch.nn.Linear`` hold them; ``num_batches_tracked`` is an
    /// ``int64`` scalar. The arrays are copies.
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, shape, values) in self.tensors() {
            match values {
                Ok(v) => d.set_item(name, array(py, &shape, v)?)?,
                Err(n) => d.set_item(name, array(py, &[], vec![n])?)?,
            }
        }
        Ok(d)
    }

    /// Sets the weights from ``state_dict`` (a mapping of the names ``state_dict()`` gives to
    /// arrays, or to anything ``numpy.asarray`` reads, such as CPU ``torch`` tensors). Every
    /// tensor must be there with its shape and finite values, and no other name (with
    /// ``strict=False``, missing and unknown names are let be). Nothing changes when it
    /// raises ``ValueError``.
    #[pyo3(signature = (state_dict, strict=true))]
    fn load_state_dict(&mut self, state_dict: &Bound<'_, PyAny>, strict: bool) -> PyResult<()> {
        let py = state_dict.py();
        let np = py.import("numpy")?;
        let known: Vec<(String, Vec<usize>, bool)> = self
            .tensors()
            .into_iter()
            .map(|(n, s, v)| (n, s, v.is_ok()))
            .collect();
        let keys: Vec<String> = state_dict
            .call_method0("keys")?
            .try_iter()?
            .map(|k| k.and_then(|k| k.extract::<String>()))
            .collect::<PyResult<_>>()?;
        if strict {
            if let Some(unknown) = keys.iter().find(|k| !known.iter().any(|(n, ..)| n == *k)) {
                let names: Vec<&str> = known.iter().map(|(n, ..)| n.as_str()).collect();
                return Err(value_error(format!(
                    "unknown tensor `{unknown}`: the config's tensors are {}",
                    names.join(", ")
                )));
            }
        }
        let mut f32s: Vec<(String, Vec<f32>)> = Vec::new();
        let mut i64s: Vec<(String, i64)> = Vec::new();
        for (name, shape, is_f32) in &known {
            let Some(v) = keys
                .iter()
                .any(|k| k == name)
                .then(|| state_dict.get_item(name))
                .transpose()?
            else {
                if strict {
                    return Err(value_error(format!("tensor `{name}` is missing")));
                }
                continue;
            };
            if !is_f32 {
                let n: i64 = np
                    .call_method1("asarray", (v,))?
                    .call_method0("item")?
                    .extract()?;
                if n < 0 {
                    return Err(value_error(format!(
                        "tensor `{name}` is {n}, a count cannot be negative"
                    )));
                }
                i64s.push((name.clone(), n));
                continue;
            }
            let kwargs = PyDict::new(py);
            kwargs.set_item("dtype", "float32")?;
            let a = np
                .call_method("ascontiguousarray", (v,), Some(&kwargs))?
                .cast_into::<PyArrayDyn<f32>>()?;
            if a.shape() != shape.as_slice() {
                return Err(value_error(format!(
                    "tensor `{name}` has shape {:?}, the config needs {shape:?}",
                    a.shape()
                )));
            }
            let values = a.readonly().as_slice()?.to_vec();
            if let Some((i, x)) = values.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                return Err(value_error(format!(
                    "tensor `{name}` holds {x} at index {i}"
                )));
            }
            if name.ends_with("running_var") && values.iter().any(|&x| x < 0.0) {
                return Err(value_error(format!(
                    "tensor `{name}` holds a negative variance"
                )));
            }
            f32s.push((name.clone(), values));
        }
        // Checked: now set.
        let names: Vec<String> = self
            .net
            .named_params()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for (name, p) in names.iter().zip(self.net.params_mut()) {
            if let Some((_, v)) = f32s.iter().find(|(n, _)| n == name) {
                p.value.data_mut().copy_from_slice(v);
            }
        }
        let names: Vec<String> = self
            .net
            .named_buffers()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for (name, b) in names.iter().zip(self.net.buffers_mut()) {
            match b {
                BufferMut::F32(t) => {
                    if let Some((_, v)) = f32s.iter().find(|(n, _)| n == name) {
                        t.data_mut().copy_from_slice(v);
                    }
                }
                BufferMut::I64(c) => {
                    if let Some((_, v)) = i64s.iter().find(|(n, _)| n == name) {
                        *c = *v;
                    }
                }
            }
        }
        self.fresh = false;
        Ok(())
    }

    /// Trains the model, as ``cnn train`` does, and returns the history: a dict of lists,
    /// one value per epoch, as Keras's ``History.history`` (``loss``, ``accuracy``,
    /// ``val_loss`` and ``val_accuracy`` with a held-out set, ``lr``, ``seconds``).
    ///
    /// The data: images ``x`` (``[N, C, H, W]`` or ``[N, H, W]``; ``uint8`` pixels, or
    /// ``float32`` pixels / 255) with integer labels ``y``; or a dataset path or ``"demo"``
    /// as ``x``, read as ``cnn train --data`` reads it; or nothing: the demo set.
    /// ``validation_data=(x_val, y_val)`` is evaluated after each epoch;
    /// ``validation_split`` (or ``val_split``) holds out a share of the training data.
    ///
    /// ``**options``: every option of ``cnn train``, named as its flag with underscores
    /// (``batch_size=`` for ``--batch-size``), with its default; ``cnn.fit_options()`` lists
    /// them with their help, and the type stubs show them. ``out=`` writes ``cnn train``'s
    /// run folder (``force=True`` into one that holds a run); ``threads=`` the worker threads
    /// (every core by default; the result does not depend on it); ``progress=False`` prints
    /// nothing.
    ///
    /// A model fresh from ``from_config`` starts from the weights ``seed`` and
    /// ``init_scheme`` draw: the tensors are ``cnn train``'s, bit for bit. A model with
    /// weights (trained, loaded, set) goes on from them with a new optimiser, as
    /// ``cnn train --init``. The GIL is released while it trains; Ctrl-C stops it after the
    /// step in progress (the model keeps that step's weights; with ``out=`` the checkpoint is
    /// written) and raises ``KeyboardInterrupt``. ``ValueError`` for a bad option or array,
    /// ``TypeError`` for an unknown keyword, ``OSError`` for files, ``FloatingPointError``
    /// when the run diverges.
    #[pyo3(signature = (
        x=None, y=None, *, validation_data=None, validation_split=None, out=None,
        force=false, threads=None, progress=true, **options
    ))]
    #[allow(clippy::too_many_arguments)]
    fn fit<'py>(
        &mut self,
        py: Python<'py>,
        x: Option<&Bound<'py, PyAny>>,
        y: Option<&Bound<'py, PyAny>>,
        validation_data: Option<&Bound<'py, PyAny>>,
        validation_split: Option<&Bound<'py, PyAny>>,
        out: Option<PathBuf>,
        force: bool,
        threads: Option<i64>,
        progress: bool,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        crate::fit::fit(
            self,
            py,
            crate::fit::FitArgs {
                x,
                y,
                validation_data,
                validation_split,
                out,
                force,
                threads,
                progress,
                options,
            },
        )
    }
}
