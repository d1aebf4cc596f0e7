//! A training health monitor: per layer, the size of the gradients and the share of dead
//! ReLU units, so that a student can see why a network does not learn (vanishing or
//! exploding gradients, ReLUs that never fire).
//!
//! [`layer_health`] reads what the last training step left in the model: every parameter's
//! gradient (of the last batch) and every layer's output (of the last forward pass). It
//! allocates nothing big and changes nothing.

use crate::layers::Activation;
use crate::model::Model;
use crate::tensor::Tensor;

/// The health of one layer after a training step.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerHealth {
    /// Index among the config's layer lines.
    pub index: usize,
    /// The layer's name (`Conv2D`, `Dense`, ...).
    pub name: &'static str,
    /// `(tensor name, L2 norm of its gradient)` for each parameter, e.g.
    /// `("layers.0.weight", 0.013)`.
    pub grad_norms: Vec<(String, f64)>,
    /// For a layer ending in ReLU: the share (0 to 1) of its output units that are exactly 0
    /// for every sample of the last batch. `None` for other layers, or before any forward pass.
    pub dead_relu: Option<f64>,
}

/// L2 norm of `v`, summed in f64.
pub fn l2_norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

/// Share of the units of a `[N, ...]` output that are exactly 0 for all N samples; `None`
/// for an empty tensor.
pub fn dead_share(output: &Tensor) -> Option<f64> {
    let n = output.batch();
    if n == 0 || output.is_empty() {
        return None;
    }
    let units = output.len() / n;
    let data = output.data();
    let dead = (0..units)
        .filter(|&u| (0..n).all(|s| data[s * units + u] == 0.0))
        .count();
    Some(dead as f64 / units as f64)
}

/// The health of every layer, in order, from the model's last training step.
pub fn layer_health(model: &Model) -> Vec<LayerHealth> {
    let named = model.named_params();
    model
        .layers()
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            let prefix = format!("layers.{i}.");
            let grad_norms = named
                .iter()
                .filter(|(n, _)| n.starts_with(&prefix))
                .map(|(n, p)| (n.clone(), l2_norm(p.grad.data())))
                .collect();
            let dead_relu = if layer.activation() == Activation::Relu {
                model.activation(i).and_then(dead_share)
            } else {
                None
            };
            LayerHealth {
                index: i,
                name: layer.spec.name(),
                grad_norms,
                dead_relu,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::init::Init;
    use crate::optim::{Optimizer, OptimizerKind};

    /// Proves: a unit is dead only when it is 0 for every sample; the share counts units.
    #[test]
    fn dead_share_counts_units_zero_for_every_sample() {
        // 2 samples x 4 units: unit 0 is 0 in both (dead), unit 1 fires in sample 2, unit 2
        // fires in sample 1, unit 3 is 0 in both (dead).
        let t = Tensor::from_vec(&[2, 4], vec![0.0, 0.0, 1.5, 0.0, 0.0, 2.0, 0.0, 0.0]).unwrap();
        assert_eq!(dead_share(&t), Some(0.5));
        let all = Tensor::from_vec(&[1, 3], vec![0.0; 3]).unwrap();
        assert_eq!(dead_share(&all), Some(1.0));
        assert_eq!(dead_share(&Tensor::default()), None);
    }

    /// Proves: a ReLU layer whose bias is hugely negative is reported 100% dead, with zero
    /// gradients behind it; the softmax output layer has no dead share.
    #[test]
    fn a_relu_layer_with_a_very_negative_bias_is_all_dead() {
        let cfg = "2\nInput shape=1x2x2\nDense units=3 activation=relu\nDense units=2 activation=softmax\n";
        let parsed = config::parse(cfg, "t").unwrap();
        let mut m = Model::new(&parsed.spec, Init::He, 1).unwrap();
        m.params_mut()[1].value.fill(-100.0);
        let x =
            Tensor::from_vec(&[2, 1, 2, 2], vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]).unwrap();
        let mut opt = Optimizer::new(OptimizerKind::Sgd, 0.1, 0.0);
        m.train_step(&x, &[0, 0], &mut opt).unwrap();
        let h = layer_health(&m);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].name, "Dense");
        assert_eq!(h[0].dead_relu, Some(1.0));
        let names: Vec<&str> = h[0].grad_norms.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["layers.0.weight", "layers.0.bias"]);
        assert!(h[0].grad_norms.iter().all(|(_, g)| *g == 0.0));
        assert_eq!(h[1].dead_relu, None);
        assert!(h[1].grad_norms[1].1 > 0.0, "the output bias still learns");
    }
}
