//! Unit tests of the CLAIRE model: hand-written backward against candle's autograd and
//! finite differences, the CPU fast step against the candle-ops step, MoCo queue and
//! momentum updates, mix-up views, determinism.

use candle_core::{DType, Device, Tensor, Var};

use super::cpu_step::{Precision, Workspace};
use super::encoder::{draw_masks, Encoder, Linear, Masks};
use super::moco::{info_nce, Moco, MocoParams};
use super::views::{batch_views, draw_views, relative_nearest_partners, PairSets};
use crate::optim::AdamConfig;
use crate::rng::Rng;
use cellweave::contract::{Csr, PairKind, PairsTable};

fn tensor_vec(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// The values of an encoder's variables (`w1, b1, w2, b2, w3, b3`).
fn var_values(e: &Encoder) -> Vec<Vec<f64>> {
    e.vars().iter().map(|v| tensor_vec(v.as_tensor())).collect()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn random_tensor(shape: (usize, usize), rng: &mut Rng, dtype: DType, lo: f64, hi: f64) -> Tensor {
    let v: Vec<f64> = (0..shape.0 * shape.1)
        .map(|_| lo + (hi - lo) * rng.f64())
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// An encoder with variables of the given dtype.
fn encoder_of(dtype: DType, g: usize, latent: usize, seed: u64) -> Encoder {
    let e = Encoder::init(g, latent, &mut Rng::new(seed), &Device::Cpu).unwrap();
    let conv = |v: &Var| Var::from_tensor(&v.as_tensor().to_dtype(dtype).unwrap()).unwrap();
    let l = |l: &Linear| Linear {
        w: conv(&l.w),
        b: conv(&l.b),
    };
    Encoder {
        layers: [l(&e.layers[0]), l(&e.layers[1]), l(&e.layers[2])],
    }
}

fn masks_of(dtype: DType, n: usize, hidden: (usize, usize), rng: &mut Rng) -> Masks {
    let m = draw_masks(n, hidden, 0.3, rng, &Device::Cpu).unwrap();
    Masks {
        m1: m.m1.to_dtype(dtype).unwrap(),
        m2: m.m2.to_dtype(dtype).unwrap(),
    }
}

#[test]
fn hand_backward_matches_candle_autograd() {
    let (g, n, d) = (40, 9, 8);
    let enc = encoder_of(DType::F32, g, d, 1);
    let mut rng = Rng::new(2);
    let x = random_tensor((n, g), &mut rng, DType::F32, 0.0, 2.0);
    let masks = masks_of(DType::F32, n, enc.hidden(), &mut rng);
    let r = random_tensor((n, d), &mut rng, DType::F32, -1.0, 1.0);
    let trace = enc.forward_train(&x, &masks).unwrap();
    // loss = sum(out * r)  =>  dloss/dout = r
    let loss = (&trace.out * &r).unwrap().sum_all().unwrap();
    let auto = loss.backward().unwrap();
    let hand = enc.backward(&trace, &r).unwrap();
    for (v, h) in enc.vars().iter().zip(&hand) {
        let a = tensor_vec(auto.get(v.as_tensor()).unwrap());
        let b = tensor_vec(h);
        let scale = a.iter().map(|x| x.abs()).fold(1e-6, f64::max);
        assert!(
            max_abs_diff(&a, &b) / scale < 1e-5,
            "gradient differs: {}",
            max_abs_diff(&a, &b)
        );
    }
}

#[test]
fn full_loss_gradient_matches_finite_differences() {
    // f64 throughout: loss(query params) = InfoNCE of the encoder output against fixed
    // keys and queue; compare the hand gradient with central differences.
    let (g, n, d, k, t) = (40, 6, 5, 7, 0.2);
    let dt = DType::F64;
    let enc = encoder_of(dt, g, d, 3);
    let mut rng = Rng::new(4);
    let x = random_tensor((n, g), &mut rng, dt, 0.0, 3.0);
    let masks = masks_of(dt, n, enc.hidden(), &mut rng);
    let kpos =
        super::encoder::l2_normalize(&random_tensor((n, d), &mut rng, dt, 0.0, 1.0)).unwrap();
    let queue =
        super::encoder::l2_normalize(&random_tensor((k, d), &mut rng, dt, -1.0, 1.0)).unwrap();
    let loss_of = |e: &Encoder| -> f64 {
        let tr = e.forward_train(&x, &masks).unwrap();
        info_nce(&tr.out, &kpos, &queue, t).unwrap().0
    };
    let tr = enc.forward_train(&x, &masks).unwrap();
    let (_, dq) = info_nce(&tr.out, &kpos, &queue, t).unwrap();
    let grads = enc.backward(&tr, &dq).unwrap();
    let h = 1e-6;
    let mut checked = 0;
    for (vi, v) in enc.vars().iter().enumerate() {
        let base = tensor_vec(v.as_tensor());
        let gv = tensor_vec(&grads[vi]);
        // A spread of coordinates of every parameter.
        for idx in (0..base.len()).step_by((base.len() / 6).max(1)) {
            let set = |delta: f64| {
                let mut b = base.clone();
                b[idx] += delta;
                v.set(&Tensor::from_vec(b, v.shape(), &Device::Cpu).unwrap())
                    .unwrap();
            };
            set(h);
            let lp = loss_of(&enc);
            set(-h);
            let lm = loss_of(&enc);
            set(0.0);
            let fd = (lp - lm) / (2.0 * h);
            assert!(
                (fd - gv[idx]).abs() < 1e-6 + 1e-4 * fd.abs(),
                "param {vi}[{idx}]: fd {fd} vs hand {}",
                gv[idx]
            );
            checked += 1;
        }
    }
    assert!(checked > 30);
}

fn small_moco(g: usize, seed: u64, dropout: f32, queue: usize) -> Moco {
    let enc = Encoder::init(g, 16, &mut Rng::new(seed), &Device::Cpu).unwrap();
    let params = MocoParams {
        dropout,
        queue_size: queue,
        ..Default::default()
    };
    Moco::new(
        enc,
        params,
        AdamConfig {
            lr: 1e-3,
            weight_decay: 1e-5,
            ..Default::default()
        },
    )
    .unwrap()
}

fn batch(n: usize, g: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n * g)
        .map(|_| if r.f32() < 0.6 { 0.0 } else { 3.0 * r.f32() })
        .collect()
}

#[test]
fn cpu_step_matches_candle_ops_step() {
    let (g, n) = (64, 20);
    let mut a = small_moco(g, 5, 0.3, 24);
    let mut b = small_moco(g, 5, 0.3, 24);
    let mut ws = Workspace::default();
    for s in 0..6 {
        let xs = batch(n, g, 100 + s);
        let (mut ra, mut rb) = (Rng::new(s), Rng::new(s));
        let la = a.step_cpu(&xs, n, &mut ra, &mut ws).unwrap();
        let x = Tensor::from_slice(&xs, (n, g), &Device::Cpu).unwrap();
        let lb = b.step(&x, &mut rb).unwrap();
        assert!(
            (la - lb).abs() < 1e-4 * lb.abs().max(1.0),
            "step {s}: loss {la} vs {lb}"
        );
    }
    for (va, vb) in a
        .query
        .vars()
        .iter()
        .zip(b.query.vars())
        .chain(a.key.vars().iter().zip(b.key.vars()))
    {
        // Adam divides by sqrt(v): where a gradient is ~0 in one path (a ReLU at its kink, a
        // zero input) and 1e-9 in the other, that weight moves by up to lr per step in one
        // path only. Allow that for a handful of entries; everything else must agree.
        let (xa, xb) = (tensor_vec(va.as_tensor()), tensor_vec(vb.as_tensor()));
        let off = xa
            .iter()
            .zip(&xb)
            .filter(|(p, q)| (*p - *q).abs() >= 1e-4)
            .count();
        assert!(
            off * 100 <= xa.len(),
            "{off} of {} parameters differ",
            xa.len()
        );
        let d = max_abs_diff(&xa, &xb);
        assert!(
            d < 6.0 * 1e-3,
            "parameters differ by {d} (more than 6 Adam steps)"
        );
    }
    assert!(max_abs_diff(&tensor_vec(&a.queue), &tensor_vec(&b.queue)) < 1e-4);
    assert_eq!(a.ptr, b.ptr);
    assert_eq!(a.opt.step, 6);
}

#[test]
fn momentum_update_then_keys_enqueued_in_order() {
    // No dropout: the keys must be the eval-mode output of the momentum-updated key encoder.
    let (g, n, kq) = (32, 6, 10);
    let mut m = small_moco(g, 7, 0.0, kq);
    let mut ws = Workspace::default();
    let mut rng = Rng::new(1);
    // Make query and key differ first.
    m.step_cpu(&batch(n, g, 1), n, &mut rng, &mut ws).unwrap();
    let q_before = var_values(&m.query);
    let k_before = var_values(&m.key);
    let ptr0 = m.ptr;
    let xs = batch(n, g, 2);
    m.step_cpu(&xs, n, &mut rng, &mut ws).unwrap();
    let mm = m.params.momentum as f64;
    for ((kv, kb), qb) in m.key.vars().iter().zip(&k_before).zip(&q_before) {
        let want: Vec<f64> = kb
            .iter()
            .zip(qb)
            .map(|(k, q)| mm * k + (1.0 - mm) * q)
            .collect();
        assert!(max_abs_diff(&tensor_vec(kv.as_tensor()), &want) < 1e-6);
    }
    let x = Tensor::from_slice(&xs, (n, g), &Device::Cpu).unwrap();
    let keys = tensor_vec(&m.key.forward(&x).unwrap());
    let queue = tensor_vec(&m.queue);
    let d = m.query.latent();
    // k1 (view 1 rows) then k2 (view 2 rows), written from ptr0 with wrap-around.
    for r in 0..n {
        let slot = (ptr0 + r) % kq;
        assert!(
            max_abs_diff(&queue[slot * d..(slot + 1) * d], &keys[r * d..(r + 1) * d]) < 1e-5,
            "row {r}"
        );
    }
    assert_eq!(m.ptr, (ptr0 + n) % kq);
}

#[test]
fn enqueue_wraps_around() {
    let mut m = small_moco(16, 1, 0.0, 5);
    let d = m.query.latent();
    let keys = |v: f32, n: usize| Tensor::from_vec(vec![v; n * d], (n, d), &Device::Cpu).unwrap();
    m.enqueue(&keys(1.0, 3)).unwrap();
    m.enqueue(&keys(2.0, 3)).unwrap();
    let q = tensor_vec(&m.queue);
    let row = |r: usize| q[r * d];
    assert_eq!(
        [row(0), row(1), row(2), row(3), row(4)],
        [2.0, 1.0, 1.0, 2.0, 2.0]
    );
    assert_eq!(m.ptr, 1);
}

fn toy_pairs() -> (Csr, PairSets) {
    let n = 8;
    let g = 5;
    let mut r = Rng::new(9);
    let dense: Vec<f32> = (0..n * g)
        .map(|_| if r.f32() < 0.4 { 0.0 } else { r.f32() * 4.0 })
        .collect();
    let x = Csr::from_dense(n, g, &dense);
    let mut p = PairsTable {
        n_cells: n,
        fingerprint: "x".into(),
        ..Default::default()
    };
    for i in 0..n as u32 {
        for j in [(i + 1) % n as u32, (i + 2) % n as u32] {
            p.push(PairKind::Knn, i, j, 0.0, f32::NAN);
        }
    }
    p.push(PairKind::Mnn, 0, 5, 0.0, f32::NAN);
    p.push(PairKind::Mnn, 1, 5, 0.0, f32::NAN);
    p.push(PairKind::Mnn, 5, 1, 0.0, f32::NAN); // the same seed in the other direction
    (x, PairSets::from_pairs(&p).unwrap())
}

#[test]
fn seed_partners_and_training_cells() {
    let (_, s) = toy_pairs();
    assert_eq!(s.training_cells(), vec![0, 1, 5]);
    assert_eq!(s.partners[5], vec![0, 1]);
    assert_eq!(s.n_seeds(), 2);
    assert_eq!(s.knn[3], vec![4, 5]);
}

#[test]
fn mixup_views_are_convex_combinations_within_bounds() {
    let (x, s) = toy_pairs();
    let mut rng = Rng::new(3);
    let g = x.n_cols;
    let dense = x.to_dense();
    for _ in 0..500 {
        let i = rng.pick(&[0u32, 1, 5, 3]);
        let (v1, v2) = draw_views(&s, i, 0.5, &mut rng);
        for v in [v1, v2] {
            assert!((0.5..=1.0).contains(&v.l), "l = {}", v.l);
        }
        assert_eq!(v1.a, i);
        assert!(s.knn[i as usize].contains(&v1.b));
        if s.partners[i as usize].is_empty() {
            assert_eq!(v2.a, i);
        } else {
            assert!(s.partners[i as usize].contains(&v2.a));
        }
        assert!(s.knn[v2.a as usize].contains(&v2.b));
    }
    // Dense rows equal l * x_a + (1 - l) * x_b and lie between the two cells' values.
    let anchors = [0u32, 5, 1];
    let mut out = Vec::new();
    let mut r1 = Rng::new(11);
    batch_views(&x, &s, &anchors, 0.5, &mut r1, &mut out, &mut Vec::new());
    let mut r2 = Rng::new(11);
    for (row, &i) in anchors.iter().enumerate() {
        let (v1, v2) = draw_views(&s, i, 0.5, &mut r2);
        for (rr, v) in [(row, v1), (anchors.len() + row, v2)] {
            for c in 0..g {
                let (xa, xb) = (dense[v.a as usize * g + c], dense[v.b as usize * g + c]);
                let want = v.l * xa + (1.0 - v.l) * xb;
                let got = out[rr * g + c];
                assert!((got - want).abs() < 1e-5);
                assert!(got >= xa.min(xb) - 1e-6 && got <= xa.max(xb) + 1e-6);
            }
        }
    }
}

#[test]
fn steps_are_deterministic_for_a_seed() {
    for precision in [Precision::F32, Precision::Auto] {
        let run = || {
            let mut m = small_moco(48, 21, 0.3, 16);
            let mut ws = Workspace::with_precision(precision);
            let mut rng = Rng::derive(5, &[0, 2]);
            let losses: Vec<u64> = (0..4)
                .map(|s| {
                    m.step_cpu(&batch(8, 48, s), 8, &mut rng, &mut ws)
                        .unwrap()
                        .to_bits()
                })
                .collect();
            let params: Vec<u32> = m
                .query
                .vars()
                .iter()
                .flat_map(|v| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .map(f32::to_bits)
                .collect();
            (losses, params)
        };
        assert_eq!(run(), run(), "{precision:?}");
    }
}

/// Losses and query parameters (bits) of `steps` fused steps of the reference-like shape
/// (`n` rows of `g` genes), in a pool of `threads` threads.
fn fused_run(
    precision: Precision,
    threads: usize,
    g: usize,
    n: usize,
    steps: u64,
) -> (Vec<f64>, Vec<f32>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut m = small_moco(g, 3, 0.3, 64);
        let mut ws = Workspace::with_precision(precision);
        let mut rng = Rng::new(11);
        let losses = (0..steps)
            .map(|s| {
                m.step_cpu(&batch(n, g, 40 + s), n, &mut rng, &mut ws)
                    .unwrap()
            })
            .collect();
        let params = m
            .query
            .vars()
            .iter()
            .flat_map(|v| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect();
        (losses, params)
    })
}

#[test]
fn thread_count_does_not_change_the_step() {
    for precision in [Precision::F32, Precision::Auto] {
        let (l1, p1) = fused_run(precision, 1, 70, 18, 3);
        let (l2, p2) = fused_run(precision, 2, 70, 18, 3);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(l1, l2, "{precision:?}");
        assert_eq!(bits(&p1), bits(&p2), "{precision:?}");
    }
}

/// The bf16 first layer (`--precision auto` on a CPU with AVX512_BF16) stays close to the
/// f32 step, from the same start on the same batches and dropout masks: the first two
/// losses (nearly the same parameters) within 0.3%, all 20 within 2% (the two runs drift
/// apart as Adam moves the weights on slightly different gradients) and their mean within
/// 0.5%.
#[test]
fn bf16_first_layer_stays_close_to_f32() {
    if !Precision::Auto.bf16_first_layer() {
        return;
    }
    let (g, n, steps) = (300, 32, 20);
    let (la, _) = fused_run(Precision::Auto, 1, g, n, steps);
    let (lf, _) = fused_run(Precision::F32, 1, g, n, steps);
    let rel: Vec<f64> = la
        .iter()
        .zip(&lf)
        .map(|(a, f)| (a - f).abs() / f.abs())
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mean_rel = (mean(&la) - mean(&lf)).abs() / mean(&lf);
    assert!(rel[..2].iter().all(|&r| r < 3e-3), "first losses {rel:?}");
    assert!(rel.iter().all(|&r| r < 2e-2), "losses {la:?} vs {lf:?}");
    assert!(mean_rel < 5e-3, "mean loss differs by {mean_rel}");
}

#[test]
fn state_round_trip_continues_identically() {
    for precision in [Precision::F32, Precision::Auto] {
        let ws_of = || Workspace::with_precision(precision);
        let mut a = small_moco(24, 8, 0.3, 12);
        let mut ws = ws_of();
        let mut rng = Rng::new(1);
        for s in 0..3 {
            a.step_cpu(&batch(6, 24, s), 6, &mut rng, &mut ws).unwrap();
        }
        let st = a.state().unwrap();
        let mut b = Moco::from_state(&st, a.params, a.opt.config, &Device::Cpu).unwrap();
        let mut rb = rng.clone();
        let la = a.step_cpu(&batch(6, 24, 9), 6, &mut rng, &mut ws).unwrap();
        let lb = b
            .step_cpu(&batch(6, 24, 9), 6, &mut rb, &mut ws_of())
            .unwrap();
        assert_eq!(la.to_bits(), lb.to_bits());
        assert_eq!(tensor_vec(&a.queue), tensor_vec(&b.queue));
        for (va, vb) in a.query.vars().iter().zip(b.query.vars()) {
            assert_eq!(tensor_vec(va.as_tensor()), tensor_vec(vb.as_tensor()));
        }
    }
}

/// The automatic length: 80 epochs on medium data, raised to --min-steps on small data, cut
/// to whole epochs within --max-steps on large data (at least one epoch), --min-steps first.
#[test]
fn automatic_epochs_are_bounded_in_steps() {
    use super::train::auto_epochs;
    // 500 cells, 1 step per epoch: 1,500 epochs for the 1,500-step minimum.
    assert_eq!(auto_epochs(80, 1500, 6000, 1), 1500);
    // 10,000 cells (~38 steps per epoch): 80 epochs = 3,040 steps, inside both bounds.
    assert_eq!(auto_epochs(80, 1500, 6000, 38), 80);
    // 50,000 cells (~190 steps): 80 epochs would be 15,200 steps; 31 epochs = 5,890.
    assert_eq!(auto_epochs(80, 1500, 6000, 190), 31);
    // 1M cells (~3,900 steps per epoch): one whole epoch.
    assert_eq!(auto_epochs(80, 1500, 6000, 3900), 1);
    // Stage 1: 3 epochs, within 100..600 steps.
    assert_eq!(auto_epochs(3, 100, 600, 5), 20);
    assert_eq!(auto_epochs(3, 100, 600, 139), 3);
    assert_eq!(auto_epochs(3, 100, 600, 250), 2);
    assert_eq!(auto_epochs(3, 100, 600, 3900), 1);
    // --min-steps above --max-steps wins.
    assert_eq!(auto_epochs(80, 10_000, 6000, 190), 53);
}

#[test]
fn relative_nearest_partner_keeps_far_batch_pairs() {
    // batches: A = {0, 1}, B = {2, 3} (close to A), C = {4, 5} (far from A)
    let batch = [0u32, 0, 1, 1, 2, 2];
    let mut p = PairsTable {
        n_cells: 6,
        fingerprint: "x".into(),
        ..Default::default()
    };
    p.push(PairKind::Knn, 0, 1, 0.1, f32::NAN);
    // A-B: median 0.3
    p.push(PairKind::Mnn, 0, 2, 0.2, f32::NAN);
    p.push(PairKind::Mnn, 1, 3, 0.4, f32::NAN);
    // A-C: median 1.05
    p.push(PairKind::Mnn, 0, 4, 0.9, f32::NAN);
    p.push(PairKind::Mnn, 1, 5, 1.1, f32::NAN);
    p.push(PairKind::Mnn, 0, 5, 1.0, f32::NAN);
    p.push(PairKind::Mnn, 1, 4, 1.2, f32::NAN);
    // cell 1's nearest seed is (1, 3) in distance (0.4) but (1, 5) relative to the batch
    // pairs' medians (1.33 vs 1.05); cell 5's is (0, 5) (0.95 vs 1.05); cell 4 keeps (0, 4)
    let nearest = relative_nearest_partners(&p, &batch);
    assert_eq!(nearest, vec![2, 5, 0, 1, 0, 0]);
    // share 1: view 2 always comes from that partner; share 0 draws as before
    let mut sets = PairSets::from_pairs(&p).unwrap();
    let before = {
        let mut rng = Rng::new(3);
        (0..50)
            .map(|_| draw_views(&sets, 1, 0.5, &mut rng))
            .collect::<Vec<_>>()
    };
    sets.nearest = nearest;
    let mut rng = Rng::new(3);
    let same: Vec<_> = (0..50)
        .map(|_| draw_views(&sets, 1, 0.5, &mut rng))
        .collect();
    assert_eq!(same, before);
    assert!(before.iter().any(|v| v.1.a != 5));
    sets.nearest_share = 1.0;
    let mut rng = Rng::new(3);
    for _ in 0..50 {
        let (_, v2) = draw_views(&sets, 1, 0.5, &mut rng);
        assert_eq!(v2.a, 5);
    }
    // a cell in no seed has none
    let mut q = p.clone();
    q.n_cells = 7;
    assert_eq!(
        relative_nearest_partners(&q, &[0, 0, 1, 1, 2, 2, 2])[6],
        u32::MAX
    );
}
