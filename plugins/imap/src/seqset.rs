//! Sequence sets (`1:4,7,9:*`) against the selected mailbox.

use crate::parse::Parser;

/// One range of a set, bounds as sent (`*` resolved later).
#[derive(Debug, Clone, Copy)]
enum Bound {
    Number(u32),
    Star,
}

/// A parsed sequence set: ranges as written, either order allowed; or
/// `$`, the result the last `SEARCH RETURN (SAVE)` kept (RFC 5182).
#[derive(Debug, Clone)]
pub struct SeqSet {
    ranges: Vec<(Bound, Bound)>,
    saved: bool,
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
    /// A set as the first argument of FETCH, STORE, COPY and MOVE: the
    /// space before it, the set and the space after it.
    pub fn argument(p: &mut Parser) -> Result<SeqSet, String> {
        p.sp()?;
        let set = SeqSet::parse(p.sequence_set()?).ok_or("bad sequence set")?;
        p.sp()?;
        Ok(set)
    }

    pub fn parse(text: &[u8]) -> Option<SeqSet> {
        if text == b"$" {
            return Some(SeqSet {
                ranges: Vec::new(),
                saved: true,
            });
        }
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
        Some(SeqSet {
            ranges,
            saved: false,
        })
    }

    /// Whether this is `$`: it names the UIDs of the saved result, for
    /// the caller to look up.
    pub fn is_saved(&self) -> bool {
        self.saved
    }

    /// Check a message sequence set against a mailbox of `max`
    /// messages. RFC 3501 and RFC 9051 (section 9, `seq-number`) want a
    /// tagged BAD for a sequence number above the message count, `*`
    /// included when the mailbox is empty. A range reaching to `*` is
    /// cut at the last message instead, the way clients ask for "n and
    /// everything after" without knowing the count.
    pub fn check_sequence(&self, max: u32) -> Result<(), String> {
        for &(a, b) in &self.ranges {
            let bad = match (a, b) {
                (Bound::Star, Bound::Star) => (max == 0).then_some(0),
                (Bound::Number(n), Bound::Number(m)) => {
                    [n, m].into_iter().find(|&v| v > max)
                }
                _ => None,
            };
            match bad {
                Some(0) => {
                    return Err(
                        "`*` names no message: the mailbox is empty".to_owned()
                    );
                }
                Some(n) => {
                    return Err(format!(
                        "invalid message sequence number {n}: the mailbox \
                         has {max}"
                    ));
                }
                None => {}
            }
        }
        Ok(())
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
    fn sequence_numbers_past_the_end_are_refused() {
        let check =
            |set: &[u8], max| SeqSet::parse(set).unwrap().check_sequence(max);
        assert!(check(b"1:3,2", 3).is_ok());
        assert!(check(b"4", 3).is_err());
        assert!(check(b"2:4", 3).is_err());
        assert!(check(b"4:2", 3).is_err());
        // Ranges up to `*` are cut at the end, in either order.
        assert!(check(b"2:*", 3).is_ok());
        assert!(check(b"9:*", 3).is_ok());
        assert!(check(b"*:9", 3).is_ok());
        assert!(check(b"*:*", 3).is_ok());
        // A bare `*` in an empty mailbox names nothing.
        assert!(check(b"*", 0).is_err());
        assert!(check(b"1", 0).is_err());
        assert!(check(b"1:*", 0).is_ok());
    }

    #[test]
    fn dollar_is_the_saved_result() {
        let saved = SeqSet::parse(b"$").unwrap();
        assert!(saved.is_saved() && saved.check_sequence(0).is_ok());
        assert!(SeqSet::parse(b"1,$").is_none());
        assert!(!SeqSet::parse(b"1").unwrap().is_saved());
    }

    #[test]
    fn render_compacts() {
        assert_eq!(render(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
    }
}
