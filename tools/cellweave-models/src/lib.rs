//! Neural models in candle: the CLAIRE contrastive encoder and the shared optimiser.
//!
//! One module per model; add new ones to the list below.

pub mod optim;
