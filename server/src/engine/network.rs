//! Where the model runs, and the one interface generation sees over the two
//! forward passes: cria's own on the CPU ([`Transformer`]) and the one built
//! from candle tensor operations for GPUs ([`DeviceTransformer`]).
//!
//! Generation, prefix reuse and speculative decoding only need "run these
//! tokens after this cache" and the cache's bookkeeping, so they hold a
//! [`Network`] and a [`KvCache`] and never ask which pass is behind them.

use std::fmt;
use std::str::FromStr;

use candle_core::{Device, Tensor};

use super::device_model::DeviceTransformer;
use super::gguf::GgufFile;
use super::kv_cache::KvCache;
use super::model::{Hyperparams, Transformer};
use super::EngineError;

/// The device the forward pass runs on (the `device` setting, `--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComputeDevice {
    /// The CPU, on cria's own quantized kernels: the fastest pass on a CPU,
    /// and the only one with speculative decoding.
    #[default]
    Cpu,
    /// The device forward pass (candle operations) on the CPU: slower than
    /// [`Self::Cpu`], but the same code a GPU runs, so it can be tested on a
    /// machine without one.
    CandleCpu,
    /// A CUDA GPU, by ordinal (needs a build with `--features cuda`).
    Cuda(usize),
    /// An Apple GPU through Metal, by ordinal (needs a build with
    /// `--features metal`, on macOS).
    Metal(usize),
}

/// A device name that is not one of `cpu`, `candle-cpu`, `cuda[:N]`, `metal[:N]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device `{0}` (expected cpu, cuda, cuda:N, metal, metal:N or candle-cpu)")]
pub struct UnknownDevice(pub String);

impl FromStr for ComputeDevice {
    type Err = UnknownDevice;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownDevice(text.to_string());
        let (name, ordinal) = match text.split_once(':') {
            Some((name, n)) => (name, Some(n.parse::<usize>().map_err(|_| unknown())?)),
            None => (text, None),
        };
        match (name, ordinal) {
            ("cpu", None) => Ok(Self::Cpu),
            ("candle-cpu", None) => Ok(Self::CandleCpu),
            ("cuda", n) => Ok(Self::Cuda(n.unwrap_or(0))),
            ("metal", n) => Ok(Self::Metal(n.unwrap_or(0))),
            _ => Err(unknown()),
        }
    }
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::CandleCpu => f.write_str("candle-cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

impl ComputeDevice {
    /// Whether this device takes the device forward pass (candle operations)
    /// rather than cria's own CPU pass.
    pub fn uses_candle(self) -> bool {
        !matches!(self, Self::Cpu)
    }

    /// Opens the candle device. A GPU this build has no support for is an
    /// error that says which feature to rebuild with.
    pub fn open(self) -> Result<Device, EngineError> {
        let unavailable = |reason: String| EngineError::DeviceUnavailable { device: self.to_string(), reason };
        match self {
            Self::Cpu | Self::CandleCpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => {
                #[cfg(feature = "cuda")]
                {
                    Device::new_cuda(ordinal).map_err(|e| {
                        unavailable(format!("{} (is the NVIDIA driver installed, and is there a GPU {ordinal}?)", without_backtrace(e)))
                    })
                }
                #[cfg(not(feature = "cuda"))]
                {
                    let _ = ordinal;
                    Err(unavailable(
                        "this cria was built without CUDA support; rebuild it with `--features cuda` (e.g. `cargo install --path server --features cuda`, which needs the CUDA toolkit's nvcc)".into(),
                    ))
                }
            }
            Self::Metal(ordinal) => {
                #[cfg(feature = "metal")]
                {
                    Device::new_metal(ordinal).map_err(|e| unavailable(format!("{} (is there a Metal GPU {ordinal}?)", without_backtrace(e))))
                }
                #[cfg(not(feature = "metal"))]
                {
                    let _ = ordinal;
                    Err(unavailable(
                        "this cria was built without Metal support; rebuild it on macOS with `--features metal` (e.g. `cargo install --path server --features metal`)".into(),
                    ))
                }
            }
        }
    }
}

/// The error without the backtrace candle attaches when `RUST_BACKTRACE` is
/// set: a device that cannot be opened is a message for the user ("no
/// CUDA-capable device is detected"), not twenty frames of candle's stack.
#[cfg(any(feature = "cuda", feature = "metal"))]
fn without_backtrace(error: candle_core::Error) -> candle_core::Error {
    match error {
        candle_core::Error::WithBacktrace { inner, .. } => without_backtrace(*inner),
        other => other,
    }
}

/// The resident network, on the CPU or on a candle device.
pub enum Network {
    /// cria's own forward pass on the CPU (boxed: its buffers make it the
    /// larger variant by far).
    Cpu(Box<Transformer>),
    /// The forward pass of candle operations, on a GPU (or the CPU in tests);
    /// boxed too, as the CUDA build makes it large.
    Device(Box<DeviceTransformer>),
}

impl Network {
    /// Loads the weights for `device`. `max_context` bounds the usable
    /// window; `progress` receives `0..=1`.
    pub fn load(file: &mut GgufFile, max_context: usize, device: ComputeDevice, progress: &mut dyn FnMut(f32)) -> Result<Self, EngineError> {
        if device.uses_candle() {
            let device = device.open()?;
            Ok(Self::Device(Box::new(DeviceTransformer::load(file, max_context, &device, progress)?)))
        } else {
            Ok(Self::Cpu(Box::new(Transformer::load(file, max_context, &Device::Cpu, progress)?)))
        }
    }

    /// The network's shape.
    pub fn hyperparams(&self) -> &Hyperparams {
        match self {
            Self::Cpu(m) => m.hyperparams(),
            Self::Device(m) => m.hyperparams(),
        }
    }

    /// Positions the rotary tables cover: the largest usable context.
    pub fn max_context(&self) -> usize {
        match self {
            Self::Cpu(m) => m.max_context(),
            Self::Device(m) => m.max_context(),
        }
    }

    /// Width of a row of logits.
    pub fn vocab(&self) -> usize {
        match self {
            Self::Cpu(m) => m.vocab(),
            Self::Device(m) => m.vocab(),
        }
    }

    /// Whether a token's logits are the same bits whatever else is in its
    /// batch, which speculative decoding needs to leave the output unchanged.
    pub fn batch_invariant(&self) -> bool {
        match self {
            Self::Cpu(m) => m.batch_invariant(),
            Self::Device(m) => m.batch_invariant(),
        }
    }

    /// A KV cache where this network reads it, for `capacity` positions.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache, EngineError> {
        match self {
            Self::Cpu(m) => m.new_cache(capacity),
            Self::Device(m) => m.new_cache(capacity),
        }
    }

    /// Runs `tokens` after what `cache` holds, appends their keys and values,
    /// and returns the logits of the last token (`[vocab]`).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, EngineError> {
        match self {
            Self::Cpu(m) => m.forward(tokens, cache),
            Self::Device(m) => m.forward(tokens, cache),
        }
    }

    /// Like [`Self::forward`], but on the CPU gives up between two layers
    /// once `give_up` says so (given the share of layers done), leaving
    /// `cache` as it was (`None`). A device network runs its kernels
    /// asynchronously and always finishes.
    pub fn forward_unless(&self, tokens: &[u32], cache: &mut KvCache, give_up: &dyn Fn(f32) -> bool) -> Result<Option<Tensor>, EngineError> {
        match self {
            Self::Cpu(m) => m.forward_unless(tokens, cache, give_up),
            Self::Device(m) => m.forward(tokens, cache).map(Some),
        }
    }

    /// Like [`Self::forward`], with every token's logits, row by row.
    pub fn forward_all(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, EngineError> {
        match self {
            Self::Cpu(m) => m.forward_all(tokens, cache),
            Self::Device(m) => m.forward_all(tokens, cache),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_print_back() {
        for (text, device) in [
            ("cpu", ComputeDevice::Cpu),
            ("candle-cpu", ComputeDevice::CandleCpu),
            ("cuda", ComputeDevice::Cuda(0)),
            ("cuda:1", ComputeDevice::Cuda(1)),
            ("metal", ComputeDevice::Metal(0)),
            ("metal:2", ComputeDevice::Metal(2)),
        ] {
            assert_eq!(text.parse::<ComputeDevice>(), Ok(device), "{text}");
            assert_eq!(device.to_string().parse::<ComputeDevice>(), Ok(device));
        }
        for bad in ["gpu", "cuda:", "cuda:x", "cpu:0", "CUDA", "", "cuda:-1", "rocm"] {
            assert_eq!(bad.parse::<ComputeDevice>(), Err(UnknownDevice(bad.into())), "{bad}");
        }
        assert_eq!(ComputeDevice::default(), ComputeDevice::Cpu);
    }

    #[test]
    fn the_cpu_devices_open_as_the_cpu() {
        assert!(ComputeDevice::Cpu.open().unwrap().is_cpu());
        assert!(ComputeDevice::CandleCpu.open().unwrap().is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_rebuild() {
        let err = ComputeDevice::Cuda(0).open().unwrap_err();
        assert!(matches!(&err, EngineError::DeviceUnavailable { device, .. } if device == "cuda:0"));
        assert!(err.to_string().contains("--features cuda"), "{err}");
    }

    /// Runs wherever a cuda build's tests can start (the driver library is
    /// linked dynamically): with a GPU, ordinal 999 does not exist; without
    /// one, no ordinal does.
    #[cfg(feature = "cuda")]
    #[test]
    fn a_missing_cuda_gpu_is_an_error_that_names_it() {
        let err = ComputeDevice::Cuda(999).open().unwrap_err();
        assert!(matches!(&err, EngineError::DeviceUnavailable { device, .. } if device == "cuda:999"), "{err}");
        assert!(err.to_string().contains("is there a GPU 999?"), "{err}");
    }

    #[cfg(any(feature = "cuda", feature = "metal"))]
    #[test]
    fn a_device_error_reads_without_candles_backtrace() {
        let error = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::WithBacktrace {
                inner: Box::new(candle_core::Error::Msg("no CUDA-capable device is detected".into())),
                backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
            }),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        assert_eq!(without_backtrace(error).to_string(), "no CUDA-capable device is detected");
    }

    #[cfg(not(feature = "metal"))]
    #[test]
    fn metal_without_the_feature_says_how_to_rebuild() {
        let err = ComputeDevice::Metal(0).open().unwrap_err();
        assert!(err.to_string().contains("--features metal"), "{err}");
    }
}
