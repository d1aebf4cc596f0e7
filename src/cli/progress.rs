//! Driving a [`Run`] on the terminal, for `cnn train` and `cnn sweep`: the notes before it,
//! a progress bar and one plain line per epoch while it trains (with `--monitor`, the
//! layers' health), the result after it, and Ctrl-C or SIGTERM.
//!
//! Ctrl-C (SIGINT) or SIGTERM (sent by `timeout`, `docker stop`, Slurm, systemd) sets a flag;
//! the observer then stops the run after the step in progress, the run writes its
//! checkpoint, and the command says so in one line naming the signal and exits with 128 +
//! the signal's number, as shells expect: 130 for Ctrl-C, 143 for SIGTERM.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

use cnn::model::Model;
use cnn::run::{HeldOut, Outcome, Run, RunEvent};
use cnn::train::{Control, EpochMetrics};
use indicatif::{ProgressBar, ProgressStyle};

use super::Failure;

/// SIGINT's number (Ctrl-C), the same on every Unix; exit code 128 + it.
const SIGINT: i32 = 2;
/// SIGTERM's number, the same on every Unix; exit code 128 + it.
pub const SIGTERM: i32 = 15;

/// The first stop signal received while training: 0 for none, else [`SIGINT`] or
/// [`SIGTERM`]. Set by the handlers; an atomic store is all a signal handler may do.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

fn received(signal: i32) {
    let _ = STOP_SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
}

fn stop_signal() -> i32 {
    STOP_SIGNAL.load(Ordering::SeqCst)
}

/// Installs the Ctrl-C and SIGTERM handlers once per process (a sweep trains several runs).
/// Without them either signal ends the process at once, as before training: acceptable.
fn catch_stop_signals() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(|| received(SIGINT));
        #[cfg(unix)]
        catch_sigterm();
    });
}

/// SIGTERM sets [`STOP_SIGNAL`] (the `ctrlc` crate, without its `termination` feature,
/// handles SIGINT alone, and with it could not tell the two apart).
#[cfg(unix)]
fn catch_sigterm() {
    extern "C" fn on_sigterm(_: libc::c_int) {
        received(SIGTERM);
    }
    // SAFETY: a zeroed sigaction is a valid value to fill in; the handler only does an
    // atomic compare-exchange, which is async-signal-safe; SA_RESTART resumes system calls
    // (reads, writes) the signal interrupts instead of failing them.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
    }
}

/// Prints the notes of `run`, trains it with a progress bar and the epoch lines, and prints
/// how it ended. A stop by Ctrl-C is [`Failure::Interrupted`], by SIGTERM
/// [`Failure::Terminated`]; a diverged run is an
/// [`Outcome`] (a sweep goes on after it).
pub fn drive(
    run: &mut Run,
    monitor: bool,
    stop_after_steps: Option<u64>,
) -> Result<Outcome, Failure> {
    eprintln!("{}", run.data_note());
    if let Some((epoch, step)) = run.resumed_at() {
        eprintln!(
            "resuming {} at epoch {epoch}, step {step}",
            run.dir().display()
        );
    }
    for change in run.changes() {
        eprintln!("resume: {change}");
    }
    for note in run.notes() {
        eprintln!("resume: {note}");
    }
    eprintln!("run folder: {}", run.dir().display());
    catch_stop_signals();

    let epochs = run.config().epochs;
    let batch = run.config().batch_size;
    let held_out = HeldOut::of_run(run.config().val_split).name();
    let steps = run.steps_per_epoch() as u64;
    let bar = ProgressBar::new(steps);
    bar.set_style(bar_style(epochs, steps));
    // The epoch the bar shows, the step it started at (a resumed run starts mid-epoch) and
    // when, for its rate in images per second.
    let mut shown: Option<(usize, usize, std::time::Instant)> = None;
    let mut total = 0;
    let should_stop =
        |total: u64| stop_after_steps.is_some_and(|s| total >= s) || stop_signal() != 0;
    // The monitor's lines, read right after each epoch's last step (the evaluation after it
    // leaves other layer outputs), from a model that keeps every output.
    let mut health = String::new();
    run.set_keep_outputs(monitor);
    let result = run.train(&mut |event| match event {
        RunEvent::Step {
            epoch,
            step,
            steps: of,
            total: t,
            loss,
            model,
        } => {
            total = t;
            if monitor && step == of {
                health = monitor_lines(model);
            }
            if step == 1 || shown.is_none_or(|(e, _, _)| e != epoch) {
                bar.reset();
                bar.set_prefix(format!("{epoch}/{epochs}"));
                shown = Some((epoch, step, std::time::Instant::now()));
            }
            let (_, first, since) = shown.expect("set above");
            let images = ((step + 1 - first) * batch) as f64;
            bar.set_position(step as u64);
            bar.set_message(bar_message(loss, images / since.elapsed().as_secs_f64()));
            stop_or_continue(should_stop(total))
        }
        RunEvent::Epoch { metrics, .. } => {
            bar.finish_and_clear();
            println!("{}", epoch_line(metrics, epochs, held_out));
            print!("{}", std::mem::take(&mut health));
            stop_or_continue(should_stop(total))
        }
    });
    bar.finish_and_clear();
    let outcome = result?;
    if let Some((epoch, step)) = outcome.stopped {
        let how = format!(
            "at epoch {epoch}, step {step}; checkpoint saved: continue with `cnn train \
             --resume {}`",
            run.dir().display()
        );
        match stop_signal() {
            SIGINT => return Err(Failure::Interrupted(format!("interrupted (Ctrl-C) {how}"))),
            SIGTERM => return Err(Failure::Terminated(format!("terminated (SIGTERM) {how}"))),
            _ => {}
        }
        eprintln!("stopped {how}");
    } else if outcome.diverged.is_none() {
        if let Some(es) = &outcome.early_stopped {
            println!("{es}");
        }
        // The validation split's figures, then the test set's (with both, the test set is
        // evaluated only here, once).
        for (name, result) in [("validation", outcome.validation), ("test", outcome.test)] {
            if let Some(t) = result {
                let views = match t.views {
                    1 => String::new(),
                    v => format!(", {v} views of each"),
                };
                println!(
                    "{name} accuracy {:.2}% ({} of {}{views}), {name} loss {:.4}",
                    t.accuracy * 100.0,
                    (t.accuracy * t.images as f64).round() as usize,
                    t.images,
                    t.loss
                );
            }
        }
        println!(
            "trained {} in {:.2}s; model saved to {}",
            cnn::text::count(outcome.history.len(), "epoch"),
            outcome.seconds(),
            run.model_path().display()
        );
    }
    Ok(outcome)
}

/// [`drive`] for a process of an MPI job other than rank 0 (`cli::mpi`): the same run,
/// silent. A stop or a divergence, which rank 0 reports, is its exit code alone
/// ([`Failure::Silent`]).
pub fn drive_quietly(run: &mut Run, stop_after_steps: Option<u64>) -> Result<Outcome, Failure> {
    catch_stop_signals();
    let should_stop =
        |total: u64| stop_after_steps.is_some_and(|s| total >= s) || stop_signal() != 0;
    let mut total = 0;
    let outcome = run.train(&mut |event| {
        if let RunEvent::Step { total: t, .. } = event {
            total = t;
        }
        stop_or_continue(should_stop(total))
    })?;
    if outcome.stopped.is_some() && stop_signal() != 0 {
        return Err(Failure::Silent(128 + stop_signal()));
    }
    if outcome.diverged.is_some() {
        return Err(Failure::Silent(super::EXIT_DIVERGED));
    }
    Ok(outcome)
}

/// Columns the progress bar's line stays within.
const BAR_LINE: usize = 80;

/// The progress bar of a run of `epochs` epochs of `steps` steps each:
/// `epoch 3/10 [=====>    ] 120/1875 loss 0.4123, 8,080 img/s (12s left)`, its bar as wide
/// as leaves the line within [`BAR_LINE`] columns when every field is at its widest (at least
/// 10, at most 30).
fn bar_style(epochs: usize, steps: u64) -> ProgressStyle {
    let digits = |n: u64| n.to_string().len();
    let prefix = 2 * digits(epochs as u64) + 1;
    let count = 2 * digits(steps) + 1;
    // "epoch " P " [" BAR "] " C " " MSG " (" ETA " left)"; the message is at most
    // `loss 99.9999, 999,999 img/s`, the time left `59m`.
    let others = 6 + prefix + 2 + 2 + count + 1 + MESSAGE_WIDTH + 2 + 3 + 6;
    let width = (BAR_LINE - 1).saturating_sub(others).clamp(10, 30);
    ProgressStyle::with_template(&format!(
        "epoch {{prefix}} [{{bar:{width}}}] {{pos}}/{{len}} {{msg}} ({{eta}} left)"
    ))
    .expect("a valid template")
    .progress_chars("=> ")
}

/// The widest message [`bar_message`] writes in a run that trains (a loss below 100, under
/// a million images per second).
const MESSAGE_WIDTH: usize = "loss 99.9999, 999,999 img/s".len();

/// `loss 0.4123, 8,080 img/s`: the last step's loss and the epoch's rate so far.
fn bar_message(loss: f32, images_per_second: f64) -> String {
    let rate = if images_per_second.is_finite() {
        cnn::text::thousands(images_per_second.round().max(0.0) as u128)
    } else {
        "-".into()
    };
    format!("loss {loss:.4}, {rate} img/s")
}

fn stop_or_continue(stop: bool) -> Control {
    if stop {
        Control::Stop
    } else {
        Control::Continue
    }
}

/// One epoch's line; `held_out` names the held-out set ("test" or "validation").
fn epoch_line(m: &EpochMetrics, epochs: usize, held_out: &str) -> String {
    let h = if held_out == "validation" {
        "val"
    } else {
        held_out
    };
    let test = match (m.val_loss, m.val_accuracy) {
        (Some(l), Some(a)) => format!("  {h} loss {l:.4}  {h} acc {:6.2}%", a * 100.0),
        _ => String::new(),
    };
    format!(
        "epoch {:>3}/{epochs}  loss {:.4}  acc {:6.2}%{test}  {:.2}s  {:.0} img/s",
        m.epoch,
        m.loss,
        m.accuracy * 100.0,
        m.seconds,
        m.images_per_second
    )
}

/// The `--monitor` lines of the model's last step: one per layer with parameters or a ReLU.
fn monitor_lines(model: &Model) -> String {
    let mut s = String::new();
    for h in cnn::monitor::layer_health(model) {
        if h.grad_norms.is_empty() && h.dead_relu.is_none() {
            continue;
        }
        s += &format!("  layer {} {:<9}", h.index, h.name);
        for (name, norm) in &h.grad_norms {
            let short = name.rsplit('.').next().unwrap_or(name);
            s += &format!("  |grad {short}| {norm:.3e}");
        }
        if let Some(d) = h.dead_relu {
            s += &format!("  dead ReLU {:.1}%", d * 100.0);
        }
        s += "\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::{ProgressDrawTarget, TermLike};
    use std::sync::{Arc, Mutex};

    /// A terminal 120 columns wide that keeps what is written to it.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<Vec<String>>>);

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            if !s.is_empty() {
                self.0.lock().unwrap().push(s.to_string());
            }
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_bar_shows_a_whole_rate_in_images_per_second_within_80_columns() {
        assert_eq!(bar_message(0.41234, 8080.4395), "loss 0.4123, 8,080 img/s");
        assert_eq!(bar_message(2.5, f64::INFINITY), "loss 2.5000, - img/s");
        // Fashion-MNIST at batch 32 (1,875 steps) for 10 and for 100 epochs, the demo set,
        // and batch 1 over 60,000 images: each at its widest.
        for (epochs, steps) in [(10, 1875), (100, 1875), (10, 63), (1000, 60_000)] {
            let screen = Screen::default();
            let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::hidden());
            bar.set_style(bar_style(epochs, steps));
            bar.set_prefix(format!("{epochs}/{epochs}"));
            bar.set_message(bar_message(99.9999, 999_999.4));
            bar.set_position(steps / 2);
            // Drawn once everything is set (drawing is rate-limited).
            bar.set_draw_target(ProgressDrawTarget::term_like(Box::new(screen.clone())));
            bar.tick();
            let written = screen.0.lock().unwrap().clone();
            let line = written
                .iter()
                .find(|l| l.starts_with("epoch "))
                .unwrap_or_else(|| panic!("nothing drawn: {written:?}"));
            assert!(
                line.chars().count() <= BAR_LINE,
                "{} columns: {line}",
                line.chars().count()
            );
            assert!(line.contains(", 999,999 img/s ("), "{line}");
        }
    }
}
