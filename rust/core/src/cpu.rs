//! The CPU the engine runs on: its name, vector extensions and caches (CPUID and sysfs), and its
//! measured fp32 peak. Benchmarks report against that peak; kernels may choose by these facts.
//!
//! The peak is measured, not computed from a spec sheet: independent chains of fused
//! multiply-adds on the widest vectors the CPU has (enough chains to cover the FMA latency), one
//! set per thread. `FLOPs = chains x lanes x 2` per step. A CPU with two 512-bit FMA ports
//! (Intel server cores) reaches twice the FLOPs per cycle of one that splits a 512-bit FMA in
//! two halves (AMD Zen 4), which the measurement shows and a feature flag would not.

use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::error::{invalid, Result};

/// What is known about the CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    /// `GenuineIntel`, `AuthenticAMD`, ... (empty when unknown).
    pub vendor: String,
    /// The marketing name (`AMD EPYC 9R14 96-Core Processor`).
    pub model: String,
    /// The widest vector extension the engine's kernels use here: `avx512`, `avx2`, `baseline`.
    pub simd: &'static str,
    pub logical_cpus: usize,
    /// Data cache sizes per core (L1d, L2) and of the shared L3, in KiB, when sysfs tells.
    pub l1d_kib: Option<usize>,
    pub l2_kib: Option<usize>,
    pub l3_kib: Option<usize>,
}

/// The CPU's description.
pub fn info() -> CpuInfo {
    let (vendor, model) = names();
    CpuInfo {
        vendor,
        model,
        simd: simd(),
        logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        l1d_kib: cache_kib(1, "Data"),
        l2_kib: cache_kib(2, "Unified"),
        l3_kib: cache_kib(3, "Unified"),
    }
}

fn simd() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return "avx2";
        }
    }
    "baseline"
}

#[cfg(target_arch = "x86_64")]
fn names() -> (String, String) {
    use std::arch::x86_64::__cpuid;
    // SAFETY: CPUID exists on every x86-64 CPU; leaves above the reported maximum are not read.
    let text = |regs: &[u32]| -> String {
        let bytes: Vec<u8> = regs.iter().flat_map(|r| r.to_le_bytes()).collect();
        String::from_utf8_lossy(&bytes).trim_matches(char::from(0)).trim().to_string()
    };
    let leaf0 = __cpuid(0);
    let vendor = text(&[leaf0.ebx, leaf0.edx, leaf0.ecx]);
    let model = if __cpuid(0x8000_0000).eax >= 0x8000_0004 {
        let regs: Vec<u32> = (0x8000_0002..=0x8000_0004u32)
            .flat_map(|leaf| {
                let r = __cpuid(leaf);
                [r.eax, r.ebx, r.ecx, r.edx]
            })
            .collect();
        text(&regs)
    } else {
        String::new()
    };
    (vendor, model)
}

#[cfg(not(target_arch = "x86_64"))]
fn names() -> (String, String) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        cpuinfo
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim().to_string()))
            .unwrap_or_default()
    };
    (field("CPU implementer"), field("model name"))
}

/// Size in KiB of the level-`level` cache of type `kind` of CPU 0, from sysfs (Linux).
fn cache_kib(level: usize, kind: &str) -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.flatten().find_map(|entry| {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok().map(|s| s.trim().to_string());
        if read("level")? != level.to_string() || read("type")? != kind {
            return None;
        }
        let size = read("size")?;
        let (digits, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit()).unwrap_or(size.len()));
        let n: usize = digits.parse().ok()?;
        Some(match unit {
            "M" => n * 1024,
            "G" => n * 1024 * 1024,
            _ => n,
        })
    })
}

/// Steps of one call of the FMA chains.
const STEPS: usize = 1 << 14;
/// Independent chains: more than latency x ports (4 x 2) on every x86 core in use.
const CHAINS: usize = 12;

/// Runs the FMA chains once on the widest vectors available; returns a value depending on every
/// chain (so nothing is optimised away) and the FLOPs done.
pub fn fma_chains(seed: f32) -> (f32, u64) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected at run time.
        return (unsafe { chains_avx512(seed) }, (STEPS * CHAINS * 16 * 2) as u64);
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA were detected at run time.
        return (unsafe { chains_avx2(seed) }, (STEPS * CHAINS * 8 * 2) as u64);
    }
    (chains_scalar(seed), (STEPS * CHAINS * 2) as u64)
}

/// Defines `$name(seed)`: the FMA chains on one vector type, compiled with `$features`; the
/// result sums every lane of every chain.
macro_rules! fma_chains {
    ($name:ident, $features:literal, $vector:ident, $lanes:literal, $set1:ident, $fmadd:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(seed: f32) -> f32 {
            use std::arch::x86_64::*;
            let (a, b) = ($set1(0.999_999), $set1(seed * 1e-7));
            let mut acc = [$set1(seed); CHAINS];
            for _ in 0..STEPS {
                for v in acc.iter_mut() {
                    *v = $fmadd(*v, a, b);
                }
            }
            // SAFETY: a vector of `$lanes` floats has the layout of `[f32; $lanes]`.
            acc.iter().map(|v| unsafe { std::mem::transmute::<$vector, [f32; $lanes]>(*v) }.iter().sum::<f32>()).sum()
        }
    };
}

fma_chains!(chains_avx512, "avx512f", __m512, 16, _mm512_set1_ps, _mm512_fmadd_ps);
fma_chains!(chains_avx2, "avx2,fma", __m256, 8, _mm256_set1_ps, _mm256_fmadd_ps);

fn chains_scalar(seed: f32) -> f32 {
    let mut acc = [seed; CHAINS];
    for _ in 0..STEPS {
        for v in acc.iter_mut() {
            *v = v.mul_add(0.999_999, seed * 1e-7);
        }
    }
    acc.iter().sum()
}

/// The fp32 peak in GFLOPS of `threads` threads, measured for about `seconds` (best of the
/// rounds run in that time).
pub fn measure_fp32_peak(threads: usize, seconds: f64) -> Result<f64> {
    if threads == 0 {
        return Err(invalid("measure_fp32_peak: threads must be at least 1"));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| invalid(format!("could not start {threads} threads: {e}")))?;
    let budget = Duration::from_secs_f64(seconds.clamp(0.01, 10.0));
    let start = Instant::now();
    let mut best = 0.0f64;
    let mut sink = 0.0f32;
    while best == 0.0 || start.elapsed() < budget {
        let t = Instant::now();
        let (value, flops): (f32, u64) = pool.install(|| {
            (0..threads)
                .into_par_iter()
                .map(|i| fma_chains(i as f32 + 1.0))
                .reduce(|| (0.0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        });
        sink += value;
        best = best.max(flops as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    std::hint::black_box(sink);
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_is_described_and_its_peak_is_positive() {
        let i = info();
        assert!(i.logical_cpus >= 1);
        assert!(["avx512", "avx2", "baseline"].contains(&i.simd));
        assert!(measure_fp32_peak(1, 0.01).unwrap() > 0.0);
        assert!(measure_fp32_peak(0, 0.01).is_err());
    }
}
