//! Matching a dataset's labels to a model's classes, by class name.
//!
//! A label is only a number within its own dataset: label 0 of a folder holding `Bag/` and
//! `Ankle boot/` is "Ankle boot", while output 0 of a Fashion-MNIST model is "T-shirt/top".
//! Comparing them as numbers scores a perfect model at 0%. [`Dataset::map_to_classes`]
//! therefore translates every label through its class name.

use super::Dataset;
use crate::error::{Error, Result};

/// At most this many class names are listed in an error message.
const LISTED: usize = 12;

/// True when `classes` carry no names: class `i` is called `"i"` for every `i`. That is what
/// IDX files without a known name list, and a labels.txt of bare indices, give.
pub fn has_index_names(classes: &[String]) -> bool {
    classes.iter().enumerate().all(|(i, n)| *n == i.to_string())
}

/// `a, b, c` or `a, b, ..., (40 in all)` for long lists.
fn listing(classes: &[String]) -> String {
    if classes.len() <= LISTED {
        classes.join(", ")
    } else {
        format!(
            "{}, ... ({} in all)",
            classes[..LISTED - 2].join(", "),
            classes.len()
        )
    }
}

impl Dataset {
    /// The same images, relabelled for a model whose outputs are `model_classes`: afterwards
    /// `classes == model_classes` and each label is the index of the image's class among them.
    ///
    /// The mapping is by **name**: an image of class "Bag" gets the index of "Bag" in
    /// `model_classes`, wherever that is. A dataset with fewer classes than the model is fine
    /// (an exported subset, a folder with a class missing). Only classes that have images are
    /// looked up, so an empty class the model does not know is no error.
    ///
    /// When names cannot say anything, labels are taken as they are, as class indices: that is
    /// when either side's classes are bare indices (`"0"`, `"1"`, ... in order; see
    /// [`has_index_names`]) and the names did not all match. So raw IDX files of
    /// Fashion-MNIST (no names) fit a Fashion-MNIST model, and an exported MNIST subset whose
    /// classes are `"8"` and `"9"` maps to outputs 8 and 9 of an MNIST model (by name, as the
    /// names match). A label then beyond the model's outputs is an error.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the dataset and the first class the model does not know (with
    /// the model's classes), or the first label beyond the model's outputs.
    pub fn map_to_classes(mut self, model_classes: &[String]) -> Result<Dataset> {
        if u16::try_from(model_classes.len()).is_err() {
            return Err(Error::Invalid(format!(
                "a model with {} classes: labels are stored as 16-bit numbers",
                model_classes.len()
            )));
        }
        let present: Vec<usize> = self
            .class_counts()
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(c, _)| c)
            .collect();
        // target[c] = the model's index of dataset class c (classes without images: 0, unused).
        let mut target = vec![0u16; self.classes.len()];
        let mut unknown = None;
        for &c in &present {
            match model_classes.iter().position(|m| *m == self.classes[c]) {
                Some(i) => target[c] = i as u16,
                None => {
                    unknown = Some(c);
                    break;
                }
            }
        }
        if let Some(c) = unknown {
            if !(has_index_names(&self.classes) || has_index_names(model_classes)) {
                return Err(Error::Invalid(format!(
                    "{}: class \"{}\" is not one of the model's classes ({})",
                    self.source,
                    self.classes[c],
                    listing(model_classes)
                )));
            }
            // No names to go by: labels are class indices.
            if let Some(&c) = present.iter().find(|&&c| c >= model_classes.len()) {
                return Err(Error::Invalid(format!(
                    "{}: label {c} (class \"{}\") is beyond the model's {} classes ({}); \
                     without class names on both sides, labels are taken as the model's class \
                     indices",
                    self.source,
                    self.classes[c],
                    model_classes.len(),
                    listing(model_classes)
                )));
            }
            for (c, t) in target.iter_mut().enumerate() {
                *t = c.min(model_classes.len().saturating_sub(1)) as u16;
            }
        }
        for l in &mut self.labels {
            *l = target[*l as usize];
        }
        self.classes = model_classes.to_vec();
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// One 1x1 image per label.
    fn ds(classes: &[&str], labels: &[u16]) -> Dataset {
        Dataset {
            images: vec![0; labels.len()],
            labels: labels.to_vec(),
            shape: [1, 1, 1],
            classes: names(classes),
            source: "sub".into(),
        }
    }

    const FASHION: [&str; 10] = crate::data::FASHION_MNIST_CLASSES;

    #[test]
    fn a_subset_maps_to_the_model_s_indices_by_name() {
        let d = ds(&["Bag", "Ankle boot"], &[0, 1, 1, 0]);
        let m = d.map_to_classes(&names(&FASHION)).unwrap();
        assert_eq!(m.labels, [8, 9, 9, 8]);
        assert_eq!(m.classes, names(&FASHION));
    }

    #[test]
    fn names_in_another_order_are_reordered() {
        let d = ds(&["b", "c", "a"], &[0, 1, 2]);
        let m = d.map_to_classes(&names(&["a", "b", "c"])).unwrap();
        assert_eq!(m.labels, [1, 2, 0]);
    }

    #[test]
    fn an_unknown_class_is_an_error_naming_it_and_the_dataset() {
        let d = ds(&["Bag", "Tshirt"], &[0, 1]);
        let e = d.map_to_classes(&names(&FASHION)).unwrap_err().to_string();
        assert!(
            e.starts_with("sub: class \"Tshirt\" is not one of the model's classes (T-shirt/top, "),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn an_unknown_class_without_images_is_no_error() {
        let d = ds(&["Bag", "Tshirt"], &[0, 0]);
        let m = d.map_to_classes(&names(&FASHION)).unwrap();
        assert_eq!(m.labels, [8, 8]);
    }

    #[test]
    fn index_named_data_matches_digit_names_by_name() {
        // An MNIST model trained on the subset 3, 5 (class names "3" and "5"), evaluated on
        // data whose labels are the digits themselves.
        let d = ds(&["0", "1", "2", "3", "4", "5"], &[3, 5, 5]);
        let m = d.map_to_classes(&names(&["3", "5"])).unwrap();
        assert_eq!(m.labels, [0, 1, 1]);
    }

    #[test]
    fn data_without_names_is_taken_by_index() {
        // Raw Fashion-MNIST IDX files at a path without "fashion": classes "0".."9".
        let idx: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        let idx: Vec<&str> = idx.iter().map(String::as_str).collect();
        let d = ds(&idx, &[8, 9, 0]);
        let m = d.map_to_classes(&names(&FASHION)).unwrap();
        assert_eq!(m.labels, [8, 9, 0]);
        assert_eq!(m.classes[8], "Bag");
    }

    #[test]
    fn a_model_without_names_takes_named_data_by_index() {
        let d = ds(&["cat", "dog"], &[1, 0]);
        let m = d.map_to_classes(&names(&["0", "1", "2"])).unwrap();
        assert_eq!(m.labels, [1, 0]);
    }

    #[test]
    fn without_names_a_label_beyond_the_model_is_an_error() {
        let d = ds(&["0", "1", "2"], &[0, 2]);
        let e = d
            .map_to_classes(&names(&["a", "b"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("sub: label 2 (class \"2\") is beyond the model's 2 classes (a, b)"),
            "{e}"
        );
    }

    #[test]
    fn long_class_lists_are_shortened() {
        let many: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
        let e = ds(&["x"], &[0])
            .map_to_classes(&many)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, ... (40 in all))"),
            "{e}"
        );
    }
}
