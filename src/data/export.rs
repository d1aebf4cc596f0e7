//! Writing a dataset (or part of it) as PNG files plus `labels.txt`.

use super::folder::{chw_to_dynamic, LABELS_TXT};
use super::Dataset;
use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Writes images of `ds` into the folder `out` as PNG files named `{index:05}_{label}.png`
/// (`index` is the image's position in `ds`) and a `labels.txt` listing them (`FILE LABEL`,
/// the label as a class index, after a `# classes: NAME, NAME, ...` line), so that [`load`]
/// reads the folder back with the same classes.
///
/// For each class in `classes` (all when `None`), the images of that class are taken in
/// dataset order, skipping the first `offset` of them and keeping at most `per_class` (all when
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
    let mut selected = vec![classes.is_none(); k];
    for &cl in classes.unwrap_or(&[]) {
        if cl >= k {
            return Err(Error::Invalid(format!(
                "class {cl} is out of range: {} has {k} classes (0..{})",
                ds.source,
                k.saturating_sub(1)
            )));
        }
        selected[cl] = true;
    }
    if let Some(bad) = ds
        .classes
        .iter()
        .find(|n| n.contains([',', '\n', '\r']) || n.trim().is_empty())
    {
        return Err(Error::Invalid(format!(
            "class name {bad:?} cannot be written to labels.txt (empty, or has a comma or a \
             line break)"
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;

    let mut seen = vec![0usize; k];
    let mut taken = vec![0usize; k];
    let mut listing = format!("# classes: {}\n", ds.classes.join(", "));
    let mut written = 0;
    for i in 0..ds.len() {
        let l = ds.labels[i] as usize;
        if !selected[l] {
            continue;
        }
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
        listing.push_str(&format!("{name} {l}\n"));
        written += 1;
    }

    let tmp = out.join(format!(".{LABELS_TXT}.tmp"));
    let dest = out.join(LABELS_TXT);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(listing.as_bytes())?;
        f.flush()?;
        f.sync_all()
    };
    write().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))?;
    Ok(written)
}
