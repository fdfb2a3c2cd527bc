//! A Fenwick (binary indexed) tree over the weights of a site's members:
//! O(log n) weight updates, prefix sums and "which member holds the k-th
//! unit of weight", which is how weighted, random and round-robin picks
//! find a ready credential without scanning.

/// Weights of positions `0..len`, each small (health + 1 at most).
#[derive(Clone, Debug, Default)]
pub struct Fenwick {
    // 1-based: tree[i] sums the range (i - lowbit(i), i].
    tree: Vec<u32>,
}

fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

impl Fenwick {
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Sum of the weights of positions `0..end`.
    pub fn prefix(&self, end: usize) -> u64 {
        let mut i = end;
        let mut sum = 0u64;
        while i > 0 {
            sum += u64::from(self.tree[i - 1]);
            i -= lowbit(i);
        }
        sum
    }

    pub fn total(&self) -> u64 {
        self.prefix(self.tree.len())
    }

    /// Appends a position with weight `w`.
    pub fn push(&mut self, w: u32) {
        let i = self.tree.len() + 1;
        let covered = self.prefix(i - 1) - self.prefix(i - lowbit(i));
        self.tree.push(w + covered as u32);
    }

    /// Drops the last position (its range is covered by no other node).
    pub fn pop(&mut self) {
        self.tree.pop();
    }

    /// Adds `delta` to the weight of `pos`.
    pub fn add(&mut self, pos: usize, delta: i64) {
        let mut i = pos + 1;
        while i <= self.tree.len() {
            self.tree[i - 1] = (i64::from(self.tree[i - 1]) + delta) as u32;
            i += lowbit(i);
        }
    }

    /// The position holding the `target`-th unit of weight (0-based):
    /// the smallest `p` with `prefix(p + 1) > target`. Needs
    /// `target < total()`.
    pub fn find(&self, mut target: u64) -> usize {
        let n = self.tree.len();
        let mut pos = 0;
        let mut step = if n == 0 {
            0
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        while step > 0 {
            let next = pos + step;
            if next <= n && u64::from(self.tree[next - 1]) <= target {
                target -= u64::from(self.tree[next - 1]);
                pos = next;
            }
            step >>= 1;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(ws: &[u32]) -> Fenwick {
        let mut f = Fenwick::default();
        for &w in ws {
            f.push(w);
        }
        f
    }

    #[test]
    fn prefix_sums_match_a_plain_sum() {
        let ws: Vec<u32> = (0..37).map(|i| (i * 7 % 11) as u32).collect();
        let f = build(&ws);
        for end in 0..=ws.len() {
            let plain: u64 = ws[..end].iter().map(|&w| u64::from(w)).sum();
            assert_eq!(f.prefix(end), plain, "end {end}");
        }
    }

    #[test]
    fn find_lands_on_the_owner_of_each_unit() {
        let ws = [0, 3, 0, 0, 2, 1, 0, 4];
        let f = build(&ws);
        let mut expected = Vec::new();
        for (p, &w) in ws.iter().enumerate() {
            expected.extend(std::iter::repeat_n(p, w as usize));
        }
        for (unit, &p) in expected.iter().enumerate() {
            assert_eq!(f.find(unit as u64), p, "unit {unit}");
        }
    }

    #[test]
    fn updates_and_pops_keep_sums_right() {
        let mut ws = vec![5u32, 1, 4, 1, 5, 9, 2, 6];
        let mut f = build(&ws);
        f.add(3, 6);
        ws[3] += 6;
        f.add(6, -2);
        ws[6] -= 2;
        f.pop();
        ws.pop();
        f.push(3);
        ws.push(3);
        for end in 0..=ws.len() {
            let plain: u64 = ws[..end].iter().map(|&w| u64::from(w)).sum();
            assert_eq!(f.prefix(end), plain);
        }
    }
}
