//! `cnn export`: a model file as an ONNX graph that computes `cnn predict`'s probabilities.
//!
//! The graph is built layer by layer from the model's spec (see the table in
//! [`crate::onnx`]); every tensor of the model file becomes an initialiser of the same name
//! and the same bytes (raw little-endian data), so nothing is rounded on the way.

use std::path::Path;

use prost::Message;

use super::proto::{
    attribute_proto::AttributeType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use super::{FLOAT, INT64, IR_VERSION, OPSET};
use crate::config::implied_flattens;
use crate::error::Result;
use crate::io::write_atomic;
use crate::kernels::geom::Padding;
use crate::layers::param::Buffer;
use crate::layers::{Activation, LayerSpec};
use crate::model::Model;
use crate::model_file::{self, ModelMeta};

/// The graph's input name.
pub const INPUT: &str = "input";
/// The graph's output name.
pub const OUTPUT: &str = "probabilities";

/// Reads the model file at `model_path` and writes it as ONNX to `out`, atomically.
pub fn export_file(model_path: &Path, out: &Path) -> Result<()> {
    let (model, meta) = model_file::load(model_path)?;
    let bytes = to_proto(&model, &meta)?.encode_to_vec();
    write_atomic(out, &bytes)
}

/// The ONNX model of `model` with `meta`.
pub fn to_proto(model: &Model, meta: &ModelMeta) -> Result<ModelProto> {
    let spec = &model.spec;
    let shapes = spec.shapes().map_err(|(_, e)| e)?;
    let implied = implied_flattens(&spec.layers);
    let last = spec.layers.len().saturating_sub(1);
    let c = spec.input[0];
    let mut g = Graph::new();

    let norm = &meta.normalization;
    let identity = norm.mean.iter().all(|&m| m == 0.0) && norm.std.iter().all(|&s| s == 1.0);
    if !identity {
        g.init_f32("norm_mean", &[1, c, 1, 1], &norm.mean);
        g.init_f32("norm_std", &[1, c, 1, 1], &norm.std);
        g.node("Sub", "normalize.sub", &["norm_mean"], vec![]);
        g.node("Div", "normalize.div", &["norm_std"], vec![]);
    }

    for (i, (layer, s)) in spec.layers.iter().zip(&shapes).enumerate() {
        let name = format!("layers.{i}");
        let p = |n: &str| format!("{name}.{n}");
        for (pname, param) in model.layers[i].params() {
            g.init_f32(&p(pname), param.value.shape(), param.value.data());
        }
        for (bname, buffer) in model.layers[i].buffers() {
            match buffer {
                Buffer::F32(t) => g.init_f32(&p(bname), t.shape(), t.data()),
                // Not an input of any node: kept in the metadata, so that the file
                // round-trips without an unused initialiser.
                Buffer::I64(v) => g.meta.push(entry(&p(bname), &v.to_string())),
            }
        }
        if implied.contains(&i) {
            g.node("Flatten", &p("flatten"), &[], vec![int("axis", 1)]);
        }
        match layer {
            LayerSpec::Conv2D(cs) => {
                let geom = cs.geom([s.input[0], s.input[1], s.input[2]])?;
                // Bottom and right padding: what the output size implies (Report 1's P on
                // both sides when explicit; the larger half of `same`'s total).
                let after = |size: usize, k: usize, out: usize, before: usize| match cs.padding {
                    Padding::Valid => 0,
                    Padding::Explicit(p) => p,
                    Padding::Same => ((out - 1) * cs.stride + k).saturating_sub(size + before),
                };
                let pads = [
                    geom.pad_top,
                    geom.pad_left,
                    after(geom.h, geom.kh, geom.out_h, geom.pad_top),
                    after(geom.w, geom.kw, geom.out_w, geom.pad_left),
                ];
                g.node(
                    "Conv",
                    &name,
                    &[&p("weight"), &p("bias")],
                    vec![
                        ints("kernel_shape", &[geom.kh, geom.kw]),
                        ints("strides", &[cs.stride, cs.stride]),
                        ints("pads", &pads),
                        ints("dilations", &[1, 1]),
                        int("group", 1),
                    ],
                );
            }
            LayerSpec::MaxPool2D(ps) | LayerSpec::AvgPool2D(ps) => {
                let op = match layer {
                    LayerSpec::MaxPool2D(_) => "MaxPool",
                    _ => "AveragePool",
                };
                g.node(
                    op,
                    &name,
                    &[],
                    vec![
                        ints("kernel_shape", &[ps.pool.0, ps.pool.1]),
                        ints("strides", &[ps.stride, ps.stride]),
                        ints("pads", &[0, 0, 0, 0]),
                    ],
                );
            }
            LayerSpec::Flatten(_) => g.node("Flatten", &name, &[], vec![int("axis", 1)]),
            LayerSpec::Dense(_) => g.node(
                "Gemm",
                &name,
                &[&p("weight"), &p("bias")],
                vec![int("transB", 1)],
            ),
            LayerSpec::BatchNorm(bs) => g.node(
                "BatchNormalization",
                &name,
                &[
                    &p("weight"),
                    &p("bias"),
                    &p("running_mean"),
                    &p("running_var"),
                ],
                vec![
                    float("epsilon", bs.eps),
                    float("momentum", 1.0 - bs.momentum),
                ],
            ),
            // The identity at inference.
            LayerSpec::Dropout(_) => {}
            // A stand-alone activation: below, as the layer's activation.
            LayerSpec::Activation(_) => {}
        }
        // The last layer's softmax is left to the final Softmax, as in `Model::new`.
        let act = layer.activation();
        if !(i == last && act == Activation::Softmax) {
            g.activation(act, &p("activation"), &s.output);
        }
    }

    let out_shape = spec.output_shape()?;
    if out_shape.len() > 1 {
        g.node("Flatten", "output.flatten", &[], vec![int("axis", 1)]);
    }
    g.node("Softmax", "output.softmax", &[], vec![int("axis", 1)]);
    let classes: usize = out_shape.iter().product();
    Ok(g.finish(model, meta, classes))
}

/// A graph under construction: nodes chained through `current`, the value the next node
/// reads.
struct Graph {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    current: String,
    /// `metadata_props` besides the classes and the seed.
    meta: Vec<StringStringEntryProto>,
}

impl Graph {
    fn new() -> Graph {
        Graph {
            nodes: Vec::new(),
            inits: Vec::new(),
            current: INPUT.to_string(),
            meta: Vec::new(),
        }
    }

    /// Appends node `name` of `op` reading the current value and `extra` inputs; its output
    /// (named after the node) becomes the current value.
    fn node(&mut self, op: &str, name: &str, extra: &[&str], attribute: Vec<AttributeProto>) {
        let mut input = vec![self.current.clone()];
        input.extend(extra.iter().map(|s| s.to_string()));
        let output = format!("{name}.out");
        self.nodes.push(NodeProto {
            input,
            output: vec![output.clone()],
            name: Some(name.to_string()),
            op_type: Some(op.to_string()),
            attribute,
            ..Default::default()
        });
        self.current = output;
    }

    /// The nodes of `act` on a value whose per-sample shape is `shape`; none for
    /// [`Activation::None`].
    fn activation(&mut self, act: Activation, name: &str, shape: &[usize]) {
        match act {
            Activation::None => {}
            Activation::Relu => self.node("Relu", name, &[], vec![]),
            Activation::LeakyRelu(a) => self.node("LeakyRelu", name, &[], vec![float("alpha", a)]),
            Activation::Sigmoid => self.node("Sigmoid", name, &[], vec![]),
            Activation::Tanh => self.node("Tanh", name, &[], vec![]),
            Activation::Softmax if shape.len() == 1 => {
                self.node("Softmax", name, &[], vec![int("axis", 1)])
            }
            Activation::Softmax => {
                // Ours is over a sample's C*H*W values; ONNX's over one axis: flatten,
                // softmax, and back to (C, H, W).
                let back = format!("{name}.shape");
                // Sizes are at most MAX_DIM (the config caps them), so they fit an i64.
                let dims: Vec<i64> = std::iter::once(-1)
                    .chain(shape.iter().map(|&d| d as i64))
                    .collect();
                self.inits.push(TensorProto {
                    dims: vec![dims.len() as i64],
                    data_type: Some(INT64),
                    name: Some(back.clone()),
                    int64_data: dims,
                    ..Default::default()
                });
                self.node(
                    "Flatten",
                    &format!("{name}.flatten"),
                    &[],
                    vec![int("axis", 1)],
                );
                self.node("Softmax", name, &[], vec![int("axis", 1)]);
                self.node("Reshape", &format!("{name}.reshape"), &[&back], vec![]);
            }
        }
    }

    /// A float initialiser with `v`'s exact bytes (little-endian raw data).
    fn init_f32(&mut self, name: &str, shape: &[usize], v: &[f32]) {
        self.inits.push(TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(FLOAT),
            name: Some(name.to_string()),
            raw_data: Some(model_file::f32_bytes(v)),
            ..Default::default()
        });
    }

    fn finish(self, model: &Model, meta: &ModelMeta, classes: usize) -> ModelProto {
        let [c, h, w] = model.spec.input;
        let input_dims = [Dim::Param("N"), Dim::Value(c), Dim::Value(h), Dim::Value(w)];
        let output_dims = [Dim::Param("N"), Dim::Value(classes)];
        let mut nodes = self.nodes;
        // The last node writes the graph's output under its public name.
        if let Some(last) = nodes.last_mut() {
            last.output = vec![OUTPUT.to_string()];
        }
        let classes_json = serde_json::to_string(&meta.classes).unwrap_or_else(|_| "[]".into());
        ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(OPSET),
            }],
            producer_name: Some("cnn".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            doc_string: Some(
                "Class probabilities of images [N, C, H, W] with pixels in [0, 1]; exported \
                 by `cnn export`."
                    .into(),
            ),
            graph: Some(GraphProto {
                node: nodes,
                name: Some("cnn".into()),
                initializer: self.inits,
                doc_string: Some(meta.config.clone()),
                input: vec![value_info(INPUT, &input_dims)],
                output: vec![value_info(OUTPUT, &output_dims)],
                ..Default::default()
            }),
            metadata_props: [
                entry("classes", &classes_json),
                entry("seed", &meta.seed.to_string()),
            ]
            .into_iter()
            .chain(self.meta)
            .collect(),
            ..Default::default()
        }
    }
}

/// One dimension of a declared shape: named (dynamic) or fixed.
enum Dim {
    Param(&'static str),
    Value(usize),
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    use tensor_shape_proto::dimension::Value;
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Param(p) => Value::DimParam(p.to_string()),
                Dim::Value(v) => Value::DimValue(*v as i64),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(FLOAT),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: Some(key.to_string()),
        value: Some(value.to_string()),
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}

fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}
