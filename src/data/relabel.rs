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

/// `"a", "b"` (quoted, shortened like [`listing`]).
fn quoted(classes: &[&String]) -> String {
    let names: Vec<String> = classes.iter().map(|c| format!("\"{c}\"")).collect();
    listing(&names)
}

/// `0 = T-shirt/top, 1 = Trouser, ...` for the first labels of an index mapping.
fn by_index(data: &[String], present: &[usize], model: &[String]) -> String {
    let pairs: Vec<String> = present
        .iter()
        .map(|&c| format!("{} = {}", data[c], model[c]))
        .collect();
    listing(&pairs)
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
    /// When no name matches and either side's classes are bare indices (`"0"`, `"1"`, ... in
    /// order; see [`has_index_names`]), names cannot say anything: labels are taken as they
    /// are, as class indices. So raw IDX files of Fashion-MNIST (no names) fit a
    /// Fashion-MNIST model, and an exported MNIST subset whose classes are `"8"` and `"9"`
    /// maps to outputs 8 and 9 of an MNIST model (by name, as the names match). A label then
    /// beyond the model's outputs is an error. When some names match and others do not, the
    /// one class left on each side is paired; more than one is ambiguous, and refused.
    ///
    /// Returns the dataset and, when the labels were not all matched by name, a one-line note
    /// saying how they were mapped (for the command to print: a Fashion-MNIST model scored
    /// on MNIST digits by index should not look like a model that learned nothing).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the dataset and the classes the model does not know (with
    /// the model's classes) when they cannot be paired, or the first label beyond the model's
    /// outputs.
    pub fn match_classes(mut self, model_classes: &[String]) -> Result<(Dataset, Option<String>)> {
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
        let mut unknown = Vec::new();
        for &c in &present {
            match model_classes.iter().position(|m| *m == self.classes[c]) {
                Some(i) => target[c] = i as u16,
                None => unknown.push(c),
            }
        }
        let mut note = None;
        if unknown.len() == present.len() && !present.is_empty() {
            let c = unknown[0];
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
            let names: Vec<String> = present.iter().map(|&c| self.classes[c].clone()).collect();
            note = Some(format!(
                "the data's class names ({}) match none of the model's ({}): labels were \
                 taken as the model's class indices ({})",
                listing(&names),
                listing(model_classes),
                by_index(&self.classes, &present, model_classes)
            ));
        } else if !unknown.is_empty() {
            // Some names match: the model's classes they leave, for the others.
            let taken: Vec<u16> = present
                .iter()
                .filter(|c| !unknown.contains(c))
                .map(|&c| target[c])
                .collect();
            let left: Vec<usize> = (0..model_classes.len())
                .filter(|&i| !taken.contains(&(i as u16)))
                .collect();
            let unknown_names: Vec<&String> = unknown.iter().map(|&c| &self.classes[c]).collect();
            let what = match unknown_names.as_slice() {
                [one] => format!("class \"{one}\" is not one of the model's classes"),
                _ => format!(
                    "classes {} are not among the model's classes",
                    quoted(&unknown_names)
                ),
            };
            if let ([c], [i]) = (unknown.as_slice(), left.as_slice()) {
                target[*c] = *i as u16;
                note = Some(format!(
                    "{what} ({}): its images were taken as \"{}\", the one class of the model \
                     that no other name matched",
                    listing(model_classes),
                    model_classes[*i]
                ));
            } else {
                let it = if unknown.len() == 1 { "it" } else { "them" };
                let why = if left.is_empty() {
                    format!("the other names take every one of the model's classes, leaving none for {it}")
                } else {
                    let left_names: Vec<&String> =
                        left.iter().map(|&i| &model_classes[i]).collect();
                    format!(
                        "the model's classes that no name matched ({}) cannot be paired with {it} \
                         one to one",
                        quoted(&left_names)
                    )
                };
                return Err(Error::Invalid(format!(
                    "{}: {what} ({}); {why}",
                    self.source,
                    listing(model_classes)
                )));
            }
        }
        for l in &mut self.labels {
            *l = target[*l as usize];
        }
        self.classes = model_classes.to_vec();
        Ok((self, note))
    }

    /// [`Dataset::match_classes`] without its note.
    ///
    /// # Errors
    /// As [`Dataset::match_classes`].
    pub fn map_to_classes(self, model_classes: &[String]) -> Result<Dataset> {
        self.match_classes(model_classes).map(|(d, _)| d)
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
    fn names_that_all_match_need_no_note() {
        let (_, note) = ds(&["Bag", "Ankle boot"], &[0, 1])
            .match_classes(&names(&FASHION))
            .unwrap();
        assert_eq!(note, None);
    }

    #[test]
    fn no_name_matching_maps_by_index_and_says_so() {
        // A Fashion-MNIST model on MNIST digits: 7.69% by index, which is no accident to
        // hide.
        let digits: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        let digits: Vec<&str> = digits.iter().map(String::as_str).collect();
        let (m, note) = ds(&digits, &[0, 7, 9])
            .match_classes(&names(&FASHION))
            .unwrap();
        assert_eq!(m.labels, [0, 7, 9]);
        let note = note.unwrap();
        assert_eq!(
            note,
            "the data's class names (0, 7, 9) match none of the model's (T-shirt/top, Trouser, \
             Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot): labels were taken \
             as the model's class indices (0 = T-shirt/top, 7 = Sneaker, 9 = Ankle boot)"
        );
    }

    #[test]
    fn a_partial_match_pairs_the_one_class_left_on_each_side_and_says_so() {
        let d = ds(&["Bag", "Tshirt"], &[0, 1, 1]);
        let (m, note) = d.match_classes(&names(&["T-shirt", "Bag"])).unwrap();
        assert_eq!(m.labels, [1, 0, 0]);
        assert_eq!(
            note.unwrap(),
            "class \"Tshirt\" is not one of the model's classes (T-shirt, Bag): its images were \
             taken as \"T-shirt\", the one class of the model that no other name matched"
        );
    }

    #[test]
    fn a_partial_match_that_cannot_be_paired_one_to_one_is_refused() {
        let e = ds(&["a", "x", "y"], &[0, 1, 2])
            .map_to_classes(&names(&["a", "b", "c"]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "sub: classes \"x\", \"y\" are not among the model's classes (a, b, c); the \
             model's classes that no name matched (\"b\", \"c\") cannot be paired with them one \
             to one"
        );
        // Digits 0-9 against a model of the export of 3 and 5: some match, no class is left.
        let digits: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        let digits: Vec<&str> = digits.iter().map(String::as_str).collect();
        let e = ds(&digits, &(0..10).collect::<Vec<u16>>())
            .map_to_classes(&names(&["3", "5"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("sub: classes \"0\", \"1\", \"2\", \"4\", ")
                && e.ends_with("; the other names take every one of the model's classes, leaving none for them"),
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
