//! The test harness itself (`tests/common`): a test that cannot find its data says so, and
//! fails under CI; the PyTorch fixtures say which PyTorch wrote them.

/// Without `CI`, a missing dataset is `None` (the test prints `skipped: ...` and returns);
/// with `CI` set, it is a failure that names the path.
#[test]
fn a_missing_shared_dataset_skips_or_fails_under_ci() {
    let missing = "no-such-dataset";
    if std::env::var_os("CI").is_none() {
        assert_eq!(crate::shared::shared_data(missing), None);
        return;
    }
    let err = std::panic::catch_unwind(|| crate::shared::shared_data(missing))
        .expect_err("a missing dataset fails under CI");
    let msg = err
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(
        msg.contains("shared/data/no-such-dataset not found"),
        "{msg}"
    );
    assert!(msg.contains("CI is set"), "{msg}");
}

#[test]
fn a_present_shared_dataset_is_its_path() {
    let Some(path) = crate::shared::shared_data("mnist") else {
        return;
    };
    assert!(path.ends_with("shared/data/mnist"), "{}", path.display());
    assert!(path.is_dir());
}

/// Every fixture was written by scripts/make-pytorch-fixtures.py (the random-erasing one by
/// scripts/make-erasing-fixture.py), which record `torch.__version__`.
#[test]
fn every_pytorch_fixture_records_the_torch_version() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".json") {
            continue;
        }
        let f = crate::fixtures::fixture(&name);
        seen += 1;
        let version = f["torch_version"].as_str().unwrap_or("");
        assert!(
            version.chars().next().is_some_and(|c| c.is_ascii_digit()),
            "{name}: torch_version {version:?}"
        );
    }
    assert_eq!(seen, 29, "the fixtures listed in tests/fixtures/README.md");
}
