//! Files in CIFAR-10's binary format: records of a label byte then the image's R, G and B
//! planes, 32x32 each, row-major (3,073 bytes a record, no header), in a folder laid out as
//! the official tarball unpacks (`data_batch_N.bin`, `test_batch.bin`).

use std::path::{Path, PathBuf};

use crate::rng::Lcg;

/// Bytes of one record: the label byte and 3 x 32 x 32 pixel bytes.
pub const RECORD: usize = 1 + 3 * 32 * 32;

/// The records of `labels.len()` images, image i labelled `labels[i]`: its red plane a
/// bright square in one of ten places (the class's), its green plane the class times 25,
/// its blue plane noise from `seed` (so no two images are alike).
pub fn cifar_records(labels: &[u8], seed: u64) -> Vec<u8> {
    let mut rng = Lcg(seed);
    let mut v = Vec::with_capacity(labels.len() * RECORD);
    for &label in labels {
        v.push(label);
        let (cy, cx) = (usize::from(label / 5) * 16, usize::from(label % 5) * 6);
        for y in 0..32 {
            for x in 0..32 {
                let inside = (cy..cy + 12).contains(&y) && (cx..cx + 6).contains(&x);
                v.push(if inside { 230 } else { 20 });
            }
        }
        v.extend(std::iter::repeat_n(label * 25, 1024));
        v.extend((0..1024).map(|_| rng.bits(8) as u8));
    }
    v
}

/// Writes a CIFAR-10 folder `dir`: `data_batch_1.bin` with `train` images and
/// `test_batch.bin` with `test`, labels cycling through the ten classes; no
/// `batches.meta.txt`, so the classes are CIFAR-10's. Returns `dir`.
pub fn write_cifar(dir: &Path, train: usize, test: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let labels = |n: usize| (0..n).map(|i| (i % 10) as u8).collect::<Vec<u8>>();
    std::fs::write(
        dir.join("data_batch_1.bin"),
        cifar_records(&labels(train), 1),
    )
    .unwrap();
    std::fs::write(dir.join("test_batch.bin"), cifar_records(&labels(test), 2)).unwrap();
    dir.to_path_buf()
}
