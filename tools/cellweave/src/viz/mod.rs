//! Pictures of results: the UMAP layout of an embedding and the plots drawn from tables.

#[allow(missing_docs)] // public items not all documented yet
pub mod plot;
pub mod umap;
