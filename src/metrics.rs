//! Classification metrics: the confusion matrix and what is derived from it.
//!
//! Rows of the matrix are the true classes, columns the predicted ones. For class `c`:
//!
//! * `TP` (true positives) = `M[c][c]`,
//! * `FP` (false positives) = sum of column `c` minus `TP` (predicted `c`, was something else),
//! * `FN` (false negatives) = sum of row `c` minus `TP` (was `c`, predicted something else),
//! * `support` = sum of row `c` = `TP + FN`.
//!
//! A ratio whose denominator is zero is reported as `0`, like scikit-learn's
//! `zero_division=0`.

use serde::Serialize;

/// A confusion matrix over named classes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfusionMatrix {
    /// The class names, in index order.
    pub classes: Vec<String>,
    /// `n * n` counts, row-major: `counts[truth * n + predicted]`.
    pub counts: Vec<u64>,
}

/// Precision, recall, F1 score and support of one class (or an average over classes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// `TP / (TP + FP)`: of the samples predicted as this class, the fraction that were.
    pub precision: f64,
    /// `TP / (TP + FN)`: of the samples of this class, the fraction found.
    pub recall: f64,
    /// `2 * precision * recall / (precision + recall)`, their harmonic mean.
    pub f1: f64,
    /// Number of samples whose true class is this one (for averages: all samples).
    pub support: u64,
}

/// `num / den`, or 0 when `den` is 0.
fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

impl ConfusionMatrix {
    /// An all-zero matrix over `classes`.
    pub fn new(classes: Vec<String>) -> Self {
        let n = classes.len();
        ConfusionMatrix {
            classes,
            counts: vec![0; n * n],
        }
    }

    /// Number of classes.
    pub fn n(&self) -> usize {
        self.classes.len()
    }

    /// Counts one sample of true class `truth` predicted as `predicted`.
    ///
    /// # Panics
    /// If either index is not below the number of classes (like slice indexing).
    pub fn add(&mut self, truth: usize, predicted: usize) {
        let n = self.n();
        assert!(
            truth < n && predicted < n,
            "ConfusionMatrix::add({truth}, {predicted}) with {n} classes"
        );
        self.counts[truth * n + predicted] += 1;
    }

    /// The number of samples of true class `truth` predicted as `predicted`.
    ///
    /// # Panics
    /// If either index is not below the number of classes.
    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        let n = self.n();
        assert!(
            truth < n && predicted < n,
            "ConfusionMatrix::get({truth}, {predicted}) with {n} classes"
        );
        self.counts[truth * n + predicted]
    }

    /// Sum of row `truth`: how many samples have that true class.
    pub fn row_sum(&self, truth: usize) -> u64 {
        let n = self.n();
        self.counts[truth * n..(truth + 1) * n].iter().sum()
    }

    /// Sum of column `predicted`: how many samples were predicted as that class.
    pub fn col_sum(&self, predicted: usize) -> u64 {
        let n = self.n();
        (0..n).map(|t| self.counts[t * n + predicted]).sum()
    }

    /// Total number of samples counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Number of correctly classified samples (the trace).
    pub fn correct(&self) -> u64 {
        (0..self.n()).map(|c| self.get(c, c)).sum()
    }

    /// `correct / total`, 0 for an empty matrix.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct() as f64, self.total() as f64)
    }

    /// Precision, recall, F1 and support of every class, in class order.
    ///
    /// See [`ClassMetrics`] for the formulas; undefined ratios are 0.
    pub fn per_class(&self) -> Vec<ClassMetrics> {
        (0..self.n())
            .map(|c| {
                let tp = self.get(c, c) as f64;
                let predicted = self.col_sum(c) as f64; // TP + FP
                let support = self.row_sum(c); // TP + FN
                let precision = ratio(tp, predicted);
                let recall = ratio(tp, support as f64);
                let f1 = ratio(2.0 * precision * recall, precision + recall);
                ClassMetrics {
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect()
    }

    /// The classes that occur: those with samples or predictions (scikit-learn's
    /// `unique_labels(y_true, y_pred)`), in class order.
    pub fn occurring(&self) -> Vec<usize> {
        (0..self.n())
            .filter(|&c| self.row_sum(c) + self.col_sum(c) > 0)
            .collect()
    }

    /// Unweighted mean of the per-class precision, recall and F1 over the classes that occur
    /// ([`occurring`](Self::occurring)), as scikit-learn does; `support` is the total. A class
    /// that is neither in the data nor predicted (a model evaluated on a subset of its
    /// classes) has no precision or recall to speak of, and counting it as 0 would drag the
    /// average down. A class that occurs but is never predicted correctly counts as 0. All zero
    /// when nothing occurs.
    pub fn macro_avg(&self) -> ClassMetrics {
        let all = self.per_class();
        let per: Vec<&ClassMetrics> = self.occurring().into_iter().map(|c| &all[c]).collect();
        let k = per.len() as f64;
        ClassMetrics {
            precision: ratio(per.iter().map(|m| m.precision).sum(), k),
            recall: ratio(per.iter().map(|m| m.recall).sum(), k),
            f1: ratio(per.iter().map(|m| m.f1).sum(), k),
            support: self.total(),
        }
    }

    /// Mean of the per-class precision, recall and F1 weighted by each class's support;
    /// `support` is the total. All zero for an empty matrix. (Weighted recall equals accuracy.)
    pub fn weighted_avg(&self) -> ClassMetrics {
        let per = self.per_class();
        let total = self.total() as f64;
        let weighted = |f: fn(&ClassMetrics) -> f64| {
            ratio(
                per.iter().map(|m| f(m) * m.support as f64).sum::<f64>(),
                total,
            )
        };
        ClassMetrics {
            precision: weighted(|m| m.precision),
            recall: weighted(|m| m.recall),
            f1: weighted(|m| m.f1),
            support: self.total(),
        }
    }

    /// The `k` largest non-zero off-diagonal cells as `(truth, predicted, count)`, largest count
    /// first; equal counts are ordered by `truth`, then `predicted`.
    pub fn most_confused(&self, k: usize) -> Vec<(usize, usize, u64)> {
        let n = self.n();
        let mut cells: Vec<(usize, usize, u64)> = (0..n)
            .flat_map(|t| (0..n).map(move |p| (t, p)))
            .filter(|&(t, p)| t != p)
            .map(|(t, p)| (t, p, self.get(t, p)))
            .filter(|&(_, _, c)| c > 0)
            .collect();
        cells.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        cells.truncate(k);
        cells
    }

    /// The matrix as an aligned text table: one row per true class, one column per predicted
    /// class, headed by the class names.
    ///
    /// ```text
    /// true \ pred  cat  dog
    ///         cat    3    1
    ///         dog    1    2
    /// ```
    pub fn render_table(&self) -> String {
        let n = self.n();
        let corner = "true \\ pred";
        let label_w = self
            .classes
            .iter()
            .map(|c| c.chars().count())
            .chain([corner.len()])
            .max()
            .unwrap_or(0);
        let col_w: Vec<usize> = (0..n)
            .map(|p| {
                let widest_count = (0..n)
                    .map(|t| self.get(t, p).to_string().len())
                    .max()
                    .unwrap_or(1);
                widest_count.max(self.classes[p].chars().count())
            })
            .collect();
        let mut out = format!("{corner:>label_w$}");
        for (p, w) in col_w.iter().enumerate() {
            out += &format!("  {:>w$}", self.classes[p]);
        }
        out.push('\n');
        for t in 0..n {
            out += &format!("{:>label_w$}", self.classes[t]);
            for (p, w) in col_w.iter().enumerate() {
                out += &format!("  {:>w$}", self.get(t, p));
            }
            out.push('\n');
        }
        out
    }

    /// A report in the layout of scikit-learn's `classification_report` (two decimals):
    /// precision, recall, F1 and support per class that occurs (as scikit-learn lists them),
    /// then accuracy, macro and weighted averages.
    pub fn render_report(&self) -> String {
        let width = self
            .classes
            .iter()
            .map(|c| c.chars().count())
            .chain(["weighted avg".len()])
            .max()
            .unwrap_or(0);
        let row = |name: &str, m: &ClassMetrics| {
            format!(
                "{name:>width$}  {:>9.2} {:>9.2} {:>9.2} {:>9}\n",
                m.precision, m.recall, m.f1, m.support
            )
        };
        let mut out = format!(
            "{:>width$}  {:>9} {:>9} {:>9} {:>9}\n\n",
            "", "precision", "recall", "f1-score", "support"
        );
        let per = self.per_class();
        for c in self.occurring() {
            out += &row(&self.classes[c], &per[c]);
        }
        out.push('\n');
        out += &format!(
            "{:>width$}  {:>9} {:>9} {:>9.2} {:>9}\n",
            "accuracy",
            "",
            "",
            self.accuracy(),
            self.total()
        );
        out += &row("macro avg", &self.macro_avg());
        out += &row("weighted avg", &self.weighted_avg());
        out
    }

    /// The matrix as CSV: a header row `true\predicted,<class names...>`, then one row per true
    /// class starting with its name. Fields with commas, quotes or line breaks are quoted.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("true\\predicted");
        for c in &self.classes {
            out.push(',');
            out += &csv_field(c);
        }
        out.push('\n');
        for (t, name) in self.classes.iter().enumerate() {
            out += &csv_field(name);
            for p in 0..self.n() {
                out += &format!(",{}", self.get(t, p));
            }
            out.push('\n');
        }
        out
    }
}

/// Quotes a CSV field when needed (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Rows true, columns predicted, classes cat, dog, bird:
    ///
    /// ```text
    ///        cat dog bird | support
    /// cat     3   1   0   |  4
    /// dog     1   2   0   |  3
    /// bird    2   1   0   |  3      (bird is never predicted)
    /// col     6   4   0   | 10
    /// ```
    fn example() -> ConfusionMatrix {
        let mut cm = ConfusionMatrix::new(vec!["cat".into(), "dog".into(), "bird".into()]);
        for (t, p, k) in [
            (0, 0, 3),
            (0, 1, 1),
            (1, 0, 1),
            (1, 1, 2),
            (2, 0, 2),
            (2, 1, 1),
        ] {
            for _ in 0..k {
                cm.add(t, p);
            }
        }
        cm
    }

    #[test]
    fn counts_and_accuracy() {
        let cm = example();
        assert_eq!(cm.get(2, 0), 2);
        assert_eq!(cm.get(0, 2), 0);
        assert_eq!(cm.total(), 10);
        // Trace 3 + 2 + 0 = 5 of 10.
        assert!(close(cm.accuracy(), 0.5));
    }

    #[test]
    fn per_class_by_hand() {
        let per = example().per_class();
        // cat: TP 3, column sum 6, row sum 4 -> P 3/6, R 3/4, F1 2*.5*.75/1.25 = 0.6.
        assert!(close(per[0].precision, 0.5));
        assert!(close(per[0].recall, 0.75));
        assert!(close(per[0].f1, 0.6));
        assert_eq!(per[0].support, 4);
        // dog: TP 2, column 4, row 3 -> P 1/2, R 2/3, F1 (2/3)/(7/6) = 4/7.
        assert!(close(per[1].precision, 0.5));
        assert!(close(per[1].recall, 2.0 / 3.0));
        assert!(close(per[1].f1, 4.0 / 7.0));
        assert_eq!(per[1].support, 3);
        // bird: never predicted -> P 0/0 = 0 (zero_division=0), R 0/3, F1 0.
        assert_eq!(
            per[2],
            ClassMetrics {
                precision: 0.0,
                recall: 0.0,
                f1: 0.0,
                support: 3
            }
        );
    }

    #[test]
    fn averages_by_hand() {
        let cm = example();
        let m = cm.macro_avg();
        // (0.5 + 0.5 + 0) / 3; (3/4 + 2/3 + 0) / 3 = 17/36; (0.6 + 4/7 + 0) / 3 = 41/105.
        assert!(close(m.precision, 1.0 / 3.0));
        assert!(close(m.recall, 17.0 / 36.0));
        assert!(close(m.f1, 41.0 / 105.0));
        assert_eq!(m.support, 10);
        let w = cm.weighted_avg();
        // (4*0.5 + 3*0.5 + 3*0) / 10 = 0.35; (4*3/4 + 3*2/3) / 10 = 0.5 = accuracy;
        // (4*0.6 + 3*4/7) / 10 = 72/175.
        assert!(close(w.precision, 0.35));
        assert!(close(w.recall, cm.accuracy()));
        assert!(close(w.f1, 72.0 / 175.0));
        assert_eq!(w.support, 10);
    }

    #[test]
    fn classes_that_never_occur_are_left_out_of_the_macro_average_and_the_report() {
        // The example with two more classes that are neither true nor predicted, and one
        // ("fish") that is predicted once but never true.
        let mut cm = ConfusionMatrix::new(
            ["cat", "dog", "bird", "cow", "fish", "ant"]
                .map(String::from)
                .to_vec(),
        );
        for t in 0..3 {
            for p in 0..3 {
                for _ in 0..example().get(t, p) {
                    cm.add(t, p);
                }
            }
        }
        cm.add(0, 4);
        assert_eq!(cm.occurring(), [0, 1, 2, 4]);
        // cat now: TP 3, column 6, row 5 -> P 1/2, R 3/5, F1 2*.5*.6/1.1 = 6/11. fish: 0.
        let m = cm.macro_avg();
        assert!(close(m.precision, (0.5 + 0.5 + 0.0 + 0.0) / 4.0));
        assert!(close(m.recall, (0.6 + 2.0 / 3.0) / 4.0));
        assert!(close(m.f1, (6.0 / 11.0 + 4.0 / 7.0) / 4.0));
        let report = cm.render_report();
        assert!(report.contains("        fish  "), "{report}");
        assert!(
            !report.contains("cow") && !report.contains("ant"),
            "{report}"
        );
    }

    #[test]
    fn most_confused_orders_by_count_then_index() {
        let cm = example();
        assert_eq!(
            cm.most_confused(10),
            vec![(2, 0, 2), (0, 1, 1), (1, 0, 1), (2, 1, 1)]
        );
        assert_eq!(cm.most_confused(1), vec![(2, 0, 2)]);
        assert!(cm.most_confused(0).is_empty());
    }

    #[test]
    fn empty_matrix_is_all_zero() {
        let cm = ConfusionMatrix::new(vec!["a".into(), "b".into()]);
        assert_eq!(cm.total(), 0);
        assert_eq!(cm.accuracy(), 0.0);
        for m in cm
            .per_class()
            .into_iter()
            .chain([cm.macro_avg(), cm.weighted_avg()])
        {
            assert_eq!(
                m,
                ClassMetrics {
                    precision: 0.0,
                    recall: 0.0,
                    f1: 0.0,
                    support: 0
                }
            );
        }
        assert!(cm.most_confused(3).is_empty());
        // No classes at all: nothing to divide by, still no NaN.
        let none = ConfusionMatrix::new(vec![]);
        assert_eq!(none.macro_avg().f1, 0.0);
        assert_eq!(none.accuracy(), 0.0);
        assert_eq!(none.to_csv(), "true\\predicted\n");
    }

    #[test]
    #[should_panic(expected = "with 3 classes")]
    fn add_out_of_range_panics() {
        example().add(3, 0);
    }

    #[test]
    fn table_is_aligned() {
        let table = example().render_table();
        let expected = "\
true \\ pred  cat  dog  bird
        cat    3    1     0
        dog    1    2     0
       bird    2    1     0
";
        assert_eq!(table, expected);
    }

    #[test]
    fn report_matches_sklearn_layout() {
        let report = example().render_report();
        // Same numbers as the tests above, rounded to two decimals; the layout was produced by
        // sklearn's classification_report format strings (Python) fed these numbers.
        let expected = "              precision    recall  f1-score   support

         cat       0.50      0.75      0.60         4
         dog       0.50      0.67      0.57         3
        bird       0.00      0.00      0.00         3

    accuracy                           0.50        10
   macro avg       0.33      0.47      0.39        10
weighted avg       0.35      0.50      0.41        10
";
        assert_eq!(report, expected, "\n{report}");
    }

    #[test]
    fn csv_has_header_and_quotes() {
        let mut cm = ConfusionMatrix::new(vec!["a,b".into(), "c".into()]);
        cm.add(0, 1);
        assert_eq!(
            cm.to_csv(),
            "true\\predicted,\"a,b\",c\n\"a,b\",0,1\nc,0,0\n"
        );
    }

    #[test]
    fn serializes_to_json() {
        let json = serde_json::to_string(&example().macro_avg()).expect("plain struct");
        assert!(json.contains("\"precision\""));
        assert!(json.contains("\"support\":10"));
    }
}
