//! The numerics later stages share, over plain slices and the contract's CSR matrix: small
//! statistics, PCA and dense linear algebra, nearest neighbours, graphs, clustering and a
//! two-component mixture. Nothing here reads or writes files.

pub mod blocked;
pub mod cluster;
pub mod distance;
pub mod gmm;
pub mod graph;
pub mod ivf;
pub mod neighbors;
pub mod nndescent;
pub mod pca;
pub(crate) mod scan;
pub(crate) mod simd;
pub mod stats;

/// `f` run on a pool of `threads` threads (tests that results do not depend on the count).
#[cfg(test)]
pub(crate) fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}
