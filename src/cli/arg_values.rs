//! Value parsers for numeric options, so that a bad number is a usage error (exit 2) said in
//! words, found while the arguments are parsed, before the command does anything.
//!
//! The options using them also allow a leading `-` (`allow_negative_numbers`), so `--top -1`
//! reaches the parser and is refused as "must be positive" instead of clap taking `-1` for an
//! option and suggesting `-- -1`.

/// A whole number of at least 1: a count (`--top`, `--runs`, a batch size).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    if is_negative(s) {
        return Err("must be positive".into());
    }
    match whole_number(s)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// Worker threads allowed per core: `--threads` above this many per core is refused, as
/// they only take turns on the cores (500 threads on 2 cores made a 0.2 s epoch take 13.7 s).
pub const THREADS_PER_CORE: usize = 4;

/// `--threads` of every command that has it: at least 1 and at most [`THREADS_PER_CORE`] per
/// core this process may use (`std::thread::available_parallelism`: the machine's cores, or
/// fewer under a CPU affinity mask or a cgroup quota).
pub fn thread_count(s: &str) -> Result<usize, String> {
    let n = at_least_one(s)?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let max = THREADS_PER_CORE * cores;
    if n > max {
        return Err(format!(
            "at most {max} here ({THREADS_PER_CORE} per core, {cores} cores): more threads \
             than cores take turns and slow the work down; leave --threads out to use \
             every core"
        ));
    }
    Ok(n)
}

/// A whole number, 0 included (`--offset`, a class index).
pub fn whole_number(s: &str) -> Result<usize, String> {
    if is_negative(s) {
        return Err("must not be negative".into());
    }
    s.trim()
        .parse::<usize>()
        .map_err(|_| format!("expected a whole number, got `{s}`"))
}

/// True for a negative number such as `-1` or `-0.5`.
fn is_negative(s: &str) -> bool {
    s.trim()
        .strip_prefix('-')
        .is_some_and(|rest| rest.parse::<f64>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_refuse_zero_negatives_and_words() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert_eq!(at_least_one("0"), Err("must be at least 1".into()));
        assert_eq!(at_least_one("-1"), Err("must be positive".into()));
        assert_eq!(at_least_one("-0.5"), Err("must be positive".into()));
        assert_eq!(
            at_least_one("two"),
            Err("expected a whole number, got `two`".into())
        );
        assert_eq!(whole_number("0"), Ok(0));
        assert_eq!(whole_number("-2"), Err("must not be negative".into()));
    }

    #[test]
    fn thread_counts_stop_at_four_per_core() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(thread_count("1"), Ok(1));
        assert_eq!(thread_count(&cores.to_string()), Ok(cores));
        assert_eq!(thread_count(&(4 * cores).to_string()), Ok(4 * cores));
        let e = thread_count(&(4 * cores + 1).to_string()).unwrap_err();
        assert!(e.starts_with(&format!("at most {} here", 4 * cores)), "{e}");
        assert_eq!(thread_count("0"), Err("must be at least 1".into()));
    }
}
