//! `cnn import`: a sequential CNN in ONNX (from `cnn export`, or from PyTorch's TorchScript
//! and torch.export exporters) as an ordinary model file with a generated config.
//!
//! The graph is read as one chain: starting at the input, each node must read the value the
//! node before it wrote, and the last one must write the graph's output. Each node becomes a
//! config line (see the table in [`crate::onnx`], read right to left), with its weights checked
//! against the shape that reaches it. The generated config is then parsed by
//! [`crate::config::parse`] like any other, so the model obeys the same size caps, and the
//! weights are copied in by name.
//!
//! The config is canonical: an activation right after a Conv2D, a BatchNorm or a Dense
//! becomes that layer's `activation=`, and a Flatten right before a Dense is left implied.
//! So a model whose config was written that way (every example is) comes back with the
//! same config lines and the same tensor names; otherwise the layers are numbered as the
//! generated config has them. A final `Softmax` or `LogSoftmax` becomes
//! `activation=softmax` on the last layer
//! (`cnn predict` applies a softmax to the logits either way).

use std::collections::HashMap;
use std::path::Path;

use prost::Message;

use super::parts::{short, Attrs, Constants};
use super::proto::{
    tensor_proto::DataLocation, tensor_shape_proto, type_proto, ModelProto, NodeProto,
};
use super::{wire, FLOAT, MAX_FILE_BYTES};
use crate::config;
use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::init::Init;
use crate::io::read_capped;
use crate::kernels::geom::Padding;
use crate::layers::keys::MAX_DIM;
use crate::layers::param::BufferMut;
use crate::layers::{Activation, Conv2dSpec, PoolSpec};
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

/// The model and metadata of the ONNX bytes `bytes` (read from `path`, named in errors).
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
    let proto = ModelProto::decode(bytes)
        .map_err(|e| bad(format!("not an ONNX model (malformed protobuf: {e})")))?;
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

/// One config line and its tensors.
struct Step {
    /// The config line.
    line: String,
    kind: StepKind,
    /// `(name, shape, values)`, named as the layer names its parameters and buffers.
    tensors: Vec<(&'static str, Vec<usize>, Vec<f32>)>,
    /// BatchNorm's `num_batches_tracked`.
    batches: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum StepKind {
    /// A Conv2D or BatchNorm, which can take an `activation=`; `true` once it has one.
    Fusable(bool),
    /// A Dense, likewise.
    Dense(bool),
    /// A Flatten of the (C, H, W) value it keeps.
    Flatten([usize; 3]),
    /// A stand-alone activation line, which works on any shape.
    Activation,
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
        let lines: Vec<&str> = self.lines().map(|s| s.line.as_str()).collect::<Vec<_>>();
        let [c, h, w] = self.input;
        let mut text = format!("{}\nInput shape={c}x{h}x{w}\n", lines.len());
        for l in lines {
            text += l;
            text.push('\n');
        }
        text
    }

    /// The steps that become config lines.
    fn lines(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().enumerate().filter_map(|(i, s)| {
            let implied = matches!(s.kind, StepKind::Flatten(_))
                && self
                    .steps
                    .get(i + 1)
                    .is_some_and(|n| matches!(n.kind, StepKind::Dense(_)));
            (!implied).then_some(s)
        })
    }

    /// Copies every step's tensors into the layer of the same index.
    fn copy_into(&self, model: &mut Model) -> std::result::Result<(), String> {
        for (i, (step, layer)) in self.lines().zip(&mut model.layers).enumerate() {
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

/// The ops `cnn import` reads, for the message about one it does not.
const SUPPORTED: &str = "Conv, Relu, LeakyRelu, Sigmoid, Tanh, MaxPool, AveragePool, \
    BatchNormalization, Flatten, Reshape, Gemm, MatMul + Add, Softmax, LogSoftmax, Identity, \
    Dropout, and Sub/Div of the input";

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
        if t.data_location == Some(DataLocation::External as i32) || !t.external_data.is_empty() {
            return Err(format!(
                "initialiser `{}` keeps its data in an external file; save the model with \
                 its weights inside (torch.onnx.export(..., external_data=False), or \
                 onnx.save(..., save_as_external_data=False))",
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
            "the graph has {} inputs besides its initialisers; a sequential CNN has one",
            inputs.len()
        ));
    };
    let input_name = input.name.clone().unwrap_or_default();
    let (batch, chw) =
        input_shape(input).map_err(|e| format!("input `{}`: {e}", short(&input_name)))?;

    let mut r = Reader {
        constants,
        current: input_name,
        shape: chw.to_vec(),
        batch,
        steps: Vec::new(),
        normalization: Normalization {
            mean: vec![0.0; chw[0]],
            std: vec![1.0; chw[0]],
        },
        pending_add: false,
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
            "the graph's outputs are {outputs:?}; the chain of nodes ends at `{}`",
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

/// The state of the walk along the chain.
struct Reader<'a> {
    constants: Constants<'a>,
    /// The value the next node must read.
    current: String,
    /// Its per-sample shape: (C, H, W) or (F).
    shape: Vec<usize>,
    /// The input's fixed batch size, if it has one (a torch.export Reshape may name it).
    batch: Option<i64>,
    steps: Vec<Step>,
    normalization: Normalization,
    /// The last step is a Dense from a MatMul, whose bias an Add may still bring.
    pending_add: bool,
    /// The op that ended the network (Softmax, LogSoftmax), after which nothing may follow.
    ended: Option<String>,
    /// BatchNorm's batch counts from the metadata (`layers.{i}.num_batches_tracked`).
    batches: HashMap<String, i64>,
}

impl Reader<'_> {
    fn node(&mut self, node: &NodeProto) -> std::result::Result<(), String> {
        let op = node.op_type.as_deref().unwrap_or("");
        if !matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx")) {
            return Err(format!(
                "unsupported op of domain `{}`",
                short(node.domain.as_deref().unwrap_or(""))
            ));
        }
        let first = node.input.first().map(String::as_str).unwrap_or("");
        // Only an Add (a MatMul's bias) may read the chain's value second.
        let second = node.input.get(1).map(String::as_str);
        if first != self.current && !(op == "Add" && second == Some(self.current.as_str())) {
            return Err(format!(
                "reads `{}`, not `{}`, the output of the node before it (only sequential \
                 networks are imported)",
                short(first),
                short(&self.current)
            ));
        }
        if let Some(end) = &self.ended {
            return Err(format!(
                "follows the final {end}; nothing may come after it"
            ));
        }
        let attrs = Attrs {
            list: &node.attribute,
        };
        let was_pending = std::mem::take(&mut self.pending_add);
        match op {
            "Identity" => {}
            "Dropout" => self.dropout(node, &attrs)?,
            "Sub" | "Div" => self.normalize(op, node)?,
            "Conv" => self.conv(node, &attrs)?,
            "MaxPool" | "AveragePool" => self.pool(op, &attrs)?,
            "BatchNormalization" => self.batchnorm(node, &attrs)?,
            "Flatten" => {
                if attrs.int("axis", 1) != 1 {
                    return Err("only axis 1 is supported".into());
                }
                self.flatten();
            }
            "Reshape" => self.reshape(node)?,
            "Gemm" => self.gemm(node, &attrs)?,
            "MatMul" => self.matmul(node)?,
            "Add" if was_pending => self.add_bias(node)?,
            "Relu" => self.activation("relu", "ReLU")?,
            "LeakyRelu" => {
                let a = attrs.float("alpha", 0.01);
                if !(0.0..=1.0).contains(&a) {
                    return Err(format!("alpha {a} is not from 0 to 1"));
                }
                self.activation(
                    &format!("leaky_relu alpha={a}"),
                    &format!("LeakyReLU alpha={a}"),
                )?
            }
            "Sigmoid" => self.activation("sigmoid", "Sigmoid")?,
            "Tanh" => self.activation("tanh", "Tanh")?,
            "Softmax" | "LogSoftmax" => {
                let axis = attrs.int("axis", -1);
                if self.shape.len() != 1 || !(axis == 1 || axis == -1) {
                    return Err(format!(
                        "a {op} over axis {axis} of a [N, {}] value; only over the features of \
                         a flat [N, F] value",
                        dims_text(&self.shape)
                    ));
                }
                if op == "LogSoftmax" {
                    self.ended = Some(op.into());
                }
                self.activation("softmax", "Softmax")?
            }
            _ => return Err(format!("unsupported op; `cnn import` reads {SUPPORTED}")),
        }
        if node.output.is_empty() {
            return Err("has no output".into());
        }
        self.current = node.output[0].clone();
        Ok(())
    }

    fn push(
        &mut self,
        line: String,
        kind: StepKind,
        tensors: Vec<(&'static str, Vec<usize>, Vec<f32>)>,
    ) {
        self.steps.push(Step {
            line,
            kind,
            tensors,
            batches: 0,
        });
    }

    /// The channels of a spatial value, or an error naming what the op needs.
    fn spatial(&self, op: &str) -> std::result::Result<[usize; 3], String> {
        match self.shape.as_slice() {
            &[c, h, w] => Ok([c, h, w]),
            s => Err(format!(
                "{op} needs a [N, C, H, W] value, this one is [N, {}]",
                dims_text(s)
            )),
        }
    }

    fn dropout(&mut self, node: &NodeProto, attrs: &Attrs) -> std::result::Result<(), String> {
        // Opset 12 on: the ratio is the second input; before: an attribute.
        let ratio = match node.input.get(1).filter(|s| !s.is_empty()) {
            Some(name) => self.constants.scalar(name)?,
            None => attrs.float("ratio", 0.5),
        };
        if !(0.0..1.0).contains(&ratio) {
            return Err(format!("ratio {ratio} is not from 0 up to 1"));
        }
        if ratio > 0.0 {
            self.push(format!("Dropout rate={ratio}"), StepKind::Other, vec![]);
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

    fn conv(&mut self, node: &NodeProto, attrs: &Attrs) -> std::result::Result<(), String> {
        let [c, h, w] = self.spatial("Conv")?;
        let unknown = attrs.unknown(&[
            "kernel_shape",
            "strides",
            "pads",
            "dilations",
            "group",
            "auto_pad",
        ]);
        if !unknown.is_empty() {
            return Err(format!("unsupported attributes {unknown:?}"));
        }
        let wname = node.input.get(1).ok_or("has no weight input")?;
        let (wshape, weight) = self.constants.floats(wname)?;
        let &[k, wc, kh, kw] = wshape.as_slice() else {
            return Err(format!("weight shape {wshape:?}, expected [K, C, kh, kw]"));
        };
        if wc != c {
            return Err(format!(
                "its weight {wshape:?} takes {wc} channels, the value it reads has {c} (shapes \
                 do not chain)"
            ));
        }
        if attrs.int("group", 1) != 1 {
            return Err("grouped convolutions are not supported".into());
        }
        if attrs
            .ints("dilations")
            .is_some_and(|d| d.iter().any(|&x| x != 1))
        {
            return Err("dilated convolutions are not supported".into());
        }
        if let Some(ks) = attrs.ints("kernel_shape") {
            if ks != [kh as i64, kw as i64] {
                return Err(format!(
                    "kernel_shape {ks:?} differs from the weight's {kh}x{kw}"
                ));
            }
        }
        let stride = equal_strides(attrs)?;
        let bias = match node.input.get(2).filter(|s| !s.is_empty()) {
            Some(b) => self.vector(b, k)?,
            None => vec![0.0; k],
        };
        let pads: Vec<i64> = attrs
            .ints("pads")
            .map(<[i64]>::to_vec)
            .unwrap_or(vec![0; 4]);
        let auto_pad = attrs.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
        let same = same_pads(h, w, kh, kw, stride);
        let padding = match auto_pad.as_str() {
            "VALID" => Padding::Valid,
            "SAME_UPPER" => Padding::Same,
            "NOTSET" | "" => match pads.as_slice() {
                [0, 0, 0, 0] => Padding::Valid,
                // `same` first: the same sums either way, and the name a config would use.
                p if p == same => Padding::Same,
                &[t, l, b, r]
                    if t == l && l == b && b == r && (1..=MAX_DIM as i64).contains(&t) =>
                {
                    Padding::Explicit(t as usize)
                }
                p => {
                    return Err(format!(
                        "pads {p:?} are neither equal on every side nor `same` padding ({same:?})"
                    ))
                }
            },
            other => return Err(format!("auto_pad {} is not supported", short(other))),
        };
        let padding_text = match padding {
            Padding::Valid => "valid".to_string(),
            Padding::Same => "same".to_string(),
            Padding::Explicit(p) => p.to_string(),
        };
        let spec = Conv2dSpec {
            filters: k,
            kernel: (kh, kw),
            stride,
            padding,
            activation: Activation::None,
        };
        let g = spec.geom([c, h, w]).map_err(|e| e.to_string())?;
        self.shape = vec![k, g.out_h, g.out_w];
        self.push(
            format!("Conv2D filters={k} kernel={kh}x{kw} stride={stride} padding={padding_text}"),
            StepKind::Fusable(false),
            vec![("weight", wshape, weight), ("bias", vec![k], bias)],
        );
        Ok(())
    }

    fn pool(&mut self, op: &str, attrs: &Attrs) -> std::result::Result<(), String> {
        let [c, h, w] = self.spatial(op)?;
        let unknown = attrs.unknown(&[
            "kernel_shape",
            "strides",
            "pads",
            "dilations",
            "ceil_mode",
            "auto_pad",
            "count_include_pad",
            "storage_order",
        ]);
        if !unknown.is_empty() {
            return Err(format!("unsupported attributes {unknown:?}"));
        }
        let Some(&[ph, pw]) = attrs.ints("kernel_shape") else {
            return Err("kernel_shape must give two sizes".into());
        };
        let stride = equal_strides(attrs)?;
        if attrs
            .ints("pads")
            .is_some_and(|p| p.iter().any(|&x| x != 0))
        {
            return Err("padded pooling is not supported".into());
        }
        if attrs
            .ints("dilations")
            .is_some_and(|d| d.iter().any(|&x| x != 1))
        {
            return Err("dilated pooling is not supported".into());
        }
        if attrs.int("ceil_mode", 0) != 0 {
            return Err("ceil_mode is not supported (the output size rounds down)".into());
        }
        if !matches!(
            attrs.string("auto_pad").as_deref(),
            None | Some("NOTSET") | Some("VALID")
        ) {
            return Err("auto_pad other than VALID is not supported".into());
        }
        let (ph, pw) = (window(ph)?, window(pw)?);
        let spec = PoolSpec {
            pool: (ph, pw),
            stride,
        };
        let g = spec.geom("pool", [c, h, w]).map_err(|e| e.to_string())?;
        self.shape = vec![c, g.out_h, g.out_w];
        let name = if op == "MaxPool" {
            "MaxPool2D"
        } else {
            "AvgPool2D"
        };
        self.push(
            format!("{name} pool={ph}x{pw} stride={stride}"),
            StepKind::Other,
            vec![],
        );
        Ok(())
    }

    fn batchnorm(&mut self, node: &NodeProto, attrs: &Attrs) -> std::result::Result<(), String> {
        if attrs.int("training_mode", 0) != 0 {
            return Err("training_mode is set; export the model in eval mode".into());
        }
        if node.output.len() > 1 && node.output[1..].iter().any(|o| !o.is_empty()) {
            return Err("outputs running statistics (training form); export in eval mode".into());
        }
        let &[c, ..] = self.shape.as_slice() else {
            return Err("needs an input with channels".into());
        };
        let name = match self.shape.len() {
            3 => "BatchNorm2D",
            1 => "BatchNorm1D",
            _ => return Err("needs a [N, C, H, W] or [N, F] value".into()),
        };
        let mut tensors = Vec::new();
        for (idx, key) in [
            (1, "weight"),
            (2, "bias"),
            (3, "running_mean"),
            (4, "running_var"),
        ] {
            let input = node.input.get(idx).ok_or("has fewer than 5 inputs")?;
            tensors.push((key, vec![c], self.vector(input, c)?));
        }
        if tensors[3].2.iter().any(|&v| v < 0.0) {
            return Err("a variance is negative".into());
        }
        let eps = attrs.float("epsilon", 1e-5);
        if !(eps.is_finite() && eps > 0.0) {
            return Err(format!("epsilon {eps} is not positive"));
        }
        // ONNX's momentum weighs the running value, PyTorch's (and ours) the batch.
        let momentum = round6(1.0 - attrs.float("momentum", 0.9));
        // `cnn export` keeps num_batches_tracked in the metadata, named as the scale is
        // with `num_batches_tracked` for `weight`.
        let batches = node.input[1]
            .strip_suffix("weight")
            .map(|p| format!("{p}num_batches_tracked"))
            .and_then(|n| self.batches.get(&n).copied())
            .unwrap_or(0);
        self.steps.push(Step {
            line: format!("{name} momentum={momentum} eps={eps}"),
            kind: StepKind::Fusable(false),
            tensors,
            batches,
        });
        Ok(())
    }

    /// A Flatten line (left implied if a Dense follows); nothing for a value already flat.
    fn flatten(&mut self) {
        if let &[c, h, w] = self.shape.as_slice() {
            self.shape = vec![c * h * w];
            self.push("Flatten".into(), StepKind::Flatten([c, h, w]), vec![]);
        }
    }

    /// A Reshape to `[N, C*H*W]`, as torch.export writes for a flatten.
    fn reshape(&mut self, node: &NodeProto) -> std::result::Result<(), String> {
        let target = node.input.get(1).ok_or("has no shape input")?;
        let to = self.constants.ints(target)?;
        let f = self.shape.iter().product::<usize>() as i64;
        let batch_ok = |b: i64| b == -1 || b == 0 || Some(b) == self.batch;
        let flat = match to.as_slice() {
            [b, n] => batch_ok(*b) && (*n == f || (*n == -1 && *b != -1)),
            _ => false,
        };
        if let Some(back) = self.unflatten(&to) {
            // Flatten, activations, and back: the activations alone (a Softmax is over a
            // sample's C*H*W values either way; `cnn export` writes one this way).
            self.steps.remove(back);
            self.shape = to[1..].iter().map(|&d| d as usize).collect();
            return Ok(());
        }
        if !flat {
            return Err(format!(
                "a reshape of [N, {}] to {to:?}; only the flatten to [N, {f}] is supported",
                dims_text(&self.shape)
            ));
        }
        self.flatten();
        Ok(())
    }

    /// The index of the Flatten step that a reshape to `to` undoes: the last Flatten, of
    /// the (C, H, W) that `to` gives back, with only activation lines after it.
    fn unflatten(&self, to: &[i64]) -> Option<usize> {
        let (i, chw) = self
            .steps
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, s)| match s.kind {
                StepKind::Flatten(chw) => Some((i, chw)),
                _ => None,
            })?;
        let after = &self.steps[i + 1..];
        let batch_ok = to
            .first()
            .is_some_and(|&b| b == -1 || b == 0 || Some(b) == self.batch);
        let same = to.len() == 4 && to[1..].iter().zip(chw).all(|(&t, d)| t == d as i64);
        let only_activations = after.iter().all(|s| s.kind == StepKind::Activation);
        (batch_ok && same && only_activations).then_some(i)
    }

    fn gemm(&mut self, node: &NodeProto, attrs: &Attrs) -> std::result::Result<(), String> {
        let unknown = attrs.unknown(&["alpha", "beta", "transA", "transB"]);
        if !unknown.is_empty() {
            return Err(format!("unsupported attributes {unknown:?}"));
        }
        if attrs.float("alpha", 1.0) != 1.0
            || attrs.float("beta", 1.0) != 1.0
            || attrs.int("transA", 0) != 0
        {
            return Err("only alpha = 1, beta = 1 and transA = 0 are supported".into());
        }
        let wname = node.input.get(1).ok_or("has no weight input")?;
        let trans_b = attrs.int("transB", 0) != 0;
        let units = self.dense(wname, trans_b)?;
        if let Some(b) = node.input.get(2).filter(|s| !s.is_empty()) {
            let bias = self.vector(b, units)?;
            self.set_bias(bias);
        }
        Ok(())
    }

    fn matmul(&mut self, node: &NodeProto) -> std::result::Result<(), String> {
        let wname = node.input.get(1).ok_or("has no weight input")?;
        self.dense(wname, false)?;
        self.pending_add = true;
        Ok(())
    }

    /// The bias of the Dense made from the MatMul before this Add.
    fn add_bias(&mut self, node: &NodeProto) -> std::result::Result<(), String> {
        let [a, b] = node.input.as_slice() else {
            return Err("needs two inputs".into());
        };
        let other = if *a == self.current { b } else { a };
        let units = self.shape[0];
        let bias = self.vector(other, units)?;
        self.set_bias(bias);
        Ok(())
    }

    /// A Dense line from the weight `wname`, `[out, in]` (or `[in, out]` when not
    /// `transposed`), with a zero bias; returns its units.
    fn dense(&mut self, wname: &str, transposed: bool) -> std::result::Result<usize, String> {
        if self.shape.len() != 1 {
            return Err(format!(
                "needs a flat [N, F] value, this one is [N, {}] (no Flatten before it)",
                dims_text(&self.shape)
            ));
        }
        let inputs = self.shape[0];
        let (wshape, w) = self.constants.floats(wname)?;
        let &[rows, cols] = wshape.as_slice() else {
            return Err(format!("weight shape {wshape:?} is not a matrix"));
        };
        let (units, n_in, weight) = if transposed {
            (rows, cols, w)
        } else {
            let mut t = vec![0.0; w.len()];
            crate::kernels::transpose::par_transpose(&w, rows, cols, &mut t);
            (cols, rows, t)
        };
        if n_in != inputs {
            return Err(format!(
                "its weight {wshape:?} takes {n_in} inputs, the value it reads has {inputs} \
                 (shapes do not chain)"
            ));
        }
        self.shape = vec![units];
        self.push(
            format!("Dense units={units}"),
            StepKind::Dense(false),
            vec![
                ("weight", vec![units, n_in], weight),
                ("bias", vec![units], vec![0.0; units]),
            ],
        );
        Ok(units)
    }

    fn set_bias(&mut self, bias: Vec<f32>) {
        if let Some(step) = self.steps.last_mut() {
            if let Some(t) = step.tensors.iter_mut().find(|t| t.0 == "bias") {
                t.2 = bias;
            }
        }
    }

    /// The float tensor `name` as `n` values: shape `[n]` or `[1, n]`.
    fn vector(&self, name: &str, n: usize) -> std::result::Result<Vec<f32>, String> {
        let (shape, v) = self.constants.floats(name)?;
        if v.len() != n || shape.iter().filter(|&&d| d != 1).count() > 1 {
            return Err(format!(
                "`{}` has shape {shape:?}, expected [{n}] (shapes do not chain)",
                short(name)
            ));
        }
        Ok(v)
    }

    /// An activation: fused as `activation=key` into a Conv2D or Dense right before it that
    /// has none, else a line of its own.
    fn activation(&mut self, key: &str, line: &str) -> std::result::Result<(), String> {
        match self.steps.last_mut() {
            Some(step)
                if matches!(step.kind, StepKind::Fusable(false) | StepKind::Dense(false)) =>
            {
                step.line += &format!(" activation={key}");
                step.kind = match step.kind {
                    StepKind::Fusable(_) => StepKind::Fusable(true),
                    _ => StepKind::Dense(true),
                };
            }
            _ => self.push(line.to_string(), StepKind::Activation, vec![]),
        }
        Ok(())
    }
}

/// Conv's and pooling's strides, equal along both axes (one `stride` in a config).
fn equal_strides(attrs: &Attrs) -> std::result::Result<usize, String> {
    match attrs.ints("strides") {
        None => Ok(1),
        Some(&[a, b]) if a == b => window(a),
        Some(s) => Err(format!(
            "strides {s:?} differ between the axes (a config has one stride)"
        )),
    }
}

/// A window size or stride from 1 to [`MAX_DIM`].
fn window(v: i64) -> std::result::Result<usize, String> {
    if (1..=MAX_DIM as i64).contains(&v) {
        Ok(v as usize)
    } else {
        Err(format!("size {v} is not from 1 to {MAX_DIM}"))
    }
}

/// The pads `[top, left, bottom, right]` of `same` padding (as [`crate::kernels::geom`]).
fn same_pads(h: usize, w: usize, kh: usize, kw: usize, s: usize) -> Vec<i64> {
    let axis = |size: usize, k: usize| {
        let out = size.div_ceil(s);
        let total = ((out - 1) * s + k).saturating_sub(size);
        (total / 2, total - total / 2)
    };
    let (t, b) = axis(h, kh);
    let (l, r) = axis(w, kw);
    [t, l, b, r].iter().map(|&p| p as i64).collect()
}

/// `16, 28, 28`.
fn dims_text(s: &[usize]) -> String {
    s.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `x` to 6 significant decimals: 1 - (1 - 0.1) in f32 is 0.100000024, shown as 0.1.
fn round6(x: f32) -> f32 {
    format!("{x:.6}").parse().unwrap_or(x)
}
