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
        }
    }

    /// Updates every parameter from its gradient and returns the global gradient norm
    /// `sqrt(sum of g^2)` over every parameter (before weight decay), summed as the update
    /// reads each block of g (64 lanes in f32 per block, blocks in f64), so checking it
    /// every step costs no extra pass over memory.
    pub fn step(&mut self, params: &mut [&mut Param]) -> f64 {
        if self.first.len() != params.len() {
            self.first = params.iter().map(|p| vec![0.0; p.value.len()]).collect();
            if matches!(self.kind, OptimizerKind::Adam { .. }) {
                self.second = self.first.clone();
            }
        }
        self.steps += 1;
        let (lr, wd) = (self.lr, self.weight_decay);
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
                                *wi -= lr * (gi + wd * *wi);
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
                                let gi = gi + wd * *wi;
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
                                let gi = gi + wd * *wi;
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

/// `sum of g^2` over a block, in 64 interleaved f32 partial sums (four vector registers, so
/// consecutive adds do not wait on each other), added up in f64.
fn sum_of_squares(g: &[f32]) -> f64 {
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
