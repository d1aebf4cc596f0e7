//! Formatting shared by config errors, summaries and reports: shapes and large numbers.

/// `(16, 28, 28)` or `(3136)`.
pub fn fmt_shape(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("({})", parts.join(", "))
}

/// `401954` -> `401,954`.
pub fn thousands(n: u128) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `16*14*14`.
pub fn product_expr(dims: &[usize]) -> String {
    let v: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    v.join("*")
}

/// `1 epoch`, `2 epochs`, `0 epochs`: a count and its noun, plural unless the count is 1
/// (`class` becomes `classes`).
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else if noun.ends_with('s') || noun.ends_with('x') {
        format!("{n} {noun}es")
    } else {
        format!("{n} {noun}s")
    }
}

/// Levenshtein distance between two strings, by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// `; did you mean `x`?` for the closest candidate (case-insensitive), or nothing.
pub fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    let w = word.to_lowercase();
    let best = candidates
        .iter()
        .map(|c| (edit_distance(&w, &c.to_lowercase()), *c))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, c)) if d <= 2.max(c.chars().count() / 3) => format!("; did you mean `{c}`?"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn a_count_of_one_is_singular_and_any_other_plural() {
        assert_eq!(count(1, "epoch"), "1 epoch");
        assert_eq!(count(0, "epoch"), "0 epochs");
        assert_eq!(count(2, "image"), "2 images");
        assert_eq!(count(3, "class"), "3 classes");
        assert_eq!(count(1, "class"), "1 class");
    }
}
