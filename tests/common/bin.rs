//! The `cnn` binary, run as a process.

use std::ffi::OsStr;

/// The path of the `cnn` binary that cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_cnn");

/// `cnn` as an `assert_cmd` command, for tests that chain `.arg(..).assert()`.
pub fn cnn() -> assert_cmd::Command {
    assert_cmd::Command::new(BIN)
}

/// Runs `cnn ARGS` and returns (exit code, stdout, stderr), asserting that it exited normally,
/// printed UTF-8 and did not panic (a panic is a bug whatever the input).
pub fn run(args: &[&dyn AsRef<OsStr>]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .output()
        .expect("cnn runs");
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let stderr = String::from_utf8(out.stderr).expect("stderr is UTF-8");
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    assert!(
        !stderr.contains("panicked at"),
        "cnn {shown:?} panicked:\n{stderr}"
    );
    let code = out.status.code().expect("cnn exits normally");
    (code, stdout, stderr)
}
