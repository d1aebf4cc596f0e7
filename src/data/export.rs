//! Writing a dataset (or part of it) as PNG files plus `labels.txt`.

use super::folder::{chw_to_dynamic, LABELS_TXT};
use super::Dataset;
use crate::error::{Error, Result};
use std::path::Path;

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
/// are therefore disjoint. Returns the number of images written.
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
) -> Result<usize> {
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
    Ok(written)
}
