//! Neural models in candle: the CLAIRE contrastive encoder and the shared optimiser.
//!
//! One module per model; add new ones to the list below.

pub mod claire;
pub mod kernels;
pub mod late;
pub mod optim;
pub mod rng;

use candle_core::Device;

/// Turn a candle error into a cellweave error (one line).
pub trait CandleExt<T> {
    fn ce(self) -> cellweave::Result<T>;
}

impl<T> CandleExt<T> for candle_core::Result<T> {
    fn ce(self) -> cellweave::Result<T> {
        self.map_err(|e| cellweave::Error::new(format!("candle: {e}")))
    }
}

/// The candle device named by `--device` (`cpu`, `cuda` or `cuda:N`).
pub fn device(name: &str) -> cellweave::Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        n if n == "cuda" || n.starts_with("cuda:") => {
            cuda_device(n.strip_prefix("cuda:").unwrap_or("0"))
        }
        other => Err(cellweave::Error::new(format!(
            "unknown device '{other}' (expected cpu, cuda or cuda:N)"
        ))
        .field("device")),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: &str) -> cellweave::Result<Device> {
    let i: usize = ordinal.parse().map_err(|_| {
        cellweave::Error::new(format!("bad CUDA ordinal '{ordinal}'")).field("device")
    })?;
    Device::new_cuda(i).ce()
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_ordinal: &str) -> cellweave::Result<Device> {
    Err(
        cellweave::Error::new("built without CUDA support; rebuild with --features cuda")
            .field("device"),
    )
}
