//! Import and export: turning the formats users bring into a cells table and back. The
//! only module that sees every format of [`crate::io::formats`].

pub mod export;
pub mod import;
pub mod samplesheet;
pub mod stage;
