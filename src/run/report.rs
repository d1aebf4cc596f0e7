//! `report.md`: a run's or a sweep's summary, figures and tables in one Markdown file, to
//! read on screen or hand in.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::ParsedConfig;
use crate::error::Error;
use crate::io::write_atomic;

use super::plots::HeldOut;
use super::Outcome;

/// Formats an optional number, or a dash.
fn opt(v: Option<f64>, scale: f64, digits: usize) -> String {
    v.map(|x| format!("{:.*}", digits, x * scale))
        .unwrap_or_else(|| "-".into())
}

/// The per-epoch metrics as a Markdown table; the held-out columns are named for `held_out`.
pub fn metrics_table(history: &[crate::train::EpochMetrics], held_out: HeldOut) -> String {
    let h = held_out.name();
    let mut s = format!(
        "| epoch | loss | accuracy (%) | {h} loss | {h} accuracy (%) | seconds | images/s |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for m in history {
        let _ = writeln!(
            s,
            "| {} | {:.4} | {:.2} | {} | {} | {:.2} | {:.0} |",
            m.epoch,
            m.loss,
            m.accuracy * 100.0,
            opt(m.val_loss, 1.0, 4),
            opt(m.val_accuracy, 100.0, 2),
            m.seconds,
            m.images_per_second
        );
    }
    s
}

/// `word` with its first letter in upper case.
fn capitalised(word: &str) -> String {
    let mut c = word.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Writes `report.md` into a run folder; `held_out` names the set the run evaluates on.
pub fn write_run_report(
    dir: &Path,
    held_out: HeldOut,
    parsed: &ParsedConfig,
    outcome: &Outcome,
    data_note: &str,
) -> Result<(), Error> {
    let mut s = String::from("# Training run\n\n");
    let _ = writeln!(s, "{data_note}.\n");
    let secs: f64 = outcome
        .history
        .iter()
        .map(|m| m.seconds)
        .fold(0.0, |a, b| a + b);
    let per_epoch = match held_out {
        HeldOut::Test => outcome.test,
        HeldOut::Validation => outcome.validation,
    };
    match (&outcome.diverged, per_epoch) {
        (Some(msg), _) => {
            let _ = writeln!(s, "**Diverged.** {msg}\n");
        }
        (None, Some(test)) => {
            let views = match test.views {
                1 => String::new(),
                v => format!(" (the average of {v} views of each image)"),
            };
            let _ = writeln!(
                s,
                "**{} accuracy {:.2}%**{views}, {} loss {:.4}, after {} in {secs:.2} s of \
                 training.\n",
                capitalised(held_out.name()),
                test.accuracy * 100.0,
                held_out.name(),
                test.loss,
                crate::text::count(outcome.history.len(), "epoch")
            );
            // With a validation split, a test set is evaluated once, after training.
            if let (HeldOut::Validation, Some(t)) = (held_out, outcome.test) {
                let _ = writeln!(
                    s,
                    "**Test accuracy {:.2}%**, test loss {:.4}, on the test set's {} images, \
                     evaluated once, after training.\n",
                    t.accuracy * 100.0,
                    t.loss,
                    t.images
                );
            }
        }
        (None, None) => {
            let _ = writeln!(
                s,
                "{} in {secs:.2} s of training (no test or validation set).\n",
                capitalised(&crate::text::count(outcome.history.len(), "epoch"))
            );
        }
    }
    if let Some(es) = &outcome.early_stopped {
        let _ = writeln!(s, "**Early stopping:** {es}.\n");
    }
    s += "## Network\n\n```text\n";
    s += &parsed.text;
    s += "```\n\n```text\n";
    s += &crate::summary::render(&parsed.spec, false)?;
    s += "```\n\n## Loss and accuracy\n\n![loss](loss.png)\n\n![accuracy](accuracy.png)\n\n";
    s += "## Per epoch\n\n";
    s += &metrics_table(&outcome.history, held_out);
    write_atomic(&dir.join("report.md"), s.as_bytes())
}
