//! Optimisers: SGD (plain, momentum, Nesterov), weight decay, Adam. PyTorch's conventions.
//!
//! With g = dL/dw (already averaged over the mini-batch by the loss) and learning rate lr:
//!
//! ```text
//! weight decay:  g <- g + wd * w                          (L2, added to the gradient)
//! SGD:           w <- w - lr * g                          (report 1 eq. 9-10, report 2)
//! momentum:      v <- mu * v + g;  w <- w - lr * v        (v starts at 0)
//! Nesterov:      v <- mu * v + g;  w <- w - lr * (g + mu * v)
//! Adam:          m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  t <- t + 1
//!                w <- w - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! AdamW:         w <- w (1 - lr wd) first (decoupled: wd is not added to g), then Adam
//! ```
//!
//! With a clipping norm c (`--clip-grad-norm`), every g is first scaled as PyTorch's
//! `torch.nn.utils.clip_grad_norm_(params, max_norm=c)` does before `optimizer.step()`:
//!
//! ```text
//! clipping:      g <- g min(1, c / (||g|| + 1e-6)),  ||g|| = sqrt(sum of g^2 over every parameter)
//! ```

use rayon::prelude::*;

use crate::layers::Param;

/// Elements per parallel task of an update. Every element is updated on its own, so the split
/// changes nothing in the result; it only keeps tasks large enough to be worth sending.
const CHUNK: usize = 16 * 1024;

/// Which update rule, with its own hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    /// Plain gradient descent.
    Sgd,
    /// SGD with momentum `mu` (PyTorch default-free; 0.9 is usual), optionally Nesterov.
    Momentum { mu: f32, nesterov: bool },
    /// Adam with `beta1`, `beta2`, `eps` (0.9, 0.999, 1e-8 by default). With `decoupled`,
    /// AdamW (Loshchilov & Hutter, PyTorch's `AdamW`): the weight decay shrinks the weights
    /// directly, w <- w (1 - lr wd), instead of being added to the gradient.
    Adam {
        beta1: f32,
        beta2: f32,
        eps: f32,
        decoupled: bool,
    },
}

impl OptimizerKind {
    /// Adam with the defaults of Kingma & Ba (and PyTorch).
    pub fn adam() -> OptimizerKind {
        OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decoupled: false,
        }
    }

    /// AdamW: Adam's defaults with decoupled weight decay.
    pub fn adamw() -> OptimizerKind {
        OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decoupled: true,
        }
    }

    /// Momentum 0.9, not Nesterov.
    pub fn momentum() -> OptimizerKind {
        OptimizerKind::Momentum {
            mu: 0.9,
            nesterov: false,
        }
    }
}

/// An optimiser and its state (one buffer per parameter tensor, in the model's order).
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub lr: f32,
    pub weight_decay: f32,
    /// Steps taken (Adam's t).
    pub steps: u64,
    /// Momentum buffers, or Adam's first moments.
    pub first: Vec<Vec<f32>>,
    /// Adam's second moments.
    pub second: Vec<Vec<f32>>,
    /// Clip the global gradient norm to this before each update (see [`Optimizer::step`]);
    /// `None`: no clipping.
    pub clip_grad_norm: Option<f32>,
}

impl Optimizer {
    /// A fresh optimiser (its state is created on the first step).
    pub fn new(kind: OptimizerKind, lr: f32, weight_decay: f32) -> Optimizer {
        Optimizer {
            kind,
            lr,
            weight_decay,
            steps: 0,
            first: Vec::new(),
            second: Vec::new(),
            clip_grad_norm: None,
        }
    }

    /// Updates every parameter from its gradient and returns the global gradient norm
    /// `sqrt(sum of g^2)` over every parameter (before weight decay and clipping), summed as
    /// the update reads each block of g (64 lanes in f32 per block, blocks in f64), so checking
    /// it every step costs no extra pass over memory.
    ///
    /// With [`Optimizer::clip_grad_norm`] c, the update sees g s, s = min(1, c / (||g|| +
    /// 1e-6)), before weight decay is added: PyTorch's
    /// `torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=c)` between `backward()` and
    /// `optimizer.step()`, whose return value (the norm before clipping) is this function's.
    /// The norm then takes a pass of its own over g, before the update; it is summed in f64
    /// (PyTorch sums in the gradients' f32), so s may differ from PyTorch's in its last bit.
    pub fn step(&mut self, params: &mut [&mut Param]) -> f64 {
        if self.first.len() != params.len() {
            self.first = params.iter().map(|p| vec![0.0; p.value.len()]).collect();
            if matches!(self.kind, OptimizerKind::Adam { .. }) {
                self.second = self.first.clone();
            }
        }
        self.steps += 1;
        let (lr, wd) = (self.lr, self.weight_decay);
        // 1 leaves every g as it is, bit for bit.
        let s = self.clip_grad_norm.map_or(1.0, |c| clip_scale(params, c));
        let mut sum_sq = 0.0f64;
        for (i, p) in params.iter_mut().enumerate() {
            let (w, g) = (p.value.data_mut(), p.grad.data());
            match self.kind {
                OptimizerKind::Sgd => {
                    sum_sq += w
                        .par_chunks_mut(CHUNK)
                        .zip(g.par_chunks(CHUNK))
                        .map(|(w, g)| {
                            for (wi, &gi) in w.iter_mut().zip(g) {
                                *wi -= lr * (s * gi + wd * *wi);
                            }
                            sum_of_squares(g)
                        })
                        .sum::<f64>();
                }
                OptimizerKind::Momentum { mu, nesterov } => {
                    sum_sq += w
                        .par_chunks_mut(CHUNK)
                        .zip(g.par_chunks(CHUNK))
                        .zip(self.first[i].par_chunks_mut(CHUNK))
                        .map(|((w, g), v)| {
                            for ((wi, &gi), vi) in w.iter_mut().zip(g).zip(v) {
                                let gi = s * gi + wd * *wi;
                                *vi = mu * *vi + gi;
                                *wi -= lr * if nesterov { gi + mu * *vi } else { *vi };
                            }
                            sum_of_squares(g)
                        })
                        .sum::<f64>();
                }
                OptimizerKind::Adam {
                    beta1,
                    beta2,
                    eps,
                    decoupled,
                } => {
                    let t = self.steps as i32;
                    // AdamW shrinks w by lr wd and adds nothing to g; Adam adds wd w to g.
                    let (shrink, wd) = if decoupled {
                        (1.0 - lr * wd, 0.0)
                    } else {
                        (1.0, wd)
                    };
                    let bc1 = 1.0 - beta1.powi(t);
                    let bc2_sqrt = (1.0 - beta2.powi(t)).sqrt();
                    let step = lr / bc1;
                    let (m, v) = (&mut self.first[i], &mut self.second[i]);
                    sum_sq += w
                        .par_chunks_mut(CHUNK)
                        .zip(g.par_chunks(CHUNK))
                        .zip(m.par_chunks_mut(CHUNK))
                        .zip(v.par_chunks_mut(CHUNK))
                        .map(|(((w, g), m), v)| {
                            for (((wi, &gi), mi), vi) in w.iter_mut().zip(g).zip(m).zip(v) {
                                *wi *= shrink;
                                let gi = s * gi + wd * *wi;
                                *mi = beta1 * *mi + (1.0 - beta1) * gi;
                                *vi = beta2 * *vi + (1.0 - beta2) * gi * gi;
                                *wi -= step * *mi / (vi.sqrt() / bc2_sqrt + eps);
                            }
                            sum_of_squares(g)
                        })
                        .sum::<f64>();
                }
            }
        }
        sum_sq.sqrt()
    }
}

/// The factor s = min(1, c / (||g|| + 1e-6)) that clips the global gradient norm ||g|| to
/// `c`. The blocks' sums are added in order, so that s (and with it every weight) is the same
/// for any thread count. A NaN norm leaves g alone, for the divergence check to see.
fn clip_scale(params: &[&mut Param], c: f32) -> f32 {
    let blocks: Vec<f64> = params
        .iter()
        .flat_map(|p| {
            p.grad
                .data()
                .par_chunks(CHUNK)
                .map(sum_of_squares)
                .collect::<Vec<f64>>()
        })
        .collect();
    let norm = blocks.iter().sum::<f64>().sqrt();
    let s = f64::from(c) / (norm + 1e-6);
    if s < 1.0 {
        s as f32
    } else {
        1.0
    }
}

/// `sum of g^2` over a block, in 64 interleaved f32 partial sums (four vector registers, so
/// consecutive adds do not wait on each other), added up in f64. Compiled for the widest
/// vectors the CPU has: each lane's sum is the same at any width, and at 4 lanes the pass
/// was 4% of report 1's training step.
fn sum_of_squares(g: &[f32]) -> f64 {
    crate::kernels::on_best_simd(
        #[inline(always)]
        || sum_of_squares_lanes(g),
    )
}

#[inline(always)]
fn sum_of_squares_lanes(g: &[f32]) -> f64 {
    const L: usize = 64;
    let mut acc = [0.0f32; L];
    let chunks = g.chunks_exact(L);
    let rest = chunks.remainder();
    for x in chunks {
        for l in 0..L {
            acc[l] += x[l] * x[l];
        }
    }
    let tail: f64 = rest.iter().map(|&v| f64::from(v * v)).sum();
    acc.iter().map(|&v| f64::from(v)).sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    fn param(w: &[f32], g: &[f32]) -> Param {
        Param {
            value: Tensor::from_vec(&[w.len()], w.to_vec()).unwrap(),
            grad: Tensor::from_vec(&[g.len()], g.to_vec()).unwrap(),
        }
    }

    /// PyTorch, for the same two tensors:
    ///
    /// ```python
    /// a = torch.tensor([1., 2.], requires_grad=True); b = torch.tensor([-1.], requires_grad=True)
    /// a.grad = torch.tensor([3., 0.]); b.grad = torch.tensor([4.])
    /// n = torch.nn.utils.clip_grad_norm_([a, b], max_norm=1.0)   # n = 5, grads * 1/(5 + 1e-6)
    /// torch.optim.SGD([a, b], lr=0.1, weight_decay=0.5).step()  # a = [0.89, 1.9], b = [-1.03]
    /// ```
    #[test]
    fn clipping_scales_the_gradients_to_the_norm_before_weight_decay_as_pytorch() {
        let (mut a, mut b) = (param(&[1.0, 2.0], &[3.0, 0.0]), param(&[-1.0], &[4.0]));
        let mut opt = Optimizer::new(OptimizerKind::Sgd, 0.1, 0.5);
        opt.clip_grad_norm = Some(1.0);
        let norm = opt.step(&mut [&mut a, &mut b]);
        assert_eq!(
            norm, 5.0,
            "the norm before clipping, as clip_grad_norm_ returns"
        );
        // ||g|| = sqrt(3^2 + 0^2 + 4^2) = 5, s = 1 / (5 + 1e-6) = 0.19999996;
        // w <- w - lr (s g + wd w): 1 - 0.1 (0.6 + 0.5) = 0.89, 2 - 0.1 (0 + 1) = 1.9,
        // -1 - 0.1 (0.8 - 0.5) = -1.03.
        let s = (1.0 / (5.0 + 1e-6)) as f32;
        let want: Vec<f32> = [(1.0f32, 3.0f32), (2.0, 0.0), (-1.0, 4.0)]
            .iter()
            .map(|&(w, g)| w - 0.1 * (s * g + 0.5 * w))
            .collect();
        let got: Vec<f32> = a
            .value
            .data()
            .iter()
            .chain(b.value.data())
            .copied()
            .collect();
        assert_eq!(got, want);
        for (g, w) in got.iter().zip([0.89f32, 1.9, -1.03]) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
        // The gradients themselves are left as they were (the update reads them scaled).
        assert_eq!(b.grad.data(), [4.0]);
    }

    #[test]
    fn a_norm_within_the_clip_leaves_the_update_bit_for_bit_unclipped() {
        for kind in [
            OptimizerKind::Sgd,
            OptimizerKind::momentum(),
            OptimizerKind::adam(),
            OptimizerKind::adamw(),
        ] {
            let run = |clip: Option<f32>| {
                let mut p = param(&[0.5, -0.25, 2.0], &[0.3, -0.4, 0.1]);
                let mut opt = Optimizer::new(kind, 0.05, 0.01);
                opt.clip_grad_norm = clip;
                for _ in 0..3 {
                    opt.step(&mut [&mut p]);
                }
                p.value.data().to_vec()
            };
            // ||g|| = sqrt(0.26) = 0.51 < 1: s = 1.
            assert_eq!(run(Some(1.0)), run(None), "{kind:?}");
            assert_ne!(run(Some(0.1)), run(None), "{kind:?}");
        }
    }
}
