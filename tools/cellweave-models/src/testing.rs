//! Shared by the models' unit tests: the NumPy transcriptions run as oracles, and Poisson
//! counts for synthetic data.

use crate::rng::Rng;
use serde_json::Value;
use std::path::Path;

/// Run the oracle script `source` with Python `py` on `fixture` (written as JSON): the
/// JSON it writes. Panics when it fails.
pub fn run_oracle(py: &Path, source: &str, fixture: &Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let (fx, out, script) = (
        dir.path().join("fixture.json"),
        dir.path().join("out.json"),
        dir.path().join("oracle.py"),
    );
    std::fs::write(&fx, fixture.to_string()).unwrap();
    std::fs::write(&script, source).unwrap();
    let status = std::process::Command::new(py)
        .args([&script, &fx, &out])
        .status()
        .unwrap();
    assert!(status.success(), "oracle.py failed");
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}

/// A Poisson count of mean `mean` by inversion (small means), at most `cap`.
pub fn poisson(rng: &mut Rng, mean: f64, cap: u32) -> u32 {
    let (mut k, mut p, u) = (0u32, (-mean).exp(), rng.f64());
    let mut cdf = p;
    while u > cdf && k < cap {
        k += 1;
        p *= mean / k as f64;
        cdf += p;
    }
    k
}
