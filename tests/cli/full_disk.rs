//! A full disk through the `cnn` command: it is reported, not hidden, and the
//! previous files survive it. A run folder is trained once, then trained into again while
//! the disk is "full"; the run must end with exit code 1, no panic and one line
//! `error: writing PATH: REASON (the previous file is kept)`, and leave every file of the
//! folder as it was (but `run.json`, rewritten whole with the new options before training),
//! with no temporary file behind.
//!
//! The full disk is simulated without privileges by a file-size limit (RLIMIT_FSIZE, what
//! `ulimit -f` sets) on the child, with SIGXFSZ ignored so that a write past the limit fails
//! with EFBIG instead of killing the process. Where a private mount namespace is allowed
//! (root, or user namespaces), a real ENOSPC is made too, on a small tmpfs filled up; where it
//! is not, that one test says so and skips.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command::Train;
use crate::common::{run_command, BIN};
use crate::files::write_sawtooth_idx;

/// A 1x8x8 network with 3 outputs whose checkpoint (about 36 kB) is twice its model file and
/// far larger than `config.cfg` and `run.json`.
const CONFIG: &str = "4\nInput shape=1x8x8\n\
Conv2D filters=4 kernel=3x3 stride=1 padding=same activation=relu\n\
MaxPool2D pool=2x2 stride=2\n\
Dense units=64 activation=relu\n\
Dense units=3 activation=softmax\n";

/// What `cnn` says of a write past the file-size limit (EFBIG).
const TOO_LARGE: &str = "file too large for the file-size limit (`ulimit -f`) or the file system";

/// A folder with `net.cfg` and 24 IDX images 1x8x8 (labels 0, 1, 2, ...) in `data/`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("net.cfg"), CONFIG).unwrap();
        write_sawtooth_idx(&dir.path().join("data"), 0);
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cnn train net.cfg --data data --out OUT --batch-size 8 --threads 1`.
    fn train(&self, out: &str) -> Train {
        Train::new(self.path("net.cfg"), self.path(out))
            .data(self.path("data"))
            .args(&["--batch-size", "8", "--threads", "1"])
    }

    /// `cnn train --resume OUT --threads 1`.
    fn resume(&self, out: &str) -> Train {
        Train::resume(self.path(out)).args(&["--threads", "1"])
    }
}

/// Runs `cmd` with files limited to `limit` bytes and SIGXFSZ ignored: a write past the limit
/// fails with EFBIG, as a write on a full disk fails with ENOSPC. Asserts no panic and no
/// death by a signal; returns (exit code, stderr).
fn run_with_file_size_limit(mut cmd: Command, limit: u64) -> (i32, String) {
    // SAFETY: setrlimit and signal are async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // An ignored signal stays ignored across exec.
            if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (code, _, stderr) = run_command(&mut cmd);
    (code, stderr)
}

/// Asserts exit code 1, no panic, and that the last line of stderr, the only error line, is
/// exactly `expected` (the lines before it are the run's notes).
fn assert_reported(code: i32, stderr: &str, expected: &str) {
    assert!(!stderr.contains("panicked at"), "panicked:\n{stderr}");
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().last(), Some(expected), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{stderr}"
    );
}

/// Every file of `dir` by name, hidden ones too, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// Asserts that no temporary file of an atomic write is left in `after`, that it has the
/// same files as `before`, and that each one but `run.json` has the same bytes.
fn assert_survived(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>) {
    let temps: Vec<&String> = after.keys().filter(|n| cnn::io::is_temp_name(n)).collect();
    assert!(temps.is_empty(), "temporary files left behind: {temps:?}");
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in before {
        if name != "run.json" {
            assert!(after[name] == *bytes, "{name} changed");
        }
    }
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Proves: when the checkpoint at an epoch's end does not fit (a resumed run, files limited
/// to half the checkpoint's size), the run stops with exit code 1 and one line naming
/// `checkpoint.safetensors` and the reason, the previous checkpoint, model, metrics, plots
/// and report are the same bytes, no temporary file is left, and the folder then resumes to
/// the end once there is room.
#[test]
fn full_disk_while_checkpointing_is_reported_and_the_previous_run_survives() {
    let s = Setup::new();
    s.train("run").args(&["--epochs", "1"]).ok();
    let run = s.path("run");
    let ck = run.join("checkpoint.safetensors");
    let limit = len(&ck) / 2;
    for small in ["config.cfg", "run.json"] {
        assert!(len(&run.join(small)) < limit / 4, "{small} is not small");
    }
    let before = snapshot(&run);

    let resume = s.resume("run").args(&["--epochs", "2"]);
    let (code, stderr) = run_with_file_size_limit(resume.command(), limit);
    assert_reported(
        code,
        &stderr,
        &format!(
            "error: writing {}: {TOO_LARGE} (the previous file is kept)",
            ck.display()
        ),
    );
    assert_survived(&before, &snapshot(&run));

    resume.ok();
    assert_eq!(cnn::checkpoint::load(&ck).unwrap().state.epoch, 2);
    assert!(std::fs::read(run.join("model.safetensors")).unwrap() != before["model.safetensors"]);
}

/// Proves: when the model file at the end of training does not fit (a finished run resumed,
/// which has no epoch left to train and only writes its model again; files limited to half
/// the model's size), the run stops with exit code 1 and one line naming
/// `model.safetensors`, and the previous model and checkpoint are the same bytes, with no
/// temporary file left. (A run with `--force` over the folder would first remove the old
/// run's files, so no previous model would be there to keep.)
#[test]
fn full_disk_while_saving_the_model_is_reported_and_the_previous_model_survives() {
    let s = Setup::new();
    s.train("run").args(&["--epochs", "1"]).ok();
    let run = s.path("run");
    let model = run.join("model.safetensors");
    let limit = len(&model) / 2;
    for small in ["config.cfg", "run.json"] {
        assert!(len(&run.join(small)) < limit / 4, "{small} is not small");
    }
    let before = snapshot(&run);

    let again = s.resume("run");
    let (code, stderr) = run_with_file_size_limit(again.command(), limit);
    assert_reported(
        code,
        &stderr,
        &format!(
            "error: writing {}: {TOO_LARGE} (the previous file is kept)",
            model.display()
        ),
    );
    assert_survived(&before, &snapshot(&run));
}

/// Proves: a new run whose very first file does not fit (files limited to 64 bytes) is
/// reported naming `config.cfg`, without claiming a previous file, and leaves its folder
/// empty: no partial file, no temporary file.
#[test]
fn full_disk_at_a_new_runs_first_file_is_reported_and_leaves_nothing_half_written() {
    let s = Setup::new();
    let run = s.path("run");
    let first = s.train("run").args(&["--epochs", "1"]);
    let (code, stderr) = run_with_file_size_limit(first.command(), 64);
    assert_reported(
        code,
        &stderr,
        &format!(
            "error: writing {}: {TOO_LARGE}",
            run.join("config.cfg").display()
        ),
    );
    assert!(snapshot(&run).is_empty(), "{:?}", snapshot(&run).keys());
}

/// Mounts a 1 MB tmpfs on `$3` (in the private mount namespace this runs in), marks `$4` once
/// it is mounted, copies the run folder `$2` into it, fills the tmpfs up but for 16 kB (room
/// for `config.cfg` and `run.json`, not for a checkpoint), resumes it for a second epoch with
/// `$1`, and leaves the exit code, stderr, file names and files in `$4`.
const TMPFS_SCRIPT: &str = r#"
bin=$1 src=$2 mnt=$3 out=$4
mount -t tmpfs -o size=1m cnn-full-disk "$mnt" || exit 77
: > "$out/mounted"
mkdir "$mnt/run" && cp "$src"/* "$mnt/run/" || exit 90
head -c 16384 /dev/zero > "$mnt/reserve" || exit 91
dd if=/dev/zero of="$mnt/fill" bs=4096 2>/dev/null
rm "$mnt/reserve" || exit 92
"$bin" train --resume "$mnt/run" --epochs 2 --threads 1 > /dev/null 2> "$out/stderr"
echo $? > "$out/status"
ls -A "$mnt/run" > "$out/names"
mkdir "$out/after" && cp "$mnt/run"/* "$out/after/" || exit 93
"#;

/// Proves, where a tmpfs can be mounted in a private mount namespace (root, or unprivileged
/// user namespaces): on a real full file system (ENOSPC), resuming a run whose checkpoint
/// does not fit ends with exit code 1 and one line
/// `error: writing .../checkpoint.safetensors: no space left on device (the previous file is
/// kept)`, every previous file is the same bytes, and no temporary file is left. Elsewhere
/// (CI without the privilege) it says that it skips.
#[cfg(target_os = "linux")]
#[test]
fn no_space_left_on_a_real_full_file_system_is_reported_and_the_previous_run_survives() {
    let s = Setup::new();
    s.train("run").args(&["--epochs", "1"]).ok();
    let before = snapshot(&s.path("run"));
    let mnt = s.path("mnt");
    std::fs::create_dir(&mnt).unwrap();

    let mut refusals = Vec::new();
    let mut out = None;
    // As root a mount namespace is enough; otherwise try a user namespace mapped to root.
    for (i, flags) in [&["-m"][..], &["-r", "-m"]].iter().enumerate() {
        let o = s.path(&format!("out{i}"));
        std::fs::create_dir(&o).unwrap();
        let result = Command::new("unshare")
            .args(*flags)
            .args(["sh", "-c", TMPFS_SCRIPT, "sh", BIN])
            .arg(s.path("run"))
            .arg(&mnt)
            .arg(&o)
            .output();
        match result {
            Ok(r) if o.join("mounted").exists() => {
                assert!(
                    r.status.success() && o.join("status").exists(),
                    "tmpfs script failed: {:?}\n{}",
                    r.status,
                    String::from_utf8_lossy(&r.stderr)
                );
                out = Some(o);
                break;
            }
            Ok(r) => refusals.push(format!(
                "unshare {}: {}: {}",
                flags.join(" "),
                r.status,
                String::from_utf8_lossy(&r.stderr).trim()
            )),
            Err(e) => refusals.push(format!("unshare {}: {e}", flags.join(" "))),
        }
    }
    let Some(out) = out else {
        eprintln!(
            "SKIPPED no_space_left_on_a_real_full_file_system_is_reported_and_the_previous_run_\
             survives: cannot mount a tmpfs in a private mount namespace here (needs root or \
             user namespaces): {}",
            refusals.join("; ")
        );
        return;
    };

    let code: i32 = std::fs::read_to_string(out.join("status"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stderr = std::fs::read_to_string(out.join("stderr")).unwrap();
    assert_reported(
        code,
        &stderr,
        &format!(
            "error: writing {}: no space left on device (the previous file is kept)",
            mnt.join("run/checkpoint.safetensors").display()
        ),
    );
    let names = std::fs::read_to_string(out.join("names")).unwrap();
    let temps: Vec<&str> = names.lines().filter(|n| cnn::io::is_temp_name(n)).collect();
    assert!(temps.is_empty(), "temporary files left behind: {temps:?}");
    assert_survived(&before, &snapshot(&out.join("after")));
}
