//! A small network learns a small synthetic task: the end-to-end proof that forward,
//! backward and the optimiser work together.

use cnn::init::Init;
use cnn::model::Model;
use cnn::optim::{Optimizer, OptimizerKind};
use cnn::rng::Rng;
use cnn::tensor::Tensor;

/// 8x8 images of a bright horizontal (class 0) or vertical (class 1) bar at a random
/// position, or a bright 2x2 square (class 2), on noise.
fn synthetic(n: usize, rng: &mut Rng) -> (Tensor, Vec<usize>) {
    let mut data = vec![0.0f32; n * 64];
    let mut labels = Vec::with_capacity(n);
    for (s, img) in data.chunks_mut(64).enumerate() {
        img.iter_mut().for_each(|v| *v = 0.1 * rng.uniform() as f32);
        let class = s % 3;
        let p = rng.below(6) + 1;
        for i in 0..8 {
            match class {
                0 => img[p * 8 + i] = 1.0,
                1 => img[i * 8 + p] = 1.0,
                _ => {
                    if i < 2 {
                        img[(p + i) * 8 + p] = 1.0;
                        img[(p + i) * 8 + p + 1] = 1.0;
                    }
                }
            }
        }
        labels.push(class);
    }
    (Tensor::from_vec(&[n, 1, 8, 8], data).unwrap(), labels)
}

#[test]
fn a_small_cnn_learns_a_synthetic_task_to_full_training_accuracy() {
    let spec = cnn::config::parse(
        "4\nInput shape=1x8x8\n\
         Conv2D filters=4 kernel=3x3 stride=1 padding=same activation=relu\n\
         MaxPool2D pool=2x2 stride=2\n\
         Dense units=16 activation=relu\n\
         Dense units=3 activation=softmax\n",
        "learning test",
    )
    .unwrap()
    .spec;
    let mut rng = Rng::new(42);
    let (x, labels) = synthetic(96, &mut rng);
    let mut model = Model::new(&spec, Init::Normal, 1).unwrap();
    let mut opt = Optimizer::new(OptimizerKind::momentum(), 0.05, 0.0);
    let (first_loss, _) = model.compute_gradients(&x, &labels).unwrap();
    let mut last = (0.0, 0);
    for _epoch in 0..30 {
        // Mini-batches of 16, in order.
        for b in 0..6 {
            let xb = Tensor::from_vec(&[16, 1, 8, 8], x.data()[b * 1024..(b + 1) * 1024].to_vec())
                .unwrap();
            model
                .train_step(&xb, &labels[b * 16..(b + 1) * 16], &mut opt)
                .unwrap();
        }
        last = model.compute_gradients(&x, &labels).unwrap();
    }
    assert_eq!(
        last.1, 96,
        "training accuracy {}/96, loss {}",
        last.1, last.0
    );
    assert!(
        last.0 < first_loss / 10.0,
        "loss {first_loss} -> {}",
        last.0
    );
}
