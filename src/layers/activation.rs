//! Activations, applied in place after a layer, and their backward passes.
//!
//! Every derivative here is written in terms of the activation's *output* y, so the input
//! need not be kept:
//!
//! ```text
//! ReLU       y = max(0, x)          dx = dy * [y > 0]            (report 1, eq. 5)
//! LeakyReLU  y = x or a x           dx = dy * (1 if y > 0 else a)   (a > 0 keeps the sign)
//! Sigmoid    y = 1 / (1 + e^-x)     dx = dy * y (1 - y)
//! Tanh       y = tanh x             dx = dy * (1 - y^2)
//! Softmax    y_i = e^{x_i} / sum_j e^{x_j}   (per sample, shifted by max x for stability)
//!            dx_i = y_i (dy_i - sum_j dy_j y_j)
//! ```

use super::spec::Activation;

/// Applies `act` in place to `n` samples of `features` values each.
pub fn forward(act: Activation, y: &mut [f32], features: usize) {
    match act {
        Activation::None => {}
        Activation::Relu => y.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::LeakyRelu(a) => y
            .iter_mut()
            .for_each(|v| *v = if *v <= 0.0 { *v * a } else { *v }),
        Activation::Sigmoid => y.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        Activation::Tanh => y.iter_mut().for_each(|v| *v = v.tanh()),
        Activation::Softmax => y.chunks_mut(features).for_each(softmax_in_place),
    }
}

/// Replaces `dy` (dL/dy) by dL/dx, given the activation's output `y`.
pub fn backward(act: Activation, y: &[f32], dy: &mut [f32], features: usize) {
    match act {
        Activation::None => {}
        // Both written as an unconditional store of a select, which vectorises: with a
        // branch, the unpredictable sign of y made ReLU's backward a third of a training
        // step of report 1's network.
        Activation::Relu => dy
            .iter_mut()
            .zip(y)
            .for_each(|(d, &v)| *d = if v <= 0.0 { 0.0 } else { *d }),
        Activation::LeakyRelu(a) => dy
            .iter_mut()
            .zip(y)
            .for_each(|(d, &v)| *d = if v <= 0.0 { *d * a } else { *d }),
        Activation::Sigmoid => dy.iter_mut().zip(y).for_each(|(d, &v)| *d *= v * (1.0 - v)),
        Activation::Tanh => dy.iter_mut().zip(y).for_each(|(d, &v)| *d *= 1.0 - v * v),
        Activation::Softmax => {
            for (d, yv) in dy.chunks_mut(features).zip(y.chunks(features)) {
                let dot: f32 = d.iter().zip(yv).map(|(a, b)| a * b).sum();
                d.iter_mut()
                    .zip(yv)
                    .for_each(|(di, &yi)| *di = yi * (*di - dot));
            }
        }
    }
}

/// softmax(z)_i = e^{z_i - m} / sum_j e^{z_j - m} with m = max_j z_j (the shift changes
/// nothing mathematically and keeps every exponent <= 0, so nothing overflows).
pub fn softmax_in_place(z: &mut [f32]) {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - m).exp();
        sum += *v;
    }
    z.iter_mut().for_each(|v| *v /= sum);
}
