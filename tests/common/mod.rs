//! Helpers of the test crates `tests/engine` (the library), `tests/cli` (the `cnn` command)
//! and `tests/serve` (`cnn serve`).
//!
//! This module is the part every crate uses: the `cnn` binary and [`run`]. Every other file
//! of this folder holds one topic (fixtures, the bytes of IDX, PNG and gzip files, the data
//! sets, `cnn train` as a builder, the server of the serve tests, ...), and a crate includes
//! this module and, beside it, exactly the files it uses, each by its path; its `main.rs`
//! lists them:
//!
//! ```ignore
//! #[path = "../common/mod.rs"]
//! mod common;
//! #[path = "../common/bars.rs"]
//! mod bars;
//! ```
//!
//! Why not one module with every helper, included by every crate: each crate uses only a
//! part of it, and rustc warns of every helper a crate does not use, which only an
//! `#[allow(dead_code)]` over the whole module would silence, hiding also the helpers that
//! no test uses any more. Included file by file, whatever a crate includes it uses whole, so
//! the lint stays on and honest: a helper that falls out of use warns, and
//! `cargo clippy --all-targets -- -D warnings` fails until it goes. Helpers that only one
//! crate uses live here all the same, in a file that only that crate includes, so that
//! every helper is found in this folder and none is written twice.
//!
//! The modules refer to one another from the crate root: `crate::common::BIN`,
//! `crate::bytes::idx_images`.

use std::ffi::OsStr;
use std::process::Command;

/// The path of the `cnn` binary that cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_cnn");

/// Runs `cnn ARGS` and returns (exit code, stdout, stderr); see [`run_command`].
pub fn run(args: &[&dyn AsRef<OsStr>]) -> (i32, String, String) {
    run_command(Command::new(BIN).args(args))
}

/// Runs `cmd` (`cnn` with its arguments, environment and folder) and returns (exit code,
/// stdout, stderr), asserting that it exited normally, printed UTF-8 and did not panic (a
/// panic is a bug whatever the input).
pub fn run_command(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("cnn runs");
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let stderr = String::from_utf8(out.stderr).expect("stderr is UTF-8");
    assert!(
        !stderr.contains("panicked at"),
        "{cmd:?} panicked:\n{stderr}"
    );
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("{cmd:?} was killed by a signal: {:?}\n{stderr}", out.status));
    (code, stdout, stderr)
}
