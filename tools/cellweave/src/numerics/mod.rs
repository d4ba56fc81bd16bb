//! The numerics later stages share, over plain slices and the contract's CSR matrix: small
//! statistics, PCA and dense linear algebra, nearest neighbours, graphs, clustering and a
//! two-component mixture. Nothing here reads or writes files.

pub mod cluster;
pub mod distance;
pub mod gmm;
pub mod graph;
pub mod ivf;
#[allow(missing_docs)] // public items not all documented yet
pub mod neighbors;
pub mod nndescent;
pub mod pca;
pub(crate) mod scan;
pub mod stats;
