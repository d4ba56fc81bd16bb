//! The model card (`card.yaml`) of every model directory: read with the checks every model
//! needs (the directory holds a finished model, of this kind, of a card version this build
//! understands, with consistent gene lists), and written atomically.
//!
//! A model's card type implements [`ModelCard`]; its own consistency checks go into
//! [`ModelCard::check`].

use candle_core::Device;
use cellweave::contract::CellsTable;
use cellweave::{bail, Error, Result, ResultExt};
use std::path::Path;

use super::state::RunProgress;

/// The model card's file name in every model directory.
pub const CARD: &str = "card.yaml";

/// What every model card has.
pub trait ModelCard: serde::Serialize + serde::de::DeserializeOwned {
    /// The `model:` value of this kind of card (`claire`, `scetm`, ...).
    const MODEL: &'static str;
    /// The model's name in messages (`CLAIRE`, `scETM`, ...).
    const LABEL: &'static str;
    /// The newest card version this build reads.
    const VERSION: u32;
    /// The card's `model:` field.
    fn model(&self) -> &str;
    /// The card's `card_version:` field.
    fn card_version(&self) -> u32;
    /// `n_genes`, `gene_ids` and `gene_names`.
    fn genes(&self) -> (usize, &[String], &[String]);
    /// The model's own consistency checks: `Err((field, message))`.
    fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        Ok(())
    }
}

/// The first fields of a card: the model, the card version and the cellweave that wrote it
/// (flattened into the card: `model:`, `card_version:`, `cellweave_version:`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    /// The model (`deepmnn`, `scetm`, ...).
    pub model: String,
    /// The card format version.
    pub card_version: u32,
    /// The cellweave version that trained the model.
    pub cellweave_version: String,
}

impl Head {
    /// The head of a card of kind `C` written by this build.
    pub fn of<C: ModelCard>() -> Self {
        Head {
            model: C::MODEL.into(),
            card_version: C::VERSION,
            cellweave_version: cellweave::VERSION.into(),
        }
    }
}

/// The genes a model is for, in its order (flattened into the card: `n_genes:`,
/// `gene_ids:`, `gene_names:`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Genes {
    /// Number of genes.
    pub n_genes: usize,
    /// Their ids.
    pub gene_ids: Vec<String>,
    /// Their names.
    pub gene_names: Vec<String>,
}

impl Genes {
    /// The genes of `cells`.
    pub fn of(cells: &CellsTable) -> Self {
        Genes {
            n_genes: cells.n_genes(),
            gene_ids: cells.gene_ids.clone(),
            gene_names: cells.gene_names.clone(),
        }
    }
}

/// The `training:` section of a card: the training cells, the seed and how the run went.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Training cells.
    pub cells: usize,
    /// Fingerprint of the training cells.
    pub cells_fingerprint: String,
    /// The run's seed.
    pub seed: u64,
    /// Global epochs done.
    pub epochs: usize,
    /// Optimiser steps done.
    pub steps: u64,
    /// The last epoch's loss.
    pub final_loss: f64,
    /// Seconds of training.
    pub seconds: f64,
    /// The device it was trained on.
    pub device: String,
}

impl Summary {
    /// The summary of a run on `cells` with `seed` that stands at `progress` (its last
    /// epoch's loss `final_loss`) on `device`.
    pub fn new(
        cells: &CellsTable,
        seed: u64,
        progress: &impl RunProgress,
        final_loss: f64,
        device: &Device,
    ) -> Self {
        Summary {
            cells: cells.n_cells(),
            cells_fingerprint: cells.fingerprint(),
            seed,
            epochs: progress.epoch(),
            steps: progress.steps(),
            final_loss,
            seconds: progress.seconds(),
            device: format!("{:?}", device.location()),
        }
    }
}

/// Implements [`ModelCard`] for a card type with the usual fields (`model`, `card_version`,
/// `n_genes`, `gene_ids`, `gene_names`): `model_card!(Card, "scetm", "scETM", CARD_VERSION)`;
/// `model_card!(Card: head, genes; "scetm", ...)` for a card holding them in a [`Head`]
/// `head` and [`Genes`] `genes`. With `, shape` at the end it also checks that the card's
/// `shape.n_genes` is `n_genes`, and with `, shape, more` then calls `more(&card)` for the
/// model's own checks.
macro_rules! model_card {
    (@impl $card:ty, ($($head:ident)?), ($($genes:ident)?), $model:literal, $label:literal, $version:expr $(, $shape:ident $(, $more:expr)?)?) => {
        impl $crate::engine::card::ModelCard for $card {
            const MODEL: &'static str = $model;
            const LABEL: &'static str = $label;
            const VERSION: u32 = $version;
            fn model(&self) -> &str {
                &self$(.$head)?.model
            }
            fn card_version(&self) -> u32 {
                self$(.$head)?.card_version
            }
            fn genes(&self) -> (usize, &[String], &[String]) {
                let g = &self$(.$genes)?;
                (g.n_genes, &g.gene_ids, &g.gene_names)
            }
            $(
            fn check(&self) -> std::result::Result<(), (&'static str, String)> {
                if self.$shape.n_genes != $crate::engine::card::ModelCard::genes(self).0 {
                    return Err(("gene_ids", "gene lists do not match n_genes".into()));
                }
                $( ($more)(self)?; )?
                Ok(())
            }
            )?
        }
    };
    ($card:ty: head, genes; $($rest:tt)*) => {
        $crate::engine::card::model_card!(@impl $card, (head), (genes), $($rest)*);
    };
    ($card:ty, $($rest:tt)*) => {
        $crate::engine::card::model_card!(@impl $card, (), (), $($rest)*);
    };
}
pub(crate) use model_card;

/// Read and check the card of the model directory `dir`.
pub fn read<C: ModelCard>(dir: &Path) -> Result<C> {
    let p = dir.join(CARD);
    if !p.exists() {
        bail!(
            "{}: not a cellweave model directory (no {CARD}; an interrupted training leaves only its checkpoint: rerun with --resume)",
            dir.display()
        );
    }
    let text = std::fs::read_to_string(&p).at(&p)?;
    let card: C = serde_yaml::from_str(&text)
        .map_err(|e| Error::new(format!("invalid {} model card ({e})", C::LABEL)).file(&p))?;
    if card.model() != C::MODEL {
        return Err(Error::new(format!(
            "unknown model '{}' (expected {})",
            card.model(),
            C::MODEL
        ))
        .file(&p)
        .field("model"));
    }
    if card.card_version() > C::VERSION {
        return Err(Error::new(format!(
            "card version {} is newer than this cellweave understands ({}); upgrade cellweave",
            card.card_version(),
            C::VERSION
        ))
        .file(&p)
        .field("card_version"));
    }
    let (n, ids, names) = card.genes();
    if ids.len() != n || names.len() != n {
        return Err(Error::new("gene lists do not match n_genes")
            .file(&p)
            .field("gene_ids"));
    }
    card.check()
        .map_err(|(field, msg)| Error::new(msg).file(&p).field(field))?;
    Ok(card)
}

/// Write `card` as `card.yaml` in `dir`, atomically.
pub fn write<C: serde::Serialize>(dir: &Path, card: &C) -> Result<()> {
    let text = serde_yaml::to_string(card)
        .map_err(|e| Error::new(format!("cannot write the model card ({e})")))?;
    cellweave::io::atomic::write_file(&dir.join(CARD), |w| {
        use std::io::Write;
        w.write_all(text.as_bytes())?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Toy {
        model: String,
        card_version: u32,
        shape: ToyShape,
        n_genes: usize,
        gene_ids: Vec<String>,
        gene_names: Vec<String>,
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct ToyShape {
        n_genes: usize,
        width: usize,
    }

    model_card!(
        Toy,
        "toy",
        "Toy",
        2,
        shape,
        |c: &Toy| -> std::result::Result<(), (&'static str, String)> {
            if c.shape.width == 0 {
                return Err(("width", "width must be positive".into()));
            }
            Ok(())
        }
    );

    fn toy() -> Toy {
        Toy {
            model: "toy".into(),
            card_version: 2,
            shape: ToyShape {
                n_genes: 2,
                width: 3,
            },
            n_genes: 2,
            gene_ids: vec!["a".into(), "b".into()],
            gene_names: vec!["A".into(), "B".into()],
        }
    }

    fn err_of(card: Toy) -> String {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &card).unwrap();
        read::<Toy>(dir.path()).err().unwrap().to_string()
    }

    #[test]
    fn round_trip_and_every_check_names_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let e = read::<Toy>(dir.path()).err().unwrap().to_string();
        assert!(e.contains("not a cellweave model directory"), "{e}");
        write(dir.path(), &toy()).unwrap();
        let back: Toy = read(dir.path()).unwrap();
        assert_eq!(back.gene_ids, toy().gene_ids);

        // Each broken card, the message and the field its error names.
        let broken = [
            (
                Toy {
                    model: "other".into(),
                    ..toy()
                },
                "unknown model 'other' (expected toy)",
                "model",
            ),
            (
                Toy {
                    card_version: 3,
                    ..toy()
                },
                "newer than this cellweave",
                "card_version",
            ),
            (
                Toy {
                    n_genes: 3,
                    ..toy()
                },
                "gene lists do not match",
                "gene_ids",
            ),
            (
                Toy {
                    shape: ToyShape {
                        n_genes: 2,
                        width: 0,
                    },
                    ..toy()
                },
                "width must be positive",
                "width",
            ),
        ];
        for (card, message, field) in broken {
            let e = err_of(card);
            assert!(e.contains(message) && e.contains(field), "{e}");
        }
        std::fs::write(dir.path().join(CARD), "model: [").unwrap();
        let e = read::<Toy>(dir.path()).err().unwrap().to_string();
        assert!(e.contains("invalid Toy model card"), "{e}");
    }
}
