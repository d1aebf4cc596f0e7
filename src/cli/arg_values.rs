//! Value parsers for numeric options, so that a bad number is a usage error (exit 2) said in
//! words, found while the arguments are parsed, before the command does anything.
//!
//! The options using them also allow a leading `-` (`allow_negative_numbers`), so `--top -1`
//! reaches the parser and is refused as "must be positive" instead of clap taking `-1` for an
//! option and suggesting `-- -1`.

/// A whole number of at least 1: a count (`--top`, `--runs`, `--threads`, a batch size).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    if is_negative(s) {
        return Err("must be positive".into());
    }
    match whole_number(s)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
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
}
