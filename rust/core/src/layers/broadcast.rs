//! Broadcasting of one per-sample tensor against a larger shape (numpy's and Keras's rule: the
//! shapes align on the right, and a size-1 or missing axis repeats).
//!
//! For each value of a sample of shape `out` (row-major), the offset of the value it reads in a
//! sample of shape `source`: `sum_d i_d s_d`, with `s_d` the row-major stride of `source` along
//! axis `d`, or 0 where `source` has size 1 there (or no such axis). Layers precompute this map
//! at build time, so forward and backward only index with it.

/// The offsets into a sample of `source` read by each value of a sample of `out`.
pub fn offsets(source: &[usize], out: &[usize]) -> Vec<u32> {
    let pad = out.len() - source.len();
    let mut strides = vec![0usize; out.len()];
    let mut s = 1;
    for d in (0..out.len()).rev() {
        let dim = if d < pad { 1 } else { source[d - pad] };
        strides[d] = if dim == 1 { 0 } else { s };
        s *= dim;
    }
    (0..out.iter().product::<usize>())
        .map(|mut flat| {
            let mut idx = 0;
            for d in (0..out.len()).rev() {
                idx += (flat % out[d]) * strides[d];
                flat /= out[d];
            }
            idx as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::offsets;

    #[test]
    fn offsets_repeat_size_one_and_missing_axes() {
        assert_eq!(offsets(&[2, 3], &[2, 3]), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(offsets(&[2, 1], &[2, 3]), vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(offsets(&[3], &[2, 3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(offsets(&[1, 3], &[2, 3]), vec![0, 1, 2, 0, 1, 2]);
    }
}
