//! What the candle-ops networks of deepMNN and scETM share with torch: `BatchNorm1d`'s
//! epsilon, momentum and running-statistics update, and `nn.Linear`'s initialisation.

use candle_core::Tensor;

use crate::rng::Rng;

/// BatchNorm epsilon (torch's default).
pub const BN_EPS: f64 = 1e-5;
/// BatchNorm running-statistics momentum (torch's default).
pub const BN_MOMENTUM: f64 = 0.1;

/// `n` values uniform in `+-1/sqrt(fan_in)` drawn from `rng` (torch's `nn.Linear`
/// initialisation of weights and biases).
pub fn torch_uniform(rng: &mut Rng, n: usize, fan_in: usize) -> Vec<f32> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    (0..n)
        .map(|_| ((2.0 * rng.f64() - 1.0) * bound) as f32)
        .collect()
}

/// Fold a training minibatch's BatchNorm mean `m` and biased variance `v` (`n` rows) into
/// the running mean `rm` and variance `rv` as torch does (momentum 0.1, the variance made
/// unbiased).
pub fn update_running(
    rm: &mut Tensor,
    rv: &mut Tensor,
    m: &Tensor,
    v: &Tensor,
    n: usize,
) -> candle_core::Result<()> {
    let unbias = if n > 1 {
        n as f64 / (n as f64 - 1.0)
    } else {
        1.0
    };
    *rm = ((&*rm * (1.0 - BN_MOMENTUM))? + (m * BN_MOMENTUM)?)?;
    *rv = ((&*rv * (1.0 - BN_MOMENTUM))? + (v * (BN_MOMENTUM * unbias))?)?;
    Ok(())
}
