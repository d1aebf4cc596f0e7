//! The training options of `cnn train` and `cnn sweep`: the run options as flags, made from
//! the option table ([`cnn::run::OPTIONS`]) with clap's builder API ([`RunFlags`]), and the
//! few options only the command line has ([`CliOptions`]).
//!
//! A flag's value is read by [`RunOptions::set`], as a config line's is; its range is checked
//! with the others' by [`cnn::run::RunConfig::validate`], after the config file's `Train` and
//! `Augment` lines are merged in (flag > config line > default).

use std::ffi::OsString;
use std::fmt::Display;

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::error::ErrorKind;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use cnn::run::table::{Kind, Spec};
use cnn::run::{RunOptions, OPTIONS};

/// `what [default: value]`.
pub fn with_default(what: &str, value: impl Display) -> String {
    format!("{what} [default: {value}]")
}

/// The options `cnn sweep` gives as comma-separated lists of its own.
pub const SWEPT: &[&str] = &["epochs", "lr"];

/// Every run option that has a flag, as flags; with `SWEEP`, all but [`SWEPT`].
#[derive(Debug, Clone, Default)]
pub struct RunFlags<const SWEEP: bool> {
    /// The options given.
    pub given: RunOptions,
}

impl<const SWEEP: bool> RunFlags<SWEEP> {
    /// The options these flags are.
    fn specs() -> impl Iterator<Item = &'static Spec> {
        OPTIONS
            .iter()
            .filter(|s| !s.flag.is_empty())
            .filter(|s| !(SWEEP && SWEPT.contains(&s.name)))
    }
}

/// The flag of `spec`, its help showing the default.
fn flag(spec: &'static Spec) -> Arg {
    // As clap's derive does, a help without a default loses its final full stop.
    let help = match spec.default_text() {
        Some(default) => with_default(spec.help, default),
        None => spec.help.trim_end_matches('.').to_string(),
    };
    let arg = Arg::new(spec.name).long(spec.flag).help(help);
    let value_name = spec.name.to_uppercase();
    match spec.kind {
        Kind::Switch => arg.action(ArgAction::SetTrue),
        Kind::Path => arg
            .value_name(value_name)
            .value_parser(clap::value_parser!(OsString)),
        Kind::Choice(choices) => {
            let values = choices.iter().map(|(name, help)| {
                PossibleValue::new(*name).help(help.trim().trim_end_matches('.'))
            });
            arg.value_name(value_name)
                .value_parser(PossibleValuesParser::new(values))
        }
        // A leading minus is allowed, so that `--lr -1` is refused as "must be positive"
        // (exit code 2) rather than taken for an option.
        Kind::Number | Kind::Integer => arg
            .value_name(value_name)
            .allow_negative_numbers(true)
            .value_parser(move |text: &str| {
                RunOptions::default()
                    .set(spec.name, text)
                    .map(|()| text.to_string())
            }),
    }
}

impl<const SWEEP: bool> Args for RunFlags<SWEEP> {
    fn augment_args(cmd: Command) -> Command {
        cmd.args(Self::specs().map(flag))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl<const SWEEP: bool> FromArgMatches for RunFlags<SWEEP> {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = RunFlags::default();
        flags.update_from_arg_matches(m)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for spec in Self::specs() {
            let set = match spec.kind {
                Kind::Switch if m.get_flag(spec.name) => self.given.set(spec.name, "true"),
                Kind::Switch => continue,
                Kind::Path => match m.get_one::<OsString>(spec.name) {
                    Some(path) => self.given.set_os(spec.name, path),
                    None => continue,
                },
                _ => match m.get_one::<String>(spec.name) {
                    Some(text) => self.given.set(spec.name, text),
                    None => continue,
                },
            };
            set.map_err(|e| clap::Error::raw(ErrorKind::ValueValidation, e))?;
        }
        Ok(())
    }
}

/// What only the command line has.
#[derive(Debug, Clone, Args)]
pub struct CliOptions {
    /// Worker threads [default: all cores; at most 4 per core]. Results are bit-identical
    /// for any count.
    #[arg(long, allow_negative_numbers = true, value_parser = super::arg_values::thread_count)]
    pub threads: Option<usize>,
    /// After each epoch, print each parameter tensor's gradient L2 norm (of the epoch's last
    /// step) and each ReLU layer's share of dead units (0 for every image of the last batch).
    #[arg(long)]
    pub monitor: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<const SWEEP: bool>(args: &[&str]) -> Result<RunOptions, clap::Error> {
        let cmd = RunFlags::<SWEEP>::augment_args(Command::new("t"));
        let m = cmd.try_get_matches_from(std::iter::once("t").chain(args.iter().copied()))?;
        Ok(RunFlags::<SWEEP>::from_arg_matches(&m)?.given)
    }

    #[test]
    fn every_option_with_a_flag_is_a_flag_and_reads_as_set_does() {
        let o = parse::<false>(&[
            "--lr",
            "0.05",
            "--optimizer",
            "adamw",
            "--normalize",
            "--data",
            "d",
        ])
        .unwrap();
        let mut want = RunOptions::default();
        for (name, text) in [
            ("lr", "0.05"),
            ("optimizer", "adamw"),
            ("normalize", "true"),
            ("data", "d"),
        ] {
            want.set(name, text).unwrap();
        }
        assert_eq!(o, want);
        let cmd = RunFlags::<false>::augment_args(Command::new("t"));
        let flags: Vec<&str> = cmd.get_arguments().filter_map(|a| a.get_long()).collect();
        let want: Vec<&str> = OPTIONS
            .iter()
            .map(|s| s.flag)
            .filter(|f| !f.is_empty())
            .collect();
        assert_eq!(flags, want);
    }

    #[test]
    fn sweep_flags_leave_out_its_lists_and_bad_values_are_clap_errors() {
        let err = parse::<true>(&["--lr", "0.1"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnknownArgument);
        let err = parse::<false>(&["--batch-size", "two"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert!(
            err.to_string()
                .contains("expected a whole number, got `two`"),
            "{err}"
        );
        let err = parse::<false>(&["--schedule", "cosin"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        // Ranges are the library's to check, with the config file's values merged in.
        assert_eq!(parse::<false>(&["--lr", "-1"]).unwrap().lr, Some(-1.0));
    }
}
