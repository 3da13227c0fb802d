//! Engine benchmark: prefill and decode speed, decoding code that repeats
//! itself with and without speculative decoding (prompt lookup), and the
//! latency of completing after an edit near the end of a long prompt (the
//! keystroke case, with KV reuse), on real GGUF files. Prints one JSON object
//! per model on stdout; `benches/engine-vs-llama-cpp` runs it beside
//! llama.cpp's llama-bench and prints the table. Speeds are medians of several
//! runs. `--threads N` sets the engine's threads (default: its own choice);
//! `--device D` where the forward pass runs (`cpu`, the default; `cuda`,
//! `cuda:N` or `metal` with a build with that feature; `candle-cpu`), which
//! `benches/gpu-engine` uses. `--quick` measures only 512-token prefill and
//! decode (for trying a kernel change). `--passes` measures only what one
//! forward pass of 1 to 8 tokens costs after 1,000 cached ones (what
//! speculation weighs guesses against). `--chunks` measures prefill speed
//! of a 1,280-token prompt (real code) run in chunks of 16 to 512 tokens:
//! what a background warm-up's chunk size costs in warm-up time. Each
//! model's first measure is the first request after its load
//! (`first_request_ms`), before anything warms the engine.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use cria::engine::gguf::GgufFile;
use cria::engine::network::Network;
use cria::engine::{default_threads, ComputeDevice, Engine, EngineOptions, GenerationRequest};

mod common;
use common::{fail, median, BenchArgs};

const RUNS: usize = 3;

/// Real source text for prompts: cria's own engine code, repeated as needed.
/// Read from the checkout the benchmark was built in, or, where that is not
/// on this machine (a prebuilt benchmark carried to a GPU machine with a
/// copy of the repository), from `server/src/engine` under the working
/// folder.
fn corpus() -> String {
    let built_in = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let dir = if built_in.is_dir() { built_in } else { PathBuf::from("server/src/engine") };
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    names.sort();
    let text: String = names.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    text.repeat(3)
}

fn tokens(engine: &Engine, n: usize) -> Vec<u32> {
    let ids = engine.tokenizer().encode(&corpus()).unwrap();
    assert!(ids.len() >= n, "corpus too short");
    ids[..n].to_vec()
}

fn prefill_tps(engine: &mut Engine, n: usize) -> f64 {
    let prompt = tokens(engine, n);
    median(
        (0..RUNS)
            .map(|_| {
                let started = Instant::now();
                engine.prompt_logits(&prompt).unwrap();
                n as f64 / started.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// The first request after the load, as an editor's first completion meets
/// it: a 512-token prompt and 16 new tokens, nothing run before it but
/// what the load itself runs. On a GPU this is where kernels not compiled
/// at load would show (seconds, not milliseconds).
fn first_request_ms(engine: &mut Engine) -> f64 {
    let prompt = tokens(engine, 512);
    let started = Instant::now();
    engine.generate(&GenerationRequest::new(prompt, 16, vec![])).unwrap();
    started.elapsed().as_secs_f64() * 1e3
}

/// Plain token-by-token decoding (as llama-bench's tg measures it).
fn decode_tps(engine: &mut Engine, n: usize) -> f64 {
    let prompt = tokens(engine, 64);
    decode_speed(engine, &prompt, n, false).0
}

/// Median tokens/s decoding `n` tokens after `prompt`, and the median share of
/// drafted tokens the model accepted.
fn decode_speed(engine: &mut Engine, prompt: &[u32], n: usize, speculative: bool) -> (f64, f64) {
    let runs: Vec<(f64, f64)> = (0..RUNS)
        .map(|_| {
            engine.prompt_logits(&prompt[..1]).unwrap();
            let request = GenerationRequest { speculative, ..GenerationRequest::new(prompt.to_vec(), n, vec![]) };
            let done = engine.generate(&request).unwrap();
            assert_eq!(done.tokens.len(), n);
            // The first token comes from prefill's logits; n - 1 tokens follow.
            ((n - 1) as f64 / done.decode.as_secs_f64(), done.accepted_tokens as f64 / done.drafted_tokens.max(1) as f64)
        })
        .collect();
    (median(runs.iter().map(|r| r.0).collect()), median(runs.iter().map(|r| r.1).collect()))
}

/// Code that repeats itself, as files do: what speculative decoding is for.
const REPEATING: &str = "def area_square(side):\n    \"\"\"Area of a square.\"\"\"\n    return side * side\n\n\ndef area_rectangle(width, height):\n    \"\"\"Area of a rectangle.\"\"\"\n    return width * height\n\n\ndef perimeter_square(side):\n    \"\"\"Perimeter of a square.\"\"\"\n    return 4 * side\n\n\ndef perimeter_rectangle(width, height):\n    \"\"\"Perimeter of a rectangle.\"\"\"\n    return 2 * (width + height)\n\n\ndef area_triangle(";

/// Edit the last line of a 1500-token prompt, then complete 16 tokens.
fn edit_latency_ms(engine: &mut Engine) -> (f64, usize) {
    let base = tokens(engine, 1500);
    let request = |prompt: Vec<u32>| GenerationRequest::new(prompt, 16, vec![]);
    engine.generate(&request(base.clone())).unwrap();
    let mut computed = 0;
    let ms = median(
        (0..RUNS)
            .map(|run| {
                let mut edited = base.clone();
                let n = edited.len();
                // Change a few tokens near the end, differently each run.
                edited[n - 8 + run] = base[n - 100 + run];
                let started = Instant::now();
                let done = engine.generate(&request(edited)).unwrap();
                computed = done.computed_tokens();
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    (ms, computed)
}

/// Milliseconds for one forward pass of 1..=8 tokens after 1,000 cached
/// ones: the fastest of 25 rounds that run the sizes in turn (the fastest,
/// because what slows a pass down on a shared machine only ever adds).
fn pass_ms_by_batch(path: &Path, threads: usize) -> Vec<(usize, f64)> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut file = GgufFile::open(path).unwrap();
        let network = Network::load(&mut file, 2048, ComputeDevice::Cpu, &mut |_| {}).unwrap();
        let mut cache = network.new_cache(2048).unwrap();
        let context: Vec<u32> = (0..1000u32).map(|i| 100 + (i * 7919) % 5000).collect();
        network.forward(&context, &mut cache).unwrap();
        let mut fastest = [f64::MAX; 9];
        for _ in 0..25 {
            for (m, best) in fastest.iter_mut().enumerate().skip(1) {
                let batch: Vec<u32> = (0..m as u32).map(|i| 300 + i).collect();
                cache.truncate(context.len());
                let started = Instant::now();
                network.forward_all(&batch, &mut cache).unwrap();
                *best = best.min(started.elapsed().as_secs_f64() * 1e3);
            }
        }
        fastest.iter().enumerate().skip(1).map(|(m, &ms)| (m, ms)).collect()
    })
}

/// Prompt tokens per second when a 1,280-token prompt of real code is run
/// in chunks of each size, one forward pass per chunk (as a background
/// warm-up runs it): the median of three runs per size.
fn prefill_tps_by_chunk(path: &Path, threads: usize) -> Vec<(usize, f64)> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut file = GgufFile::open(path).unwrap();
        let prompt = cria::engine::Tokenizer::from_gguf(&file).unwrap().encode(&corpus()).unwrap()[..1280].to_vec();
        let network = Network::load(&mut file, 2048, ComputeDevice::Cpu, &mut |_| {}).unwrap();
        let mut cache = network.new_cache(2048).unwrap();
        [16, 32, 64, 128, 256, 512]
            .into_iter()
            .map(|size| {
                let runs = (0..RUNS)
                    .map(|_| {
                        cache.truncate(0);
                        let started = Instant::now();
                        for chunk in prompt.chunks(size) {
                            network.forward(chunk, &mut cache).unwrap();
                        }
                        prompt.len() as f64 / started.elapsed().as_secs_f64()
                    })
                    .collect();
                (size, median(runs))
            })
            .collect()
    })
}

fn main() {
    let Some(args) = BenchArgs::from_env("engine", &["--threads", "--device"]) else { return };
    let models_dir = std::env::var_os("CRIA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/cria"))
        .join("models");
    let threads = args.value("--threads").map(|_| args.number("--threads", 0));
    let device: ComputeDevice = args.value("--device").map_or(ComputeDevice::Cpu, |d| d.parse().unwrap_or_else(|e| fail(format!("--device: {e}"))));
    let quick = args.switch("--quick");
    let passes = args.switch("--passes");
    let chunks = args.switch("--chunks");
    let files = args.positional(&["SmolLM2-135M-Instruct.Q4_1.gguf", "qwen2.5-coder-0.5b-instruct-q5_0.gguf"]);
    for file in files {
        let path = models_dir.join(&file);
        if passes {
            let ms = pass_ms_by_batch(&path, threads.unwrap_or_else(default_threads));
            println!("{}", serde_json::json!({ "model": file, "pass_ms_by_batch": ms }));
            continue;
        }
        if chunks {
            let tps = prefill_tps_by_chunk(&path, threads.unwrap_or_else(default_threads));
            println!("{}", serde_json::json!({ "model": file, "prefill_tps_by_chunk": tps }));
            continue;
        }
        let started = Instant::now();
        let options = EngineOptions { context_length: 2048, threads: threads.unwrap_or(0), device, ..Default::default() };
        let mut engine = Engine::load(&path, &options, &mut |_| {}).unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        let first_request_ms = first_request_ms(&mut engine);
        let pp512 = prefill_tps(&mut engine, 512);
        if quick {
            let tg = decode_tps(&mut engine, 32);
            println!("{}", serde_json::json!({ "model": file, "threads": engine.threads(), "prefill_512_tps": pp512, "decode_tps": tg }));
            continue;
        }
        let pp1536 = prefill_tps(&mut engine, 1536);
        let tg = decode_tps(&mut engine, 32);
        let repeating = engine.tokenizer().encode(REPEATING).unwrap();
        let (plain_repeating, _) = decode_speed(&mut engine, &repeating, 64, false);
        let (speculative_repeating, accepted) = decode_speed(&mut engine, &repeating, 64, true);
        let stats = engine.speculation_stats();
        let pass_ms: Vec<(usize, f64)> = stats.timed().into_iter().map(|(n, s)| (n, s * 1e3)).collect();
        let (edit_ms, computed) = edit_latency_ms(&mut engine);
        println!(
            "{}",
            serde_json::json!({
                "model": file, "device": engine.device().to_string(), "threads": engine.threads(),
                "speculative": engine.speculative(), "load_ms": load_ms, "first_request_ms": first_request_ms,
                "prefill_512_tps": pp512, "prefill_1536_tps": pp1536, "decode_tps": tg,
                "decode_repeating_tps": plain_repeating, "decode_repeating_speculative_tps": speculative_repeating,
                "speculation_accepted_share": accepted, "pass_ms_by_tokens": pass_ms, "guess_rate": stats.guess_rate(),
                "edit_then_16_ms": edit_ms, "edit_recomputed_tokens": computed,
            })
        );
    }
}
