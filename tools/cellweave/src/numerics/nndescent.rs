//! Approximate nearest neighbours: a random-projection forest to start from, NN-descent
//! (Dong, Moses & Li, WWW 2011) to refine a kNN graph, and best-first graph search for
//! the rows of another set.
//!
//! Rows are compared by squared Euclidean or Manhattan distance (cosine rows arrive unit
//! length, see [`super::neighbors`]).
//!
//! Deterministic for a seed whatever the number of threads:
//! - every random choice (split points, candidate sampling, fill-ins) is a hash of the seed
//!   and the indices concerned, not a draw from a shared generator;
//! - a round of NN-descent reads the graph of the previous round only: each row *pulls*
//!   its candidates (the rows that share a candidate list with it) instead of other rows
//!   pushing into it, so rows are updated independently, in parallel;
//! - a row's list keeps the `k` smallest (distance, index) pairs whatever the order in
//!   which they are offered.

use super::distance::{dot, manhattan, squared_euclidean};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Settings of the forest and the descent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Trees in the random-projection forest.
    pub n_trees: usize,
    /// Largest leaf of a tree.
    pub leaf_size: usize,
    /// Candidates per row and round (new and old each), as pynndescent's `max_candidates`.
    pub max_candidates: usize,
    /// Rounds at most.
    pub max_rounds: usize,
    /// Stop once a round changes fewer than `delta * n * k` list entries.
    pub delta: f64,
    /// Seed of the projection trees and the candidate sampling.
    pub seed: u64,
}

impl Params {
    /// Defaults for `n` rows and `k` neighbours.
    pub fn for_size(n: usize, k: usize, seed: u64) -> Self {
        Params {
            n_trees: (5 + (n as f64).powf(0.25).round() as usize).min(12),
            leaf_size: k.max(24),
            max_candidates: k.clamp(20, 60),
            max_rounds: 2 + (n.max(2) as f64).log2().ceil() as usize,
            delta: 0.001,
            seed,
        }
    }
}

/// One mixing step of SplitMix64: a well-spread 64-bit hash.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline]
fn hash(seed: u64, a: u64, b: u64, c: u64) -> u64 {
    mix(mix(mix(seed ^ 0x5EED) ^ a) ^ b.rotate_left(21) ^ c.rotate_left(42))
}

/// The distance searched (squared Euclidean or Manhattan).
#[derive(Debug, Clone, Copy)]
pub struct Space<'a> {
    /// Row-major points, `d` values each.
    pub data: &'a [f32],
    /// Dimensions per point.
    pub d: usize,
    /// Manhattan distance instead of squared Euclidean.
    pub manhattan: bool,
}

impl Space<'_> {
    #[inline]
    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.d..(i + 1) * self.d]
    }
    #[inline]
    fn between(&self, a: &[f32], b: &[f32]) -> f32 {
        if self.manhattan {
            manhattan(a, b)
        } else {
            squared_euclidean(a, b)
        }
    }
    #[inline]
    fn dist(&self, i: usize, j: usize) -> f32 {
        self.between(self.row(i), self.row(j))
    }
    fn n(&self) -> usize {
        self.data.len().checked_div(self.d).unwrap_or(0)
    }
}

/// An entry of a neighbour list: distance, index and whether it joined since the row last
/// sampled its candidates.
#[derive(Debug, Clone, Copy)]
struct Entry {
    dist: f32,
    idx: u32,
    new: bool,
}

#[inline]
fn before(a: (f32, u32), b: (f32, u32)) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 < b.1)
}

/// The `k` smallest entries offered, sorted by (distance, index), each index once.
#[derive(Debug, Clone)]
struct List {
    k: usize,
    items: Vec<Entry>,
}

impl List {
    fn new(k: usize) -> Self {
        List {
            k,
            items: Vec::with_capacity(k + 1),
        }
    }
    #[inline]
    fn bound(&self) -> f32 {
        if self.items.len() < self.k {
            f32::INFINITY
        } else {
            self.items[self.k - 1].dist
        }
    }
    /// Offer `(dist, idx)`; true when it was kept. The distance of a pair is always
    /// computed the same way, so an index already listed is found at its own position.
    #[inline]
    fn offer(&mut self, dist: f32, idx: u32) -> bool {
        if self.k == 0 || dist > self.bound() {
            return false;
        }
        let key = (dist, idx);
        if self.items.len() == self.k
            && !before(
                key,
                (self.items[self.k - 1].dist, self.items[self.k - 1].idx),
            )
        {
            return false;
        }
        let pos = self.items.partition_point(|e| before((e.dist, e.idx), key));
        if pos < self.items.len() && self.items[pos].idx == idx {
            return false;
        }
        self.items.insert(
            pos,
            Entry {
                dist,
                idx,
                new: true,
            },
        );
        self.items.truncate(self.k);
        true
    }
}

/// One random-projection tree: internal nodes split by a hyperplane, leaves hold ranges of
/// `order`.
#[derive(Debug, Clone)]
struct Tree {
    nodes: Vec<Node>,
    order: Vec<u32>,
}

#[derive(Debug, Clone)]
enum Node {
    Split {
        normal: Vec<f32>,
        offset: f32,
        left: u32,
        right: u32,
    },
    Leaf {
        start: u32,
        end: u32,
    },
}

/// Which side of a split a row falls on (true: right).
#[inline]
fn side(normal: &[f32], offset: f32, v: &[f32]) -> bool {
    dot(normal, v) > offset
}

impl Tree {
    /// Split the rows recursively at the perpendicular bisector of two rows chosen by hash
    /// (as Annoy and pynndescent do) until leaves hold at most `leaf_size` rows; a split that
    /// leaves one side empty (duplicates) halves the rows instead.
    fn build(s: &Space, leaf_size: usize, seed: u64) -> Tree {
        let n = s.n();
        let mut t = Tree {
            nodes: vec![Node::Leaf {
                start: 0,
                end: n as u32,
            }],
            order: (0..n as u32).collect(),
        };
        let mut stack = vec![0usize];
        let mut side_of = vec![false; n];
        while let Some(node) = stack.pop() {
            let Node::Leaf { start, end } = t.nodes[node] else {
                continue;
            };
            let (start, end) = (start as usize, end as usize);
            let len = end - start;
            if len <= leaf_size.max(1) {
                continue;
            }
            let rows = &mut t.order[start..end];
            let h = hash(seed, node as u64, len as u64, 1);
            let a = (h % len as u64) as usize;
            let mut b = (hash(seed, node as u64, len as u64, 2) % (len as u64 - 1)) as usize;
            if b >= a {
                b += 1;
            }
            let (ra, rb) = (s.row(rows[a] as usize), s.row(rows[b] as usize));
            let normal: Vec<f32> = ra.iter().zip(rb).map(|(x, y)| x - y).collect();
            let offset: f32 = ra
                .iter()
                .zip(rb)
                .zip(&normal)
                .map(|((x, y), w)| 0.5 * (x + y) * w)
                .sum();
            for &r in rows.iter() {
                side_of[r as usize] = side(&normal, offset, s.row(r as usize));
            }
            let n_right = rows.iter().filter(|&&r| side_of[r as usize]).count();
            let mid = if n_right == 0 || n_right == len {
                // No usable hyperplane: split in halves in the current order.
                for (p, &r) in rows.iter().enumerate() {
                    side_of[r as usize] = p >= len / 2;
                }
                // Rows before len / 2 go left.
                len / 2
            } else {
                len - n_right
            };
            // Stable partition: left rows first, both sides in their previous order.
            let mut left: Vec<u32> = Vec::with_capacity(mid);
            let mut right: Vec<u32> = Vec::with_capacity(len - mid);
            for &r in rows.iter() {
                if side_of[r as usize] {
                    right.push(r);
                } else {
                    left.push(r);
                }
            }
            rows[..mid].copy_from_slice(&left);
            rows[mid..].copy_from_slice(&right);
            let (l, r) = (t.nodes.len(), t.nodes.len() + 1);
            t.nodes.push(Node::Leaf {
                start: start as u32,
                end: (start + mid) as u32,
            });
            t.nodes.push(Node::Leaf {
                start: (start + mid) as u32,
                end: end as u32,
            });
            t.nodes[node] = Node::Split {
                normal,
                offset,
                left: l as u32,
                right: r as u32,
            };
            stack.push(r);
            stack.push(l);
        }
        t
    }

    /// The rows of the leaf a vector falls into.
    fn leaf_of(&self, v: &[f32]) -> &[u32] {
        let mut node = 0;
        loop {
            match &self.nodes[node] {
                Node::Split {
                    normal,
                    offset,
                    left,
                    right,
                } => {
                    node = if side(normal, *offset, v) {
                        *right as usize
                    } else {
                        *left as usize
                    };
                }
                Node::Leaf { start, end } => return &self.order[*start as usize..*end as usize],
            }
        }
    }

    /// For every row, the range of `order` of its leaf.
    fn leaf_ranges(&self, n: usize) -> Vec<(u32, u32)> {
        let mut out = vec![(0, 0); n];
        for node in &self.nodes {
            if let Node::Leaf { start, end } = *node {
                for &r in &self.order[start as usize..end as usize] {
                    out[r as usize] = (start, end);
                }
            }
        }
        out
    }
}

fn forest(s: &Space, p: &Params) -> Vec<Tree> {
    (0..p.n_trees)
        .into_par_iter()
        .map(|t| Tree::build(s, p.leaf_size, hash(p.seed, 0xF0_2E57, t as u64, 0)))
        .collect()
}

/// A kNN graph of the rows of a space (self excluded) and the forest it started from.
pub struct Graph {
    lists: Vec<List>,
    trees: Vec<Tree>,
    /// List entries changed in each round run.
    rounds: Vec<usize>,
}

/// Start: each row's nearest among the rows sharing a leaf with it in any tree, topped up
/// with rows chosen by hash when the leaves hold fewer than `k` others.
fn initial_lists(s: &Space, trees: &[Tree], k: usize, seed: u64) -> Vec<List> {
    let n = s.n();
    let ranges: Vec<Vec<(u32, u32)>> = trees.par_iter().map(|t| t.leaf_ranges(n)).collect();
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut l = List::new(k);
            for (t, r) in trees.iter().zip(&ranges) {
                let (a, b) = r[i];
                for &j in &t.order[a as usize..b as usize] {
                    if j as usize != i {
                        l.offer(s.dist(i, j as usize), j);
                    }
                }
            }
            let mut attempt = 0u64;
            while l.items.len() < k && attempt < 4 * k as u64 + 16 {
                let j = (hash(seed, 0xF111, i as u64, attempt) % n as u64) as usize;
                if j != i {
                    l.offer(s.dist(i, j), j as u32);
                }
                attempt += 1;
            }
            l
        })
        .collect()
}

/// Compressed lists: `rows[start[i]..start[i + 1]]` belong to row `i`.
struct Csr {
    start: Vec<usize>,
    rows: Vec<u32>,
}

impl Csr {
    fn of(&self, i: usize) -> &[u32] {
        &self.rows[self.start[i]..self.start[i + 1]]
    }
    /// Lists from `(owner, item)` pairs produced in a fixed order (counting sort, stable).
    fn from_pairs(n: usize, count: impl Fn(&mut dyn FnMut(usize, u32))) -> Csr {
        let mut start = vec![0usize; n + 1];
        count(&mut |o, _| start[o + 1] += 1);
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut rows = vec![0u32; start[n]];
        count(&mut |o, v| {
            rows[fill[o]] = v;
            fill[o] += 1;
        });
        Csr { start, rows }
    }
}

/// Candidates of one round: for each row, its sampled new and old candidates (forward
/// neighbours and reverse ones, i.e. rows listing it), at most `max_candidates` each,
/// chosen by the smallest hash of the pair.
fn candidates(lists: &mut [List], p: &Params, round: usize) -> (Csr, Csr) {
    let n = lists.len();
    let prio = |a: u32, b: u32| {
        let (x, y) = (a.min(b) as u64, a.max(b) as u64);
        hash(p.seed, round as u64, x, y)
    };
    // Forward and reverse memberships, new and old, in index order.
    let rev_new = Csr::from_pairs(n, |f| {
        for (u, l) in lists.iter().enumerate() {
            for e in l.items.iter().filter(|e| e.new) {
                f(e.idx as usize, u as u32);
            }
        }
    });
    let rev_old = Csr::from_pairs(n, |f| {
        for (u, l) in lists.iter().enumerate() {
            for e in l.items.iter().filter(|e| !e.new) {
                f(e.idx as usize, u as u32);
            }
        }
    });
    let m = p.max_candidates;
    let pick = |u: usize, fwd: &mut dyn Iterator<Item = u32>, rev: &[u32]| -> Vec<u32> {
        let mut c: Vec<(u64, u32)> = fwd
            .chain(rev.iter().copied())
            .map(|v| (prio(u as u32, v), v))
            .collect();
        c.sort_unstable();
        c.dedup_by_key(|x| x.1);
        c.truncate(m);
        let mut v: Vec<u32> = c.into_iter().map(|x| x.1).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let sampled: Vec<(Vec<u32>, Vec<u32>)> = lists
        .par_iter()
        .enumerate()
        .map(|(u, l)| {
            let new = pick(
                u,
                &mut l.items.iter().filter(|e| e.new).map(|e| e.idx),
                rev_new.of(u),
            );
            let old = pick(
                u,
                &mut l.items.iter().filter(|e| !e.new).map(|e| e.idx),
                rev_old.of(u),
            );
            (new, old)
        })
        .collect();
    // Forward entries that were sampled as new are old from now on.
    lists
        .par_iter_mut()
        .zip(&sampled)
        .for_each(|(l, (new, _))| {
            for e in l.items.iter_mut() {
                if e.new && new.binary_search(&e.idx).is_ok() {
                    e.new = false;
                }
            }
        });
    let new = Csr::from_pairs(n, |f| {
        for (u, (c, _)) in sampled.iter().enumerate() {
            c.iter().for_each(|&v| f(u, v));
        }
    });
    let old = Csr::from_pairs(n, |f| {
        for (u, (_, c)) in sampled.iter().enumerate() {
            c.iter().for_each(|&v| f(u, v));
        }
    });
    (new, old)
}

/// Bit marking a membership as new in [`local_join`]'s inverted lists.
const NEW_BIT: u32 = 1 << 31;

/// One round of NN-descent: every pair (p, q) of candidates of a common row u, at least
/// one of them new, is compared, and q offered to p's list. Rows pull: for p, the rows u
/// whose candidates include p are listed first (inverted lists), so each row's new list
/// depends on the previous lists only. Returns the entries changed.
fn local_join(s: &Space, lists: &mut [List], new: &Csr, old: &Csr) -> usize {
    let n = lists.len();
    let member = Csr::from_pairs(n, |f| {
        for u in 0..n {
            new.of(u)
                .iter()
                .for_each(|&p| f(p as usize, u as u32 | NEW_BIT));
            old.of(u).iter().for_each(|&p| f(p as usize, u as u32));
        }
    });
    lists
        .par_iter_mut()
        .enumerate()
        .map(|(p, l)| {
            let mut changed = 0;
            let pv = s.row(p);
            let mut offer = |q: u32| {
                if q as usize != p {
                    let dist = s.between(pv, s.row(q as usize));
                    if dist <= l.bound() && l.offer(dist, q) {
                        changed += 1;
                    }
                }
            };
            for &m in member.of(p) {
                let (u, p_new) = ((m & !NEW_BIT) as usize, m & NEW_BIT != 0);
                new.of(u).iter().for_each(|&q| offer(q));
                if p_new {
                    old.of(u).iter().for_each(|&q| offer(q));
                }
            }
            changed
        })
        .sum()
}

/// The approximate `k`-nearest-neighbour graph of the rows of `s` (self excluded).
pub fn build(s: &Space, k: usize, p: &Params) -> Graph {
    let n = s.n();
    let k = k.min(n.saturating_sub(1));
    let trees = forest(s, p);
    let mut lists = initial_lists(s, &trees, k, p.seed);
    let mut rounds = Vec::new();
    if k > 0 {
        for round in 0..p.max_rounds {
            let (new, old) = candidates(&mut lists, p, round);
            let changed = local_join(s, &mut lists, &new, &old);
            rounds.push(changed);
            if (changed as f64) < p.delta * (n * k) as f64 {
                break;
            }
        }
    }
    Graph {
        lists,
        trees,
        rounds,
    }
}

impl Graph {
    /// Row `i`'s neighbours, nearest first, as (distance searched, index).
    pub fn row(&self, i: usize) -> impl Iterator<Item = (f32, u32)> + '_ {
        self.lists[i].items.iter().map(|e| (e.dist, e.idx))
    }

    /// The `k` nearest rows of `s` (the space the graph was built on) to each row of `q`:
    /// best-first search of the graph made undirected, started from the rows sharing the
    /// query's leaf in each tree; a candidate is expanded while it lies within
    /// `(1 + epsilon)` times the worst of the `ef` kept.
    pub fn search(
        &self,
        s: &Space,
        q: &[f32],
        k: usize,
        ef: usize,
        epsilon: f32,
    ) -> Vec<Vec<(f32, u32)>> {
        let n = s.n();
        let k = k.min(n);
        let ef = ef.max(k);
        let adj = self.undirected(n);
        q.par_chunks(s.d.max(1))
            .map(|v| {
                let mut best = List::new(ef);
                let mut seen = std::collections::HashSet::new();
                let mut frontier: BinaryHeap<Near> = BinaryHeap::new();
                let mut visit = |j: u32, best: &mut List, frontier: &mut BinaryHeap<Near>| {
                    if seen.insert(j) {
                        let dist = s.between(v, s.row(j as usize));
                        if best.offer(dist, j) {
                            frontier.push(Near(dist, j));
                        }
                    }
                };
                for t in &self.trees {
                    for &j in t.leaf_of(v) {
                        visit(j, &mut best, &mut frontier);
                    }
                }
                while let Some(Near(dist, j)) = frontier.pop() {
                    let bound = best.bound();
                    if bound.is_finite() && dist > bound * (1.0 + epsilon) {
                        break;
                    }
                    for &c in adj.of(j as usize) {
                        visit(c, &mut best, &mut frontier);
                    }
                }
                let mut row: Vec<(f32, u32)> =
                    best.items.iter().take(k).map(|e| (e.dist, e.idx)).collect();
                if row.len() < k {
                    // Too few reached (disconnected graph): complete by brute force.
                    let mut all = List::new(k);
                    for j in 0..n {
                        all.offer(s.between(v, s.row(j)), j as u32);
                    }
                    row = all.items.iter().map(|e| (e.dist, e.idx)).collect();
                }
                row
            })
            .collect()
    }

    /// Each row's neighbours and the rows listing it, each once, in index order.
    fn undirected(&self, n: usize) -> Csr {
        let mut csr = Csr::from_pairs(n, |f| {
            for (u, l) in self.lists.iter().enumerate() {
                for e in &l.items {
                    f(u, e.idx);
                    f(e.idx as usize, u as u32);
                }
            }
        });
        let mut start = vec![0usize; n + 1];
        let mut rows = Vec::with_capacity(csr.rows.len());
        for i in 0..n {
            let mut r = csr.of(i).to_vec();
            r.sort_unstable();
            r.dedup();
            rows.extend(r);
            start[i + 1] = rows.len();
        }
        csr.start = start;
        csr.rows = rows;
        csr
    }

    /// List entries changed in each round run.
    pub fn rounds(&self) -> &[usize] {
        &self.rounds
    }

    #[cfg(test)]
    fn has(&self, i: usize, j: u32) -> bool {
        self.lists[i].items.iter().any(|e| e.idx == j)
    }
}

/// A frontier entry: the nearest pops first (ties: lower index).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Near(f32, u32);

impl Eq for Near {}

impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .0
            .total_cmp(&self.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn clustered(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let centres: Vec<f32> = (0..25 * d)
            .map(|_| rng.random::<f32>() * 4.0 - 2.0)
            .collect();
        (0..n)
            .flat_map(|i| {
                let c = (i * 7) % 25;
                (0..d)
                    .map(|j| centres[c * d + j] + (rng.random::<f32>() - 0.5))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn exact(s: &Space, q: &[f32], k: usize) -> Vec<Vec<u32>> {
        q.chunks(s.d)
            .map(|v| {
                let mut l = List::new(k);
                for j in 0..s.n() {
                    l.offer(s.between(v, s.row(j)), j as u32);
                }
                l.items.iter().map(|e| e.idx).collect()
            })
            .collect()
    }

    #[test]
    fn descent_recall_and_determinism() {
        let (n, d, k) = (3000, 12, 15);
        let x = clustered(n, d, 1);
        for manhattan in [false, true] {
            let s = Space {
                data: &x,
                d,
                manhattan,
            };
            let p = Params::for_size(n, k, 7);
            let g1 = crate::numerics::with_threads(1, || build(&s, k, &p));
            let g2 = crate::numerics::with_threads(2, || build(&s, k, &p));
            let rows = |g: &Graph| {
                (0..n)
                    .map(|i| g.row(i).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            };
            assert_eq!(rows(&g1), rows(&g2), "thread count changed the graph");
            // Recall against brute force (self is the first exact hit: leave it out).
            let truth = exact(&s, &x, k + 1);
            let mut hit = 0;
            for (i, t) in truth.iter().enumerate() {
                hit += t
                    .iter()
                    .filter(|&&j| j as usize != i && g1.has(i, j))
                    .count();
            }
            let recall = hit as f64 / (n * k) as f64;
            assert!(recall > 0.97, "manhattan {manhattan}: recall {recall}");
            // Lists are sorted and hold no duplicates.
            for i in 0..n {
                let r: Vec<(f32, u32)> = g1.row(i).collect();
                assert!(r.windows(2).all(|w| before(w[0], w[1])));
                assert!(r.iter().all(|e| e.1 as usize != i));
            }
        }
    }

    #[test]
    fn search_finds_the_nearest_of_another_set() {
        let (d, k) = (10, 10);
        let r = clustered(4000, d, 2);
        let q = clustered(500, d, 3);
        let s = Space {
            data: &r,
            d,
            manhattan: false,
        };
        let g = build(&s, 15, &Params::for_size(4000, 15, 1));
        let found = g.search(&s, &q, k, 40, 0.1);
        let truth = exact(&s, &q, k);
        let mut hit = 0;
        for (f, t) in found.iter().zip(&truth) {
            assert_eq!(f.len(), k);
            hit += f.iter().filter(|e| t.contains(&e.1)).count();
        }
        let recall = hit as f64 / (500 * k) as f64;
        assert!(recall > 0.97, "recall {recall}");
    }

    #[test]
    fn tiny_and_duplicate_inputs() {
        // Fewer rows than k, and all rows equal.
        let x = vec![1.0f32; 5 * 3];
        let s = Space {
            data: &x,
            d: 3,
            manhattan: false,
        };
        let g = build(&s, 10, &Params::for_size(5, 10, 0));
        for i in 0..5 {
            let r: Vec<u32> = g.row(i).map(|e| e.1).collect();
            let want: Vec<u32> = (0..5).filter(|&j| j != i as u32).collect();
            assert_eq!(r, want);
        }
        let g = build(&s, 0, &Params::for_size(5, 0, 0));
        assert_eq!(g.row(0).count(), 0);
    }

    #[test]
    fn many_equal_rows_split_in_halves() {
        // An odd number of equal rows, more than a leaf holds: no hyperplane separates
        // them, so the trees split them in halves (the odd row goes right).
        let n = 301;
        let x = vec![0.5f32; n * 4];
        let s = Space {
            data: &x,
            d: 4,
            manhattan: false,
        };
        let g = build(&s, 5, &Params::for_size(n, 5, 3));
        for i in 0..n {
            let r: Vec<(f32, u32)> = g.row(i).collect();
            assert_eq!(r.len(), 5, "row {i}");
            assert!(r.iter().all(|e| e.0 == 0.0 && e.1 as usize != i));
        }
    }
}
