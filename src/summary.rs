//! A Keras-like model summary that shows its arithmetic.
//!
//! [`render`] prints one row per layer with its output shape, its trainable parameters and
//! its forward FLOPs for one sample (a multiply-add counts 2; see
//! [`crate::layers::LayerSpec::forward_flops`]). The Flatten that a Dense layer implies after a spatial
//! layer gets its own row, marked implicit and without an index, since it is not a layer of
//! the network. With `explain`, each layer is followed by the formulas behind its numbers:
//!
//! ```text
//! 0 Conv2D 16 3x3 same relu   (16, 28, 28)   160   225,792
//!     H' = floor((28 - 3 + 2*1)/1) + 1 = 28 (same padding resolved to P = 1); W' likewise
//!     params = 3*3*1*16 + 16 = 160
//!     FLOPs = 2*16*28*28*1*3*3 = 225,792
//! ```
//!
//! A network that is a graph (a Shortcut or a Route in it) gets a column `Reads` after the
//! layer's label: `-` for a layer that reads the line above alone, else the indices of the
//! layers it reads (`5,2`). A chain's table has no such column, as before.

use crate::error::Result;
use crate::layers::NetworkSpec;
use crate::text::{fmt_shape, product_expr, thousands};

struct Row {
    label: String,
    reads: String,
    shape: String,
    params: String,
    flops: String,
    explain: Vec<String>,
}

/// Renders the summary table of `spec`; with `explain`, the arithmetic under each layer.
/// Fails if the network's shapes do not work out.
pub fn render(spec: &NetworkSpec, explain: bool) -> Result<String> {
    let shapes = spec.shapes().map_err(|(_, e)| e)?;
    let graph = !spec.is_chain();
    let mut rows = vec![Row {
        label: format!(
            "   Input {}x{}x{}",
            spec.input[0], spec.input[1], spec.input[2]
        ),
        reads: String::new(),
        shape: fmt_shape(&spec.input),
        params: String::new(),
        flops: String::new(),
        explain: Vec::new(),
    }];
    let mut flops_terms: Vec<(usize, u64)> = Vec::new();
    for (i, (layer, s)) in spec.layers.iter().zip(&shapes).enumerate() {
        if layer.input_form().implies_flatten() && s.input.len() == 3 {
            let n: usize = s.input.iter().product();
            rows.push(Row {
                label: "   Flatten (implicit)".into(),
                reads: "-".into(),
                shape: fmt_shape(&[n]),
                params: "0".into(),
                flops: "0".into(),
                explain: vec![format!(
                    "{} = {}",
                    product_expr(&s.input),
                    thousands(n as u128)
                )],
            });
        }
        let counts = layer.counts(&s.input, &s.output);
        let (params, flops) = (counts.params as u64, counts.flops as u64);
        flops_terms.push((i, flops));
        rows.push(Row {
            label: format!("{i:>2} {}", layer.describe()),
            reads: reads_text(i, &s.reads),
            shape: fmt_shape(&s.output),
            params: thousands(params as u128),
            flops: thousands(flops as u128),
            explain: layer.explain_of(&s.input_shapes(), &s.output)?,
        });
    }

    let header = Row {
        label: "Layer".into(),
        reads: "Reads".into(),
        shape: "Output shape".into(),
        params: "Params".into(),
        flops: "FLOPs/sample".into(),
        explain: Vec::new(),
    };
    let w0 = rows.iter().map(|r| r.label.len()).max().unwrap_or(0).max(5);
    let wr = rows.iter().map(|r| r.reads.len()).max().unwrap_or(0).max(5);
    let w1 = rows
        .iter()
        .map(|r| r.shape.len())
        .max()
        .unwrap_or(0)
        .max(12);
    let w2 = rows
        .iter()
        .map(|r| r.params.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let w3 = rows
        .iter()
        .map(|r| r.flops.len())
        .max()
        .unwrap_or(0)
        .max(12);
    let width = w0 + w1 + w2 + w3 + 6 + if graph { wr + 2 } else { 0 };
    let line = |r: &Row| {
        let label = if graph {
            format!("{:<w0$}  {:<wr$}", r.label, r.reads)
        } else {
            r.label.clone()
        };
        let w0 = if graph { w0 + 2 + wr } else { w0 };
        format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}\n",
            label, r.shape, r.params, r.flops
        )
    };

    let mut out = String::new();
    out.push_str(&line(&header));
    out.push_str(&"=".repeat(width));
    out.push('\n');
    for r in &rows {
        out.push_str(line(r).trim_end());
        out.push('\n');
        if explain {
            for e in &r.explain {
                out.push_str(&format!("      {e}\n"));
            }
        }
    }
    out.push_str(&"-".repeat(width));
    out.push('\n');

    let params = spec.param_count()?;
    let forward = spec.forward_flops_per_sample()?;
    let train = spec.train_flops_per_sample()?;
    out.push_str(&format!(
        "Total params: {} ({} as f32)\n",
        thousands(params as u128),
        bytes(params as u128 * 4)
    ));
    out.push_str(&format!(
        "Forward FLOPs per sample: {}\n",
        thousands(forward as u128)
    ));
    out.push_str(&format!(
        "Training FLOPs per sample: {} (forward, weight gradients and input gradients)\n",
        thousands(train as u128)
    ));
    if explain {
        let terms: Vec<String> = flops_terms
            .iter()
            .filter(|(_, f)| *f > 0)
            .map(|(i, f)| format!("{}*{}", if *i == 0 { 2 } else { 3 }, thousands(*f as u128)))
            .collect();
        if !terms.is_empty() {
            out.push_str(&format!(
                "      training = 2 x forward for layer 0 (its input needs no gradient) + 3 x \
                 forward for the others\n      = {} = {}\n",
                terms.join(" + "),
                thousands(train as u128)
            ));
        }
    }
    Ok(out)
}

/// The `Reads` cell of layer `i`: `-` when it reads the line above alone (the input for
/// layer 0), else the layers it reads, `5,2` (`input` for the network's input).
fn reads_text(i: usize, reads: &[crate::layers::Value]) -> String {
    use crate::layers::Value;
    let above = match i {
        0 => Value::Input,
        _ => Value::Output(i - 1),
    };
    if reads == [above] {
        return "-".into();
    }
    let items: Vec<String> = reads
        .iter()
        .map(|v| match v {
            Value::Input => "input".to_string(),
            Value::Output(j) => j.to_string(),
        })
        .collect();
    items.join(",")
}

/// `1.53 MiB`.
fn bytes(n: u128) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.2} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const REPORT1: &str = include_str!("../examples/report1.cfg");

    #[test]
    fn report1_summary_shows_the_report_shapes_and_params() {
        let spec = parse(REPORT1, "report1.cfg").unwrap().spec;
        let s = render(&spec, false).unwrap();
        for needle in [
            "(16, 28, 28)",
            "(16, 14, 14)",
            "(3136)",
            "(128)",
            "(2)",
            "401,954",
            "0 Conv2D 16 3x3 same relu",
            "1 MaxPool2D 2x2 stride 2",
            "Flatten (implicit)",
            "2 Dense 128 relu",
            "3 Dense 2 softmax",
            "Forward FLOPs per sample: 1,029,120",
        ] {
            assert!(s.contains(needle), "{needle:?} missing from\n{s}");
        }
        assert!(!s.contains("H' ="), "no arithmetic without explain:\n{s}");
        // The implicit Flatten has no index: its row starts with spaces.
        let flatten = s.lines().find(|l| l.contains("Flatten")).unwrap();
        assert!(flatten.starts_with("   Flatten"), "{flatten:?}");
    }

    #[test]
    fn explain_shows_the_formulas() {
        let spec = parse(REPORT1, "report1.cfg").unwrap().spec;
        let s = render(&spec, true).unwrap();
        for needle in [
            "H' = floor((28 - 3 + 2*1)/1) + 1 = 28",
            "same padding resolved to P = 1",
            "params = 3*3*1*16 + 16 = 160",
            "FLOPs = 2*16*28*28*1*3*3 = 225,792",
            "H' = floor((28 - 2)/2) + 1 = 14",
            "16*14*14 = 3,136",
            "params = 3136*128 + 128 = 401,536",
            "FLOPs = 2*3136*128 = 802,816",
            "params = 128*2 + 2 = 258",
        ] {
            assert!(s.contains(needle), "{needle:?} missing from\n{s}");
        }
    }

    #[test]
    fn training_flops_match_the_spec() {
        // 2,867,712 FLOPs per training step per image with 10 outputs, the figure
        // docs/PERFORMANCE.md quotes for report 1's network.
        let text = include_str!("../examples/report1-10.cfg");
        let s = render(&parse(text, "t").unwrap().spec, true).unwrap();
        assert!(s.contains("Training FLOPs per sample: 2,867,712"), "{s}");
        assert!(
            s.contains("= 2*225,792 + 3*802,816 + 3*2,560 = 2,867,712"),
            "{s}"
        );
    }

    #[test]
    fn asymmetric_same_padding_and_other_layers_are_explained() {
        let text = "6\nInput shape=2x6x5\nConv2D filters=3 kernel=3 stride=2 padding=same\n\
                    LeakyReLU alpha=0.1\nAvgPool2D pool=1x2 stride=1\nFlatten\n\
                    Dense units=4 activation=leaky_relu alpha=0.2\nSoftmax\n";
        let s = render(&parse(text, "t").unwrap().spec, true).unwrap();
        for needle in [
            "0 Conv2D 3 3x3 stride 2 same",
            "H' = floor((6 - 3 + 0 + 1)/2) + 1 = 3 (same padding is asymmetric here: 0 \
             before, 1 after)",
            "W' = floor((5 - 3 + 2*1)/2) + 1 = 3",
            "1 LeakyReLU 0.1",
            "W' = floor((3 - 2)/1) + 1 = 2",
            "3 Flatten",
            "3*3*2 = 18",
            "4 Dense 4 leaky_relu 0.2",
            "5 Softmax",
        ] {
            assert!(s.contains(needle), "{needle:?} missing from\n{s}");
        }
        assert!(!s.contains("implicit"), "{s}");
    }

    #[test]
    fn a_network_whose_shapes_fail_is_an_error() {
        let spec = NetworkSpec {
            input: [1, 2, 2],
            layers: vec![crate::layers::LayerSpec::MaxPool2D(
                crate::layers::spec::PoolSpec {
                    pool: (3, 3),
                    stride: 1,
                },
            )],
        };
        assert!(render(&spec, false).is_err());
    }

    #[test]
    #[ignore = "prints the report 1 summary for a look: cargo test -- --ignored --nocapture"]
    fn print_report1_summary() {
        let spec = parse(REPORT1, "report1.cfg").unwrap().spec;
        println!("{}", render(&spec, true).unwrap());
    }
}
