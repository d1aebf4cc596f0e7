//! `cnn train` started by `mpirun` (or `srun`) with P > 1 processes: they train one run
//! together ([`cnn::distributed`]). Rank 0 prints and writes the run folder; the others
//! stay silent unless they fail. Before training, every process's run must be rank 0's:
//! the same binary, options, network config, data and starting weights.

use cnn::distributed::Group;
use cnn::run::Run;

use super::{Failure, EXIT_USAGE};

/// This process's place in an MPI job of more than one process.
pub struct Job {
    pub group: Group,
    /// MPI, finalised when the job is dropped (at the end of the command).
    #[cfg(feature = "mpi")]
    _universe: mpi::environment::Universe,
}

impl Job {
    pub fn rank(&self) -> usize {
        self.group.rank()
    }
}

/// The MPI job this process was started in, if its launcher started more than one process;
/// `None` (the command runs as today) otherwise. A binary built without the `mpi` feature
/// refuses to run as one of several processes: each would train the whole run alone, and
/// all would write the same folder.
pub fn join() -> Result<Option<Job>, Failure> {
    let Some(size) = cnn::distributed::launcher_size().filter(|&p| p > 1) else {
        return Ok(None);
    };
    #[cfg(not(feature = "mpi"))]
    {
        if cnn::distributed::launcher_rank().unwrap_or(0) == 0 {
            return Err(Failure::Usage(format!(
                "cnn train was started as one of {size} MPI processes, but this cnn was built \
                 without MPI, so each would train the whole run alone: build it with `cargo \
                 build --release --features mpi` (docs/DISTRIBUTED.md)"
            )));
        }
        Err(Failure::Silent(EXIT_USAGE))
    }
    #[cfg(feature = "mpi")]
    {
        let (universe, group) = cnn::distributed::mpi_world().ok_or_else(|| {
            Failure::Usage("MPI could not be initialised (it was already)".into())
        })?;
        if group.size() != size {
            return Err(Failure::Usage(format!(
                "the launcher says {size} processes, MPI {}: is this cnn linked to the MPI \
                 library of the mpirun that started it?",
                group.size()
            )));
        }
        Ok(Some(Job {
            group,
            _universe: universe,
        }))
    }
}

/// The exit code and the line a failure prints.
fn code_and_line(f: &Failure) -> (i32, String) {
    match f {
        Failure::Error(e) => (1, format!("error: {e}")),
        Failure::Usage(m) => (EXIT_USAGE, format!("error: {m}")),
        Failure::Diverged(m) => (super::EXIT_DIVERGED, format!("error: {m}")),
        Failure::Interrupted(m) => (super::EXIT_INTERRUPTED, m.clone()),
        Failure::Terminated(m) => (super::EXIT_TERMINATED, m.clone()),
        Failure::Reported => (1, String::new()),
        Failure::Silent(code) => (*code, String::new()),
    }
}

/// Every process's run, checked to be rank 0's before any trains: if a process could not
/// make its run, rank 0 prints why (naming the rank) and every process exits with that
/// failure's code; if a process's run differs from rank 0's (another binary, options,
/// config, data or starting weights), rank 0 says which and every process exits with code 2.
pub fn agree(job: &Job, built: Result<Run, Failure>) -> Result<Run, Failure> {
    let group = job.group;
    let mine = match &built {
        Ok(run) => {
            let mut lines = vec![format!("binary {}", binary_identity())];
            lines.extend(
                run.identity()
                    .into_iter()
                    .map(|(what, sha)| format!("{what} {sha}")),
            );
            format!("ok\n{}", lines.join("\n"))
        }
        Err(f) => {
            let (code, line) = code_and_line(f);
            format!("failed\n{code}\n{line}")
        }
    };
    let all = cnn::distributed::gather_bytes(group, mine.as_bytes());
    let all: Vec<String> = all
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    let rank0 = job.rank() == 0;
    if let Some((r, text)) = all
        .iter()
        .enumerate()
        .find(|(_, t)| t.starts_with("failed\n"))
    {
        let mut parts = text.splitn(3, '\n').skip(1);
        let code = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
        let line = parts.next().unwrap_or("");
        if rank0 && !line.is_empty() {
            match (r, line.strip_prefix("error: ")) {
                (0, _) => eprintln!("{line}"),
                (r, Some(msg)) => eprintln!("error: rank {r} of {}: {msg}", group.size()),
                (r, None) => eprintln!("rank {r} of {}: {line}", group.size()),
            }
        }
        return Err(Failure::Silent(code));
    }
    let lines = |t: &str| -> Vec<String> { t.lines().skip(1).map(str::to_string).collect() };
    let first = lines(&all[0]);
    for (r, text) in all.iter().enumerate().skip(1) {
        let other = lines(text);
        if let Some((a, _)) = first.iter().zip(&other).find(|(a, b)| a != b) {
            let what = a.rsplit_once(' ').map_or(a.as_str(), |(w, _)| w);
            if rank0 {
                eprintln!(
                    "error: rank {r} of {} differs from rank 0 in its {what}: every process \
                     must run the same cnn with the same options, config and data (a path \
                     every node reads)",
                    group.size()
                );
            }
            return Err(Failure::Silent(EXIT_USAGE));
        }
    }
    built
}

/// The SHA-256 of this process's executable: processes of one run must run the same build.
fn binary_identity() -> String {
    match std::env::current_exe().and_then(std::fs::read) {
        Ok(bytes) => cnn::checkpoint::fingerprint(&[&bytes]),
        Err(_) => "unknown".into(),
    }
}
