//! The `cnn` command driven in more ways than [`crate::common::run`]: an `assert_cmd`
//! command, and `cnn train` as a builder.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{run_command, BIN};

/// `cnn` as an `assert_cmd` command, for tests that chain `.arg(..).assert()`.
pub fn cnn() -> assert_cmd::Command {
    assert_cmd::Command::new(BIN)
}

/// `cnn train CFG --out OUT [--data DATA] [DEFAULTS] [ARGS]`, or `cnn train --resume RUN
/// [...]`: each of DEFAULTS (a flag and its value, a test file's own) unless ARGS gives that
/// flag, then ARGS.
///
/// ```ignore
/// /// What every run of this file passes unless a test gives it.
/// const DEFAULTS: [[&str; 2]; 2] = [["--epochs", "3"], ["--batch-size", "8"]];
///
/// let (code, stdout, stderr) = Train::new(dir.join("net.cfg"), dir.join("run"))
///     .data(&data)
///     .defaults(&DEFAULTS)
///     .args(&["--epochs", "1", "--flip"])
///     .run();
/// ```
pub struct Train {
    /// None for a resume.
    cfg: Option<PathBuf>,
    out: PathBuf,
    config: Option<String>,
    data: Option<PathBuf>,
    defaults: Vec<[String; 2]>,
    args: Vec<String>,
    dir: Option<PathBuf>,
}

impl Train {
    /// Trains the config file `cfg` into the run folder `out`.
    pub fn new(cfg: impl AsRef<Path>, out: impl AsRef<Path>) -> Train {
        Train {
            cfg: Some(cfg.as_ref().to_path_buf()),
            ..Train::resume(out)
        }
    }

    /// Resumes the run folder `run`.
    pub fn resume(run: impl AsRef<Path>) -> Train {
        Train {
            cfg: None,
            out: run.as_ref().to_path_buf(),
            config: None,
            data: None,
            defaults: Vec::new(),
            args: Vec::new(),
            dir: None,
        }
    }

    /// Writes `text` into the config file before the run.
    pub fn config(mut self, text: &str) -> Train {
        self.config = Some(text.to_string());
        self
    }

    /// `--data DATA` (without it `cnn` trains on the built-in demo set).
    pub fn data(mut self, data: impl AsRef<Path>) -> Train {
        self.data = Some(data.as_ref().to_path_buf());
        self
    }

    /// Flags with their values, each passed unless the arguments give that flag.
    pub fn defaults(mut self, defaults: &[[&str; 2]]) -> Train {
        let pairs = defaults.iter().map(|p| p.map(String::from));
        self.defaults.extend(pairs);
        self
    }

    /// Appends `args` to the arguments.
    pub fn args(mut self, args: &[&str]) -> Train {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Runs `cnn` in `dir`, where relative paths are taken from.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Train {
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The command, for a test that runs it its own way (another environment, a limit, a
    /// kill); the config file is written now.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("train");
        match &self.cfg {
            Some(cfg) => cmd.arg(cfg).arg("--out").arg(&self.out),
            None => cmd.arg("--resume").arg(&self.out),
        };
        if let Some(text) = &self.config {
            let cfg = self.cfg.as_ref().expect("a resumed run has its own config");
            let cfg = match &self.dir {
                Some(dir) => dir.join(cfg),
                None => cfg.clone(),
            };
            std::fs::write(&cfg, text).unwrap_or_else(|e| panic!("writing {}: {e}", cfg.display()));
        }
        if let Some(data) = &self.data {
            cmd.arg("--data").arg(data);
        }
        for [flag, value] in &self.defaults {
            if !self.args.contains(flag) {
                cmd.args([flag, value]);
            }
        }
        cmd.args(&self.args);
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// Runs it and returns (exit code, stdout, stderr); see [`run_command`].
    pub fn run(&self) -> (i32, String, String) {
        run_command(&mut self.command())
    }

    /// Runs it, asserts that it succeeds, and returns its stdout.
    pub fn ok(&self) -> String {
        let mut cmd = self.command();
        let (code, stdout, stderr) = run_command(&mut cmd);
        assert_eq!(code, 0, "{cmd:?}: {stderr}");
        stdout
    }
}
