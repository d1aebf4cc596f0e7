//! Where the served model comes from, and reloading it when `cnn train` rewrites it.
//!
//! A run folder holds `checkpoint.safetensors` (rewritten after every epoch while training)
//! and, once training ends, `model.safetensors`. The newer of the two is served. Both are
//! written atomically (a temporary file renamed over the old one), so a file whose
//! modification time or length changed is whole, and is loaded again. A model file given
//! directly is watched the same way. The folder is only read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::model_file::{self, ModelMeta};

/// The model files of a run folder that can be served, in order of preference on a tie.
const RUN_MODEL_FILES: [&str; 2] = ["model.safetensors", "checkpoint.safetensors"];

/// What `cnn serve` was pointed at.
#[derive(Debug, Clone)]
pub struct Source {
    /// The run folder, when given one: its metrics are served too.
    pub run_dir: Option<PathBuf>,
    /// The model file, when given one directly.
    model_file: Option<PathBuf>,
}

/// Identifies one version of a file on disk: (path, modification time, length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub path: PathBuf,
    modified: Option<SystemTime>,
    len: u64,
}

impl Source {
    /// A run folder (it holds `model.safetensors` or `checkpoint.safetensors`) or a model file.
    ///
    /// # Errors
    /// [`Error::Usage`] when the path is neither.
    pub fn new(path: &Path) -> Result<Source> {
        if path.is_dir() {
            let source = Source {
                run_dir: Some(path.to_path_buf()),
                model_file: None,
            };
            if source.current().is_none() {
                return Err(Error::Usage(format!(
                    "{}: holds no model.safetensors or checkpoint.safetensors; give a run \
                     folder written by cnn train (after its first epoch) or a model file",
                    path.display()
                )));
            }
            return Ok(source);
        }
        if !path.is_file() {
            return Err(Error::Usage(format!(
                "{}: no such file or folder; give a run folder or a model file",
                path.display()
            )));
        }
        Ok(Source {
            run_dir: None,
            model_file: Some(path.to_path_buf()),
        })
    }

    /// The file to serve now, with its stamp: the model file, or the newer model file of
    /// the run folder. `None` when there is none (yet, or any more).
    pub fn current(&self) -> Option<Stamp> {
        if let Some(file) = &self.model_file {
            return stamp(file);
        }
        let dir = self.run_dir.as_ref()?;
        let mut best: Option<Stamp> = None;
        for name in RUN_MODEL_FILES {
            if let Some(s) = stamp(&dir.join(name)) {
                if best.as_ref().is_none_or(|b| s.modified > b.modified) {
                    best = Some(s);
                }
            }
        }
        best
    }

    /// `metrics.jsonl` of the run folder, if this is one.
    pub fn metrics_file(&self) -> Option<PathBuf> {
        self.run_dir.as_ref().map(|d| d.join("metrics.jsonl"))
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    let md = std::fs::metadata(path).ok()?;
    md.is_file().then(|| Stamp {
        path: path.to_path_buf(),
        modified: md.modified().ok(),
        len: md.len(),
    })
}

/// One version of the served model, as loaded: shared, and never run itself (a pass needs
/// `&mut Model` for its buffers), so each user of it runs a copy of its own: the batcher's
/// workers (`super::batch`), and the one model of the requests that read every layer's
/// output or evaluate `--data` (`super::api`).
pub struct Snapshot {
    pub model: Model,
    pub meta: ModelMeta,
    /// Counts loads: 1 for the first, one more for each reload (the page refetches the
    /// model's description and weights when it changes).
    pub version: u64,
}

/// The model being served and which file version it came from.
pub struct Loaded {
    pub current: Arc<Snapshot>,
    pub stamp: Stamp,
    /// The last failed reload, kept for `/api/model`; the previous model stays served.
    pub reload_error: Option<String>,
    /// The stamp of the last load attempted, so that a broken file is not read again on
    /// every request.
    tried: Stamp,
}

impl Loaded {
    /// Loads the current model of `source`.
    pub fn first(source: &Source) -> Result<Loaded> {
        let stamp = source.current().ok_or_else(|| {
            Error::Usage("the model file disappeared before it could be read".into())
        })?;
        let (model, meta) = model_file::load(&stamp.path)?;
        Ok(Loaded {
            current: Arc::new(Snapshot {
                model,
                meta,
                version: 1,
            }),
            tried: stamp.clone(),
            stamp,
            reload_error: None,
        })
    }

    /// Reloads when the source's current file differs from the one loaded (and from the
    /// last one tried). A file that fails to load leaves the previous model in place.
    pub fn refresh(&mut self, source: &Source) {
        let Some(now) = source.current() else {
            return;
        };
        if now == self.stamp || now == self.tried {
            return;
        }
        self.tried = now.clone();
        match model_file::load(&now.path) {
            Ok((model, meta)) => {
                self.current = Arc::new(Snapshot {
                    model,
                    meta,
                    version: self.current.version + 1,
                });
                self.stamp = now;
                self.reload_error = None;
            }
            Err(e) => self.reload_error = Some(e.to_string()),
        }
    }
}

/// The served model and where it comes from: what the requests and the batcher's workers
/// share. The lock is held only to look at the file (and load it when it changed), never
/// during a pass.
pub struct Models {
    pub source: Source,
    loaded: Mutex<Loaded>,
}

impl Models {
    pub fn new(source: Source, loaded: Loaded) -> Models {
        Models {
            source,
            loaded: Mutex::new(loaded),
        }
    }

    /// The model now: loaded again first if `cnn train` replaced its file (a `stat` or two
    /// of the file, a load when it changed).
    pub fn current(&self) -> Arc<Snapshot> {
        Arc::clone(&self.look().current)
    }

    /// The model as last looked at, without looking at the file again.
    pub fn latest(&self) -> Arc<Snapshot> {
        Arc::clone(&lock(&self.loaded).current)
    }

    /// The loaded state, after looking at the file (and loading it when it changed).
    pub fn look(&self) -> MutexGuard<'_, Loaded> {
        let mut loaded = lock(&self.loaded);
        loaded.refresh(&self.source);
        loaded
    }
}

/// A poisoned lock still holds a usable value here: every holder leaves its value whole (a
/// panic inside a layer would be a bug, and the next pass overwrites the buffers).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
