//! The per-channel passes of batch normalization (note 000 "BatchNorm"), channels last: each row
//! of `c` values is one position of one sample, and statistics run over all rows.
//!
//! Rows are cut into at most [`STAT_CHUNKS`] chunks whose boundaries depend only on the shape, so
//! partial sums (per chunk, in a scratch buffer: nothing is allocated) and therefore the results
//! are the same whatever the thread count. Chunks run in parallel when the layer is large.
//!
//! - statistics: per chunk the mean and the sum of squared deviations (two passes over a chunk
//!   that is still in cache), merged exactly (Chan et al.): `M2 = sum(M2_i + n_i (mean_i - mean)^2)`;
//! - backward needs only `sum g` and `sum g x_hat`, which are also `dbeta` and `dgamma`:
//!   `dx = gamma / sigma (g - sum(g)/N - x_hat sum(g x_hat)/N)`.

use rayon::prelude::*;

/// Upper bound on the chunks of rows whose partial sums are merged.
pub const STAT_CHUNKS: usize = 64;
/// Values below which a pass stays on the calling thread.
const PARALLEL_MIN_ELEMS: usize = 1 << 15;
/// Rows per block of the element-wise passes.
const BLOCK_ELEMS: usize = 1 << 14;

/// Rows per statistics chunk for `rows` rows.
fn chunk_rows(rows: usize) -> usize {
    rows.div_ceil(STAT_CHUNKS).max(16)
}

fn parallel(len: usize) -> bool {
    len >= PARALLEL_MIN_ELEMS && rayon::current_num_threads() > 1
}

/// Runs `f(chunk_of_a, chunk_of_b, partial)` on matching chunks of rows of two buffers and the
/// chunk's `2c` partial-sum slots.
fn chunked<F>(a: &[f32], b: &[f32], c: usize, partials: &mut [f32], f: F)
where
    F: Fn(&[f32], &[f32], &mut [f32]) + Sync,
{
    let step = chunk_rows(a.len() / c) * c;
    let chunks = a.len().div_ceil(step);
    let partials = &mut partials[..chunks * 2 * c];
    if parallel(a.len()) {
        a.par_chunks(step)
            .zip(b.par_chunks(step))
            .zip(partials.par_chunks_mut(2 * c))
            .for_each(|((x, y), p)| f(x, y, p));
    } else {
        a.chunks(step).zip(b.chunks(step)).zip(partials.chunks_mut(2 * c)).for_each(|((x, y), p)| f(x, y, p));
    }
}

/// Adds each row of `x` (rows of `c`) into `acc`, with `f(value, channel)` applied.
#[inline]
fn add_rows(x: &[f32], acc: &mut [f32], f: impl Fn(f32, usize) -> f32) {
    for row in x.chunks_exact(acc.len()) {
        acc.iter_mut().zip(row).enumerate().for_each(|(ch, (a, &v))| *a += f(v, ch));
    }
}

/// Mean and biased variance of every channel of `x` (rows of `c`).
pub fn statistics(x: &[f32], c: usize, partials: &mut [f32], mean: &mut [f32], var: &mut [f32]) {
    let rows = x.len() / c;
    chunked(x, x, c, partials, |chunk, _, p| {
        let (m, m2) = p.split_at_mut(c);
        m.fill(0.0);
        m2.fill(0.0);
        add_rows(chunk, m, |v, _| v);
        let n = (chunk.len() / c) as f32;
        m.iter_mut().for_each(|v| *v /= n);
        add_rows(chunk, m2, |v, ch| (v - m[ch]) * (v - m[ch]));
    });
    let step = chunk_rows(rows);
    let counts = (0..rows.div_ceil(step)).map(|i| (step.min(rows - i * step)) as f32);
    mean.fill(0.0);
    for (p, n) in partials.chunks_exact(2 * c).zip(counts.clone()) {
        mean.iter_mut().zip(&p[..c]).for_each(|(m, v)| *m += n * v);
    }
    mean.iter_mut().for_each(|m| *m /= rows as f32);
    var.fill(0.0);
    for (p, n) in partials.chunks_exact(2 * c).zip(counts) {
        for ch in 0..c {
            let d = p[ch] - mean[ch];
            var[ch] += p[c + ch] + n * d * d;
        }
    }
    var.iter_mut().for_each(|v| *v /= rows as f32);
}

/// Runs `f(block_start_row, x_block, out_block)` over blocks of rows, in parallel when large.
fn blocks<F>(x: &[f32], out: &mut [f32], c: usize, f: F)
where
    F: Fn(&[f32], &mut [f32]) + Sync,
{
    let step = (BLOCK_ELEMS / c).max(1) * c;
    if parallel(x.len()) {
        x.par_chunks(step).zip(out.par_chunks_mut(step)).for_each(|(a, b)| f(a, b));
    } else {
        x.chunks(step).zip(out.chunks_mut(step)).for_each(|(a, b)| f(a, b));
    }
}

/// `x_hat = (x - mean) inv`, `y = scale x_hat + shift`, per channel.
pub fn normalize(x: &[f32], x_hat: &mut [f32], y: &mut [f32], mean: &[f32], inv: &[f32], scale: &[f32], shift: &[f32]) {
    let c = mean.len();
    let step = (BLOCK_ELEMS / c).max(1) * c;
    let body = |((xb, hb), yb): ((&[f32], &mut [f32]), &mut [f32])| {
        for ((xr, hr), yr) in xb.chunks_exact(c).zip(hb.chunks_exact_mut(c)).zip(yb.chunks_exact_mut(c)) {
            for ch in 0..c {
                let h = (xr[ch] - mean[ch]) * inv[ch];
                hr[ch] = h;
                yr[ch] = scale[ch] * h + shift[ch];
            }
        }
    };
    if parallel(x.len()) {
        x.par_chunks(step).zip(x_hat.par_chunks_mut(step)).zip(y.par_chunks_mut(step)).for_each(body);
    } else {
        x.chunks(step).zip(x_hat.chunks_mut(step)).zip(y.chunks_mut(step)).for_each(body);
    }
}

/// `y = scale x + shift`, per channel (inference with the moving statistics folded in).
pub fn affine(x: &[f32], y: &mut [f32], scale: &[f32], shift: &[f32]) {
    let c = scale.len();
    blocks(x, y, c, |xb, yb| {
        for (xr, yr) in xb.chunks_exact(c).zip(yb.chunks_exact_mut(c)) {
            for ch in 0..c {
                yr[ch] = scale[ch] * xr[ch] + shift[ch];
            }
        }
    });
}

/// `sum_g = sum g`, `sum_gh = sum g x_hat`, per channel.
pub fn gradient_sums(g: &[f32], x_hat: &[f32], c: usize, partials: &mut [f32], sum_g: &mut [f32], sum_gh: &mut [f32]) {
    chunked(g, x_hat, c, partials, |gc, hc, p| {
        let (sg, sgh) = p.split_at_mut(c);
        sg.fill(0.0);
        sgh.fill(0.0);
        for (gr, hr) in gc.chunks_exact(c).zip(hc.chunks_exact(c)) {
            for ch in 0..c {
                sg[ch] += gr[ch];
                sgh[ch] += gr[ch] * hr[ch];
            }
        }
    });
    sum_g.fill(0.0);
    sum_gh.fill(0.0);
    for p in partials.chunks_exact(2 * c).take((g.len() / c).div_ceil(chunk_rows(g.len() / c))) {
        sum_g.iter_mut().zip(&p[..c]).for_each(|(s, v)| *s += v);
        sum_gh.iter_mut().zip(&p[c..]).for_each(|(s, v)| *s += v);
    }
}

/// `dx = coef (g - mean_g - x_hat mean_gh)` per channel, `coef = gamma / sigma`.
pub fn input_gradient(g: &[f32], x_hat: &[f32], dx: &mut [f32], coef: &[f32], mean_g: &[f32], mean_gh: &[f32]) {
    let c = coef.len();
    let step = (BLOCK_ELEMS / c).max(1) * c;
    let body = |((db, gb), hb): ((&mut [f32], &[f32]), &[f32])| {
        for ((dr, gr), hr) in db.chunks_exact_mut(c).zip(gb.chunks_exact(c)).zip(hb.chunks_exact(c)) {
            for ch in 0..c {
                dr[ch] = coef[ch] * (gr[ch] - mean_g[ch] - hr[ch] * mean_gh[ch]);
            }
        }
    };
    if parallel(g.len()) {
        dx.par_chunks_mut(step).zip(g.par_chunks(step)).zip(x_hat.par_chunks(step)).for_each(body);
    } else {
        dx.chunks_mut(step).zip(g.chunks(step)).zip(x_hat.chunks(step)).for_each(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rows: usize, c: usize) -> Vec<f32> {
        (0..rows * c).map(|i| ((i * 7919 % 1013) as f32 / 101.3 - 5.0) * (1.0 + (i % c) as f32)).collect()
    }

    #[test]
    fn statistics_match_a_float64_two_pass_reference_at_every_thread_count() {
        for &(rows, c) in &[(1, 3), (17, 5), (5000, 32), (70_000, 8)] {
            let x = data(rows, c);
            let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
                let mut partials = vec![0.0; STAT_CHUNKS * 2 * c];
                pool.install(|| statistics(&x, c, &mut partials, &mut mean, &mut var));
                for ch in 0..c {
                    let col: Vec<f64> = x.chunks_exact(c).map(|r| r[ch] as f64).collect();
                    let m = col.iter().sum::<f64>() / rows as f64;
                    let v = col.iter().map(|x| (x - m).powi(2)).sum::<f64>() / rows as f64;
                    assert!((mean[ch] as f64 - m).abs() <= 1e-4 * (1.0 + m.abs()), "mean {rows}x{c}");
                    assert!((var[ch] as f64 - v).abs() <= 1e-4 * (1.0 + v), "var {rows}x{c}");
                }
                // Bit-identical whatever the thread count.
                match &first {
                    None => first = Some((mean, var)),
                    Some((m0, v0)) => assert!(m0 == &mean && v0 == &var, "thread count changed the result"),
                }
            }
        }
    }

    #[test]
    fn gradient_sums_match_a_float64_reference_at_every_thread_count() {
        let (rows, c) = (5000, 24);
        let (g, h) = (data(rows, c), data(rows, c).iter().map(|v| v.sin()).collect::<Vec<_>>());
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let (mut sg, mut sgh) = (vec![0.0; c], vec![0.0; c]);
            let mut partials = vec![0.0; STAT_CHUNKS * 2 * c];
            pool.install(|| gradient_sums(&g, &h, c, &mut partials, &mut sg, &mut sgh));
            for ch in 0..c {
                let want_g: f64 = g.chunks_exact(c).map(|r| r[ch] as f64).sum();
                let want_gh: f64 = g.chunks_exact(c).zip(h.chunks_exact(c)).map(|(a, b)| (a[ch] * b[ch]) as f64).sum();
                assert!((sg[ch] as f64 - want_g).abs() <= 1e-3 * (1.0 + want_g.abs()));
                assert!((sgh[ch] as f64 - want_gh).abs() <= 1e-3 * (1.0 + want_gh.abs()));
            }
        }
    }
}
