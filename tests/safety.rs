//! Safety fixes found by trying the tool as a new user, through the `cnn` command:
//! output paths that are not regular files, the memory check before training, SIGTERM
//! during training, the bound on `--threads`.

mod common;

use std::path::{Path, PathBuf};

use cnn::config;
use cnn::data::Normalization;
use cnn::init::Init;
use cnn::model::Model;
use cnn::model_file::{self, ModelMeta};
use common::run;

/// A small model file (report 1's shape, fewer filters) written with the library.
fn model_file(dir: &Path) -> PathBuf {
    let text = "3\nInput shape=1x28x28\n\
        Conv2D filters=4 kernel=3x3 stride=1 padding=same activation=relu\n\
        MaxPool2D pool=2x2 stride=2\n\
        Dense units=10 activation=softmax\n";
    let parsed = config::parse(text, "test config").unwrap();
    let model = Model::new(&parsed.spec, Init::He, 1).unwrap();
    let meta = ModelMeta {
        config: text.into(),
        classes: (0..10).map(|i| i.to_string()).collect(),
        normalization: Normalization {
            mean: vec![0.5],
            std: vec![0.25],
        },
        seed: 1,
    };
    let path = dir.join("model.safetensors");
    model_file::save(&path, &model, &meta).unwrap();
    path
}

#[cfg(unix)]
fn file_type(path: &Path) -> std::fs::FileType {
    std::fs::symlink_metadata(path).unwrap().file_type()
}

// ---------------------------------------------------------------------------------------
// Output paths that are not regular files

/// `cnn export MODEL /dev/null` leaves `/dev/null` a character device. Before the fix, run as
/// root, the rename of the temporary file replaced `/dev/null` with a 68 KB regular file
/// (as another user the write failed instead, unable to make `/dev/.null.tmp-*`).
#[cfg(unix)]
#[test]
fn export_to_dev_null_leaves_it_a_character_device() {
    use std::os::unix::fs::FileTypeExt;
    let tmp = tempfile::tempdir().unwrap();
    let model = model_file(tmp.path());
    let (code, stdout, stderr) = run(&[&"export", &model, &"/dev/null"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(file_type(Path::new("/dev/null")).is_char_device());
    // The line saying what was written goes to stderr: stdout may be the output itself.
    assert_eq!(stdout, "");
    assert_eq!(stderr, "wrote /dev/null\n");
}

/// `cnn export MODEL FIFO` writes the ONNX bytes into the FIFO (read here by a thread: the
/// same bytes as an export to a file) and leaves it a FIFO; before the fix it became a
/// regular file and the reader waited for ever.
#[cfg(unix)]
#[test]
fn export_to_a_fifo_writes_through_it_and_leaves_it_a_fifo() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileTypeExt;
    let tmp = tempfile::tempdir().unwrap();
    let model = model_file(tmp.path());
    let file = tmp.path().join("model.onnx");
    let (code, _, stderr) = run(&[&"export", &model, &file]);
    assert_eq!(code, 0, "{stderr}");
    let fifo = tmp.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let (code, _, stderr) = run(&[&"export", &model, &fifo]);
    assert_eq!(code, 0, "{stderr}");
    // Checked first: a FIFO replaced by a file would leave the reader waiting for ever.
    assert!(file_type(&fifo).is_fifo(), "the FIFO was replaced");
    assert_eq!(reader.join().unwrap(), std::fs::read(&file).unwrap());
}

/// An output path that is a directory is refused in one line naming it, and nothing is left
/// in it.
#[test]
fn export_to_a_directory_is_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_file(tmp.path());
    let dir = tmp.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let (code, stdout, stderr) = run(&[&"export", &model, &dir]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!(
            "error: writing {}: it is a directory, not a file\n",
            dir.display()
        )
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
}

// ---------------------------------------------------------------------------------------
// --threads

fn cores() -> usize {
    std::thread::available_parallelism().unwrap().get()
}

/// More than 4 threads per core is refused by every command that takes `--threads`, with
/// exit code 2 and one line, before anything runs; before the fix 500 threads on 2 cores
/// were started and an epoch took 70 times as long.
#[test]
fn threads_above_four_per_core_are_refused_by_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_file(tmp.path());
    let too_many = (4 * cores() + 1).to_string();
    let cfg = tmp.path().join("net.cfg");
    std::fs::write(
        &cfg,
        "2\nInput shape=1x28x28\nFlatten\nDense units=10 activation=softmax\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    let commands: [Vec<&dyn AsRef<std::ffi::OsStr>>; 4] = [
        vec![&"train", &cfg, &"--out", &out, &"--threads", &too_many],
        vec![&"sweep", &cfg, &"--out", &out, &"--threads", &too_many],
        vec![&"evaluate", &model, &"--threads", &too_many],
        vec![&"bench", &cfg, &"--threads", &too_many],
    ];
    for args in &commands {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(stdout, "");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "'{too_many}' for '--threads <THREADS>': at most {}",
                4 * cores()
            )),
            "{stderr}"
        );
    }
    assert!(!out.exists());
}

/// `--threads` equal to the number of cores trains.
#[test]
fn threads_equal_to_the_cores_work() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("net.cfg");
    std::fs::write(
        &cfg,
        "2\nInput shape=1x28x28\nFlatten\nDense units=10 activation=softmax\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    let cores = cores().to_string();
    let (code, _, stderr) = run(&[
        &"train",
        &cfg,
        &"--epochs",
        &"1",
        &"--out",
        &out,
        &"--threads",
        &cores,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(out.join("model.safetensors").exists());
}
