//! External data: initialisers that keep their bytes in a file beside the model, as
//! PyTorch's default exporter writes them (`torch.onnx.export(..., dynamo=True)` puts the
//! weights in `net.onnx.data`).
//!
//! Such a tensor has `data_location` EXTERNAL and `external_data` entries: `location`, the
//! file's path relative to the model's folder; `offset` and `length`, a byte range of it (all
//! the file from `offset` when `length` is missing); `checksum`, ignored. Every size comes from
//! the model file, so each is checked before anything is read:
//!
//! - the location must be relative and stay in the model's folder: no absolute path, no `..`,
//!   and no symbolic link leading out of it (the path is resolved and compared);
//! - the range must lie inside the file, and be exactly as long as the tensor's dims and
//!   type say (float and int64 tensors, the only ones the importer reads);
//! - all the external data of a model together is at most [`MAX_EXTERNAL_BYTES`].
//!
//! The bytes read become the tensor's `raw_data`, as if the file had held them inline.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use super::parts::{dims, short};
use super::proto::{tensor_proto::DataLocation, ModelProto, TensorProto};
use super::{FLOAT, INT64, MAX_FILE_BYTES};

/// Most bytes of external data read for one model (the cap of an ONNX file itself).
pub const MAX_EXTERNAL_BYTES: u64 = MAX_FILE_BYTES;

/// True when `t` keeps its data in an external file.
pub(crate) fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(DataLocation::External as i32) || !t.external_data.is_empty()
}

/// Reads the external data of every initialiser of `proto` from the files beside it, in the
/// folder `dir`, into the tensors. The error names the tensor and what is wrong.
pub(crate) fn load(proto: &mut ModelProto, dir: &Path) -> Result<(), String> {
    let Some(graph) = proto.graph.as_mut() else {
        return Ok(());
    };
    let mut files = Files {
        dir,
        real_dir: None,
        open: HashMap::new(),
        total: 0,
    };
    for t in graph.initializer.iter_mut().filter(|t| is_external(t)) {
        let name = short(t.name.as_deref().unwrap_or(""));
        let bytes = files
            .read(t)
            .map_err(|e| format!("initialiser `{name}`: its external data {e}"))?;
        t.raw_data = Some(bytes);
        t.data_location = Some(DataLocation::Default as i32);
        t.external_data.clear();
    }
    Ok(())
}

/// The data files read so far, each opened once.
struct Files<'a> {
    /// The model's folder, as given.
    dir: &'a Path,
    /// The model's folder resolved (symbolic links followed), once needed.
    real_dir: Option<PathBuf>,
    /// Each file by its location: the open file and its length.
    open: HashMap<String, (File, u64)>,
    /// Bytes read so far.
    total: u64,
}

impl Files<'_> {
    /// The bytes of tensor `t`'s external data, checked.
    fn read(&mut self, t: &TensorProto) -> Result<Vec<u8>, String> {
        let entry = |key: &str| {
            t.external_data
                .iter()
                .find(|e| e.key.as_deref() == Some(key))
                .and_then(|e| e.value.as_deref())
        };
        let number = |key: &str| -> Result<Option<u64>, String> {
            entry(key)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| format!("has `{key}` {}, not a byte count", short(v)))
                })
                .transpose()
        };
        let location = entry("location")
            .filter(|l| !l.is_empty())
            .ok_or("names no file (no `location`)")?;
        let offset = number("offset")?.unwrap_or(0);
        let length = number("length")?;
        let element = match t.data_type {
            Some(FLOAT) => 4,
            Some(INT64) => 8,
            other => {
                return Err(format!(
                    "is of data type {}; only float (1) and int64 (7) tensors are read",
                    other.unwrap_or(0)
                ))
            }
        };
        let values: u64 = dims(t)?.iter().map(|&d| d as u64).product();
        let want = values * element;
        let file_len = self.open(location)?.1;
        let length = length.unwrap_or_else(|| file_len.saturating_sub(offset));
        let end = offset
            .checked_add(length)
            .filter(|&e| e <= file_len)
            .ok_or_else(|| {
                format!(
                    "(offset {offset}, length {length}) runs past the end of {} ({file_len} bytes)",
                    short(location)
                )
            })?;
        if length != want {
            let shape: Vec<String> = t.dims.iter().map(ToString::to_string).collect();
            return Err(format!(
                "is {length} bytes in {}, but its dims ({}) of {element}-byte values take {want}",
                short(location),
                shape.join("x")
            ));
        }
        self.total += length;
        if self.total > MAX_EXTERNAL_BYTES {
            return Err(format!(
                "brings the model's external data past the limit of {MAX_EXTERNAL_BYTES} bytes"
            ));
        }
        let mut bytes = Vec::with_capacity(length as usize);
        let file = &mut self.open(location)?.0;
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.take(end - offset).read_to_end(&mut bytes))
            .map_err(|e| format!("cannot be read from {}: {e}", short(location)))?;
        if bytes.len() as u64 != length {
            return Err(format!(
                "cannot be read from {}: it ended early",
                short(location)
            ));
        }
        Ok(bytes)
    }

    /// The file at `location`, opened once, after checking that it stays in the folder.
    fn open(&mut self, location: &str) -> Result<&mut (File, u64), String> {
        if !self.open.contains_key(location) {
            let path = self.checked_path(location)?;
            let file = File::open(&path)
                .map_err(|e| format!("names {}, which cannot be opened: {e}", short(location)))?;
            let meta = file
                .metadata()
                .map_err(|e| format!("names {}: {e}", short(location)))?;
            if !meta.is_file() {
                return Err(format!("names {}, which is not a file", short(location)));
            }
            self.open.insert(location.to_string(), (file, meta.len()));
        }
        Ok(self.open.get_mut(location).expect("inserted above"))
    }

    /// `dir/location`, refused when `location` is absolute, holds `..`, or leads out of the
    /// folder through a symbolic link.
    fn checked_path(&mut self, location: &str) -> Result<PathBuf, String> {
        let rel = Path::new(location);
        let refuse = |why: &str| {
            Err(format!(
                "names {}, {why}; it must be a file in the model's folder",
                short(location)
            ))
        };
        if location.contains('\0') {
            return refuse("which holds a NUL byte");
        }
        for c in rel.components() {
            match c {
                Component::Prefix(_) | Component::RootDir => return refuse("an absolute path"),
                Component::ParentDir => return refuse("which goes up a folder (`..`)"),
                Component::CurDir | Component::Normal(_) => {}
            }
        }
        let path = self.dir.join(rel);
        let real_dir = match &self.real_dir {
            Some(d) => d.clone(),
            None => {
                let dir = if self.dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    self.dir
                };
                let d = dir
                    .canonicalize()
                    .map_err(|e| format!("cannot be found: {}: {e}", dir.display()))?;
                self.real_dir = Some(d.clone());
                d
            }
        };
        let real = path
            .canonicalize()
            .map_err(|e| format!("names {}, which cannot be opened: {e}", short(location)))?;
        if !real.starts_with(&real_dir) {
            return refuse("a link that leads out of the model's folder");
        }
        Ok(real)
    }
}
