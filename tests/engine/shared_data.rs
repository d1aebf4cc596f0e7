//! The real datasets in `../shared/data` (see its README.md): the loader reads them, and the
//! hashes `cnn download` checks are those of these copies. Without the data each test says
//! that it skipped, and fails when `CI` is set (see `crate::shared::shared_data`).

use cnn::data::download::Known;
use cnn::data::{load, LoadOptions, Split};
use sha2::{Digest, Sha256};

#[test]
fn real_mnist_test_set() {
    let Some(mnist) = crate::shared::shared_data("mnist") else {
        return;
    };
    let ds = load(&mnist, &LoadOptions::split(Split::Test)).unwrap();
    assert_eq!(ds.len(), 10_000);
    assert_eq!(ds.shape, [1, 28, 28]);
    assert!(ds.labels.iter().all(|&l| l < 10));
    assert_eq!(ds.classes.len(), 10);
    let msg = match load(&mnist, &LoadOptions::split(Split::Train)) {
        Ok(ds) => panic!("expected an error, loaded {} images", ds.len()),
        Err(e) => e.to_string(),
    };
    let part = "only holds the test set";
    assert!(msg.contains(part), "error {msg:?} should contain {part:?}");
}

/// The hashes listed for files we have a copy of (shared/data: MNIST's two test files, and
/// Fashion-MNIST as packaged by Debian) are those of the files.
#[test]
fn known_hashes_match_the_copies_in_shared_data() {
    let mnist_test_files = Known::Mnist
        .files()
        .into_iter()
        .filter(|f| f.name.starts_with("t10k-"))
        .collect::<Vec<_>>();
    assert_eq!(mnist_test_files.len(), 2, "MNIST lists its two test files");
    let cases = [
        ("mnist", mnist_test_files),
        ("fashion-mnist", Known::FashionMnist.debian_files().unwrap()),
    ];
    for (folder, files) in cases {
        for f in files {
            let Some(path) = crate::shared::shared_data(&format!("{folder}/{}", f.name)) else {
                continue;
            };
            let bytes = std::fs::read(&path).unwrap();
            let sha256: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                (bytes.len() as u64, sha256),
                (f.size, f.sha256.clone()),
                "{path:?}"
            );
        }
    }
}
