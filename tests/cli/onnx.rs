//! ONNX: export then import gives back the same tensors bit for bit, `cnn predict`
//! gives the same output for both files, and a malformed or foreign graph is refused with one
//! line naming the file, the node and its op, never a panic.
//!
//! That onnxruntime computes `cnn predict`'s probabilities from an exported file, and that
//! PyTorch's exports import right, is checked by `scripts/check-onnx.py` (it needs Python,
//! onnxruntime and PyTorch; its output is in the README).

use std::path::Path;

use crate::common::run;
use cnn::config;
use cnn::data::Normalization;
use cnn::init::Init;
use cnn::layers::param::{Buffer, BufferMut};
use cnn::model::Model;
use cnn::model_file::{self, ModelMeta};
use cnn::onnx::proto::{tensor_shape_proto, type_proto, ModelProto, NodeProto};
use cnn::onnx::{export, import};
use prost::Message;

/// Networks whose configs are in the canonical form `cnn import` writes (activations fused
/// into the layer before them, Flatten implied before a Dense, a softmax at the end), so that
/// the same config comes back too. (A config without the final softmax predicts the same,
/// since `cnn predict` applies one to the logits: its export ends in a Softmax, which comes
/// back as `activation=softmax`. scripts/check-onnx.py runs such configs.)
const CONFIGS: &[&str] = &[
    // Report 1's network.
    "5\nInput shape=1x28x28\nConv2D filters=16 kernel=3x3 stride=1\n padding=same activation=relu\n\
     MaxPool2D pool=2x2 stride=2\nDense units=128 activation=relu\nDense units=2 activation=softmax\n",
    // Strided valid and explicitly padded convolutions, average pooling, every activation,
    // and a stand-alone activation after pooling.
    "6\nInput shape=3x13x11\nConv2D filters=5 kernel=3x2 stride=2 activation=tanh\n\
     AvgPool2D pool=2x2 stride=1\nSigmoid\nConv2D filters=4 kernel=3x3 stride=1 padding=2 activation=leaky_relu alpha=0.125\n\
     Dense units=7 activation=sigmoid\nDense units=3 activation=softmax\n",
    // BatchNorm 2D and 1D, with fused activations and explicit Flatten and Dropout lines.
    "7\nInput shape=2x9x9\nConv2D filters=6 kernel=3x3 padding=same\nBatchNorm2D momentum=0.2 eps=0.001 activation=relu\n\
     MaxPool2D pool=3x3 stride=2\nFlatten\nBatchNorm1D\nDense units=10 activation=tanh\nDense units=4 activation=softmax\n",
    // A softmax over a spatial value (exported as Flatten, Softmax, Reshape back).
    "3\nInput shape=2x6x6\nConv2D filters=3 kernel=3x3\nSoftmax\nDense units=3 activation=softmax\n",
    // Global average pooling (exported as GlobalAveragePool then Flatten) before a layer
    // that reads a flat value, and at the end of an all-convolutional classifier.
    "4\nInput shape=2x9x9\nConv2D filters=4 kernel=3x3 padding=same activation=relu\nGlobalAvgPool2D\n\
     BatchNorm1D activation=tanh\nDense units=3 activation=softmax\n",
    "3\nInput shape=3x8x8\nConv2D filters=5 kernel=3x3 stride=2\nGlobalAvgPool2D\nSoftmax\n",
    // Depthwise-separable blocks: convolutions in groups (depthwise, with one and two
    // filters per channel, at stride 1 and 2) and without a bias before BatchNorm.
    "7\nInput shape=4x10x10\nConv2D filters=4 kernel=3x3 stride=1 padding=same groups=4 bias=false\n\
     BatchNorm2D activation=relu\nConv2D filters=6 kernel=1x1 stride=1 padding=valid groups=2 bias=false\n\
     BatchNorm2D activation=relu\nConv2D filters=12 kernel=3x3 stride=2 padding=1 groups=6 activation=relu\n\
     GlobalAvgPool2D\nDense units=3 activation=softmax\n",
    // A graph: an identity shortcut, a projection shortcut whose skip path reads the block's
    // input through a one-layer Route (exported as no node: the Conv reads that value), and
    // a concatenation of two branches (Add and Concat nodes, read back as Shortcut and Route).
    "13\nInput shape=2x8x8\nConv2D filters=4 kernel=3x3 padding=same\nBatchNorm2D activation=relu\n\
     Conv2D filters=4 kernel=3x3 padding=same\nBatchNorm2D\nShortcut from=-3 activation=relu\n\
     Conv2D filters=6 kernel=3x3 stride=2 padding=same activation=relu\nRoute layers=-2\n\
     Conv2D filters=6 kernel=1x1 stride=2\nShortcut from=-3\nConv2D filters=3 kernel=1x1 activation=tanh\n\
     Route layers=-2,-1\nGlobalAvgPool2D\nDense units=3 activation=softmax\n",
    // A MobileNetV2 inverted residual block: ReLU6 (exported as Clip from 0 to 6) after the
    // stem, the 1x1 expansion and the depthwise convolution, none after the projection,
    // then the residual add.
    "10\nInput shape=2x8x8\nConv2D filters=4 kernel=3x3 padding=same activation=relu6\n\
     Conv2D filters=8 kernel=1x1 padding=valid bias=false\nBatchNorm2D activation=relu6\n\
     Conv2D filters=8 kernel=3x3 padding=same groups=8 bias=false\nBatchNorm2D activation=relu6\n\
     Conv2D filters=4 kernel=1x1 padding=valid bias=false\nBatchNorm2D\nShortcut from=-7\n\
     GlobalAvgPool2D\nDense units=3 activation=softmax\n",
];

/// A model of `config` with seeded weights, and BatchNorm statistics that are not the
/// initial ones (so that copying them is seen).
fn model(config_text: &str, seed: u64) -> Model {
    let parsed = config::parse(config_text, "test config").unwrap();
    let mut m = Model::new(&parsed.spec, Init::He, seed).unwrap();
    let mut x = seed as f32;
    for p in m.params_mut() {
        for v in p.value.data_mut() {
            // Biases too (the initialiser zeroes them); odd values, all bits used.
            x = (x * 1.618_034 + 0.377).fract();
            *v += x - 0.5;
        }
    }
    for b in m.buffers_mut() {
        match b {
            BufferMut::F32(t) => {
                for v in t.data_mut() {
                    x = (x * 1.618_034 + 0.377).fract();
                    *v = x + 0.25;
                }
            }
            BufferMut::I64(n) => *n = 1234,
        }
    }
    m
}

fn meta(config_text: &str, classes: usize, c: usize) -> ModelMeta {
    ModelMeta {
        config: config_text.to_string(),
        classes: (0..classes).map(|i| format!("class \"{i}\" é")).collect(),
        normalization: Normalization {
            mean: (0..c).map(|i| 0.1 + i as f32 * 0.2).collect(),
            std: (0..c).map(|i| 0.3 + i as f32 * 0.1).collect(),
        },
        seed: 9,
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn export_then_import_gives_back_the_same_tensors_bit_for_bit() {
    for (n, text) in CONFIGS.iter().enumerate() {
        let m = model(text, n as u64 + 1);
        let meta = meta(text, m.classes(), m.spec().input[0]);
        let bytes = export::to_proto(&m, &meta).unwrap().encode_to_vec();
        let (back, back_meta) = import::from_bytes(Path::new("x.onnx"), &bytes, None).unwrap();

        assert_eq!(
            back.spec(),
            m.spec(),
            "config {n}: the same layers\n{}",
            back_meta.config
        );
        let want: Vec<_> = m
            .named_params()
            .into_iter()
            .map(|(k, p)| (k, bits(p.value.data())))
            .collect();
        let got: Vec<_> = back
            .named_params()
            .into_iter()
            .map(|(k, p)| (k, bits(p.value.data())))
            .collect();
        assert_eq!(got, want, "config {n}: parameters");
        let buffers = |m: &Model| -> Vec<(String, Vec<u32>, i64)> {
            m.named_buffers()
                .into_iter()
                .map(|(k, b)| match b {
                    Buffer::F32(t) => (k, bits(t.data()), 0),
                    Buffer::I64(v) => (k, vec![], v),
                })
                .collect()
        };
        assert_eq!(buffers(&back), buffers(&m), "config {n}: buffers");
        assert_eq!(back_meta.classes, meta.classes);
        assert_eq!(back_meta.normalization, meta.normalization);
    }
}

#[test]
fn an_exported_graph_has_the_shape_the_issue_asks_for() {
    let m = model(CONFIGS[0], 1);
    let meta = meta(CONFIGS[0], 2, 1);
    let p = export::to_proto(&m, &meta).unwrap();
    assert_eq!(
        (p.ir_version, p.opset_import[0].version),
        (Some(7), Some(13))
    );
    let g = p.graph.unwrap();
    let ops: Vec<_> = g.node.iter().map(|n| n.op_type.clone().unwrap()).collect();
    // Normalisation, then report 1's layers, then the softmax `cnn predict` applies.
    assert_eq!(
        ops,
        ["Sub", "Div", "Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Relu", "Gemm", "Softmax"]
    );
    assert_eq!(g.doc_string.as_deref(), Some(CONFIGS[0]));
    let dims = |v: &cnn::onnx::proto::ValueInfoProto| -> Vec<String> {
        let Some(type_proto::Value::TensorType(t)) = v.r#type.clone().unwrap().value else {
            panic!("a tensor")
        };
        t.shape
            .unwrap()
            .dim
            .into_iter()
            .map(|d| match d.value.unwrap() {
                tensor_shape_proto::dimension::Value::DimValue(v) => v.to_string(),
                tensor_shape_proto::dimension::Value::DimParam(p) => p,
            })
            .collect()
    };
    assert_eq!(dims(&g.input[0]), ["N", "1", "28", "28"]);
    assert_eq!(dims(&g.output[0]), ["N", "2"]);
    // Identity normalisation: no Sub/Div.
    let mut plain = meta.clone();
    plain.normalization = Normalization {
        mean: vec![0.0],
        std: vec![1.0],
    };
    let g = export::to_proto(&m, &plain).unwrap().graph.unwrap();
    assert_eq!(g.node[0].op_type.as_deref(), Some("Conv"));
}

#[test]
fn grouped_convolutions_export_their_group_and_a_missing_bias_as_no_third_input() {
    let i = CONFIGS.iter().position(|c| c.contains("groups=")).unwrap();
    let p = exported(i);
    let convs: Vec<&NodeProto> = p
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .filter(|n| n.op_type.as_deref() == Some("Conv"))
        .collect();
    let group = |n: &NodeProto| {
        let a = n
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some("group"));
        a.and_then(|a| a.i).unwrap()
    };
    let shape = |name: &str| -> Vec<i64> {
        let g = p.graph.as_ref().unwrap();
        let t = g
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some(name));
        t.unwrap().dims.clone()
    };
    assert_eq!(
        convs.iter().map(|n| group(n)).collect::<Vec<_>>(),
        [4, 2, 6]
    );
    assert_eq!(
        convs.iter().map(|n| n.input.len()).collect::<Vec<_>>(),
        [2, 2, 3]
    );
    assert_eq!(shape("layers.0.weight"), [4, 1, 3, 3]);
    assert_eq!(shape("layers.2.weight"), [6, 2, 1, 1]);
    assert_eq!(shape("layers.4.weight"), [12, 1, 3, 3]);

    // A group that does not fit the weight and the value it reads is refused.
    let tmp = tempfile::tempdir().unwrap();
    let mut bad = exported(i);
    let conv = node_mut(&mut bad, "Conv");
    let a = conv
        .attribute
        .iter_mut()
        .find(|a| a.name.as_deref() == Some("group"))
        .unwrap();
    a.i = Some(2);
    let (_, e) = import_refuses(tmp.path(), "group.onnx", &bad.encode_to_vec());
    assert!(
        e.contains("with group 2 takes 2 channels, the value it reads has 4"),
        "{e}"
    );
}

#[test]
fn relu6_exports_as_a_clip_from_0_to_6_and_other_clips_are_refused() {
    let i = CONFIGS.iter().position(|c| c.contains("relu6")).unwrap();
    let p = exported(i);
    let g = p.graph.as_ref().unwrap();
    let clips: Vec<&NodeProto> = g
        .node
        .iter()
        .filter(|n| n.op_type.as_deref() == Some("Clip"))
        .collect();
    assert_eq!(clips.len(), 3);
    let value = |name: &str| -> f32 {
        let t = g
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some(name));
        let raw = t.unwrap().raw_data.as_ref().unwrap();
        f32::from_le_bytes(raw[..4].try_into().unwrap())
    };
    for clip in &clips {
        assert_eq!(clip.input.len(), 3);
        assert_eq!((value(&clip.input[1]), value(&clip.input[2])), (0.0, 6.0));
    }

    // A Clip from 0 to 5 is no activation of ours.
    let tmp = tempfile::tempdir().unwrap();
    let mut bad = exported(i);
    let max = node_mut(&mut bad, "Clip").input[2].clone();
    let g = bad.graph.as_mut().unwrap();
    let t = g
        .initializer
        .iter_mut()
        .find(|t| t.name.as_deref() == Some(max.as_str()))
        .unwrap();
    t.raw_data = Some(5.0f32.to_le_bytes().to_vec());
    let (_, e) = import_refuses(tmp.path(), "clip.onnx", &bad.encode_to_vec());
    assert!(
        e.contains("Clip") && e.contains("a Clip from 0 to 5; only from 0 to 6 (ReLU6)"),
        "{e}"
    );
}

#[test]
fn global_average_pooling_exports_as_global_average_pool_and_predicts_the_same_back() {
    for i in [4, 5] {
        let m = model(CONFIGS[i], 7);
        let meta = meta(CONFIGS[i], m.classes(), m.spec().input[0]);
        let p = export::to_proto(&m, &meta).unwrap();
        let ops: Vec<_> = p
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .map(|n| n.op_type.clone().unwrap())
            .collect();
        let want: &[&str] = if i == 4 {
            &["Sub", "Div", "Conv", "Relu", "GlobalAveragePool", "Flatten"]
        } else {
            &[
                "Sub",
                "Div",
                "Conv",
                "GlobalAveragePool",
                "Flatten",
                "Softmax",
            ]
        };
        assert_eq!(&ops[..want.len()], want, "config {i}");
        let bytes = p.encode_to_vec();
        let (mut back, _) = import::from_bytes(Path::new("x.onnx"), &bytes, None).unwrap();
        let mut m = m;
        let [c, h, w] = m.spec().input;
        let x: Vec<f32> = (0..3 * c * h * w).map(|v| (v % 17) as f32 / 17.0).collect();
        let x = cnn::tensor::Tensor::from_vec(&[3, c, h, w], x).unwrap();
        let want = m.predict_proba(&x).unwrap();
        let got = back.predict_proba(&x).unwrap();
        assert_eq!(bits(got.data()), bits(want.data()), "config {i}");
    }
}

/// A model file of `CONFIGS[i]` in `dir`.
fn model_file(dir: &Path, i: usize) -> std::path::PathBuf {
    let m = model(CONFIGS[i], 3);
    let path = dir.join(format!("model{i}.safetensors"));
    model_file::save(&path, &m, &meta(CONFIGS[i], m.classes(), m.spec().input[0])).unwrap();
    path
}

#[test]
fn cnn_predict_gives_the_same_output_for_a_model_and_its_export_imported_back() {
    let tmp = tempfile::tempdir().unwrap();
    let original = model_file(tmp.path(), 0);
    let onnx = tmp.path().join("model.onnx");
    let back = tmp.path().join("back.safetensors");
    let (code, out, err) = run(&[&"export", &original, &onnx]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("model.onnx"), "{out}");
    let (code, out, err) = run(&[&"import", &onnx, &back]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Conv2D filters=16 kernel=3x3 stride=1 padding=same activation=relu"),
        "{out}"
    );
    let img = tmp.path().join("img.png");
    crate::files::write_png(&img, 28, 28, |x, y| (x * 9 + y * 3) as u8);
    let predict = |model: &Path| {
        let (code, out, err) = run(&[&"predict", &model, &img, &"--json", &"--top", &"2"]);
        assert_eq!(code, 0, "{err}");
        out
    };
    assert_eq!(predict(&back), predict(&original));
    // And the imported file is an ordinary model file.
    let (code, out, err) = run(&[&"summary", &back]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("class \"1\" é"), "{out}");
}

/// A graph's export has an `Add` per Shortcut and a `Concat` per Route of several layers,
/// nothing for a one-layer Route; imported back, it gives the same logits bit for bit.
#[test]
fn a_graph_exports_as_add_and_concat_and_imports_back_to_the_same_outputs() {
    let text = CONFIGS.iter().find(|c| c.contains("Shortcut")).unwrap();
    let mut m = model(text, 5);
    let p = export::to_proto(&m, &meta(text, 3, 2)).unwrap();
    let ops: Vec<&str> = p
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .filter_map(|n| n.op_type.as_deref())
        .collect();
    assert_eq!(ops.iter().filter(|&&o| o == "Add").count(), 2, "{ops:?}");
    assert_eq!(ops.iter().filter(|&&o| o == "Concat").count(), 1, "{ops:?}");
    let (mut back, back_meta) =
        import::from_bytes(Path::new("g.onnx"), &p.encode_to_vec(), None).unwrap();
    assert!(
        back_meta
            .config
            .contains("Shortcut from=-3 activation=relu\n"),
        "{}",
        back_meta.config
    );
    assert!(
        back_meta.config.contains("Route layers=-2,-1\n"),
        "{}",
        back_meta.config
    );
    let x = cnn::tensor::Tensor::from_vec(
        &[3, 2, 8, 8],
        (0..384).map(|i| ((i * 37) % 101) as f32 / 101.0).collect(),
    )
    .unwrap();
    let want = bits(m.infer(&x).unwrap().data());
    assert_eq!(bits(back.infer(&x).unwrap().data()), want);
}

/// Writes `proto` to `dir/name` and runs `cnn import` on it, returning (exit code, stderr)
/// after checking that stderr is one line naming the file.
fn import_refuses(dir: &Path, name: &str, bytes: &[u8]) -> (i32, String) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let out = dir.join("out.safetensors");
    let (code, _, stderr) = run(&[&"import", &path, &out]);
    assert_ne!(code, 0, "{name} was accepted");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!out.exists(), "{name}: nothing is written");
    (code, stderr)
}

fn exported(i: usize) -> ModelProto {
    let m = model(CONFIGS[i], 3);
    export::to_proto(&m, &meta(CONFIGS[i], m.classes(), m.spec().input[0])).unwrap()
}

fn node_mut<'a>(p: &'a mut ModelProto, op: &str) -> &'a mut NodeProto {
    let g = p.graph.as_mut().unwrap();
    g.node
        .iter_mut()
        .find(|n| n.op_type.as_deref() == Some(op))
        .unwrap()
}

#[test]
fn malformed_and_foreign_graphs_are_refused_with_one_line_naming_node_and_op() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let good = exported(0).encode_to_vec();

    // Cut short anywhere before its metadata: an error, never a panic (the small network's
    // file, at every byte, through the library; through the command below). A cut between
    // two metadata entries leaves a whole, valid model (protobuf cannot tell), which loses
    // the entries after the cut.
    let mut no_meta = exported(1);
    no_meta.metadata_props.clear();
    let small = exported(1).encode_to_vec();
    assert!(small.starts_with(&no_meta.encode_to_vec()));
    for cut in 0..no_meta.encoded_len() {
        let r = import::from_bytes(Path::new("cut.onnx"), &small[..cut], None);
        assert!(r.is_err(), "cut at {cut} of {} was accepted", small.len());
    }
    let (_, e) = import_refuses(dir, "half.onnx", &good[..good.len() / 2]);
    assert!(e.contains("half.onnx") && e.contains("truncated"), "{e}");
    let (_, e) = import_refuses(dir, "text.onnx", b"5\nInput shape=1x28x28\n");
    assert!(e.contains("not an ONNX model"), "{e}");

    let mut p = exported(0);
    node_mut(&mut p, "MaxPool").op_type = Some("LpPool".into());
    let (code, e) = import_refuses(dir, "op.onnx", &p.encode_to_vec());
    assert_eq!(code, 1);
    assert!(
        e.contains("node `layers.1` (LpPool): unsupported op"),
        "{e}"
    );

    let mut p = exported(0);
    let t = &mut p.graph.as_mut().unwrap().initializer[2];
    t.data_location = Some(1);
    t.raw_data = None;
    let (_, e) = import_refuses(dir, "external.onnx", &p.encode_to_vec());
    assert!(
        e.contains(
            "initialiser `layers.0.weight`: its external data names no file (no `location`)"
        ),
        "{e}"
    );

    // The first Dense's weight with one input column too few: the shapes do not chain.
    let mut p = exported(0);
    let g = p.graph.as_mut().unwrap();
    let w = g
        .initializer
        .iter_mut()
        .find(|t| t.name.as_deref() == Some("layers.2.weight"))
        .unwrap();
    w.dims = vec![128, 3135];
    w.raw_data = Some(vec![0; 128 * 3135 * 4]);
    let (_, e) = import_refuses(dir, "chain.onnx", &p.encode_to_vec());
    assert!(
        e.contains("node `layers.2` (Gemm)") && e.contains("shapes do not chain"),
        "{e}"
    );

    // A weight that declares far more values than it holds allocates nothing.
    let mut p = exported(0);
    let g = p.graph.as_mut().unwrap();
    g.initializer[2].dims = vec![1 << 40, 1 << 40];
    let (_, e) = import_refuses(dir, "huge-weight.onnx", &p.encode_to_vec());
    assert!(
        e.contains("more than the 1000000000 a model may have"),
        "{e}"
    );
    // A huge input image.
    let mut p = exported(0);
    let g = p.graph.as_mut().unwrap();
    let Some(type_proto::Value::TensorType(t)) =
        g.input[0].r#type.as_mut().and_then(|t| t.value.as_mut())
    else {
        panic!()
    };
    t.shape.as_mut().unwrap().dim[2].value =
        Some(tensor_shape_proto::dimension::Value::DimValue(1 << 50));
    let (_, e) = import_refuses(dir, "huge-input.onnx", &p.encode_to_vec());
    assert!(
        e.contains("dimension 1125899906842624 is not from 1 to 100000"),
        "{e}"
    );

    // A branch: the second Relu reads the graph input instead of the Conv.
    let mut p = exported(0);
    let g = p.graph.as_mut().unwrap();
    let relu = g
        .node
        .iter_mut()
        .filter(|n| n.op_type.as_deref() == Some("Relu"))
        .nth(1)
        .unwrap();
    relu.input[0] = "input".into();
    let (_, e) = import_refuses(dir, "branch.onnx", &p.encode_to_vec());
    assert!(
        e.contains("node `layers.2.activation` (Relu): reads the network's input `input` again"),
        "{e}"
    );

    // Many empty nodes: refused before decoding would allocate a struct for each.
    let mut p = exported(0);
    p.graph
        .as_mut()
        .unwrap()
        .node
        .extend((0..200_000).map(|_| NodeProto::default()));
    let (_, e) = import_refuses(dir, "bomb.onnx", &p.encode_to_vec());
    assert!(e.contains("more than 100000 embedded messages"), "{e}");

    // --classes of the wrong length is bad usage.
    let path = dir.join("good.onnx");
    std::fs::write(&path, &good).unwrap();
    let (code, _, e) = run(&[
        &"import",
        &path,
        &dir.join("o.safetensors"),
        &"--classes",
        &"a,b,c",
    ]);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("--classes gives 3 names, the network"), "{e}");
    let (code, _, e) = run(&[
        &"import",
        &path,
        &dir.join("o.safetensors"),
        &"--classes",
        &"a,b",
    ]);
    assert_eq!(code, 0, "{e}");
}

#[test]
fn export_refuses_a_file_that_is_not_a_model_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.safetensors");
    std::fs::write(&bad, b"not a model").unwrap();
    let (code, _, e) = run(&[&"export", &bad, &tmp.path().join("m.onnx")]);
    assert_eq!(code, 1, "{e}");
    assert!(e.contains("bad.safetensors"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    /// A small exported network (BatchNorm, normalisation, classes), as bytes.
    fn small() -> Vec<u8> {
        exported(1).encode_to_vec()
    }

    /// Imports `bytes`: a model, or a one-line error.
    fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Err(e) = import::from_bytes(Path::new("p.onnx"), bytes, None) {
            prop_assert!(!e.to_string().contains('\n'), "{e}");
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Proves: arbitrary bytes are imported or refused in one line.
        #[test]
        fn on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            check(&bytes)?;
        }

        /// Proves: an export with up to 8 bytes changed is imported or refused in one line
        /// (changed lengths, tags, dims, attribute values, names).
        #[test]
        fn on_mutated_exports(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let mut bytes = small();
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            check(&bytes)?;
        }
    }
}

// ------------------------------------------------------------------- external data

/// The folder of a real export by PyTorch's default exporter, weights in `net.onnx.data`
/// (written by scripts/make-onnx-dynamo-fixture.py).
fn dynamo_fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx-dynamo")
}

#[test]
fn a_default_pytorch_export_with_its_weights_beside_it_imports_and_predicts_as_pytorch() {
    let tmp = tempfile::tempdir().unwrap();
    let back = tmp.path().join("net.safetensors");
    let (code, out, err) = run(&[&"import", &dynamo_fixture().join("net.onnx"), &back]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Dense units=10"), "{out}");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dynamo_fixture().join("expected.json")).unwrap(),
    )
    .unwrap();
    let pixels: Vec<u8> = expected["pixels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect();
    let img = tmp.path().join("img.png");
    crate::files::write_png(&img, 28, 28, |x, y| pixels[(y * 28 + x) as usize]);
    let (code, out, err) = run(&[&"predict", &back, &img, &"--json", &"--top", &"10"]);
    assert_eq!(code, 0, "{err}");
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    for pair in got["probabilities"].as_array().unwrap() {
        let class: usize = pair[0].as_str().unwrap().parse().unwrap();
        let p = pair[1].as_f64().unwrap();
        let want = expected["probabilities"][class].as_f64().unwrap();
        assert!(
            (p - want).abs() < 1e-5,
            "class {class}: {p} against PyTorch's {want}"
        );
    }

    // Without its data file beside it, the model is refused naming the file.
    let alone = tmp.path().join("alone.onnx");
    std::fs::copy(dynamo_fixture().join("net.onnx"), &alone).unwrap();
    let (_, e) = import_refuses(tmp.path(), "alone.onnx", &std::fs::read(&alone).unwrap());
    assert!(
        e.contains("its external data names net.onnx.data, which cannot be opened"),
        "{e}"
    );
}

/// A MobileNetV2-style network (a stem, an inverted residual block with stride 2 and one with
/// its residual add, ReLU6 as `Clip`, depthwise convolutions) exported by both of PyTorch's
/// exporters (written by scripts/make-onnx-inverted-residual-fixture.py): each imports to the
/// same config, and predicts PyTorch's probabilities for the file's image.
#[test]
fn an_inverted_residual_network_from_both_pytorch_exporters_imports_and_predicts_as_pytorch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx-inverted-residual");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let pixels: Vec<u8> = expected["pixels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("img.png");
    crate::files::write_png(&img, 28, 28, |x, y| pixels[(y * 28 + x) as usize]);
    let mut configs = Vec::new();
    for exporter in ["torchscript", "dynamo"] {
        let back = tmp.path().join(format!("{exporter}.safetensors"));
        let (code, out, err) = run(&[&"import", &dir.join(format!("{exporter}.onnx")), &back]);
        assert_eq!(code, 0, "{exporter}: {err}");
        // The exporters fold each BatchNorm into the convolution before it.
        for line in [
            "Conv2D filters=32 kernel=1x1 stride=1 padding=valid activation=relu6\n",
            "Conv2D filters=32 kernel=3x3 stride=2 padding=1 groups=32 activation=relu6\n",
            "Conv2D filters=12 kernel=1x1 stride=1 padding=valid\n",
            "Conv2D filters=48 kernel=3x3 stride=1 padding=same groups=48 activation=relu6\n",
            "Shortcut from=-4\nGlobalAvgPool2D\nDense units=10\n",
        ] {
            assert!(out.contains(line), "{exporter}: no {line:?} in {out}");
        }
        configs.push(out.lines().skip(1).collect::<Vec<_>>().join("\n"));
        let (code, out, err) = run(&[&"predict", &back, &img, &"--json", &"--top", &"10"]);
        assert_eq!(code, 0, "{exporter}: {err}");
        let got: serde_json::Value = serde_json::from_str(&out).unwrap();
        for pair in got["probabilities"].as_array().unwrap() {
            let class: usize = pair[0].as_str().unwrap().parse().unwrap();
            let p = pair[1].as_f64().unwrap();
            let want = expected["probabilities"][class].as_f64().unwrap();
            assert!(
                (p - want).abs() < 1e-5,
                "{exporter}, class {class}: {p} against PyTorch's {want}"
            );
        }
    }
    assert_eq!(configs[0], configs[1]);
}

/// `proto` with every float initialiser's data moved into `dir/file`, one after the other
/// from byte 16 (the first 16 are padding); `length` left out for the last, which then runs
/// to the end of the file.
fn with_external_data(mut proto: ModelProto, dir: &Path, file: &str) -> ModelProto {
    use cnn::onnx::proto::StringStringEntryProto;
    let mut data = vec![0u8; 16];
    let g = proto.graph.as_mut().unwrap();
    let moved: Vec<usize> = (0..g.initializer.len())
        .filter(|&i| {
            g.initializer[i]
                .raw_data
                .as_ref()
                .is_some_and(|r| !r.is_empty())
        })
        .filter(|&i| g.initializer[i].data_type == Some(1))
        .collect();
    assert!(moved.len() >= 2);
    for (k, &i) in moved.iter().enumerate() {
        let t = &mut g.initializer[i];
        let raw = t.raw_data.take().unwrap();
        let entry = |key: &str, value: String| StringStringEntryProto {
            key: Some(key.into()),
            value: Some(value),
        };
        t.external_data = vec![
            entry("location", file.into()),
            entry("offset", data.len().to_string()),
        ];
        if k + 1 < moved.len() {
            t.external_data.push(entry("length", raw.len().to_string()));
        }
        t.data_location = Some(1);
        data.extend_from_slice(&raw);
    }
    std::fs::write(dir.join(file), data).unwrap();
    proto
}

#[test]
fn external_data_written_by_hand_imports_to_the_same_tensors_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let inline = exported(0);
    let (want, _) = import::from_bytes(Path::new("x.onnx"), &inline.encode_to_vec(), None).unwrap();
    let ext = with_external_data(inline, tmp.path(), "weights.bin");
    let path = tmp.path().join("ext.onnx");
    std::fs::write(&path, ext.encode_to_vec()).unwrap();
    let (got, _) = import::from_bytes(&path, &ext.encode_to_vec(), None).unwrap();
    let tensors = |m: &Model| -> Vec<(String, Vec<u32>)> {
        m.named_params()
            .into_iter()
            .map(|(k, p)| (k, bits(p.value.data())))
            .collect()
    };
    assert_eq!(tensors(&got), tensors(&want));
    // Through the command, from another folder: the location is the model's folder's.
    let out = tmp.path().join("ext.safetensors");
    let (code, _, err) = run(&[&"import", &path, &out]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn external_data_outside_the_model_s_folder_or_the_file_is_refused_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    std::fs::create_dir(&models).unwrap();
    // A file beside the folder, which no location may reach.
    let ext = with_external_data(exported(0), tmp.path(), "outside.bin");
    let relocated = |location: &str| {
        let mut p = ext.clone();
        for t in &mut p.graph.as_mut().unwrap().initializer {
            for e in &mut t.external_data {
                if e.key.as_deref() == Some("location") {
                    e.value = Some(location.into());
                }
            }
        }
        p.encode_to_vec()
    };
    let outside = tmp.path().join("outside.bin");
    let cases = [
        (
            "up.onnx",
            "../outside.bin".to_string(),
            "goes up a folder (`..`)",
        ),
        (
            "abs.onnx",
            outside.display().to_string(),
            "an absolute path",
        ),
        (
            "link.onnx",
            "link.bin".to_string(),
            "a link that leads out of the model's folder",
        ),
        (
            "none.onnx",
            "missing.bin".to_string(),
            "names missing.bin, which cannot be opened",
        ),
    ];
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, models.join("link.bin")).unwrap();
    for (name, location, says) in cases {
        #[cfg(not(unix))]
        if name == "link.onnx" {
            continue;
        }
        let (code, e) = import_refuses(&models, name, &relocated(&location));
        assert_eq!(code, 1, "{name}");
        assert!(
            e.contains("its external data names") && e.contains(says),
            "{name}: {e}"
        );
        assert!(
            e.contains("it must be a file in the model's folder") || name == "none.onnx",
            "{e}"
        );
    }
    // Inside the folder, but a range the file does not hold, or of the wrong size.
    std::fs::copy(&outside, models.join("w.bin")).unwrap();
    let len = std::fs::metadata(&outside).unwrap().len();
    let ext = ModelProto::decode(relocated("w.bin").as_slice()).unwrap();
    let mut p = ext.clone();
    let entry = |p: &mut ModelProto, key: &str, value: String| {
        let t = p
            .graph
            .as_mut()
            .unwrap()
            .initializer
            .iter_mut()
            .find(|t| !t.external_data.is_empty())
            .unwrap();
        if let Some(e) = t
            .external_data
            .iter_mut()
            .find(|e| e.key.as_deref() == Some(key))
        {
            e.value = Some(value);
        }
        t.name.clone().unwrap()
    };
    let name = entry(&mut p, "offset", (len - 2).to_string());
    let (_, e) = import_refuses(&models, "past.onnx", &p.encode_to_vec());
    assert!(
        e.contains(&format!(
            "initialiser `{name}`: its external data (offset {}",
            len - 2
        )) && e.contains(&format!("runs past the end of w.bin ({len} bytes)")),
        "{e}"
    );
    let mut p = ext.clone();
    entry(&mut p, "length", "8".into());
    let (_, e) = import_refuses(&models, "short.onnx", &p.encode_to_vec());
    assert!(
        e.contains("is 8 bytes in w.bin, but its dims (") && e.contains("-byte values take "),
        "{e}"
    );
    let mut p = ext;
    entry(&mut p, "offset", "-1".into());
    let (_, e) = import_refuses(&models, "negative.onnx", &p.encode_to_vec());
    assert!(e.contains("has `offset` -1, not a byte count"), "{e}");
}
