//! Writing a dataset (or part of it) as PNG files plus `labels.txt`.

use super::folder::{chw_to_dynamic, LABELS_TXT};
use super::Dataset;
use crate::error::{Error, Result};
use std::path::Path;

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Images written.
    pub images: usize,
    /// Each exported class's name and the images written of it, in the export's class order.
    pub per_class: Vec<(String, usize)>,
}

/// True for a file name [`export`] writes: `labels.txt`, or `{index:05}_{label}.png`.
fn written_by_export(name: &str) -> bool {
    if name == LABELS_TXT {
        return true;
    }
    let Some((index, label)) = name
        .strip_suffix(".png")
        .and_then(|stem| stem.split_once('_'))
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    index.len() >= 5 && digits(index) && digits(label)
}

/// Makes `out` ready for [`export`]: a folder that does not exist or holds nothing (hidden
/// files aside, which no dataset reads), so that old and new files do not mix.
///
/// With `force`, a folder holding a previous export is cleared first: its PNGs (named as
/// [`export`] names them) and its labels.txt are removed, and nothing else; a folder holding
/// anything else is refused all the same.
///
/// # Errors
/// [`Error::Usage`] for a folder that holds files (without `force`), or files an export
/// does not write (with it), naming one; [`Error::Io`] when the folder cannot be read or a
/// file removed.
pub fn prepare_export_folder(out: &Path, force: bool) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(Error::Usage(format!(
            "{}: exists and is not a folder; --out takes the folder to write",
            out.display()
        )));
    }
    let mut ours = Vec::new();
    let mut others = Vec::new();
    for entry in std::fs::read_dir(out).map_err(|e| Error::io(out, e))? {
        let entry = entry.map_err(|e| Error::io(out, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && written_by_export(&name) {
            ours.push(entry.path());
        } else {
            others.push(name);
        }
    }
    others.sort();
    if !force {
        if ours.is_empty() && others.is_empty() {
            return Ok(());
        }
        let what = if others.is_empty() {
            "a previous export (its PNGs and labels.txt); pass --force to replace it".to_string()
        } else {
            format!(
                "{} entr{} (such as {}); choose an empty folder",
                ours.len() + others.len(),
                if ours.len() + others.len() == 1 {
                    "y"
                } else {
                    "ies"
                },
                others[0]
            )
        };
        return Err(Error::Usage(format!(
            "{}: is not empty, and new files would mix with the old: it holds {what}",
            out.display()
        )));
    }
    if let Some(first) = others.first() {
        return Err(Error::Usage(format!(
            "{}: holds {first}, which cnn data export does not write; --force replaces only a \
             previous export's PNGs and labels.txt: choose an empty folder",
            out.display()
        )));
    }
    for path in ours {
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// Writes images of `ds` into the folder `out` as PNG files named `{index:05}_{label}.png`
/// (`index` is the image's position in `ds`) and a `labels.txt` listing them (`FILE LABEL`,
/// the label as a class index, after a `# classes: NAME, NAME, ...` line), so that [`load`]
/// reads the folder back with the same classes.
///
/// With `classes` given, the exported set has just those classes, in the order given: the
/// i-th listed class becomes class i (so `--classes 3,5` gives a 2-class set whose names are
/// `3` and `5`), which is what a network with one output per exported class needs.
///
/// For each selected class, the images of that class are taken in dataset order, skipping the first `offset` of them and keeping at most `per_class` (all when
/// `None`). Exports with the same `per_class` and offsets `0`, `per_class`, `2 * per_class`, ...
/// are therefore disjoint. Returns the number of images written, in all and per class (fewer
/// than `per_class` when a class has fewer images past `offset`).
///
/// Old files in `out` would mix with the new ones: [`prepare_export_folder`] checks it, and
/// this function refuses a folder that it would not accept.
///
/// `labels.txt` is written atomically: to a temporary file in `out`, flushed, synced, then
/// renamed over `labels.txt`. Class names containing a comma or a line break are refused, as
/// they would not survive the `# classes:` line.
///
/// [`load`]: super::load
pub fn export(
    ds: &Dataset,
    out: &Path,
    classes: Option<&[usize]>,
    per_class: Option<usize>,
    offset: usize,
) -> Result<Exported> {
    let [c, h, w] = ds.shape;
    if c != 1 && c != 3 {
        return Err(Error::Invalid(format!(
            "can only export 1- or 3-channel images, {} has {c}",
            ds.source
        )));
    }
    let k = ds.classes.len();
    // new_index[old class] = its index in the exported set, if selected.
    let mut new_index: Vec<Option<usize>> = match classes {
        None => (0..k).map(Some).collect(),
        Some(_) => vec![None; k],
    };
    for (i, &cl) in classes.unwrap_or(&[]).iter().enumerate() {
        if cl >= k {
            return Err(Error::Invalid(format!(
                "class {cl} is out of range: {} has {k} classes (0..{})",
                ds.source,
                k.saturating_sub(1)
            )));
        }
        if new_index[cl].is_some() {
            return Err(Error::Invalid(format!("class {cl} is listed twice")));
        }
        new_index[cl] = Some(i);
    }
    let names: Vec<&str> = match classes {
        None => ds.classes.iter().map(String::as_str).collect(),
        Some(list) => list.iter().map(|&cl| ds.classes[cl].as_str()).collect(),
    };
    if let Some(bad) = ds
        .classes
        .iter()
        .find(|n| n.contains([',', '\n', '\r']) || n.trim().is_empty())
    {
        return Err(Error::Invalid(format!(
            "class name \"{}\" cannot be written to labels.txt (empty, or has a comma or a \
             line break)",
            bad.escape_debug()
        )));
    }
    prepare_export_folder(out, false)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;

    let mut seen = vec![0usize; k];
    let mut taken = vec![0usize; k];
    let mut listing = format!("# classes: {}\n", names.join(", "));
    let mut written = 0;
    for i in 0..ds.len() {
        let l = ds.labels[i] as usize;
        let Some(new_label) = new_index[l] else {
            continue;
        };
        seen[l] += 1;
        if seen[l] <= offset || per_class.is_some_and(|p| taken[l] >= p) {
            continue;
        }
        taken[l] += 1;
        let name = format!("{i:05}_{l}.png");
        let path = out.join(&name);
        chw_to_dynamic(ds.image(i), c, h, w)
            .save_with_format(&path, image::ImageFormat::Png)
            .map_err(|e| match e {
                image::ImageError::IoError(io) => Error::io(&path, io),
                other => Error::Invalid(format!("{}: cannot write PNG: {other}", path.display())),
            })?;
        listing.push_str(&format!("{name} {new_label}\n"));
        written += 1;
    }

    crate::io::write_atomic(&out.join(LABELS_TXT), listing.as_bytes())?;
    let mut per_class = vec![(String::new(), 0); names.len()];
    for (old, new) in new_index.iter().enumerate() {
        if let Some(new) = *new {
            per_class[new] = (names[new].to_string(), taken[old]);
        }
    }
    Ok(Exported {
        images: written,
        per_class,
    })
}
