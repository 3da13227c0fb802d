//! Prefill products two ways, on Qwen2.5-Coder-0.5B's shapes and weight
//! types: cria's integer kernels on the quantized weights, against the
//! weights dequantized to f32 once and multiplied by candle's dense GEMM (the
//! `gemm` crate). The issue asked which is faster for prefill; this measures
//! it. Prints a markdown table of milliseconds per product (median of 5) at
//! 512 prompt rows. Run: `cargo bench -p cria --bench prefill_gemm -- --bench`
//! (`--threads N`, default 2; `CRIA_CPU=avx2` for the AVX2 kernels).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use cria::engine::quant::{QuantMatrix, Scratch};

mod common;
use common::{median, BenchArgs};

fn time(mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

fn main() {
    let Some(args) = BenchArgs::from_env("prefill_gemm", &["--threads"]) else { return };
    let threads = args.number("--threads", 2);
    // candle's GEMM sizes its own thread pool from RAYON_NUM_THREADS.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let m = 512;
    println!("| matrix (rows × width, type) | cria integer kernels (ms) | dequantized f32 + dense GEMM (ms) | GEMM / cria |");
    println!("| --- | ---: | ---: | ---: |");
    let (mut ours_total, mut dense_total) = (0.0, 0.0);
    for (name, rows, k, dtype) in [
        ("q, k, v", 1152, 896, GgmlDType::Q5_0),
        ("attention output", 896, 896, GgmlDType::Q5_0),
        ("gate, up", 9728, 896, GgmlDType::Q5_0),
        ("down", 896, 4864, GgmlDType::Q4K),
        ("down (other layers)", 896, 4864, GgmlDType::Q6K),
    ] {
        let w = Tensor::randn(0f32, 0.05, (rows, k), &Device::Cpu).unwrap();
        let x: Vec<f32> = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let dense_w = q.dequantize(&Device::Cpu).unwrap().t().unwrap().contiguous().unwrap();
        let ours = QuantMatrix::new(QTensor::quantize(&w, dtype).unwrap()).unwrap();
        let mut out = vec![0f32; m * rows];
        let mut scratch = Scratch::default();
        let ours_ms = time(|| pool.install(|| ours.matmul(&x, m, &mut out, &mut scratch)).unwrap());
        let xt = Tensor::from_slice(&x, (m, k), &Device::Cpu).unwrap();
        let dense_ms = time(|| {
            xt.matmul(&dense_w).unwrap();
        });
        ours_total += ours_ms;
        dense_total += dense_ms;
        println!("| {name} ({rows} × {k}, {dtype:?}) | {ours_ms:.1} | {dense_ms:.1} | {:.2}× |", dense_ms / ours_ms);
    }
    println!("| one layer's products | {ours_total:.1} | {dense_total:.1} | {:.2}× |", dense_total / ours_total);
}
