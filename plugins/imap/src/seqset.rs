//! Sequence sets (`1:4,7,9:*`) against the selected mailbox.

/// One range of a set, bounds as sent (`*` resolved later).
#[derive(Debug, Clone, Copy)]
enum Bound {
    Number(u32),
    Star,
}

/// A parsed sequence set: ranges as written, either order allowed.
#[derive(Debug, Clone)]
pub struct SeqSet {
    ranges: Vec<(Bound, Bound)>,
}

fn bound(text: &str) -> Option<Bound> {
    if text == "*" {
        return Some(Bound::Star);
    }
    match text.parse::<u32>() {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(Bound::Number(n)),
    }
}

impl SeqSet {
    pub fn parse(text: &[u8]) -> Option<SeqSet> {
        let text = std::str::from_utf8(text).ok()?;
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let range = match part.split_once(':') {
                Some((a, b)) => (bound(a)?, bound(b)?),
                None => {
                    let b = bound(part)?;
                    (b, b)
                }
            };
            ranges.push(range);
        }
        Some(SeqSet { ranges })
    }

    /// Whether `n` is in the set, `*` standing for `max`. With `max` 0
    /// (an empty mailbox) `*` matches nothing.
    pub fn contains(&self, n: u32, max: u32) -> bool {
        let resolve = |b: Bound| match b {
            Bound::Number(v) => v,
            Bound::Star => max,
        };
        self.ranges.iter().any(|&(a, b)| {
            let (a, b) = (resolve(a), resolve(b));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            lo != 0 && (lo..=hi).contains(&n)
        })
    }

    /// Indexes (0-based) into `items` whose key is in the set, in
    /// ascending order, without walking every number of a huge range.
    /// `keys` must be ascending; `max` is what `*` means.
    pub fn select(&self, keys: &[u32], max: u32) -> Vec<usize> {
        let resolve = |b: Bound| match b {
            Bound::Number(v) => v,
            Bound::Star => max,
        };
        let mut hit = vec![false; keys.len()];
        for &(a, b) in &self.ranges {
            let (a, b) = (resolve(a), resolve(b));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            if lo == 0 {
                continue;
            }
            let start = keys.partition_point(|&k| k < lo);
            let end = keys.partition_point(|&k| k <= hi);
            for flag in &mut hit[start..end] {
                *flag = true;
            }
        }
        hit.iter()
            .enumerate()
            .filter_map(|(i, &h)| h.then_some(i))
            .collect()
    }
}

/// Render ascending numbers compactly (`1:3,7`), for COPYUID and the
/// like.
pub fn render(numbers: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = numbers[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_in_either_order_and_star() {
        let set = SeqSet::parse(b"5:2,*").unwrap();
        assert!(set.contains(3, 10) && set.contains(10, 10));
        assert!(!set.contains(6, 10));
        assert!(SeqSet::parse(b"0").is_none());
        assert!(SeqSet::parse(b"1,,2").is_none());
    }

    #[test]
    fn select_uses_keys() {
        let keys = [3, 5, 9, 200];
        let set = SeqSet::parse(b"4:4294967295").unwrap();
        assert_eq!(set.select(&keys, 200), vec![1, 2, 3]);
        let star = SeqSet::parse(b"*:300").unwrap();
        assert_eq!(star.select(&keys, 200), vec![3]);
    }

    #[test]
    fn render_compacts() {
        assert_eq!(render(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
    }
}
