//! MEDL's networks: the fixed-effects autoencoder with its adversary, and the
//! random-effects autoencoder with its latent batch classifier (one struct, [`Medl`]).
//!
//! Fixed effects: `x -> Dense 512 BN SELU -> Dense 132 BN SELU -> Dense 50 SELU` (the FE
//! latent), decoded by the transposed encoder weights (tied; own biases, BN SELU between);
//! the adversary reads the three activations concatenated (`512 + 132 + 50`) ->
//! `512 ReLU -> 132 ReLU -> K` logits (K batches).
//! Random effects: the same sizes with every hidden BN replaced by the random-effects
//! block (`layers::ReBlock`), in the encoder (driven by the cell's batch) and in the tied
//! decoder (driven by the batch to reconstruct as: the cell's own, or another for a
//! counterfactual); the latent classifier `50 -> K` predicts the batch from the RE latent.

use candle_core::{Device, Result, Tensor, Var};
use std::collections::HashMap;

use super::layers::{selu, BatchNorm, Dense, Named, Pass, ReBlock, ReNoise};
use crate::engine::checkpoint::named_tensor;
use crate::rng::Rng;

/// Layer sizes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Arch {
    /// Genes (input and output width).
    pub n_genes: usize,
    /// Hidden widths of the encoders (the decoders mirror them).
    pub hidden: Vec<usize>,
    /// Width of the latents.
    pub latent: usize,
    /// Hidden widths of the adversary.
    pub adversary: Vec<usize>,
    /// Batches (one-hot width and classifier outputs).
    pub n_batches: usize,
}

impl Arch {
    /// MEDL's sizes: hidden widths 512 and 132, for these genes, latent width and batches.
    pub fn new(n_genes: usize, latent: usize, n_batches: usize) -> Self {
        Arch {
            n_genes,
            hidden: vec![512, 132],
            latent,
            adversary: vec![512, 132],
            n_batches,
        }
    }
    /// Encoder widths, input first.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.n_genes];
        w.extend(&self.hidden);
        w.push(self.latent);
        w
    }
}

/// One encoder pass: every layer's activation (the last is the latent).
pub struct Encoded {
    /// Each layer's activation, the latent last.
    pub acts: Vec<Tensor>,
}

impl Encoded {
    /// The latent (the last activation).
    pub fn latent(&self) -> &Tensor {
        self.acts.last().expect("an encoder has layers")
    }
}

/// What follows each hidden dense layer of an [`Autoencoder`]: a batch norm (the fixed
/// effects) or a random-effects block (the random effects).
pub trait Hidden: Sized {
    /// The autoencoder's parameter names start with this (`fe.`, `re.`).
    const NET: &'static str;
    /// Its hidden layers are named `{NET}enc_{KIND}.{i}.` and `{NET}dec_{KIND}.{i}.`.
    const KIND: &'static str;
    /// A new layer of `width` units in a network of `a`.
    fn make(a: &Arch, width: usize, dev: &Device) -> Result<Self>;
    /// Its trainable parameters, named under `p`.
    fn params(&self, p: &str) -> Named;
    /// Its batch norm (whose running statistics are saved with the weights).
    fn bn(&self) -> &BatchNorm;
    /// Its batch norm, to load the running statistics.
    fn bn_mut(&mut self) -> &mut BatchNorm;
}

impl Hidden for BatchNorm {
    const NET: &'static str = "fe.";
    const KIND: &'static str = "bn";
    fn make(_: &Arch, width: usize, dev: &Device) -> Result<Self> {
        BatchNorm::new(width, true, dev)
    }
    fn params(&self, p: &str) -> Named {
        self.named(p)
    }
    fn bn(&self) -> &BatchNorm {
        self
    }
    fn bn_mut(&mut self) -> &mut BatchNorm {
        self
    }
}

impl Hidden for ReBlock {
    const NET: &'static str = "re.";
    const KIND: &'static str = "re";
    fn make(a: &Arch, width: usize, dev: &Device) -> Result<Self> {
        ReBlock::new(a.n_batches, width, dev)
    }
    fn params(&self, p: &str) -> Named {
        self.named(p)
    }
    fn bn(&self) -> &BatchNorm {
        &self.bn
    }
    fn bn_mut(&mut self) -> &mut BatchNorm {
        &mut self.bn
    }
}

/// An autoencoder with tied weights: the encoder's dense layers (`widths[i] ->
/// widths[i + 1]`, SELU after each, a hidden layer `H` before the SELU of every one but the
/// last) and a decoder running them transposed back to the input (own biases, an `H`
/// and SELU between, a linear output).
pub struct Autoencoder<H> {
    /// The encoder's dense layers (the decoder's, transposed).
    pub enc: Vec<Dense>,
    /// The encoder's hidden layers (after the layer giving `hidden[i]`).
    pub enc_hidden: Vec<H>,
    /// The decoder's hidden layers, outermost first (after the layer giving `hidden[i]`).
    pub dec_hidden: Vec<H>,
    /// Decoder biases, outermost first (`dec_bias[i]` has `widths[i]` values).
    pub dec_bias: Vec<Var>,
}

/// The fixed-effects autoencoder (batch norms).
pub type FeNet = Autoencoder<BatchNorm>;
/// The random-effects autoencoder (random-effects blocks).
pub type ReNet = Autoencoder<ReBlock>;

/// What the random-effects blocks of a pass read: the one-hot batches (`B x K`) and, in a
/// training step, the noise of their weights (`None`: the posterior means).
#[derive(Clone, Copy)]
pub struct Effects<'a> {
    /// The batches' one-hot rows.
    pub z: &'a Tensor,
    /// The noise of every block's weights.
    pub noise: Option<&'a StepNoise>,
}

/// Noise of every random-effects block for one training step (encoder blocks, then
/// decoder blocks).
pub struct StepNoise {
    /// Noise of the encoder's blocks.
    pub enc: Vec<ReNoise>,
    /// Noise of the decoder's blocks.
    pub dec: Vec<ReNoise>,
}

fn dense_stack(widths: &[usize], rng: &mut Rng, dev: &Device) -> Result<Vec<Dense>> {
    widths
        .windows(2)
        .map(|w| Dense::init(w[0], w[1], rng, dev))
        .collect()
}

fn biases(widths: &[usize], dev: &Device) -> Result<Vec<Var>> {
    widths[..widths.len() - 1]
        .iter()
        .map(|&w| Var::zeros(w, candle_core::DType::F32, dev))
        .collect()
}

/// The named parameters of each layer of `layers`, under `{prefix}{i}.`, in order.
fn named_each<L>(layers: &[L], prefix: &str, named: impl Fn(&L, &str) -> Named) -> Named {
    let mut v = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        v.extend(named(l, &format!("{prefix}{i}.")));
    }
    v
}

/// The decoder's biases, named `{prefix}{i}.bias`.
fn named_biases(biases: &[Var], prefix: &str) -> Named {
    let at = |(i, b): (usize, &Var)| (format!("{prefix}{i}.bias"), b.clone());
    biases.iter().enumerate().map(at).collect()
}

impl<H: Hidden> Autoencoder<H> {
    fn init(a: &Arch, rng: &mut Rng, dev: &Device) -> Result<Self> {
        let w = a.widths();
        let hidden = &w[1..w.len() - 1];
        let layers = || -> Result<Vec<H>> { hidden.iter().map(|&h| H::make(a, h, dev)).collect() };
        Ok(Autoencoder {
            enc: dense_stack(&w, rng, dev)?,
            enc_hidden: layers()?,
            dec_hidden: layers()?,
            dec_bias: biases(&w, dev)?,
        })
    }

    /// The encoder pass over `x`, `hidden(layer, i, y)` applying hidden layer `i` to `y`.
    fn encode_with(
        &mut self,
        x: &Tensor,
        mut hidden: impl FnMut(&mut H, usize, &Tensor) -> Result<Tensor>,
    ) -> Result<Encoded> {
        let n = self.enc.len();
        let mut acts = Vec::with_capacity(n);
        let mut h = x.clone();
        for (i, layer) in self.enc.iter().enumerate() {
            let mut y = layer.forward(&h)?;
            if i + 1 < n {
                y = hidden(&mut self.enc_hidden[i], i, &y)?;
            }
            h = selu(&y)?;
            acts.push(h.clone());
        }
        Ok(Encoded { acts })
    }

    /// The decoder pass from the latent `z`, `hidden(layer, i, y)` applying the decoder's
    /// hidden layer `i` to `y`.
    fn decode_with(
        &mut self,
        z: &Tensor,
        mut hidden: impl FnMut(&mut H, usize, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut h = z.clone();
        for i in (0..self.enc.len()).rev() {
            let y = self.enc[i].forward_tied(&h, &self.dec_bias[i])?;
            if i == 0 {
                return Ok(y);
            }
            h = selu(&hidden(&mut self.dec_hidden[i - 1], i - 1, &y)?)?;
        }
        Ok(h)
    }

    fn named(&self) -> Named {
        let net = H::NET;
        let mut v = named_each(&self.enc, &format!("{net}enc."), Dense::named);
        v.extend(named_each(
            &self.enc_hidden,
            &self.hidden_prefix("enc"),
            H::params,
        ));
        v.extend(named_each(
            &self.dec_hidden,
            &self.hidden_prefix("dec"),
            H::params,
        ));
        v.extend(named_biases(&self.dec_bias, &format!("{net}dec.")));
        v
    }

    fn hidden_prefix(&self, side: &str) -> String {
        format!("{}{side}_{}.", H::NET, H::KIND)
    }

    fn bn_names(&self) -> Vec<String> {
        let (e, d) = (self.hidden_prefix("enc"), self.hidden_prefix("dec"));
        let enc = (0..self.enc_hidden.len()).map(|i| format!("{e}{i}."));
        enc.chain((0..self.dec_hidden.len()).map(|i| format!("{d}{i}.")))
            .collect()
    }

    fn bns(&mut self) -> Vec<(String, &mut BatchNorm)> {
        let names = self.bn_names();
        let layers = self.enc_hidden.iter_mut().chain(self.dec_hidden.iter_mut());
        names.into_iter().zip(layers.map(H::bn_mut)).collect()
    }

    fn bn_refs(&self) -> Vec<(String, &BatchNorm)> {
        let layers = self.enc_hidden.iter().chain(&self.dec_hidden);
        self.bn_names().into_iter().zip(layers.map(H::bn)).collect()
    }
}

impl FeNet {
    /// Encode `x` (`B x G`, scaled).
    pub fn encode(&mut self, x: &Tensor, pass: Pass) -> Result<Encoded> {
        self.encode_with(x, |bn, _, y| bn.forward(y, pass))
    }

    /// Decode a latent (`B x latent`) to the scaled input space (linear output).
    pub fn decode(&mut self, z: &Tensor, pass: Pass) -> Result<Tensor> {
        self.decode_with(z, |bn, _, y| bn.forward(y, pass))
    }
}

impl ReNet {
    /// Draw the noise of every block (encoder blocks first, in layer order).
    pub fn noise(&self, rng: &mut Rng, dev: &Device) -> Result<StepNoise> {
        let mut draw = |blocks: &[ReBlock]| -> Result<Vec<ReNoise>> {
            blocks.iter().map(|b| b.noise(rng, dev)).collect()
        };
        Ok(StepNoise {
            enc: draw(&self.enc_hidden)?,
            dec: draw(&self.dec_hidden)?,
        })
    }

    /// Encode `x` as from the batches of `re`.
    pub fn encode(&mut self, x: &Tensor, re: Effects, pass: Pass) -> Result<Encoded> {
        let noise = |i: usize| re.noise.map(|s| &s.enc[i]);
        self.encode_with(x, |b, i, y| b.forward(y, re.z, noise(i), pass))
    }

    /// Decode an RE latent as from the batches of `re`.
    pub fn decode(&mut self, l: &Tensor, re: Effects, pass: Pass) -> Result<Tensor> {
        let noise = |i: usize| re.noise.map(|s| &s.dec[i]);
        self.decode_with(l, |b, i, y| b.forward(y, re.z, noise(i), pass))
    }

    /// KL of every block's weights.
    pub fn kl(&self) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for b in self.enc_hidden.iter().chain(&self.dec_hidden) {
            let k = b.kl()?;
            total = Some(match total {
                Some(t) => (t + k)?,
                None => k,
            });
        }
        total.ok_or_else(|| candle_core::Error::Msg("no random-effects blocks".into()))
    }
}

/// The whole model: both autoencoders, the adversary and the latent classifier.
pub struct Medl {
    /// The layer sizes.
    pub arch: Arch,
    /// The fixed-effects autoencoder.
    pub fe: FeNet,
    /// The adversary's dense layers (ReLU between).
    pub adversary: Vec<Dense>,
    /// The random-effects autoencoder.
    pub re: ReNet,
    /// The latent batch classifier of the random effects.
    pub classifier: Dense,
}

impl Medl {
    /// New weights from `rng` (FE encoder, RE encoder, adversary, classifier, in that order).
    pub fn init(arch: &Arch, rng: &mut Rng, dev: &Device) -> Result<Self> {
        let fe = FeNet::init(arch, rng, dev)?;
        let re = ReNet::init(arch, rng, dev)?;
        let mut aw = vec![arch.hidden.iter().sum::<usize>() + arch.latent];
        aw.extend(&arch.adversary);
        aw.push(arch.n_batches);
        let adversary = dense_stack(&aw, rng, dev)?;
        let classifier = Dense::init(arch.latent, arch.n_batches, rng, dev)?;
        Ok(Medl {
            arch: arch.clone(),
            fe,
            adversary,
            re,
            classifier,
        })
    }

    /// The adversary's logits from an FE encoder pass (activations concatenated).
    pub fn adversary_logits(&self, e: &Encoded) -> Result<Tensor> {
        let mut h = Tensor::cat(&e.acts, 1)?;
        let n = self.adversary.len();
        for (i, l) in self.adversary.iter().enumerate() {
            h = l.forward(&h)?;
            if i + 1 < n {
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    /// Trained by the autoencoder step of the fixed effects.
    pub fn named_fe(&self) -> Named {
        self.fe.named()
    }
    /// Trained by the adversary step.
    pub fn named_adversary(&self) -> Named {
        let mut v = Vec::new();
        for (i, l) in self.adversary.iter().enumerate() {
            v.extend(l.named(&format!("adversary.{i}.")));
        }
        v
    }
    /// Trained by the random-effects step (the RE autoencoder and the latent classifier).
    pub fn named_re(&self) -> Named {
        let mut v = self.re.named();
        v.extend(self.classifier.named("classifier."));
        v
    }
    /// Every variable, in the order fe, adversary, re.
    pub fn named_all(&self) -> Named {
        let mut v = self.named_fe();
        v.extend(self.named_adversary());
        v.extend(self.named_re());
        v
    }

    /// Every batch norm's running statistics, by name.
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (p, b) in self.fe.bn_refs().into_iter().chain(self.re.bn_refs()) {
            v.extend(b.buffers(&p));
        }
        v
    }

    /// Weights and running statistics as named CPU tensors.
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (n, v) in self.named_all() {
            out.insert(n, v.as_tensor().to_device(&Device::Cpu)?);
        }
        for (n, t) in self.buffers() {
            out.insert(n, t.to_device(&Device::Cpu)?);
        }
        Ok(out)
    }

    /// Set every weight and running statistic from `t` (as [`Medl::tensors`] wrote them).
    pub fn load(&mut self, t: &HashMap<String, Tensor>) -> Result<()> {
        let get = |n: &str, shape: &candle_core::Shape, dev: &Device| -> Result<Tensor> {
            named_tensor(t, n, shape.dims(), false)?.to_device(dev)
        };
        for (n, v) in self.named_all() {
            v.set(&get(&n, v.shape(), v.device())?)?;
        }
        for (p, b) in self.fe.bns().into_iter().chain(self.re.bns()) {
            let dev = b.running_mean.device().clone();
            let shape = b.running_mean.shape().clone();
            b.running_mean = get(&format!("{p}running_mean"), &shape, &dev)?;
            b.running_var = get(&format!("{p}running_var"), &shape, &dev)?;
        }
        Ok(())
    }
}

/// One-hot rows (`codes.len() x k`); a code `>= k` (an unseen batch) gives a zero row.
pub fn one_hot(codes: &[u32], k: usize, dev: &Device) -> Result<Tensor> {
    let mut v = vec![0f32; codes.len() * k];
    for (r, &c) in codes.iter().enumerate() {
        if (c as usize) < k {
            v[r * k + c as usize] = 1.0;
        }
    }
    Tensor::from_vec(v, (codes.len(), k), dev)
}
