//! `cnn import`: a CNN in ONNX (from `cnn export`, or from PyTorch's TorchScript and
//! torch.export exporters) as an ordinary model file with a generated config.
//!
//! The graph is read node by node in the file's order (ONNX requires an order in which every
//! value is written before it is read), each node becoming config lines after those of the
//! nodes before it; the last node must write the graph's output. The config's last line
//! always outputs the value the last node wrote. A node that reads an earlier value instead
//! (the skip path of a residual block) is given a one-layer `Route` to it first; an `Add` of
//! two computed values becomes a `Shortcut` and a `Concat` a `Route` of the layers that
//! wrote them ([`crate::layers::shortcut`], [`crate::layers::route`]). The importer reads
//! an `Identity` and the `Sub` and `Div` of a normalisation at the input itself; every other
//! node is read by the layer kind that declares its op ([`crate::layers::LayerKind::ONNX_OPS`]
//! and [`crate::layers::LayerKind::onnx_import`]), through an [`Importer`]: the kind checks
//! the node's attributes and weights against the shape that reaches it and pushes config
//! lines with their tensors. The generated config is then parsed by
//! [`crate::config::parse`] like any other, so the model obeys the same size caps, and the
//! weights are copied in by name.
//!
//! The config is canonical: an activation right after a layer that can take an
//! `activation=` (Conv2D, BatchNorm, Dense: [`StepKind::Fusable`]) becomes that layer's
//! `activation=`, and a Flatten right before a layer that reads its input flattened (Dense)
//! is left implied.
//! So a model whose config was written that way (every example is) comes back with the
//! same config lines and the same tensor names; otherwise the layers are numbered as the
//! generated config has them. A final `Softmax` or `LogSoftmax` becomes
//! `activation=softmax` on the last layer
//! (`cnn predict` applies a softmax to the logits either way).

use std::collections::HashMap;
use std::path::Path;

use prost::Message;

pub(crate) use super::parts::{short, Attrs, Constants};
use super::proto::{tensor_shape_proto, type_proto, ModelProto, NodeProto};
use super::{wire, FLOAT, MAX_FILE_BYTES};
use crate::config;
use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::init::Init;
use crate::io::read_capped;
use crate::layers::keys::MAX_DIM;
use crate::layers::param::BufferMut;
use crate::layers::LayerSpec;
use crate::model::Model;
use crate::model_file::{self, ModelMeta};

/// Reads the ONNX file `input` and writes it as a model file to `out`. `classes` names the
/// outputs; without it, the names stored by `cnn export` are used, or `0`, `1`, ...
/// Returns the metadata written (`out` may be a pipe, which cannot be read back).
pub fn import_file(input: &Path, out: &Path, classes: Option<Vec<String>>) -> Result<ModelMeta> {
    let bytes = read_capped(input, MAX_FILE_BYTES)?;
    let (model, meta) = from_bytes(input, &bytes, classes)?;
    model_file::save(out, &model, &meta)?;
    Ok(meta)
}

/// The model and metadata of the ONNX bytes `bytes` (read from `path`, named in errors;
/// external data is read from files in `path`'s folder).
pub fn from_bytes(
    path: &Path,
    bytes: &[u8],
    classes: Option<Vec<String>>,
) -> Result<(Model, ModelMeta)> {
    let bad = |msg: String| Error::Model {
        file: path.into(),
        msg,
    };
    wire::check(bytes).map_err(|e| bad(format!("not an ONNX model: {e}")))?;
    let mut proto = ModelProto::decode(bytes)
        .map_err(|e| bad(format!("not an ONNX model (malformed protobuf: {e})")))?;
    // Weights kept beside the model (net.onnx.data), relative to its folder.
    let dir = path.parent().unwrap_or(Path::new(""));
    super::external::load(&mut proto, dir).map_err(bad)?;
    let chain = read_chain(&proto).map_err(bad)?;
    let text = chain.config_text();
    let parsed = config::parse(&text, &format!("{} (generated config)", path.display()))?;
    let mut model = Model::new(&parsed.spec, Init::Normal, 0)?;
    chain.copy_into(&mut model).map_err(bad)?;
    let k = model.classes();
    let classes = match classes {
        Some(c) if c.len() != k => {
            return Err(Error::Usage(format!(
                "--classes gives {} names, the network in {} has {k} outputs",
                c.len(),
                path.display()
            )))
        }
        Some(c) => c,
        None => match stored_classes(&proto) {
            Some(c) if c.len() == k => c,
            _ => (0..k).map(|i| i.to_string()).collect(),
        },
    };
    let meta = ModelMeta {
        config: text,
        classes,
        normalization: chain.normalization.clone(),
        seed: 0,
    };
    // The same checks as loading a model file (normalisation, class count).
    model_file::model_for_meta(path, &meta)?;
    Ok((model, meta))
}

/// The class names `cnn export` stores in `metadata_props` (`classes`, a JSON array).
fn stored_classes(proto: &ModelProto) -> Option<Vec<String>> {
    let e = proto
        .metadata_props
        .iter()
        .find(|e| e.key.as_deref() == Some("classes"))?;
    serde_json::from_str(e.value.as_deref()?).ok()
}

/// One config line and its tensors, as a layer's reader makes it from a node.
#[derive(Debug, Clone)]
pub struct Step {
    /// The config line (for a line that names earlier layers, without them: see `refs`).
    pub line: String,
    /// What the canonical config may do with it.
    pub kind: StepKind,
    /// `(name, shape, values)`, named as the layer names its parameters and buffers.
    pub tensors: Vec<(&'static str, Vec<usize>, Vec<f32>)>,
    /// The I64 buffer `num_batches_tracked`, for a layer that has one (BatchNorm).
    pub batches: i64,
    /// For a line that names earlier layers: the key (`from`, `layers`) and the steps it
    /// names, as indices into the steps. The config writes them after the line's first
    /// word, counted back from the line (`Shortcut from=-3`), as lines are numbered only
    /// once the implied Flattens are left out.
    pub refs: Option<(&'static str, Vec<usize>)>,
}

impl Step {
    /// The step of config line `line` with its `tensors`.
    pub fn new(
        line: String,
        kind: StepKind,
        tensors: Vec<(&'static str, Vec<usize>, Vec<f32>)>,
    ) -> Step {
        Step {
            line,
            kind,
            tensors,
            batches: 0,
            refs: None,
        }
    }
}

/// What the canonical config may do with a step (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepKind {
    /// A layer that can take an `activation=` (Conv2D, BatchNorm, Dense): an activation
    /// right after it is fused into it unless it has one already (`fused`). With
    /// `flat_input`, it reads its input flattened (Dense), so a Flatten right before it is
    /// left implied.
    Fusable { fused: bool, flat_input: bool },
    /// A Flatten of the (C, H, W) value it keeps.
    Flatten([usize; 3]),
    /// A stand-alone activation line, which works on any shape.
    Activation,
    /// Anything else.
    Other,
}

/// The network read from a graph.
struct Chain {
    input: [usize; 3],
    normalization: Normalization,
    steps: Vec<Step>,
}

impl Chain {
    /// The config text: the layer count, the `Input` line, one line per step, with a Flatten
    /// right before a Dense left implied.
    fn config_text(&self) -> String {
        // The line of each step that has one.
        let mut line_of = vec![0usize; self.steps.len()];
        for (line, i) in self.line_steps().enumerate() {
            line_of[i] = line;
        }
        let lines: Vec<String> = self
            .line_steps()
            .map(|i| {
                let s = &self.steps[i];
                let Some((key, refs)) = &s.refs else {
                    return s.line.clone();
                };
                let list: Vec<String> = refs
                    .iter()
                    .map(|&j| (line_of[j] as i64 - line_of[i] as i64).to_string())
                    .collect();
                let (head, rest) = s.line.split_once(' ').unwrap_or((&s.line, ""));
                let refs = format!("{head} {key}={}", list.join(","));
                if rest.is_empty() {
                    refs
                } else {
                    format!("{refs} {rest}")
                }
            })
            .collect();
        let [c, h, w] = self.input;
        let mut text = format!("{}\nInput shape={c}x{h}x{w}\n", lines.len());
        for l in lines {
            text += &l;
            text.push('\n');
        }
        text
    }

    /// The steps that become config lines.
    fn lines(&self) -> impl Iterator<Item = &Step> {
        self.line_steps().map(|i| &self.steps[i])
    }

    /// The indices of the steps that become config lines: all but a Flatten right before a
    /// layer that reads its input flattened, unless another line names it.
    fn line_steps(&self) -> impl Iterator<Item = usize> + '_ {
        let named = |i: usize| {
            self.steps
                .iter()
                .any(|s| s.refs.as_ref().is_some_and(|(_, r)| r.contains(&i)))
        };
        (0..self.steps.len()).filter(move |&i| {
            let s = &self.steps[i];
            let implied = !named(i)
                && matches!(s.kind, StepKind::Flatten(_))
                && self.steps.get(i + 1).is_some_and(|n| {
                    matches!(
                        n.kind,
                        StepKind::Fusable {
                            flat_input: true,
                            ..
                        }
                    )
                });
            !implied
        })
    }

    /// Copies every step's tensors into the layer of the same index.
    fn copy_into(&self, model: &mut Model) -> std::result::Result<(), String> {
        for (i, (step, layer)) in self.lines().zip(model.layers_mut()).enumerate() {
            for (name, shape, values) in &step.tensors {
                let target = layer
                    .params_mut()
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, p)| &mut p.value);
                let target = match target {
                    Some(t) => t,
                    None => match layer.buffers_mut().into_iter().find(|(n, _)| n == name) {
                        Some((_, BufferMut::F32(t))) => t,
                        _ => return Err(format!("layers.{i} has no tensor `{name}`")),
                    },
                };
                if target.shape() != shape.as_slice() {
                    return Err(format!(
                        "layers.{i}.{name}: shape {shape:?}, the generated config needs {:?}",
                        target.shape()
                    ));
                }
                target.data_mut().copy_from_slice(values);
            }
            for (name, b) in layer.buffers_mut() {
                if let (BufferMut::I64(n), "num_batches_tracked") = (b, name) {
                    *n = step.batches;
                }
            }
        }
        Ok(())
    }
}

/// How a node is named in errors: `node `NAME` (OP)`, or its index when it has no name.
fn node_label(i: usize, n: &NodeProto) -> String {
    let op = short(n.op_type.as_deref().unwrap_or("?"));
    match n.name.as_deref() {
        Some(name) if !name.is_empty() => format!("node `{}` ({op})", short(name)),
        _ => format!("node #{i} ({op})"),
    }
}

/// A layer's reader of one ONNX node ([`crate::layers::LayerKind::onnx_import`]).
pub type Reader =
    for<'a, 'b> fn(&'b NodeProto, &mut Importer<'a>) -> std::result::Result<(), String>;

/// The error for an op `cnn import` does not read, with the ops it reads: those the layer
/// kinds declare ([`crate::layers::LayerKind::ONNX_OPS`]), and the importer's own.
pub fn unsupported() -> String {
    format!(
        "unsupported op; `cnn import` reads {}, Identity, and Sub/Div of the input",
        LayerSpec::onnx_ops().join(", ")
    )
}

/// ONNX ops whose two inputs may come in either order: the chain's value may be the second
/// (PyTorch writes a MatMul's bias `Add` either way).
const COMMUTATIVE: &[&str] = &["Add"];

/// Reads the graph of `proto` as a chain of config lines with their tensors.
fn read_chain(proto: &ModelProto) -> std::result::Result<Chain, String> {
    let graph = proto.graph.as_ref().ok_or("the model has no graph")?;
    // Every ONNX model declares its opset, and writes it after the graph: without it, the
    // file was most likely cut short.
    if !proto
        .opset_import
        .iter()
        .any(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
    {
        return Err("the model declares no opset for ONNX's operators (truncated?)".into());
    }
    for d in proto
        .opset_import
        .iter()
        .filter_map(|o| o.domain.as_deref())
    {
        if !(d.is_empty() || d == "ai.onnx")
            && graph.node.iter().any(|n| n.domain.as_deref() == Some(d))
        {
            return Err(format!("the graph uses operators of domain `{}`", short(d)));
        }
    }
    if !graph.sparse_initializer.is_empty() {
        return Err("sparse initialisers are not supported".into());
    }
    let mut constants = Constants {
        map: HashMap::new(),
    };
    for t in &graph.initializer {
        let name = t.name.as_deref().unwrap_or("");
        // `from_bytes` read every initialiser's external data in already.
        if super::external::is_external(t) {
            return Err(format!(
                "initialiser `{}` keeps its data in an external file, which was not read",
                short(name)
            ));
        }
        constants.map.insert(name, t);
    }
    for n in &graph.node {
        if n.op_type.as_deref() == Some("Constant") {
            if let (Some(out), Some(t)) = (
                n.output.first(),
                n.attribute
                    .iter()
                    .find(|a| a.name.as_deref() == Some("value"))
                    .and_then(|a| a.t.as_ref()),
            ) {
                constants.map.insert(out.as_str(), t);
            }
        }
    }

    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|v| constants.get(v.name.as_deref().unwrap_or("")).is_none())
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(format!(
            "the graph has {} inputs besides its initialisers; a CNN has one",
            inputs.len()
        ));
    };
    let input_name = input.name.clone().unwrap_or_default();
    let (batch, chw) =
        input_shape(input).map_err(|e| format!("input `{}`: {e}", short(&input_name)))?;

    // How many nodes (and graph outputs) read each value.
    let mut uses: HashMap<String, usize> = HashMap::new();
    for v in graph.node.iter().flat_map(|n| &n.input) {
        *uses.entry(v.clone()).or_default() += 1;
    }
    for o in graph.output.iter().filter_map(|o| o.name.as_deref()) {
        *uses.entry(o.to_string()).or_default() += 1;
    }
    let mut r = Importer {
        constants,
        values: HashMap::from([(input_name.clone(), (None, chw.to_vec()))]),
        uses,
        current: input_name,
        shape: chw.to_vec(),
        batch,
        steps: Vec::new(),
        normalization: Normalization {
            mean: vec![0.0; chw[0]],
            std: vec![1.0; chw[0]],
        },
        previous: None,
        ended: None,
        batches: proto
            .metadata_props
            .iter()
            .filter_map(|e| {
                let key = e.key.as_deref()?;
                let n = e.value.as_deref()?.parse().ok()?;
                key.ends_with(".num_batches_tracked")
                    .then(|| (key.to_string(), n))
            })
            .collect(),
    };
    for (i, node) in graph.node.iter().enumerate() {
        if node.op_type.as_deref() == Some("Constant") {
            continue;
        }
        let label = node_label(i, node);
        r.node(node).map_err(|e| format!("{label}: {e}"))?;
    }
    let outputs: Vec<&str> = graph
        .output
        .iter()
        .filter_map(|o| o.name.as_deref())
        .collect();
    if outputs != [r.current.as_str()] {
        return Err(format!(
            "the graph's outputs are {outputs:?}; the last node writes `{}`",
            short(&r.current)
        ));
    }
    if r.steps.is_empty() {
        return Err("the graph has no layers".into());
    }
    Ok(Chain {
        input: chw,
        normalization: r.normalization,
        steps: r.steps,
    })
}

/// The graph input's batch dimension (a number, or `None` when dynamic) and its (C, H, W).
fn input_shape(
    v: &super::proto::ValueInfoProto,
) -> std::result::Result<(Option<i64>, [usize; 3]), String> {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err("not a tensor".into());
    };
    if t.elem_type != Some(FLOAT) {
        return Err(format!(
            "element type {}, expected float (1)",
            t.elem_type.unwrap_or(0)
        ));
    }
    let dims = t.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or(&[]);
    if dims.len() != 4 {
        return Err(format!(
            "rank {}, expected 4 ([N, C, H, W] images)",
            dims.len()
        ));
    }
    use tensor_shape_proto::dimension::Value;
    let value = |d: &tensor_shape_proto::Dimension| match d.value {
        Some(Value::DimValue(v)) => Some(v),
        _ => None,
    };
    let mut chw = [0; 3];
    for (out, d) in chw.iter_mut().zip(&dims[1..]) {
        *out = match value(d) {
            Some(v) if (1..=MAX_DIM as i64).contains(&v) => v as usize,
            Some(v) => return Err(format!("dimension {v} is not from 1 to {MAX_DIM}")),
            None => return Err("C, H and W must be fixed numbers".into()),
        };
    }
    Ok((value(&dims[0]), chw))
}

/// The walk along the chain, and what a layer's reader of a node
/// ([`crate::layers::LayerKind::onnx_import`]) works with: the shape of the value the node
/// reads, the graph's constants, and the config lines read so far.
pub struct Importer<'a> {
    pub(crate) constants: Constants<'a>,
    /// Each value written so far: the step whose config line outputs it (`None`: the
    /// network's input, before the first line), and its per-sample shape.
    values: HashMap<String, (Option<usize>, Vec<usize>)>,
    /// How many nodes (and graph outputs) read each value.
    uses: HashMap<String, usize>,
    /// The value the config's last line outputs, which the next node reads unless it names
    /// another.
    current: String,
    /// The per-sample shape of that value: (C, H, W) or (F). A reader sets it to the shape
    /// of the value its node writes.
    pub shape: Vec<usize>,
    /// The input's fixed batch size, if it has one (a torch.export Reshape may name it).
    pub batch: Option<i64>,
    steps: Vec<Step>,
    normalization: Normalization,
    /// The op of the node before this one (a MatMul's bias comes in the Add after it).
    previous: Option<String>,
    /// The op that ended the network (Softmax, LogSoftmax), after which nothing may follow.
    ended: Option<String>,
    /// BatchNorm's batch counts from the metadata (`layers.{i}.num_batches_tracked`).
    batches: HashMap<String, i64>,
}

impl Importer<'_> {
    fn node(&mut self, node: &NodeProto) -> std::result::Result<(), String> {
        let op = node.op_type.as_deref().unwrap_or("");
        if !matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx")) {
            return Err(format!(
                "unsupported op of domain `{}`",
                short(node.domain.as_deref().unwrap_or(""))
            ));
        }
        let first = node.input.first().map(String::as_str).unwrap_or("");
        let second = node.input.get(1).map(String::as_str);
        if let Some(end) = &self.ended {
            return Err(format!(
                "follows the final {end}; nothing may come after it"
            ));
        }
        // Two computed values added or concatenated: a Shortcut or a Route, which name the
        // layers they read themselves.
        let join = matches!(op, "Add" | "Concat") && self.computed_inputs(node).len() > 1;
        if !join
            && first != self.current
            && !(COMMUTATIVE.contains(&op) && second == Some(self.current.as_str()))
        {
            // An earlier value: the config reads it again through a one-layer Route.
            let read = match second {
                Some(v) if COMMUTATIVE.contains(&op) && self.constants.get(first).is_some() => v,
                _ => first,
            };
            self.branch_to(read)?;
        }
        match op {
            "Identity" => {}
            "Sub" | "Div" => self.normalize(op, node)?,
            "Add" if join => crate::layers::shortcut::onnx_import_add(node, self)?,
            _ => match LayerSpec::onnx_reader(op) {
                Some(read) => read(node, self)?,
                None => return Err(unsupported()),
            },
        }
        if node.output.is_empty() {
            return Err("has no output".into());
        }
        self.current = node.output[0].clone();
        let step = self.steps.len().checked_sub(1);
        self.values
            .insert(self.current.clone(), (step, self.shape.clone()));
        self.previous = Some(op.to_string());
        Ok(())
    }

    /// The inputs of `node` that are computed (not constants), in order.
    pub fn computed_inputs<'n>(&self, node: &'n NodeProto) -> Vec<&'n str> {
        node.input
            .iter()
            .filter(|v| !v.is_empty() && self.constants.get(v).is_none())
            .map(String::as_str)
            .collect()
    }

    /// The step whose config line outputs the value `name`, and the value's per-sample
    /// shape; an error for a value not written yet, or for the network's input, which no
    /// config line can name again (a Shortcut or a Route names layers).
    pub fn written_by(&self, name: &str) -> std::result::Result<(usize, Vec<usize>), String> {
        match self.values.get(name) {
            Some((Some(step), shape)) => Ok((*step, shape.clone())),
            Some((None, _)) => Err(format!(
                "reads the network's input `{}` again; a config reads it in its first layer \
                 only (a Shortcut or a Route names layers)",
                short(name)
            )),
            None => Err(format!(
                "reads `{}`, which no node before it writes",
                short(name)
            )),
        }
    }

    /// Makes the config's last line output the earlier value `name`: a one-layer `Route` to
    /// the line that outputs it (a branch point, as a projection shortcut's skip path reads
    /// the block's input).
    pub fn branch_to(&mut self, name: &str) -> std::result::Result<(), String> {
        let (step, shape) = self.written_by(name)?;
        let mut route = Step::new("Route".into(), StepKind::Other, vec![]);
        route.refs = Some(("layers", vec![step]));
        self.push(route);
        self.current = name.to_string();
        self.shape = shape;
        self.previous = None;
        Ok(())
    }

    /// The name of the value the node reads: the output of the node before it.
    pub fn value(&self) -> &str {
        &self.current
    }

    /// Adds a config line.
    pub fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    /// The config lines read so far.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The last config line read.
    pub fn last_step_mut(&mut self) -> Option<&mut Step> {
        self.steps.last_mut()
    }

    /// Takes config line `i` out again (a Reshape that undoes a Flatten).
    pub fn remove_step(&mut self, i: usize) -> Step {
        // The steps after it move up one.
        let moved = |j: &mut usize| {
            if *j > i {
                *j -= 1;
            }
        };
        for (step, _) in self.values.values_mut() {
            step.as_mut().map(moved);
        }
        for s in &mut self.steps {
            if let Some((_, refs)) = &mut s.refs {
                refs.iter_mut().for_each(moved);
            }
        }
        self.steps.remove(i)
    }

    /// The op of the node before this one.
    pub fn previous_op(&self) -> Option<&str> {
        self.previous.as_deref()
    }

    /// Marks this node's op as the end of the network: any node after it is refused.
    pub fn end_here(&mut self, op: &str) {
        self.ended = Some(op.to_string());
    }

    /// The `num_batches_tracked` that `cnn export` stored in the metadata under `name`.
    pub fn batches_tracked(&self, name: &str) -> Option<i64> {
        self.batches.get(name).copied()
    }

    /// The float tensor `name` with its shape, checked: a constant of type float, with as
    /// many values as its dims say, all finite.
    pub fn floats(&self, name: &str) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
        self.constants.floats(name)
    }

    /// The int64 values of the tensor `name`.
    pub fn ints(&self, name: &str) -> std::result::Result<Vec<i64>, String> {
        self.constants.ints(name)
    }

    /// The float scalar `name`.
    pub fn scalar(&self, name: &str) -> std::result::Result<f32, String> {
        self.constants.scalar(name)
    }

    /// The (C, H, W) of a spatial value, or an error naming what the op needs.
    pub fn spatial(&self, op: &str) -> std::result::Result<[usize; 3], String> {
        match self.shape.as_slice() {
            &[c, h, w] => Ok([c, h, w]),
            s => Err(format!(
                "{op} needs a [N, C, H, W] value, this one is [N, {}]",
                dims_text(s)
            )),
        }
    }

    /// The float tensor `name` as `n` values: shape `[n]` or `[1, n]`.
    pub fn vector(&self, name: &str, n: usize) -> std::result::Result<Vec<f32>, String> {
        let (shape, v) = self.constants.floats(name)?;
        if v.len() != n || shape.iter().filter(|&&d| d != 1).count() > 1 {
            return Err(format!(
                "`{}` has shape {shape:?}, expected [{n}] (shapes do not chain)",
                short(name)
            ));
        }
        Ok(v)
    }

    /// An activation: fused as `activation=key` into the layer right before it if that
    /// can take one and has none, else a line of its own (`line`).
    /// Not fused when another node reads the value before the activation too.
    pub fn activation(&mut self, key: &str, line: &str) -> std::result::Result<(), String> {
        let read_once = self.uses.get(&self.current).copied().unwrap_or(0) <= 1;
        match self.steps.last_mut() {
            Some(Step {
                line: last,
                kind: StepKind::Fusable { fused, .. },
                ..
            }) if !*fused && read_once => {
                *last += &format!(" activation={key}");
                *fused = true;
            }
            _ => self.push(Step::new(line.to_string(), StepKind::Activation, vec![])),
        }
        Ok(())
    }

    /// `(x - mean) / std` at the input, with per-channel constants `[1, C, 1, 1]`.
    fn normalize(&mut self, op: &str, node: &NodeProto) -> std::result::Result<(), String> {
        let refuse = || {
            format!("only a per-channel normalisation of the input, `(x - mean) / std`, is supported as {op}")
        };
        if !self.steps.is_empty() || node.input.len() != 2 {
            return Err(refuse());
        }
        let (shape, v) = self
            .constants
            .floats(&node.input[1])
            .map_err(|e| format!("{}: {e}", refuse()))?;
        // One value for every channel, or one per channel along axis 1 of [N, C, H, W]
        // (a shape [C] would broadcast along W instead).
        let c = self.normalization.mean.len();
        let values = match v.len() {
            1 => vec![v[0]; c],
            n if n == c && (shape == [1, c, 1, 1] || shape == [c, 1, 1]) => v,
            _ => return Err(refuse()),
        };
        let identity_mean = self.normalization.mean.iter().all(|&m| m == 0.0);
        let identity_std = self.normalization.std.iter().all(|&s| s == 1.0);
        match op {
            "Sub" if identity_mean && identity_std => self.normalization.mean = values,
            "Div" if identity_std && values.iter().all(|&s| s > 0.0) => {
                self.normalization.std = values
            }
            _ => return Err(refuse()),
        }
        Ok(())
    }
}

/// Conv's and pooling's strides, equal along both axes (one `stride` in a config).
pub(crate) fn equal_strides(attrs: &Attrs) -> std::result::Result<usize, String> {
    match attrs.ints("strides") {
        None => Ok(1),
        Some(&[a, b]) if a == b => window(a),
        Some(s) => Err(format!(
            "strides {s:?} differ between the axes (a config has one stride)"
        )),
    }
}

/// A window size or stride from 1 to [`MAX_DIM`].
pub fn window(v: i64) -> std::result::Result<usize, String> {
    if (1..=MAX_DIM as i64).contains(&v) {
        Ok(v as usize)
    } else {
        Err(format!("size {v} is not from 1 to {MAX_DIM}"))
    }
}

/// `16, 28, 28`.
pub fn dims_text(s: &[usize]) -> String {
    s.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
