//! The device pass (candle's operations: what a GPU runs) against cria's own
//! CPU pass, position by position, on the same file and tokens: a prompt's
//! prefill, decoding one token at a time after it (the KV cache reused), and
//! a rewind into the prompt followed by an edited tail.
//!
//! Why: the device pass is a second implementation of the network. Nothing
//! else shows that what a GPU computes is the model cria ships on the CPU,
//! and a wrong answer on a GPU (a kernel, the cache written at the wrong
//! place after a rewind) would otherwise only be seen as worse suggestions.
//!
//! Where it runs: everywhere on `candle-cpu` (the same code on the CPU, in
//! CI), and on a GPU with `CRIA_TEST_DEVICE=cuda` (a build with
//! `--features cuda`; `scripts/gpu-check` runs it). `CRIA_TEST_MODEL=PATH`
//! checks that file instead of the two fetched models: a GPU machine gets
//! Qwen2.5-Coder's shapes at two layers, rebuilt from a seed
//! (`scripts/gguf-seed`: the real model's first blocks repeated; filler
//! weights agree only in a shallow network), which CI checks on the CPU too.
//!
//! Tolerance: both passes quantize activations before their products (cria
//! to 8 bits per 32 values, candle in its own ways per device and batch
//! size), so logits differ in their last bits and that rounding grows
//! through the layers. The bounds are per position, on the distribution:
//! the largest logit difference within 10% of the row's logit scale, the
//! KL divergence of the next-token distributions below 0.05 (worst) and
//! 0.02 (mean), and the same top token wherever the CPU's top token leads
//! the second by more than twice the largest difference seen at that row
//! (a closer race may flip either way without a bug). Measured on
//! `candle-cpu`, the largest of the three were 0.055, 0.021 (SmolLM2) and
//! 0.0072 (the two-layer filler model); the bounds leave about twice that
//! for a GPU's own rounding. A wrong kernel, a cache entry at the wrong
//! position or a missing bias moves the logits by far more: the test holds
//! itself to telling a row from its neighbour's (ten times the mean bound).

// The measured gaps are printed: they are what a GPU run reports.
#![allow(clippy::print_stderr)]

mod support;

use std::path::PathBuf;

use cria::engine::gguf::GgufFile;
use cria::engine::kv_cache::KvCache;
use cria::engine::network::Network;
use cria::engine::{ComputeDevice, Hyperparams, Tokenizer};

const PROGRAM: &str = "import math\n\n\ndef circle_area(radius):\n    \"\"\"The area of a circle of the given radius.\"\"\"\n    return math.pi * radius ** 2\n\n\nclass Ledger:\n    def __init__(self):\n        self.entries = []\n\n    def add(self, amount, note=\"\"):\n        self.entries.append((amount, note))\n\n    def total(self):\n        return sum(amount for amount, _ in self.entries)\n";

/// The edit after the rewind: the last method's body written otherwise.
const EDITED_TAIL: (&str, &str) = ("return sum(amount for amount, _ in self.entries)", "total = 0\n        for amount, _ in self.entries:\n            total += amount\n        return total");

/// Largest |Δlogit| at a position, as a share of its largest |logit|.
const MAX_RELATIVE: f32 = 0.10;
/// Largest KL divergence of a position's next-token distributions.
const MAX_KL: f64 = 0.05;
/// Largest mean of those over a stage's positions.
const MAX_MEAN_KL: f64 = 0.02;

/// Tokens decoded one at a time after the prompt.
const DECODE_STEPS: usize = 12;

/// The device under test: `CRIA_TEST_DEVICE`, else candle's CPU device.
fn device_under_test() -> ComputeDevice {
    match std::env::var("CRIA_TEST_DEVICE") {
        Ok(name) => name.parse().unwrap_or_else(|e| panic!("CRIA_TEST_DEVICE: {e}")),
        Err(_) => ComputeDevice::CandleCpu,
    }
}

/// The files under test: `CRIA_TEST_MODEL`, else both fetched real models.
fn models_under_test() -> Vec<PathBuf> {
    match std::env::var_os("CRIA_TEST_MODEL") {
        Some(path) => vec![PathBuf::from(path)],
        None => vec![support::smollm2(), support::qwen()],
    }
}

/// One network with its own cache.
struct Pass {
    network: Network,
    cache: KvCache,
}

impl Pass {
    fn load(path: &std::path::Path, device: ComputeDevice) -> Self {
        let mut file = GgufFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let network = Network::load(&mut file, 1024, device, &mut |_| {}).unwrap_or_else(|e| panic!("{device}: {e}"));
        let cache = network.new_cache(1024).expect("a KV cache");
        Self { network, cache }
    }

    /// Every token's logits after what the cache holds.
    fn run(&mut self, tokens: &[u32]) -> Vec<f32> {
        self.network.forward_all(tokens, &mut self.cache).expect("a forward pass")
    }
}

/// How far apart two rows of logits are.
#[derive(Debug, Default, Clone, Copy)]
struct RowGap {
    /// Largest |difference| over the row's largest |logit| (at least 1).
    relative: f32,
    /// KL(CPU || device) of the next-token distributions.
    kl: f64,
    /// Whether the top tokens are the same.
    same_top: bool,
    /// Whether the CPU's top token leads by more than twice the largest
    /// difference, so that a flip would be a real disagreement.
    clear_top: bool,
}

fn row_gap(cpu: &[f32], device: &[f32]) -> RowGap {
    assert_eq!(cpu.len(), device.len());
    let scale = cpu.iter().fold(1f32, |m, x| m.max(x.abs()));
    let worst = cpu.iter().zip(device).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let softmax = |v: &[f32]| {
        let max = v.iter().copied().fold(f32::MIN, f32::max);
        let e: Vec<f64> = v.iter().map(|x| f64::from(x - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.into_iter().map(|x| x / sum).collect::<Vec<f64>>()
    };
    let (p, q) = (softmax(cpu), softmax(device));
    let kl = p.iter().zip(&q).filter(|(a, _)| **a > 0.0).map(|(a, b)| a * (a / b.max(1e-300)).ln()).sum::<f64>().max(0.0);
    let top = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    let cpu_top = top(cpu);
    let runner_up = cpu.iter().enumerate().filter(|&(i, _)| i != cpu_top).map(|(_, x)| *x).fold(f32::MIN, f32::max);
    RowGap { relative: worst / scale, kl, same_top: cpu_top == top(device), clear_top: cpu[cpu_top] - runner_up > 2.0 * worst }
}

/// Compares every row of two `[rows * vocab]` logit blocks, prints the
/// worst and mean gaps (the numbers a GPU run reports), and holds them to
/// the module's bounds.
fn assert_rows_agree(what: &str, cpu: &[f32], device: &[f32], vocab: usize) {
    assert_eq!(cpu.len(), device.len(), "{what}: row counts");
    assert!(!cpu.is_empty() && cpu.len().is_multiple_of(vocab), "{what}: whole rows");
    let gaps: Vec<RowGap> = cpu.chunks(vocab).zip(device.chunks(vocab)).map(|(c, d)| row_gap(c, d)).collect();
    let worst_relative = gaps.iter().map(|g| g.relative).fold(0f32, f32::max);
    let worst_kl = gaps.iter().map(|g| g.kl).fold(0f64, f64::max);
    let mean_kl = gaps.iter().map(|g| g.kl).sum::<f64>() / gaps.len() as f64;
    let same_top = gaps.iter().filter(|g| g.same_top).count();
    let flipped_clear: Vec<usize> = gaps.iter().enumerate().filter(|(_, g)| g.clear_top && !g.same_top).map(|(i, _)| i).collect();
    eprintln!(
        "{what}: {} positions, max |Δlogit|/scale {worst_relative:.4}, KL worst {worst_kl:.5} mean {mean_kl:.5}, same top token at {same_top}",
        gaps.len()
    );
    assert!(worst_relative <= MAX_RELATIVE, "{what}: max |Δlogit| is {worst_relative:.4} of the logit scale");
    assert!(worst_kl < MAX_KL, "{what}: worst KL {worst_kl}");
    assert!(mean_kl < MAX_MEAN_KL, "{what}: mean KL {mean_kl}");
    assert!(flipped_clear.is_empty(), "{what}: a clear top token differs at positions {flipped_clear:?}");
}

/// The bounds tell a wrong answer: the CPU's rows against the device's rows
/// one position later (what a cache written one place off gives) break them.
fn assert_bounds_tell_a_shifted_row(what: &str, cpu: &[f32], device: &[f32], vocab: usize) {
    let rows = cpu.len() / vocab;
    let gaps: Vec<RowGap> = (0..rows - 1).map(|i| row_gap(&cpu[i * vocab..(i + 1) * vocab], &device[(i + 1) * vocab..(i + 2) * vocab])).collect();
    let mean_kl = gaps.iter().map(|g| g.kl).sum::<f64>() / gaps.len() as f64;
    let worst_relative = gaps.iter().map(|g| g.relative).fold(0f32, f32::max);
    eprintln!("{what}, rows one position off: mean KL {mean_kl:.3}, max |Δlogit|/scale {worst_relative:.3}");
    assert!(mean_kl > 10.0 * MAX_MEAN_KL && worst_relative > MAX_RELATIVE, "{what}: rows one position off pass for agreement (mean KL {mean_kl}, max |Δlogit|/scale {worst_relative})");
}

fn argmax_of_last(logits: &[f32], vocab: usize) -> u32 {
    let last = &logits[logits.len() - vocab..];
    (0..vocab).max_by(|&a, &b| last[a].total_cmp(&last[b])).unwrap() as u32
}

#[test]
fn the_device_pass_agrees_with_the_cpu_pass_at_every_position() {
    let device = device_under_test();
    for path in models_under_test() {
        assert_passes_agree(&path, device);
    }
}

/// What the GPU check compares on: Qwen2.5-Coder's shapes at two layers,
/// rebuilt from a seed (filler weights), here on the CPU. On filler
/// weights the passes agree only in a shallow network (see
/// `scripts/gguf-seed --help`), so this holds the GPU check's model to the
/// same bounds as the real ones.
#[test]
fn the_passes_agree_on_the_gpu_checks_two_layer_filler_model() {
    if std::env::var_os("CRIA_TEST_MODEL").is_some() {
        return; // a run on a given file (the GPU check) checks that file only
    }
    let dir = tempfile::tempdir().unwrap();
    let (seed, model) = (dir.path().join("qwen.seed"), dir.path().join("two-layers.gguf"));
    support::gguf_seed_ok(&["write".as_ref(), support::qwen().as_os_str(), seed.as_os_str()]);
    support::gguf_seed_ok(&["rebuild".as_ref(), seed.as_os_str(), model.as_os_str(), "--layers".as_ref(), "2".as_ref()]);
    assert_passes_agree(&model, device_under_test());
}

/// Prefill, decoding after the prompt, and a rewind with an edited tail,
/// each compared position by position.
fn assert_passes_agree(path: &std::path::Path, device: ComputeDevice) {
    assert!(device.uses_candle(), "CRIA_TEST_DEVICE names the device pass's device (candle-cpu, cuda[:N], metal[:N]), not {device}");
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let file = GgufFile::open(path).unwrap();
    let tokenizer = Tokenizer::from_gguf(&file).unwrap();
    let vocab = Hyperparams::from_gguf(&file).unwrap().vocab_size;
    drop(file);
    let mut cpu = Pass::load(path, ComputeDevice::Cpu);
    let mut dev = Pass::load(path, device);
    assert_eq!(cpu.network.vocab(), dev.network.vocab());
    let vocab = vocab.min(cpu.network.vocab());
    let row = cpu.network.vocab();

    // Prefill: the prompt in one batch.
    let prompt = tokenizer.encode(PROGRAM).unwrap();
    assert!(prompt.len() > 64, "{name}: a prompt of {} tokens", prompt.len());
    let (c, d) = (cpu.run(&prompt), dev.run(&prompt));
    assert_rows_agree(&format!("{name} on {device}: prefill"), &c, &d, row);
    assert_bounds_tell_a_shifted_row(&format!("{name} on {device}: prefill"), &c, &d, row);

    // Decode after the prompt: one token at a time, both passes fed the
    // CPU's greedy choice so a flip cannot make them drift apart.
    let mut next = argmax_of_last(&c, row);
    let (mut c_rows, mut d_rows) = (Vec::new(), Vec::new());
    for _ in 0..DECODE_STEPS {
        assert!((next as usize) < vocab);
        let (c, d) = (cpu.run(&[next]), dev.run(&[next]));
        next = argmax_of_last(&c, row);
        c_rows.extend(c);
        d_rows.extend(d);
    }
    assert_eq!(dev.cache.len(), prompt.len() + DECODE_STEPS);
    assert_rows_agree(&format!("{name} on {device}: decode after the prompt"), &c_rows, &d_rows, row);

    // Rewind into the prompt, then an edited tail: what an edit does.
    let edited = tokenizer.encode(&PROGRAM.replace(EDITED_TAIL.0, EDITED_TAIL.1)).unwrap();
    let common = prompt.iter().zip(&edited).take_while(|(a, b)| a == b).count();
    assert!(common > 32 && common < prompt.len(), "{name}: the edit is inside the prompt ({common} of {})", prompt.len());
    cpu.cache.truncate(common);
    dev.cache.truncate(common);
    let (c, d) = (cpu.run(&edited[common..]), dev.run(&edited[common..]));
    assert_rows_agree(&format!("{name} on {device}: after a rewind"), &c, &d, row);

    // The rewound device cache computes what a cold one does: a cache
    // entry left at a wrong position would show here.
    let mut cold = Pass::load(path, device);
    let all = cold.run(&edited);
    assert_rows_agree(&format!("{name} on {device}: rewound against cold"), &all[common * row..], &d, row);
}
