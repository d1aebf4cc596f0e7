//! The example networks built into the binary: taken by name wherever a CONFIG goes, from
//! any folder (a file of that name wins), listed and written out by `cnn examples`.

use std::path::Path;
use std::process::Command;

use crate::common::{run_command, BIN};

/// `cnn ARGS` run in the folder `dir`: (exit code, stdout, stderr).
fn cnn_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    run_command(Command::new(BIN).current_dir(dir).args(args))
}

/// The example file of the repository called `name`.
fn example_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.cfg"));
    std::fs::read_to_string(path).unwrap()
}

/// The built-in examples' names in the order `cnn examples` lists them, after checking that
/// they are exactly the `.cfg` files of the repository's `examples/`.
fn example_names() -> Vec<&'static str> {
    let names: Vec<&str> = cnn::examples::EXAMPLES.iter().map(|e| e.name).collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".cfg").map(str::to_string))
        .collect();
    files.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted, files,
        "every file of examples/ is built in, and only those"
    );
    names
}

#[test]
fn train_takes_an_example_by_name_outside_the_repository_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = cnn_in(dir.path(), &["train", "report1-10", "--epochs", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("model saved to runs/report1-10/model.safetensors"),
        "{stdout}"
    );
    let run = dir.path().join("runs/report1-10");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(json["config"], "report1-10");
    assert_eq!(
        std::fs::read_to_string(run.join("config.cfg")).unwrap(),
        example_file("report1-10")
    );
    // Resumed by folder alone, and with the example's name given again (it is the run's).
    let (code, stdout, stderr) = cnn_in(
        dir.path(),
        &["train", "--resume", "runs/report1-10", "--epochs", "2"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("epoch   2/2"), "{stdout}");
    let (code, _, stderr) = cnn_in(
        dir.path(),
        &[
            "train",
            "report1-10",
            "--resume",
            "runs/report1-10",
            "--epochs",
            "3",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    // Another example's name is another network: refused as any other config would be.
    let (code, _, stderr) = cnn_in(
        dir.path(),
        &[
            "train",
            "lenet",
            "--resume",
            "runs/report1-10",
            "--epochs",
            "4",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot resume with lenet: it differs from the run's network"),
        "{stderr}"
    );
    // A second run of the same name is numbered, as for a file.
    let (code, stdout, stderr) = cnn_in(dir.path(), &["train", "report1-10.cfg", "--epochs", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("runs/report1-10-2/model.safetensors"),
        "{stdout}"
    );
}

#[test]
fn summary_gradcheck_and_bench_take_an_example_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = cnn_in(dir.path(), &["summary", "lenet"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Conv2D"), "{stdout}");
    // fashion-93's Train line comes with it.
    let (code, stdout, stderr) = cnn_in(dir.path(), &["summary", "fashion-93"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Train "), "{stdout}");
    let (code, stdout, stderr) = cnn_in(dir.path(), &["gradcheck", "report1", "--entries", "2"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("layers.0.weight"), "{stdout}");
    let (code, stdout, stderr) = cnn_in(
        dir.path(),
        &[
            "bench",
            "report1-10",
            "--runs",
            "1",
            "--inference-batch",
            "1",
            "--batch-size",
            "2",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("report1-10: "), "{stdout}");
}

#[test]
fn a_file_of_an_example_s_name_wins_and_a_mistyped_name_lists_the_examples() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lenet"),
        "2\nInput shape=1x4x4\nDense units=3\n",
    )
    .unwrap();
    let (code, stdout, stderr) = cnn_in(dir.path(), &["summary", "lenet"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stdout.contains("Conv2D"),
        "the file, not the example: {stdout}"
    );
    let (code, _, stderr) = cnn_in(dir.path(), &["train", "lenet5"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        format!(
            "error: lenet5: no such file, nor a built-in example ({}; `cnn examples` lists \
             them)\n",
            example_names().join(", ")
        )
    );
}

#[test]
fn cnn_examples_lists_prints_and_writes_them_refusing_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = cnn_in(dir.path(), &["examples"]);
    assert_eq!(code, 0, "{stderr}");
    for name in example_names() {
        let name = format!("{name} ");
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{stdout}"));
        assert!(line.len() > name.len() + 20, "a description: {line}");
    }
    let (code, stdout, _) = cnn_in(dir.path(), &["examples", "lenet"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, example_file("lenet"));

    let (code, stdout, stderr) = cnn_in(dir.path(), &["examples", "--out", "nets"]);
    assert_eq!(code, 0, "{stderr}");
    let count = example_names().len();
    assert!(
        stdout.starts_with(&format!("wrote {count} examples to nets: ")),
        "{stdout}"
    );
    for name in example_names() {
        let written = std::fs::read_to_string(dir.path().join(format!("nets/{name}.cfg")));
        assert_eq!(written.unwrap(), example_file(name), "{name}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("nets")).unwrap().count(),
        count
    );
    // Edited, then written again: refused, the edit kept; replaced with --force.
    let edited = dir.path().join("nets/lenet.cfg");
    std::fs::write(&edited, "# mine\n").unwrap();
    let (code, _, stderr) = cnn_in(dir.path(), &["examples", "--out", "nets"]);
    assert_eq!(code, 2);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: nets: holds report1.cfg, report1-10.cfg, ")
            && stderr.contains("pass --force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&edited).unwrap(), "# mine\n");
    let (code, _, stderr) = cnn_in(dir.path(), &["examples", "--out", "nets", "--force"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&edited).unwrap(),
        example_file("lenet")
    );
}

#[test]
fn the_top_level_help_starts_with_a_command_that_works_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = cnn_in(dir.path(), &["--help"]);
    assert_eq!(code, 0);
    let start = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Start with: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(start, "cnn train report1-10");
    let (code, _, stderr) = cnn_in(dir.path(), &["summary", "report1-10"]);
    assert_eq!(code, 0, "{stderr}");
}
