//! Whether CLAIRE's seed pairs look reliable, from what is known without labels: the number
//! of seeds per batch pair (cellweave-pairs) and the two-component mixture of the seeds'
//! similarities at refinement (cellweave-train, cellweave-refine). Each check gives one line
//! of advice, or none. The thresholds come from `bench/robustness.sh` (docs/claire.md).

use crate::contract::{Categorical, PairKind, PairsTable};
use crate::integrate::pairs::Space;
use crate::numerics::gmm::Gmm;
use serde::{Deserialize, Serialize};

/// The `--space` of `cellweave-pairs`: the seed search's space, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum SpaceChoice {
    /// CCA, unless the gene-space filter cannot act (every batch has at most the filter's k
    /// cells: it would keep every mutual pair), then the joint PCA
    #[default]
    Auto,
    /// Seurat-style CCA of each batch pair (CLAIRE's released pipeline)
    Cca,
    /// The joint PCA of all cells
    Pca,
}

/// The space of the seed search for `choice`: `Auto` is the joint PCA when the filter keeps
/// every mutual pair of every batch pair (each batch of `batch` has at most
/// `k_filter_for(its cells)` cells: `pairs::Params::k_filter_for`), else CCA. On batches that small, mutual neighbours
/// in the batch pair's CCA joined different cell types half of the time in
/// `bench/robustness.sh` (docs/claire.md), those in the joint PCA far less often.
pub fn choose_space(
    choice: SpaceChoice,
    batch: &Categorical,
    k_filter_for: impl Fn(usize) -> usize,
) -> Space {
    match choice {
        SpaceChoice::Cca => Space::Cca,
        SpaceChoice::Pca => Space::Pca,
        SpaceChoice::Auto => {
            let mut n = vec![0usize; batch.categories.len()];
            for &c in &batch.codes {
                if c != Categorical::MISSING {
                    n[c as usize] += 1;
                }
            }
            let inactive = n.iter().all(|&n| k_filter_for(n) >= n);
            if inactive {
                Space::Pca
            } else {
                Space::Cca
            }
        }
    }
}

/// Fewer seeds than this in a batch pair is "few".
pub const MIN_SEEDS_PER_PAIR: usize = 20;
/// A low-similarity mixture component heavier than this means many seeds join cells the
/// model finds unlike.
pub const MAX_LOW_WEIGHT: f64 = 0.5;

/// Refinement drops the low component's seeds only when the mixture's components overlap
/// less than this ([`Gmm::overlap`]): beyond it the mixture does not separate two groups
/// of seeds, it cuts one group in two. In `bench/robustness.sh` (docs/claire.md) the splits
/// that helped overlapped 0.001-0.05 and those that dropped correct seeds 0.13-0.14.
pub const MAX_OVERLAP: f64 = 0.1;

/// Seeds of one batch pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairCount {
    /// First batch of the pair.
    pub a: String,
    /// Second batch of the pair.
    pub b: String,
    /// Seed pairs between them.
    pub seeds: usize,
    /// Mutual nearest pairs before the filter, when known (cellweave-pairs).
    pub mutual: Option<usize>,
}

/// Seeds per batch pair of a pairs table (every pair of batches of `batch`, none left out).
pub fn count_by_batch_pair(t: &PairsTable, batch: &Categorical) -> Vec<PairCount> {
    let nb = batch.categories.len();
    let mut n = vec![0usize; nb * nb];
    for r in 0..t.len() {
        if t.kind[r] != PairKind::Mnn {
            continue;
        }
        let (x, y) = (batch.codes[t.i[r] as usize], batch.codes[t.j[r] as usize]);
        if x != y && x != Categorical::MISSING && y != Categorical::MISSING {
            n[x.min(y) as usize * nb + x.max(y) as usize] += 1;
        }
    }
    let mut out = Vec::new();
    for a in 0..nb {
        for b in a + 1..nb {
            out.push(PairCount {
                a: batch.categories[a].clone(),
                b: batch.categories[b].clone(),
                seeds: n[a * nb + b],
                mutual: None,
            });
        }
    }
    out
}

/// One line when some batch pair has fewer than [`MIN_SEEDS_PER_PAIR`] seeds, or else when
/// the filter removed no mutual pair at all (every batch smaller than k.filter: the seeds
/// are unfiltered mutual neighbours, which on small batches joined different cell types
/// half of the time in the CCA space in `bench/robustness.sh`). `space` is the seed
/// search's space when known (cellweave-pairs), for the suggestion.
pub fn pairs_advice(counts: &[PairCount], space: Option<Space>) -> Option<String> {
    let few: Vec<&PairCount> = counts
        .iter()
        .filter(|c| c.seeds < MIN_SEEDS_PER_PAIR)
        .collect();
    let Some(worst) = few.iter().min_by_key(|c| c.seeds) else {
        let unfiltered =
            counts.iter().any(|c| c.seeds > 0) && counts.iter().all(|c| c.mutual == Some(c.seeds));
        return unfiltered.then(|| {
            format!(
                "seeds look unreliable: the filter kept every mutual pair of all {} batch pairs \
                 (batches smaller than --k-filter); {}",
                counts.len(),
                if space == Some(Space::Pca) {
                    "they come from the joint PCA (--space auto picks it for such batches); check \
                     the seed accuracy if labels exist, or compare with --space cca"
                } else {
                    "try --space pca (or --space auto), and check the seed accuracy if labels exist"
                }
            )
        });
    };
    Some(format!(
        "seeds look unreliable: {} of {} batch pairs have fewer than {MIN_SEEDS_PER_PAIR} seeds \
         (fewest: {} / {}, {}); {}, or merge small batches of the same domain",
        few.len(),
        counts.len(),
        worst.a,
        worst.b,
        worst.seeds,
        if space == Some(Space::Pca) {
            "try --space cca"
        } else {
            "try --space pca"
        }
    ))
}

/// The key of the pairs stage's advice line in its provenance step's parameters, so that
/// cellweave-train can repeat it (it cannot tell an inactive filter from the table).
pub const ADVICE_KEY: &str = "seed_advice";

/// The key of a pairs run's seeds per batch pair ([`PairCount`]s) in its provenance step,
/// so that `cellweave-pairs --merge` can judge the whole set of shards as one run would.
pub const COUNTS_KEY: &str = "seed_counts";
/// The key of the seed search's space (`cca` or `pca`, `--space auto` resolved) in a pairs
/// run's provenance step.
pub const SPACE_KEY: &str = "seed_space";

/// Record a pairs run's seed counts, its space and its advice line (if any) in the
/// parameters of its provenance step.
pub fn record(
    params: &mut serde_json::Map<String, serde_json::Value>,
    counts: &[PairCount],
    space: Space,
    advice: Option<&str>,
) {
    params.insert(
        COUNTS_KEY.into(),
        serde_json::to_value(counts).unwrap_or_default(),
    );
    params.insert(
        SPACE_KEY.into(),
        serde_json::to_value(space).unwrap_or_default(),
    );
    if let Some(a) = advice {
        params.insert(ADVICE_KEY.into(), a.into());
    }
}

/// The advice line of shards merged into one table: their recorded seed counts joined, in
/// the order of `pairs` (every batch pair, in batch order, as one run over all of them
/// counts them), judged by [`pairs_advice`] as that run would. `steps` are the shards' own
/// provenance steps. None when a shard with seeds recorded no counts (an older cellweave),
/// or when the counts do not cover `pairs`; the space is given only when every shard with
/// seeds recorded the same one.
pub fn merged_advice(
    steps: &[&crate::contract::Step],
    pairs: &[(String, String)],
) -> Option<String> {
    let mut by_pair: Vec<Option<PairCount>> = vec![None; pairs.len()];
    let mut spaces: Vec<Option<Space>> = Vec::new();
    for step in steps {
        let counts: Vec<PairCount> = match step.params.get(COUNTS_KEY) {
            Some(v) => serde_json::from_value(v.clone()).ok()?,
            None => Vec::new(),
        };
        if counts.is_empty() {
            continue;
        }
        spaces.push(
            step.params
                .get(SPACE_KEY)
                .and_then(|v| serde_json::from_value(v.clone()).ok()),
        );
        for c in counts {
            let pos = pairs
                .iter()
                .position(|(a, b)| (a, b) == (&c.a, &c.b) || (a, b) == (&c.b, &c.a))?;
            let (a, b) = pairs[pos].clone();
            by_pair[pos] = Some(PairCount { a, b, ..c });
        }
    }
    let counts: Vec<PairCount> = by_pair.into_iter().collect::<Option<_>>()?;
    let space = match spaces.split_first() {
        Some((first, rest)) if rest.iter().all(|s| s == first) => *first,
        _ => None,
    };
    pairs_advice(&counts, space)
}

/// The advice line the pairs stage recorded in the newest `cellweave-pairs` step of the
/// table's provenance ([`ADVICE_KEY`]), if any.
pub fn recorded_pairs_advice(t: &PairsTable) -> Option<String> {
    t.provenance
        .iter()
        .rev()
        .find(|s| s.tool == "cellweave-pairs")
        .and_then(|s| s.params.get(ADVICE_KEY))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// One line when the low-similarity component of the refinement mixture carries more than
/// [`MAX_LOW_WEIGHT`] of the seeds.
pub fn mixture_advice(g: &Gmm) -> Option<String> {
    // index 0 is the lower-mean component (numerics::gmm)
    let (lo, hi) = (0, 1);
    (g.weights[lo] > MAX_LOW_WEIGHT).then(|| {
        format!(
            "seeds look unreliable: the low-similarity component holds {:.0}% of the seeds \
             (means {:.2} vs {:.2}); check the embedding's cell-type separation, try \
             cellweave-pairs --space pca, or compare with an unintegrated PCA",
            100.0 * g.weights[lo],
            g.means[lo],
            g.means[hi]
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gmm(weights: [f64; 2], means: [f64; 2]) -> Gmm {
        gmm_sd(weights, means, [0.1, 0.1])
    }

    fn gmm_sd(weights: [f64; 2], means: [f64; 2], sd: [f64; 2]) -> Gmm {
        Gmm {
            weights,
            means,
            variances: [sd[0] * sd[0], sd[1] * sd[1]],
            log_likelihood: 0.0,
            iterations: 1,
            converged: true,
        }
    }

    #[test]
    fn few_seeds_are_reported_once() {
        let c = |a: &str, b: &str, seeds| PairCount {
            a: a.into(),
            b: b.into(),
            seeds,
            mutual: None,
        };
        assert_eq!(
            pairs_advice(&[c("x", "y", 20), c("x", "z", 300)], None),
            None
        );
        let line = pairs_advice(&[c("x", "y", 19), c("x", "z", 3), c("y", "z", 40)], None).unwrap();
        assert!(
            line.starts_with("seeds look unreliable: 2 of 3 batch pairs"),
            "{line}"
        );
        assert!(line.contains("x / z, 3"), "{line}");
        assert!(!line.contains('\n'));
        assert_eq!(pairs_advice(&[], None), None);
        // an inactive filter (every mutual pair kept) is reported when the counts are known
        let m = |seeds, mutual| PairCount {
            mutual: Some(mutual),
            ..c("x", "y", seeds)
        };
        let line = pairs_advice(&[m(250, 250), m(30, 30)], Some(Space::Cca)).unwrap();
        assert!(line.contains("kept every mutual pair of all 2"), "{line}");
        assert!(line.contains("try --space pca"), "{line}");
        let line = pairs_advice(&[m(250, 250), m(30, 30)], Some(Space::Pca)).unwrap();
        assert!(line.contains("compare with --space cca"), "{line}");
        assert_eq!(pairs_advice(&[m(250, 250), m(30, 31)], None), None);
    }

    #[test]
    fn recorded_advice_is_read_back() {
        let mut t = PairsTable::default();
        assert_eq!(recorded_pairs_advice(&t), None);
        t.provenance.push(crate::contract::Step {
            tool: "cellweave-pairs".into(),
            version: "x".into(),
            params: serde_json::json!({ ADVICE_KEY: "seeds look unreliable: x" }),
        });
        t.provenance.push(crate::contract::Step {
            tool: "cellweave-refine".into(),
            version: "x".into(),
            params: serde_json::json!({}),
        });
        assert_eq!(
            recorded_pairs_advice(&t).as_deref(),
            Some("seeds look unreliable: x")
        );
    }

    #[test]
    fn counts_cover_every_batch_pair() {
        let batch = Categorical {
            codes: vec![0, 0, 1, 2],
            categories: vec!["a".into(), "b".into(), "c".into()],
        };
        let mut t = PairsTable {
            n_cells: 4,
            ..Default::default()
        };
        t.push(PairKind::Mnn, 0, 2, 0.1, f32::NAN);
        t.push(PairKind::Mnn, 1, 2, 0.1, f32::NAN);
        t.push(PairKind::Knn, 0, 1, 0.1, f32::NAN);
        let c = count_by_batch_pair(&t, &batch);
        let seeds: Vec<(&str, &str, usize)> = c
            .iter()
            .map(|p| (p.a.as_str(), p.b.as_str(), p.seeds))
            .collect();
        assert_eq!(seeds, vec![("a", "b", 2), ("a", "c", 0), ("b", "c", 0)]);
    }

    #[test]
    fn heavy_low_component_is_reported() {
        assert_eq!(mixture_advice(&gmm([0.3, 0.7], [0.6, 0.9])), None);
        let line = mixture_advice(&gmm([0.6, 0.4], [0.5, 0.9])).unwrap();
        crate::assert_has(&line, &["60%", "0.50 vs 0.90"]);
        assert_eq!(mixture_advice(&gmm([0.5, 0.5], [0.5, 0.9])), None);
    }

    #[test]
    fn overlap_is_the_mixtures_own_error() {
        // equal weights and spreads, means d sd apart: overlap = Phi(-d / 2)
        let o = gmm_sd([0.5, 0.5], [0.0, 2.0], [1.0, 1.0]).overlap();
        assert!((o - 0.158_655).abs() < 1e-4, "{o}");
        let o = gmm_sd([0.5, 0.5], [0.3, 0.3], [0.05, 0.05]).overlap();
        assert!((o - 0.5).abs() < 1e-4, "{o}");
        // cellbench_3tech's mixture (seed 0): a broad light low component, refined
        let far = gmm_sd([0.12, 0.88], [0.666, 0.930], [0.177, 0.034]);
        assert!((far.overlap() - 0.021).abs() < 0.002);
        assert!(far.overlap() <= MAX_OVERLAP);
        // c3_sub60 with --space pca: two close modes of correct seeds, not refined
        let close = gmm_sd([0.44, 0.56], [0.911, 0.961], [0.035, 0.015]);
        assert!((close.overlap() - 0.130).abs() < 0.002);
        assert!(close.overlap() > MAX_OVERLAP);
        assert!(close.overlap() <= 1.0);
    }

    #[test]
    fn auto_space_is_pca_when_the_filter_cannot_act() {
        let batch = |sizes: &[usize]| Categorical {
            codes: sizes
                .iter()
                .enumerate()
                .flat_map(|(b, &n)| std::iter::repeat_n(b as u32, n))
                .collect(),
            categories: (0..sizes.len()).map(|b| format!("b{b}")).collect(),
        };
        // pairs::Params::k_filter_for with k.anchor 5
        let p = |k_filter: usize, frac: f64| {
            move |n: usize| {
                if frac > 0.0 {
                    ((frac * n as f64).ceil() as usize).max(5).min(k_filter)
                } else {
                    k_filter
                }
            }
        };
        let auto = SpaceChoice::Auto;
        assert_eq!(
            choose_space(auto, &batch(&[60, 60, 200]), p(200, 0.0)),
            Space::Pca
        );
        assert_eq!(
            choose_space(auto, &batch(&[60, 60, 201]), p(200, 0.0)),
            Space::Cca
        );
        // a filter scaled with the batch acts on every batch
        assert_eq!(
            choose_space(auto, &batch(&[60, 60]), p(200, 0.1)),
            Space::Cca
        );
        // fixed choices stay
        assert_eq!(
            choose_space(SpaceChoice::Cca, &batch(&[60]), p(200, 0.0)),
            Space::Cca
        );
        assert_eq!(
            choose_space(SpaceChoice::Pca, &batch(&[900]), p(200, 0.0)),
            Space::Pca
        );
    }
}
