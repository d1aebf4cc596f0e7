//! The SIMD kernel families (AVX-512, AVX2+FMA, portable) end to end: the environment
//! switches that choose them, and what each gives. The kernels themselves are tested family
//! by family against the naive references in `src/kernels` and `tests/engine/kernels.rs`.

use std::path::Path;

use crate::command::Train;
use crate::common::run_command;
use crate::runs::model_bytes;
use proptest::prelude::*;

/// A network that goes through every kernel with a SIMD path: a stride-1 one-channel
/// convolution (on AVX-512 the direct kernel forward and the one-pass weight gradient; on
/// AVX2 im2col, the broadcast kernel with bias and ReLU, and the dot kernel for the weight
/// gradient), 2x2 max pooling, Dense layers (the broadcast kernel both ways).
const NET: &str = "4
Input shape=1x28x28
Conv2D filters=4 kernel=3x3 stride=1 padding=same activation=relu
MaxPool2D pool=2x2 stride=2
Dense units=20 activation=relu
Dense units=10 activation=softmax
";

/// Trains [`NET`] for one epoch of the built-in demo set with the environment variable
/// `env` set (if any) and returns the bytes of the model file it wrote.
fn train_with(dir: &Path, env: Option<&str>) -> Vec<u8> {
    let out = dir.join(format!("run-{}", env.unwrap_or("default")));
    let mut cmd = Train::new(dir.join("net.cfg"), &out)
        .config(NET)
        .args(&["--epochs", "1", "--batch-size", "16", "--seed", "3"])
        .command();
    cmd.env_remove("CNN_NO_AVX512").env_remove("CNN_NO_SIMD");
    if let Some(var) = env {
        cmd.env(var, "1");
    }
    let (code, _, stderr) = run_command(&mut cmd);
    assert_eq!(code, 0, "train with {env:?} failed:\n{stderr}");
    model_bytes(&out)
}

#[test]
fn training_with_cnn_no_avx512_writes_the_same_model_bytes_as_without() {
    // The AVX2 kernels compute each value by the same operations in the same order as the
    // AVX-512 ones (src/kernels/avx2.rs), so a whole training run gives the same weights.
    // On a CPU without AVX-512 both runs take the same path, and the test still holds.
    let tmp = tempfile::tempdir().unwrap();
    let default = train_with(tmp.path(), None);
    let avx2 = train_with(tmp.path(), Some("CNN_NO_AVX512"));
    assert!(default == avx2, "the model files differ");
}

#[test]
fn training_with_cnn_no_simd_runs_the_portable_path_to_the_end() {
    // The portable path rounds differently (matrixmultiply sums in another order), so
    // only its run is checked here; its kernels are compared with the references in
    // src/kernels.
    let tmp = tempfile::tempdir().unwrap();
    let portable = train_with(tmp.path(), Some("CNN_NO_SIMD"));
    assert!(!portable.is_empty());
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = cnn::rng::Rng::new(seed);
    (0..n).map(|_| r.normal() as f32).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// 2x2 max pooling on every family this CPU has equals the general loop (the
    /// definition), indices included, on planes with ties, NaN and -inf, odd sizes and
    /// widths that leave partial vectors of 16 and of 8 outputs; without indices
    /// (inference), the same values.
    #[test]
    fn max_pooling_on_every_simd_family_equals_the_definition(
        h in 2usize..20, w in 2usize..70, seed in any::<u64>(),
    ) {
        use cnn::kernels::geom::PoolGeom;
        use cnn::kernels::pool::{max_pool_2x2_on, max_pool_plane};
        let g = PoolGeom { c: 1, h, w, ph: 2, pw: 2, stride: 2, out_h: h / 2, out_w: w / 2 };
        // Few distinct values so that windows tie; some NaN and -inf.
        let x: Vec<f32> = random(h * w, seed)
            .into_iter()
            .map(|v| match (v * 3.0) as i32 {
                0 => f32::NAN,
                1 => f32::NEG_INFINITY,
                k => (k % 3) as f32,
            })
            .collect();
        let ohw = g.out_h * g.out_w;
        let (mut want, mut want_at) = (vec![0.0; ohw], vec![0u32; ohw]);
        max_pool_plane(&g, &x, &mut want, Some(&mut want_at));
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for simd in cnn::kernels::Simd::all_supported() {
            let (mut y, mut at) = (vec![0.0; ohw], vec![0u32; ohw]);
            max_pool_2x2_on(simd, &g, &x, &mut y, Some(&mut at));
            prop_assert_eq!(&at, &want_at, "{:?}", simd);
            prop_assert_eq!(bits(&y), bits(&want), "{:?}", simd);
            let mut values = vec![0.0; ohw];
            max_pool_2x2_on(simd, &g, &x, &mut values, None);
            prop_assert_eq!(bits(&values), bits(&want), "{:?} without indices", simd);
        }
    }
}

#[test]
fn the_environment_lowers_the_family_and_never_above_what_the_cpu_has() {
    use cnn::kernels::Simd;
    assert_eq!(Simd::Portable.or_below(), Simd::Portable);
    for s in [Simd::Avx512, Simd::Avx2, Simd::Portable] {
        assert!(s.or_below().supported(), "{s:?}");
    }
    assert_eq!(Simd::all_supported().last(), Some(&Simd::Portable));
}
