//! Whether CLAIRE's seed pairs look reliable, from what is known without labels: the number
//! of seeds per batch pair (cellweave-pairs) and the two-component mixture of the seeds'
//! similarities at refinement (cellweave-train, cellweave-refine). Each check gives one line
//! of advice, or none. The thresholds come from `bench/robustness.sh` (docs/claire.md).

use crate::contract::{Categorical, PairKind, PairsTable};
use crate::numerics::gmm::Gmm;

/// Fewer seeds than this in a batch pair is "few".
pub const MIN_SEEDS_PER_PAIR: usize = 20;
/// A low-similarity mixture component heavier than this means many seeds join cells the
/// model finds unlike.
pub const MAX_LOW_WEIGHT: f64 = 0.5;

/// Seeds of one batch pair.
#[derive(Debug, Clone, PartialEq)]
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
/// half of the time in `bench/robustness.sh`).
pub fn pairs_advice(counts: &[PairCount]) -> Option<String> {
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
                 (batches smaller than --k-filter); try --space pca, and check the seed accuracy \
                 if labels exist",
                counts.len()
            )
        });
    };
    Some(format!(
        "seeds look unreliable: {} of {} batch pairs have fewer than {MIN_SEEDS_PER_PAIR} seeds \
         (fewest: {} / {}, {}); try --space pca, or merge small batches of the same domain",
        few.len(),
        counts.len(),
        worst.a,
        worst.b,
        worst.seeds
    ))
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
        Gmm {
            weights,
            means,
            variances: [0.01, 0.01],
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
        assert_eq!(pairs_advice(&[c("x", "y", 20), c("x", "z", 300)]), None);
        let line = pairs_advice(&[c("x", "y", 19), c("x", "z", 3), c("y", "z", 40)]).unwrap();
        assert!(
            line.starts_with("seeds look unreliable: 2 of 3 batch pairs"),
            "{line}"
        );
        assert!(line.contains("x / z, 3"), "{line}");
        assert!(!line.contains('\n'));
        assert_eq!(pairs_advice(&[]), None);
        // an inactive filter (every mutual pair kept) is reported when the counts are known
        let m = |seeds, mutual| PairCount {
            mutual: Some(mutual),
            ..c("x", "y", seeds)
        };
        let line = pairs_advice(&[m(250, 250), m(30, 30)]).unwrap();
        assert!(line.contains("kept every mutual pair of all 2"), "{line}");
        assert_eq!(pairs_advice(&[m(250, 250), m(30, 31)]), None);
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
}
