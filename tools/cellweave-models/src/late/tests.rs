//! Tests of the LATE model: the hand-written gradients against candle autograd, the loss
//! ignoring zero entries, saving and loading, determinism.

use super::batch::{Batch, Masks};
use super::fast::{self, Params};
use super::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A random sparse non-negative matrix (`density` of the entries non-zero), log10(x+1)-like.
fn random_csr(n: usize, g: usize, density: f64, seed: u64) -> Csr {
    let mut rng = SmallRng::seed_from_u64(seed);
    let dense: Vec<f32> = (0..n * g)
        .map(|_| {
            if rng.random::<f64>() < density {
                rng.random_range(0.1f32..2.0)
            } else {
                0.0
            }
        })
        .collect();
    Csr::from_dense(n, g, &dense)
}

/// Low-rank data with structure to learn: a few cell types with gene programmes, then
/// three quarters of the non-zeros dropped.
fn structured_csr(n: usize, g: usize, seed: u64) -> (Csr, Vec<u32>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let types: Vec<Vec<f32>> = (0..4)
        .map(|_| (0..g).map(|_| rng.random_range(0.0f32..2.5)).collect())
        .collect();
    let mut dense = vec![0f32; n * g];
    let mut codes = Vec::with_capacity(n);
    for i in 0..n {
        let t = i % 4;
        codes.push((i % 2) as u32);
        for j in 0..g {
            let v = types[t][j] + if i % 2 == 1 { 0.3 } else { 0.0 };
            if v > 0.8 && rng.random::<f64>() < 0.25 {
                dense[i * g + j] = v;
            }
        }
    }
    (Csr::from_dense(n, g, &dense), codes)
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = a
        .iter()
        .chain(b)
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Bigger random weights than LATE's 1e-3 init so that every path carries signal.
fn test_model(cfg: LateConfig, seed: u64) -> Late {
    let mut m = Late::init(cfg, seed, &Device::Cpu).unwrap();
    let (mut w, mut b) = m.to_host().unwrap();
    let mut rng = SmallRng::seed_from_u64(seed + 1);
    for v in w.iter_mut().flatten().chain(b.iter_mut().flatten()) {
        *v = rng.random_range(-0.5f32..0.5) + 0.05;
    }
    m.set_from_host(&w, &b).unwrap();
    m
}

fn check_fast_against_autograd(n_batches: usize, hidden: Vec<usize>, with_dropout: bool) {
    let (n, g) = (11, 23);
    let cfg = LateConfig::new(g, hidden, n_batches);
    let model = test_model(cfg.clone(), 7);
    let x = random_csr(n, g, 0.3, 3);
    let codes: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
    let rows: Vec<usize> = (0..n).collect();
    let batch = Batch::gather(&x, &rows, (n_batches > 0).then_some(&codes[..]));
    let mut rng = SmallRng::seed_from_u64(5);
    let masks = with_dropout.then(|| Masks::sample(&mut rng, &cfg, &batch));

    let p = Params::from_model(&model).unwrap();
    let mut grads = p.zeros_like();
    let loss_fast =
        fast::loss_and_grads(&p, &cfg, &batch, masks.as_ref(), Some(&mut grads)).unwrap();
    // Same layouts as the model: transpose the output layer back.
    let mut as_model = model.clone();
    grads.to_model(&mut as_model).unwrap();
    let (gw_fast, gb_fast) = as_model.to_host().unwrap();

    let (loss_ag, gw, gb, _) = autograd::loss_and_grads(&model, &batch, masks.as_ref()).unwrap();
    assert!(
        ((loss_fast as f32 - loss_ag) / loss_ag).abs() < 1e-5,
        "loss {loss_fast} vs {loss_ag}"
    );
    for l in 0..cfg.n_layers() {
        let w_ag = gw[l].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b_ag = gb[l].to_vec1::<f32>().unwrap();
        assert!(
            w_ag.iter().any(|v| *v != 0.0),
            "layer {l}: no weight gradient"
        );
        let (dw, db) = (
            max_rel_diff(&gw_fast[l], &w_ag),
            max_rel_diff(&gb_fast[l], &b_ag),
        );
        assert!(
            dw < 1e-4 && db < 1e-4,
            "layer {l}: weight grads differ by {dw}, bias grads by {db}"
        );
    }
}

#[test]
fn hand_written_gradients_match_autograd() {
    check_fast_against_autograd(0, vec![13, 7, 13], true);
    check_fast_against_autograd(0, vec![13, 7, 13], false);
}

#[test]
fn hand_written_gradients_match_autograd_batch_aware() {
    check_fast_against_autograd(3, vec![13, 7, 13], true);
    check_fast_against_autograd(3, vec![9], true);
    check_fast_against_autograd(2, vec![12, 8, 6, 8, 12], false);
}

#[test]
fn loss_ignores_zero_entries() {
    let (n, g) = (9, 17);
    let cfg = LateConfig::new(g, vec![8, 4, 8], 0);
    let model = test_model(cfg.clone(), 1);
    let x = random_csr(n, g, 0.35, 11);
    let rows: Vec<usize> = (0..n).collect();
    let batch = Batch::gather(&x, &rows, None);
    let mut rng = SmallRng::seed_from_u64(2);
    let masks = Masks::sample(&mut rng, &cfg, &batch);
    let (_, _, _, g_h) = autograd::loss_and_grads(&model, &batch, Some(&masks)).unwrap();
    let g_h = g_h.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let xd = x.to_dense();
    let (mut zeros, mut nonzero_grads) = (0, 0);
    for (xv, gv) in xd.iter().zip(&g_h) {
        if *xv == 0.0 {
            assert_eq!(*gv, 0.0, "gradient at a zero input entry");
            zeros += 1;
        } else if *gv != 0.0 {
            nonzero_grads += 1;
        }
    }
    assert!(
        zeros > 50 && nonzero_grads > 20,
        "{zeros} zeros, {nonzero_grads} non-zero gradients"
    );

    // Changing what the model says at the zeros changes nothing: the fast loss only reads
    // the non-zero entries, so compare it with the dense masked MSE of the full output.
    let p = Params::from_model(&model).unwrap();
    let fast_loss = fast::loss_and_grads(&p, &cfg, &batch, None, None).unwrap();
    let dense = Tensor::from_vec(xd.clone(), (n, g), &Device::Cpu).unwrap();
    let full = model.loss(&dense, None).unwrap();
    assert!(
        ((fast_loss as f32 - full) / full).abs() < 1e-5,
        "{fast_loss} vs {full}"
    );
}

/// The hand-written path, which never computes the outputs at zero inputs: a gene that is
/// zero in every cell of the batch gets exactly zero output-layer gradients (weights and
/// bias), changing its output weights changes neither the loss nor any other gradient, and
/// a finite difference on an observed gene's output weight matches its gradient.
#[test]
fn fast_gradients_ignore_zero_entries() {
    let (n, g) = (10, 15);
    let cfg = LateConfig::new(g, vec![8, 4, 8], 0);
    let model = test_model(cfg.clone(), 3);
    let mut dense = random_csr(n, g, 0.4, 21).to_dense();
    let silent = [2usize, 9];
    for i in 0..n {
        for &j in &silent {
            dense[i * g + j] = 0.0;
        }
    }
    let x = Csr::from_dense(n, g, &dense);
    let rows: Vec<usize> = (0..n).collect();
    let batch = Batch::gather(&x, &rows, None);
    let p = Params::from_model(&model).unwrap();
    let last = cfg.n_layers() - 1;
    let din = cfg.in_total(last);
    let grads_of = |p: &Params| {
        let mut gr = p.zeros_like();
        let loss = fast::loss_and_grads(p, &cfg, &batch, None, Some(&mut gr)).unwrap();
        (loss, gr)
    };
    let (loss, gr) = grads_of(&p);
    // The output layer is stored gene-major: row j holds gene j's weights.
    for &j in &silent {
        assert!(gr.w[last][j * din..(j + 1) * din].iter().all(|v| *v == 0.0));
        assert_eq!(gr.b[last][j], 0.0);
    }
    let mut q = p.clone();
    for &j in &silent {
        q.w[last][j * din..(j + 1) * din]
            .iter_mut()
            .for_each(|v| *v += 3.0);
        q.b[last][j] += 3.0;
    }
    let (loss_q, gr_q) = grads_of(&q);
    assert_eq!(loss, loss_q);
    assert_eq!(gr.w[..last], gr_q.w[..last]);
    // Finite difference on an output weight of an observed gene with an active output.
    let (j, k) = (0..g)
        .filter(|j| !silent.contains(j))
        .flat_map(|j| (0..din).map(move |k| (j, k)))
        .max_by(|a, b| {
            let ga = gr.w[last][a.0 * din + a.1].abs();
            ga.total_cmp(&gr.w[last][b.0 * din + b.1].abs())
        })
        .unwrap();
    let h = 1e-2f32;
    let mut plus = p.clone();
    plus.w[last][j * din + k] += h;
    let mut minus = p.clone();
    minus.w[last][j * din + k] -= h;
    let fd = (grads_of(&plus).0 - grads_of(&minus).0) / (2.0 * h as f64);
    let an = gr.w[last][j * din + k] as f64;
    assert!(
        an != 0.0 && ((fd - an) / an).abs() < 1e-2,
        "finite difference {fd} vs gradient {an}"
    );
}

#[test]
fn save_and_load_keep_the_weights() {
    let cfg = LateConfig::new(6, vec![5, 3, 5], 2);
    let model = test_model(cfg.clone(), 4);
    let dir = std::env::temp_dir().join(format!("cellweave-late-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let card = ModelCard {
        model: "late".into(),
        card_version: 1,
        cellweave_version: "test".into(),
        scale: "log10".into(),
        gene_ids: (0..6).map(|i| format!("g{i}")).collect(),
        hidden: cfg.hidden.clone(),
        keep_input: cfg.keep_input,
        keep_hidden: cfg.keep_hidden,
        batches: vec!["a".into(), "b".into()],
        batch_key: Some("batch".into()),
        activation: "relu".into(),
        weight_layout: "out x in".into(),
        training: TrainSummary::default(),
    };
    model.save(&dir, &card).unwrap();
    let (loaded, card2) = Late::load(&dir, &Device::Cpu).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(card, card2);
    assert_eq!(model.to_host().unwrap(), loaded.to_host().unwrap());
    let x = random_csr(4, 6, 0.5, 1);
    let codes = [0u32, 1, 0, 1];
    assert_eq!(
        model.impute(&x, Some(&codes), 3).unwrap(),
        loaded.impute(&x, Some(&codes), 3).unwrap()
    );
}

fn small_opts(epochs: usize, seed: u64) -> TrainOptions {
    TrainOptions {
        epochs,
        patience: 0,
        lr: 1e-3,
        batch_size: 16,
        val_fraction: 0.2,
        seed,
        ..Default::default()
    }
}

#[test]
fn training_learns_and_is_deterministic() {
    let (x, _) = structured_csr(96, 30, 9);
    let cfg = LateConfig::new(30, vec![24, 12, 24], 0);
    let run = |seed: u64| {
        let mut m = Late::init(cfg.clone(), seed, &Device::Cpu).unwrap();
        let r = train(
            &mut m,
            &x,
            None,
            &small_opts(40, seed),
            Engine::Fast,
            &mut |_| {},
        )
        .unwrap();
        (m.to_host().unwrap(), r)
    };
    let (a, ra) = run(3);
    let (b, rb) = run(3);
    let (c, _) = run(4);
    assert_eq!(a, b, "same seed, different parameters");
    assert_eq!(
        ra.log.iter().map(|e| e.val_loss).collect::<Vec<_>>(),
        rb.log.iter().map(|e| e.val_loss).collect::<Vec<_>>()
    );
    assert_ne!(a, c, "different seeds, same parameters");
    let first = ra.log[0].val_loss;
    assert!(
        ra.best_val_loss < 0.5 * first,
        "validation loss {first} -> {}",
        ra.best_val_loss
    );
}

#[test]
fn fast_and_autograd_engines_follow_the_same_path() {
    let (x, codes) = structured_csr(64, 20, 2);
    for n_batches in [0, 2] {
        let cfg = LateConfig::new(20, vec![16, 8, 16], n_batches);
        let m0 = test_model(cfg.clone(), 8);
        let opts = TrainOptions {
            lr: 1e-4,
            ..small_opts(2, 1)
        };
        let mut a = m0.clone();
        let ra = train(&mut a, &x, Some(&codes), &opts, Engine::Fast, &mut |_| {}).unwrap();
        let mut b = m0.clone();
        let rb = train(
            &mut b,
            &x,
            Some(&codes),
            &opts,
            Engine::Autograd,
            &mut |_| {},
        )
        .unwrap();
        let (wa, ba) = a.to_host().unwrap();
        let (wb, bb) = b.to_host().unwrap();
        let (w0, _) = m0.to_host().unwrap();
        for l in 0..wa.len() {
            // Compare the updates (parameters moved by about lr per step).
            let da: Vec<f32> = wa[l].iter().zip(&w0[l]).map(|(p, q)| p - q).collect();
            let db: Vec<f32> = wb[l].iter().zip(&w0[l]).map(|(p, q)| p - q).collect();
            assert!(
                max_rel_diff(&da, &db) < 2e-2,
                "layer {l}: updates differ ({})",
                max_rel_diff(&da, &db)
            );
            assert!(max_rel_diff(&ba[l], &bb[l]) < 1e-3);
        }
        for (ea, eb) in ra.log.iter().zip(&rb.log) {
            assert!((ea.val_loss - eb.val_loss).abs() < 1e-3 * ea.val_loss);
        }
    }
}

#[test]
fn zero_epochs_keep_the_initial_model() {
    let (x, _) = structured_csr(40, 12, 1);
    let cfg = LateConfig::new(12, vec![8, 4, 8], 0);
    let m0 = test_model(cfg, 2);
    let mut m = m0.clone();
    let r = train(
        &mut m,
        &x,
        None,
        &small_opts(0, 0),
        Engine::Auto,
        &mut |_| {},
    )
    .unwrap();
    assert!(r.log.is_empty());
    assert_eq!(m.to_host().unwrap(), m0.to_host().unwrap());
}

#[test]
fn split_is_seeded_and_complete() {
    let (t, v) = split_cells(100, 0.15, 1);
    assert_eq!((t.len(), v.len()), (85, 15));
    let mut all: Vec<usize> = t.iter().chain(&v).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    assert_eq!(split_cells(100, 0.15, 1), (t, v.clone()));
    assert_ne!(split_cells(100, 0.15, 2).1, v);
}

#[test]
fn automatic_length_is_bounded_in_steps() {
    use super::stage::{resolved_epochs, Options, DEFAULT_EPOCHS, DEFAULT_MAX_STEPS};
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        o: Options,
    }
    let parse = |extra: &[&str]| {
        let mut args = vec!["impute", "in.arrow", "-o", "out.arrow"];
        args.extend(extra);
        Cli::try_parse_from(args).unwrap().o
    };
    let o = parse(&[]);
    assert_eq!((o.epochs, o.max_steps), (None, DEFAULT_MAX_STEPS));
    // 0.85 x 60,000 = 51,000 training cells: 200 steps of 256 per epoch, 100 epochs = 20,000
    assert_eq!(resolved_epochs(&o, 60_000), DEFAULT_EPOCHS);
    assert_eq!(resolved_epochs(&o, 2_000), DEFAULT_EPOCHS);
    // 100,000 cells: 333 steps per epoch, 60 whole epochs in 20,000 steps
    assert_eq!(resolved_epochs(&o, 100_000), 60);
    // 1M: 3,321 steps per epoch, 6 epochs
    assert_eq!(resolved_epochs(&o, 1_000_000), 6);
    // at least one epoch, whatever the bound
    assert_eq!(resolved_epochs(&parse(&["--max-steps", "1"]), 100_000), 1);
    // --epochs is taken as given (0: apply an --init model as it is)
    assert_eq!(
        resolved_epochs(&parse(&["--epochs", "500"]), 1_000_000),
        500
    );
    assert_eq!(resolved_epochs(&parse(&["--epochs", "0"]), 100_000), 0);
}
