//! `cnn train` under `mpirun`: P processes train one run with the same bytes as one process
//! (docs/DISTRIBUTED.md). These tests need the binary built with `--features mpi` and
//! OpenMPI's `mpirun`: `cargo test --release --features mpi --test cli mpi::`. Without the
//! feature they print `skipped`; with it but without `mpirun` they print `skipped`, and fail
//! when `CI` is set (CI installs OpenMPI). A binary built without the feature is checked to
//! refuse running as one of several MPI processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{run_command, BIN};
use crate::files::write_text;
use crate::runs::{model_bytes, run_json};

/// `mpirun`, when these tests can run: the binary has the `mpi` feature and `mpirun` is
/// there.
fn mpirun() -> Option<Command> {
    if !cfg!(feature = "mpi") {
        eprintln!("skipped: cnn built without the mpi feature (cargo test --features mpi)");
        return None;
    }
    let found = Command::new("mpirun")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "mpirun not found, and CI is set: .ci/run installs openmpi-bin"
        );
        eprintln!("skipped: mpirun not found");
        return None;
    }
    let mut cmd = Command::new("mpirun");
    // As root (CI, containers) OpenMPI wants both; more processes than cores need the
    // second flag.
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args(["--oversubscribe", "--bind-to", "none"]);
    Some(cmd)
}

/// `mpirun -np P cnn train ARGS` (exit code, stdout, stderr).
fn train_on(np: usize, args: &[&str]) -> Option<(i32, String, String)> {
    let mut cmd = mpirun()?;
    cmd.arg("-np")
        .arg(np.to_string())
        .arg(BIN)
        .arg("train")
        .args(args);
    Some(run_command(&mut cmd))
}

/// `cnn train ARGS` in one process, which must succeed.
fn train_alone(args: &[&str]) {
    let (code, _, err) = run_command(Command::new(BIN).arg("train").args(args));
    assert_eq!(code, 0, "{err}");
}

fn p(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// Trains `args` in one process and on 2 and 3 processes (with 1 and 2 threads each), and
/// checks the three model files are the same bytes.
fn same_bytes_as_one_process(cfg: &str, args: &[&str]) {
    if mpirun().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let with = |out: &Path, threads: &str| -> Vec<String> {
        let mut a = vec![cfg.to_string(), "--out".into(), p(out).into()];
        a.extend(args.iter().map(|s| s.to_string()));
        a.extend(["--threads".into(), threads.into()]);
        a
    };
    let one_args = with(&one, "2");
    train_alone(&one_args.iter().map(String::as_str).collect::<Vec<_>>());
    let want = model_bytes(&one);
    for (np, threads) in [(2, "1"), (3, "2")] {
        let out = tmp.path().join(format!("p{np}"));
        let a = with(&out, threads);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (code, stdout, stderr) = train_on(np, &a).expect("mpirun found above");
        assert_eq!(code, 0, "np {np}: {stdout}\n{stderr}");
        assert!(
            model_bytes(&out) == want,
            "{cfg} on {np} processes: another model than one process's"
        );
        assert_eq!(run_json(&out)["processes"], np, "run.json records P");
        // Rank 0 alone prints: one line per epoch, not P.
        let firsts = stdout
            .lines()
            .filter(|l| l.starts_with("epoch   1/"))
            .count();
        assert_eq!(firsts, 1, "{stdout}");
    }
}

/// Report 1's network, at a batch size that 2 and 3 do not divide into whole blocks (9:
/// blocks of 4, 4 and 1, one process with a single sample) and whose last batch (2000 mod 9
/// = 2 samples) is smaller than the number of processes.
#[test]
fn report1_on_two_and_three_processes_is_one_process_byte_for_byte() {
    same_bytes_as_one_process("report1-10", &["--epochs", "1", "--batch-size", "9"]);
}

#[test]
fn lenet_on_two_and_three_processes_is_one_process_byte_for_byte() {
    same_bytes_as_one_process(
        "lenet",
        &[
            "--epochs",
            "1",
            "--batch-size",
            "22",
            "--optimizer",
            "adam",
            "--lr",
            "0.001",
        ],
    );
}

/// Depthwise and pointwise convolutions without biases (the depthwise kernels' own block
/// sums), BatchNorm and global average pooling: the separable example, with erasing.
#[test]
fn a_depthwise_separable_network_on_processes_is_one_process_byte_for_byte() {
    same_bytes_as_one_process(
        "separable",
        &["--epochs", "1", "--batch-size", "10", "--erase", "0.5"],
    );
}

/// A residual network (Shortcut and Route lines: outputs read by two layers, their
/// gradients summed) with BatchNorm and global average pooling.
#[test]
fn a_residual_network_on_processes_is_one_process_byte_for_byte() {
    same_bytes_as_one_process(
        "resnet-small",
        &["--epochs", "1", "--warmup", "0", "--batch-size", "13"],
    );
}

/// Batch statistics over the global batch (BatchNorm2D and BatchNorm1D), dropout masks and
/// augmentation draws that do not depend on the process, label smoothing, Nesterov and
/// weight decay, a warm-up and a cosine schedule.
#[test]
fn batchnorm_dropout_and_augmentation_on_processes_are_one_process_byte_for_byte() {
    if mpirun().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_text(tmp.path(), "bn.cfg", BN_NET);
    same_bytes_as_one_process(
        p(&cfg),
        &[
            "--epochs",
            "2",
            "--batch-size",
            "13",
            "--shift",
            "2",
            "--flip",
            "--label-smoothing",
            "0.1",
            "--optimizer",
            "nesterov",
            "--weight-decay",
            "5e-4",
            "--schedule",
            "cosine",
            "--warmup",
            "1",
            "--lr",
            "0.05",
        ],
    );
}

const BN_NET: &str = "7
Input shape=1x28x28
Conv2D filters=8 kernel=3x3 stride=1 padding=same
BatchNorm2D activation=relu
MaxPool2D pool=2x2 stride=2
Dense units=32
BatchNorm1D activation=relu
Dropout rate=0.3
Dense units=10 activation=softmax
";

/// A run stopped on 2 processes and resumed on 3 ends with the model of one process that
/// was never stopped.
#[test]
fn a_run_stopped_on_two_processes_resumes_on_three_with_the_same_bytes() {
    if mpirun().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_text(tmp.path(), "bn.cfg", BN_NET);
    let (one, run) = (tmp.path().join("one"), tmp.path().join("run"));
    let common = [
        "--epochs",
        "2",
        "--batch-size",
        "10",
        "--shift",
        "1",
        "--optimizer",
        "adam",
        "--lr",
        "0.002",
    ];
    let mut a = vec![p(&cfg), "--out", p(&one)];
    a.extend(common);
    train_alone(&a);
    let mut a = vec![p(&cfg), "--out", p(&run), "--stop-after-steps", "130"];
    a.extend(common);
    let (code, _, err) = train_on(2, &a).expect("mpirun");
    assert_eq!(code, 0, "{err}");
    assert!(
        !run.join("model.safetensors").exists(),
        "stopped mid-epoch 1"
    );
    let (code, out, err) = train_on(3, &["--resume", p(&run)]).expect("mpirun");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        model_bytes(&run) == model_bytes(&one),
        "resumed on 3: another model"
    );
    assert_eq!(run_json(&run)["processes"], 3);
}

/// Processes given different options are refused before training, by rank 0 in one line
/// naming the rank, with exit code 2; nothing is written.
#[test]
fn a_process_with_other_options_is_refused_before_training() {
    let Some(mut cmd) = mpirun() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let base = [
        BIN,
        "train",
        "report1-10",
        "--epochs",
        "1",
        "--out",
        p(&out),
    ];
    cmd.args(["-np", "1"])
        .args(base)
        .args(["--lr", "0.01", ":", "-np", "1"]);
    cmd.args(base).args(["--lr", "0.02"]);
    let (code, stdout, stderr) = run_command(&mut cmd);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        lines,
        [
            "error: rank 1 of 2 differs from rank 0 in its options: every process must run \
          the same cnn with the same options, config and data (a path every node reads)"
        ],
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");
}

/// The pids of `mpirun`'s processes running `cnn`, with their ranks.
fn ranks_of(mpirun: u32) -> Vec<(u32, usize)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...
        let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        let ppid: u32 = after
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if ppid != mpirun {
            continue;
        }
        let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let rank = env
            .split(|&b| b == 0)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .find_map(|v| v.strip_prefix("OMPI_COMM_WORLD_RANK="))
            .and_then(|r| r.parse().ok());
        if let Some(rank) = rank {
            found.push((pid, rank));
        }
    }
    found
}

/// Report 1's network trained with `common` by one process into `dir/one`, then the same
/// run started by `cmd` (`mpirun`) on 2 processes into `dir/run` with its output to `stdout`
/// and stderr piped: (one, run, the job), returned once the job's first checkpoint exists.
fn a_job_past_its_first_checkpoint(
    mut cmd: Command,
    dir: &Path,
    common: &[&str],
    stdout: Stdio,
) -> (PathBuf, PathBuf, Child) {
    let (one, run) = (dir.join("one"), dir.join("run"));
    let mut a = vec!["report1-10", "--out", p(&one)];
    a.extend(common);
    train_alone(&a);
    cmd.args(["-np", "2", BIN, "train", "report1-10", "--out", p(&run)])
        .args(common);
    let job = cmd.stdout(stdout).stderr(Stdio::piped()).spawn().unwrap();
    let checkpoint = run.join("checkpoint.safetensors");
    let start = Instant::now();
    while !checkpoint.exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    (one, run, job)
}

/// `cnn train --resume run` (one process) succeeds and ends with `one`'s model bytes.
fn resuming_gives_the_bytes_of(run: &Path, one: &Path) {
    let (code, _, err) = run_command(Command::new(BIN).args(["train", "--resume", p(run)]));
    assert_eq!(code, 0, "{err}");
    assert!(
        model_bytes(run) == model_bytes(one),
        "resumed: another model"
    );
}

/// A process killed (SIGKILL, as the kernel's out-of-memory killer does) ends the job within
/// seconds with a non-zero exit; the last checkpoint is whole, and resuming from it gives
/// the bytes of the run never stopped.
#[test]
fn a_killed_process_ends_the_job_and_the_checkpoint_resumes_exactly() {
    let Some(cmd) = mpirun() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let common = ["--epochs", "3", "--batch-size", "8", "--threads", "1"];
    let (one, run, mut job) =
        a_job_past_its_first_checkpoint(cmd, tmp.path(), &common, Stdio::null());
    let victim = ranks_of(job.id()).into_iter().find(|&(_, r)| r == 1);
    let (pid, _) = victim.expect("rank 1 among mpirun's children");
    // SAFETY: kill(2) on a pid this test's own child started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let killed = Instant::now();
    let status = loop {
        if let Some(s) = job.try_wait().unwrap() {
            break s;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the job did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(job.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("rank 1"), "names the lost rank: {stderr}");
    resuming_gives_the_bytes_of(&run, &one);
}

/// SIGTERM to every process, as Slurm's `scancel` or a time limit sends it: the processes
/// stop after the same step, rank 0 writes the checkpoint and says so, the job exits 143,
/// and the resumed run ends with the bytes of a run never stopped.
#[test]
fn sigterm_to_the_processes_checkpoints_exits_143_and_resumes_exactly() {
    let Some(cmd) = mpirun() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let common = ["--epochs", "40", "--batch-size", "8", "--threads", "1"];
    let (one, run, job) = a_job_past_its_first_checkpoint(cmd, tmp.path(), &common, Stdio::piped());
    let ranks = ranks_of(job.id());
    assert_eq!(ranks.len(), 2, "both processes among mpirun's children");
    for (pid, _) in ranks {
        // SAFETY: kill(2) on a pid this test's own child started.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    let output = job.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(143), "{stdout}{stderr}");
    let said = format!("{stdout}{stderr}");
    assert_eq!(
        said.matches("terminated (SIGTERM) at epoch").count(),
        1,
        "rank 0 alone says so: {said}"
    );
    resuming_gives_the_bytes_of(&run, &one);
}

/// A binary built without the `mpi` feature, started as one of several MPI processes,
/// says so in one line and exits with code 2 instead of training alone.
#[test]
fn without_the_feature_a_process_of_an_mpi_job_refuses_in_one_line() {
    if cfg!(feature = "mpi") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["train", "report1-10", "--out"])
        .arg(tmp.path().join("r"));
    let (code, out, err) = run_command(
        cmd.env("OMPI_COMM_WORLD_SIZE", "2")
            .env("OMPI_COMM_WORLD_RANK", "0"),
    );
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("built without MPI"), "{err}");
    let (code, _, err) = run_command(cmd.env("OMPI_COMM_WORLD_RANK", "1"));
    assert_eq!(
        (code, err.as_str()),
        (2, ""),
        "the other ranks exit silently"
    );
    assert!(!tmp.path().join("r").exists());
}
