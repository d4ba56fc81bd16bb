//! Pictures of results: the UMAP layout of an embedding and the plots drawn from tables.

pub mod plot;
pub mod umap;
