//! `x W^T` for an input `x` that needs no gradient (the encoder's first layer reads the
//! counts): candle's matrix-product backward computes the gradient of both factors, which
//! here would be a wasted product the size of the forward one, plus a cells x genes
//! gradient buffer. This custom op computes only `dW = grad^T x` (CPU; elsewhere the plain
//! product is used).

use candle_core::{CpuStorage, CustomOp2, Device, Layout, Shape, Tensor};

use crate::kernels::{gemm_on, Op};
use crate::optim::storage_slice;

/// `x (n x k) W^T` with `W` (m x k): only `W` receives a gradient when `x` is a constant
/// on the CPU; otherwise the ordinary product.
pub fn matmul_wt(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    if matches!(x.device(), Device::Cpu) && !x.track_op() {
        x.contiguous()?.apply_op2(&w.contiguous()?, ConstantInput)
    } else {
        x.matmul(&w.t()?)
    }
}

struct ConstantInput;

impl CustomOp2 for ConstantInput {
    fn name(&self) -> &'static str {
        "invae-constant-input-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, k) = l1.shape().dims2()?;
        let (m, k2) = l2.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("constant-input linear: {n}x{k} times ({m}x{k2})^T");
        }
        let mut out = vec![0f32; n * m];
        gemm_on(
            &mut out,
            n,
            m,
            Op::n(storage_slice(s1, l1)?, n, k),
            Op::t(storage_slice(s2, l2)?, m, k),
            false,
            rayon::current_num_threads(),
        );
        Ok((CpuStorage::F32(out), Shape::from((n, m))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // d/dW of sum(grad * x W^T) = grad^T x (m x k).
        Ok((None, Some(grad.t()?.matmul(x)?)))
    }
}
