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
use crate::layers::activation;
use crate::layers::param::Buffer;
use crate::layers::{Activation, Value};
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
    let spec = model.spec();
    let shapes = spec.shapes().map_err(|(_, e)| e)?;
    let implied = implied_flattens(&spec.layers);
    let last = spec.layers.len().saturating_sub(1);
    let c = spec.input[0];
    let mut g = Graph::default();
    let mut value = INPUT.to_string();

    let norm = &meta.normalization;
    let identity = norm.mean.iter().all(|&m| m == 0.0) && norm.std.iter().all(|&s| s == 1.0);
    if !identity {
        g.init_f32("norm_mean", &[1, c, 1, 1], &norm.mean);
        g.init_f32("norm_std", &[1, c, 1, 1], &norm.std);
        value = g.node("Sub", "normalize.sub", &[&value, "norm_mean"], vec![]);
        value = g.node("Div", "normalize.div", &[&value, "norm_std"], vec![]);
    }

    // The ONNX value of each layer's output, for the layers that read it.
    let mut outputs: Vec<String> = Vec::with_capacity(spec.layers.len());
    let input_value = value;
    for (i, (layer, s)) in spec.layers.iter().zip(&shapes).enumerate() {
        let name = format!("layers.{i}");
        let reads: Vec<String> = s
            .reads
            .iter()
            .map(|v| match v {
                Value::Input => input_value.clone(),
                Value::Output(j) => outputs[*j].clone(),
            })
            .collect();
        let mut value = reads[0].clone();
        let at = LayerAt {
            name: &name,
            input: &s.input,
            output: &s.output,
        };
        for (pname, param) in model.layers()[i].params() {
            g.init_f32(&at.tensor(pname), param.value.shape(), param.value.data());
        }
        for (bname, buffer) in model.layers()[i].buffers() {
            match buffer {
                Buffer::F32(t) => g.init_f32(&at.tensor(bname), t.shape(), t.data()),
                // Not an input of any node: kept in the metadata, so that the file
                // round-trips without an unused initialiser.
                Buffer::I64(v) => g.meta.push(entry(&at.tensor(bname), &v.to_string())),
            }
        }
        if implied.contains(&i) {
            value = g.node(
                "Flatten",
                &at.tensor("flatten"),
                &[&value],
                vec![int("axis", 1)],
            );
        }
        value = if reads.len() == 1 {
            layer.onnx(&mut g, &value, &at)?
        } else {
            let inputs: Vec<&str> = reads.iter().map(String::as_str).collect();
            layer.onnx_many(&mut g, &inputs, &at)?
        };
        // The last layer's softmax is left to the final Softmax, as in `Model::new`.
        let act = layer.activation();
        if !(i == last && act == Activation::Softmax) {
            value = activation::onnx(act, &mut g, &value, &at.tensor("activation"), &s.output);
        }
        outputs.push(value);
    }
    let mut value = outputs.pop().unwrap_or(input_value);

    let out_shape = spec.output_shape()?;
    if out_shape.len() > 1 {
        value = g.node("Flatten", "output.flatten", &[&value], vec![int("axis", 1)]);
    }
    g.node("Softmax", "output.softmax", &[&value], vec![int("axis", 1)]);
    let classes: usize = out_shape.iter().product();
    Ok(g.finish(model, meta, classes))
}

/// One layer as `cnn export` writes it ([`crate::layers::LayerKind::onnx`]).
#[derive(Debug, Clone, Copy)]
pub struct LayerAt<'a> {
    /// `layers.{i}`, the name of the layer's main node; its other nodes are named
    /// `layers.{i}.{what}`.
    pub name: &'a str,
    /// The per-sample input shape.
    pub input: &'a [usize],
    /// The per-sample output shape.
    pub output: &'a [usize],
}

impl LayerAt<'_> {
    /// `layers.{i}.{what}`: the initialiser of the layer's tensor `what` (named as in the
    /// model file), or the name of one of its other nodes.
    pub fn tensor(&self, what: &str) -> String {
        format!("{}.{what}", self.name)
    }
}

/// A graph under construction: its nodes, in order, and its initialisers. Each layer adds
/// its nodes ([`crate::layers::LayerKind::onnx`]), naming the values they read.
#[derive(Default)]
pub struct Graph {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// `metadata_props` besides the classes and the seed.
    meta: Vec<StringStringEntryProto>,
}

impl Graph {
    /// Appends node `name` of `op` reading the values `inputs` (the value it transforms
    /// first, then initialisers); returns the name of its output, `{name}.out`.
    pub fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        let output = format!("{name}.out");
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name: Some(name.to_string()),
            op_type: Some(op.to_string()),
            attribute,
            ..Default::default()
        });
        output
    }

    /// An int64 initialiser `[values.len()]` (a Reshape's target shape).
    pub fn init_i64(&mut self, name: &str, values: Vec<i64>) {
        self.inits.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: Some(INT64),
            name: Some(name.to_string()),
            int64_data: values,
            ..Default::default()
        });
    }

    /// A float initialiser with `v`'s exact bytes (little-endian raw data).
    pub fn init_f32(&mut self, name: &str, shape: &[usize], v: &[f32]) {
        self.inits.push(TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(FLOAT),
            name: Some(name.to_string()),
            raw_data: Some(model_file::f32_bytes(v)),
            ..Default::default()
        });
    }

    fn finish(self, model: &Model, meta: &ModelMeta, classes: usize) -> ModelProto {
        let [c, h, w] = model.spec().input;
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

/// An int attribute.
pub fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

/// An ints attribute.
pub fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}

/// A float attribute.
pub fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}
