//! Shape-only layers: `Flatten` (`(H, W, C) -> (H W C,)`) and `Reshape(target_shape)`. Row-major
//! NHWC data keeps its order, so both are a copy forward and backward.

use crate::error::{invalid, Result};

use super::BackwardPass;

#[derive(Clone, Debug)]
pub struct Reshape {
    pub per_sample: usize,
}

/// The output shape of `Reshape(target)` for `input_shape`; one entry may be `-1` (inferred).
pub fn reshape_target(name: &str, input_shape: &[usize], target: &[i64]) -> Result<Vec<usize>> {
    let total: usize = input_shape.iter().product();
    let unknown = target.iter().filter(|&&d| d == -1).count();
    let known: i64 = target.iter().filter(|&&d| d != -1).product();
    let bad = || invalid(format!("Reshape '{name}': cannot reshape {input_shape:?} ({total} values) to {target:?}"));
    if unknown > 1 || target.iter().any(|&d| d == 0 || d < -1) || known <= 0 {
        return Err(bad());
    }
    let known = known as usize;
    if unknown == 1 {
        if !total.is_multiple_of(known) {
            return Err(bad());
        }
        Ok(target.iter().map(|&d| if d == -1 { total / known } else { d as usize }).collect())
    } else if known == total {
        Ok(target.iter().map(|&d| d as usize).collect())
    } else {
        Err(bad())
    }
}

impl Reshape {
    pub fn forward(&self, input: &[f32], output: &mut [f32], rows: usize) {
        let n = rows * self.per_sample;
        output[..n].copy_from_slice(&input[..n]);
    }

    pub fn backward(&self, p: BackwardPass<'_>) {
        if let Some(dx) = p.grad_in {
            let n = p.rows * self.per_sample;
            dx[..n].copy_from_slice(&p.grad_out[..n]);
        }
    }
}
